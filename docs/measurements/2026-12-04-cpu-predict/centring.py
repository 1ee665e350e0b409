"""Where to put a remade digit's centre of mass: MNIST's own test digits, inverted, enlarged
to 112 x 112 on a larger white sheet and made back into 28 x 28 images by
`pipeline.data.digits.to_mnist`, against the originals (mean absolute pixel difference / 255),
centred at pixel 14 (what `to_mnist` does) and at the field's middle, 13.5."""

import numpy as np
from PIL import Image

from pipeline.data import digits
from pipeline.data.mnist import load_images

images = load_images("data/prepared/test.npz")[0][:500]
rows = np.arange(28)
cy = [(im.sum(axis=1) @ rows) / im.sum() for im in images]
cx = [(im.sum(axis=0) @ rows) / im.sum() for im in images]
print(f"first 500 test digits' centre of mass, mean: row {np.mean(cy):.2f}, column {np.mean(cx):.2f}")


def remade(image):
    large = np.asarray(Image.fromarray(255 - image).resize((112, 112), Image.Resampling.BICUBIC))
    sheet = np.full((160, 140), 255, np.uint8)
    sheet[30:142, 10:122] = large
    return digits.to_mnist(sheet / 255.0)


paste = digits.centre_of_mass_paste
for centre in (14.0, 13.5):

    def centred(digit, centre=centre):
        return paste(digit, centre)

    digits.centre_of_mass_paste = centred
    try:
        again = np.stack([remade(im) for im in images])
    finally:
        digits.centre_of_mass_paste = paste
    difference = np.abs(again.astype(float) - images).mean() / 255
    print(f"centred at {centre}: mean |remade - original| / 255 = {difference:.3f}")
shifted = np.roll(images, 1, axis=2)
print(f"the originals shifted one pixel right: {np.abs(shifted.astype(float) - images).mean() / 255:.3f}")

"""Data: fetch the raw MNIST files, parse them, split them the book's way, expand them."""

from pipeline.data.mnist import Dataset, load_dataset, load_images

__all__ = ["Dataset", "load_dataset", "load_images"]

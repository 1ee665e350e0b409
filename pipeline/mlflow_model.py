"""The code of every model the pipeline logs to MLflow (MLflow's "models from code").

MLflow copies this file into each logged model and runs it to load the model, so

    model = mlflow.pyfunc.load_model("runs:/<run id>/model")
    digits = model.predict(images)

works for any training run, and for the ensemble's run, from Python or ``mlflow models serve``.
``images`` holds one MNIST image a row, 784 pixels in [0, 1] (the book's scaling, raw/256:
``pipeline.data.mnist.scale_pixels``), in the networks' dtype (float64 for chapters 1 to 5, float32 for
chapter 6: the model's signature says which, and MLflow refuses the other); ``predict``
returns the predicted digit of each row. A model of several networks (the ensemble) returns their
plurality vote, ties to the smaller digit (``pipeline.nn.ensemble``).

The networks are the run's own model folders (``weights.npz`` and ``model.json``, no pickle),
logged as the model's artifacts (``pipeline.tracking.network_artifacts`` names them), and read
by the engine's checked loader. Loading needs this project installed (``pip install
-e .``): the engine is this repo's code, at the commit in the run's
``mlflow.source.git.commit`` tag.
``pipeline.tracking`` logs these models, and names this file to MLflow; nothing imports it.
"""

# no `from __future__ import annotations`: MLflow reads predict's type hint as a type
import mlflow
import numpy
from mlflow.pyfunc import PythonModel


class DigitClassifier(PythonModel):
    """MNIST images in, predicted digits out: one network's, or the vote of several."""

    def load_context(self, context) -> None:
        from pipeline.nn.io import load_model  # the engine, loaded only with a model

        # every artifact is a network (``pipeline.tracking.network_artifacts``); the order of
        # a vote's networks does not change its outcome
        if not context.artifacts:
            raise ValueError("this model has no network among its artifacts")
        self.networks = [load_model(path).network for _, path in sorted(context.artifacts.items())]

    def predict(self, context, model_input: numpy.ndarray, params=None) -> numpy.ndarray:
        from pipeline.nn.ensemble import ensemble_predict

        x = numpy.asarray(model_input)
        pixels = int(numpy.prod(self.networks[0].input_shape))
        if x.ndim != 2 or x.shape[1] != pixels:
            raise ValueError(f"expected one image a row, {pixels} pixels each; got an array of shape {x.shape}")
        if x.size and (not numpy.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise ValueError("pixels must be numbers in [0, 1] (the book's scaling: raw 0-255 values "
                             "divided by 256, as pipeline.data.mnist.scale_pixels does); these range "
                             f"over [{x.min()}, {x.max()}]")
        return ensemble_predict(self.networks, x)


mlflow.models.set_model(DigitClassifier())

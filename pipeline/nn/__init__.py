"""The numpy (or CuPy) neural-network engine behind every experiment of the book.

Public API::

    spec = validate_spec(raw)                 # plain data in, checked dict out (SpecError)
    net = build_network(spec)                 # Network with initial weights from the spec's seed
    history = fit(net, spec, (x, y), validation, test, on_epoch=..., log=...)
    save_model("models/run", net, spec, {"test": history.test_at_best_validation})
    net, spec, metadata, info = load_model("models/run")
    votes = plurality_vote([n.predict(x) for n in nets])
    xp = get_xp("gpu")

Modules: ``base`` (the layer contract), ``activations``, ``costs``, ``layers`` (fc, softmax),
``conv`` (conv + max-pool), ``network`` (backprop), ``regularization``, ``spec``, ``build``,
``train`` (SGD loop), ``ensemble``, ``io`` (model files), ``backend`` (numpy/cupy), ``blas``
(BLAS threads, the in-place GEMM step), ``gpu`` (CUDA kernels and graphs), ``seeding``,
``network2_rng`` (the book's draw order, replayed).
"""

from pipeline.nn.activations import Activation, get_activation
from pipeline.nn.backend import BackendError, get_xp, to_numpy
from pipeline.nn.build import build_network
from pipeline.nn.costs import Cost, get_cost
from pipeline.nn.ensemble import ensemble_predict, plurality_vote, score_vote
from pipeline.nn.io import LoadedModel, ModelFileError, load_model, save_model
from pipeline.nn.layers import FullyConnected, Softmax
from pipeline.nn.network import Network, one_hot
from pipeline.nn.regularization import Regularization
from pipeline.nn.seeding import streams
from pipeline.nn.spec import SpecError, validate_spec
from pipeline.nn.train import SGD, History, fit

__all__ = [
    "Activation",
    "BackendError",
    "Cost",
    "FullyConnected",
    "History",
    "LoadedModel",
    "ModelFileError",
    "Network",
    "Regularization",
    "SGD",
    "Softmax",
    "SpecError",
    "build_network",
    "ensemble_predict",
    "score_vote",
    "fit",
    "get_activation",
    "get_cost",
    "get_xp",
    "load_model",
    "one_hot",
    "plurality_vote",
    "save_model",
    "streams",
    "to_numpy",
    "validate_spec",
]

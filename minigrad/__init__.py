"""minigrad: a small, fast training framework with Flux's names.

``import minigrad as mg`` (or ``from minigrad import *``) gives the autograd
(:mod:`minigrad.tracker`), the ops (:mod:`minigrad.ops`), layers, losses and optimisers;
``mg.mx`` is MXNet.jl's optimizer API (:mod:`minigrad.mx`).

>>> import numpy as np, minigrad as mg
>>> W, b = mg.rand(2, 5), mg.rand(2)
>>> x, y = np.random.rand(5), np.random.rand(2)
>>> loss = lambda x, y: mg.sum((W @ x + b - y) ** 2)
>>> grads = mg.gradient(lambda: loss(x, y), mg.params(W, b))
>>> grads[W].shape, grads[b].shape
((2, 5), (2,))
"""

from . import checkpoint, losses, mx, ops, optimise, optimisers, schedules, tracker
from .autograd import gradient, param, withgradient
from .checkpoint import CheckpointError, load, save
from .dataloader import DataLoader, onecold, onehotbatch
from .devices import cpu, gpu
from .layers import (
    BatchNorm,
    Chain,
    Conv,
    CrossCor,
    Dense,
    Dropout,
    Embedding,
    LayerNorm,
    MaxPool,
    MeanPool,
    glorot_uniform,
    testmode_,
    trainmode_,
)
from .ops import (
    abs,
    concatenate,
    exp,
    flatten,
    identity,
    leakyrelu,
    log,
    logsigmoid,
    logsoftmax,
    logσ,
    maximum,
    mean,
    minimum,
    relu,
    reshape,
    sigmoid,
    softmax,
    softplus,
    sqrt,
    sum,
    tanh,
    transpose,
    σ,
)
from .optimise import *  # noqa: F403  (Flux re-exports Flux.Optimise)
from .optimise import __all__ as _optimise_names
from .tracker import (
    Grads,
    Param,
    Params,
    data,
    ones,
    params,
    rand,
    randn,
    zeros,
)

__version__ = "0.1.0"

__all__ = [
    "tracker", "ops", "losses", "optimise", "optimisers", "schedules", "checkpoint", "mx",
    "save", "load", "CheckpointError", "gpu", "cpu",
    "Param", "Params", "Grads", "param", "params", "gradient", "withgradient", "data",
    "rand", "randn", "zeros", "ones",
    "Dense", "Chain", "Conv", "CrossCor", "MaxPool", "MeanPool", "BatchNorm", "LayerNorm",
    "Dropout", "Embedding", "trainmode_", "testmode_", "glorot_uniform",
    "DataLoader", "onehotbatch", "onecold", "flatten",
    "abs", "concatenate", "exp", "identity", "leakyrelu", "log", "logsigmoid", "logsoftmax",
    "logσ", "maximum", "mean", "minimum", "relu", "reshape", "sigmoid", "softmax", "softplus",
    "sqrt", "sum", "tanh", "transpose", "σ",
    *_optimise_names,
]

"""Optimisers (``minigrad.optimise`` = ``Flux.Optimise``): rules, composition, decays, clipping,
and the rules Optimisers.jl added, with Muon (:mod:`minigrad.optimise.rules_extra`).

Sign convention: Flux.Optimise's :func:`update_` SUBTRACTS the step; Tracker's
:func:`minigrad.tracker.update_` adds it.
"""

from .guard import ApplyIfFinite, NonFiniteGradientError
from .precompile import precompile
from .rules import (
    ADAM,
    ADAMW,
    EPS,
    NADAM,
    OADAM,
    RADAM,
    SGD,
    AbstractOptimiser,
    AdaBelief,
    ADADelta,
    AdaDelta,
    ADAGrad,
    AdaGrad,
    Adam,
    AdaMax,
    AdamW,
    AMSGrad,
    ClipNorm,
    ClipValue,
    Descent,
    ExpDecay,
    IdDict,
    InvDecay,
    LegacyOptimiser,
    Momentum,
    NAdam,
    Nesterov,
    OAdam,
    Optimiser,
    RAdam,
    RMSProp,
    WeightDecay,
)
from .rules_extra import (
    AccumGrad,
    CentredRMSProp,
    ClipGrad,
    Lion,
    Muon,
    Rprop,
    SignDecay,
    Signum,
)
from .step import apply_, update_
from .train import (
    DomainError,
    SkipException,
    StopException,
    epochs,
    runall,
    skip,
    stop,
    throttle,
    train_,
)

__all__ = [
    "AbstractOptimiser", "IdDict", "Descent", "Momentum", "Nesterov", "RMSProp", "Adam", "RAdam",
    "AdaMax", "OAdam", "AdaGrad", "AdaDelta", "AMSGrad", "NAdam", "AdaBelief", "AdamW",
    "Optimiser", "WeightDecay", "ClipValue", "ClipNorm", "ExpDecay", "InvDecay",
    "ADAM", "RADAM", "OADAM", "ADAGrad", "ADADelta", "NADAM", "ADAMW", "EPS",
    "SGD", "LegacyOptimiser", "apply_", "update_", "precompile",
    "train_", "stop", "skip", "throttle", "runall", "epochs", "DomainError", "StopException",
    "SkipException", "ApplyIfFinite", "NonFiniteGradientError",
    "Rprop", "Signum", "SignDecay", "ClipGrad", "AccumGrad", "CentredRMSProp", "Lion", "Muon",
]

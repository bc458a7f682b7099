"""``minigrad.mx``: MXNet.jl's optimizer API (``MXNet.mx``) in Python.

``import minigrad as mg`` then ``mg.mx.SGD(η=10)``, or ``from minigrad import mx``.

* Optimizers, keyword-only with MXNet.jl's defaults: :class:`SGD`, :class:`ADAM`,
  :class:`AdaGrad`, :class:`AdaDelta`, :class:`AdaMax`, :class:`RMSProp`, :class:`Nadam`.
* :func:`getupdater` returns ``descend_(index, grad, W)``, which updates ``W`` in place with
  one state per integer ``index``; :func:`normgrad_` rescales, clips and adds weight decay to
  a gradient in place.
* Schedulers: ``LearningRate.Fixed/Exp/Inv`` and ``Momentum.Null/Fixed/NadamScheduler``,
  read with :func:`get` and advanced with :func:`update_`.
* :class:`OptimizationState` and :func:`fit`, a small MXNet-style training loop.
* :func:`NDArray` makes a float32 array, MXNet's default dtype.

Every optimizer's per-element math is compiled, fused with the gradient normalisation, into
one kernel (see :mod:`minigrad.mx.optimizers`).  The seed's example:

>>> from minigrad import mx
>>> opt = mx.SGD(η=10)
>>> opt
SGD(eta=10, mu=0.0, clip=0, scale=0, lambda_=0.0001,
    eta_sched=LearningRate.Fixed(10.0), mu_sched=Momentum.Null())
>>> decend_ = mx.getupdater(opt)
>>> W = mx.NDArray([1, 2, 3, 4]); grad = mx.NDArray([.1, .2, .3, .4])
>>> print(decend_(1, grad, W))
[-0.00100005 -0.00200009 -0.00300002 -0.00400019]
"""

# The modules keep MXNet.jl's names (mx.LearningRate.Exp, mx.Momentum.Fixed).
from . import learning_rate as LearningRate
from . import momentum as Momentum
from .base import (
    AbstractLearningRateScheduler,
    AbstractMomentumScheduler,
    AbstractOptimizer,
    NDArray,
    OptimizationState,
    get,
    update_,
)
from .fit import fit
from .optimizers import (
    ADAM,
    SGD,
    AdaDelta,
    AdaGrad,
    AdaMax,
    MxState,
    Nadam,
    NormGrad,
    RMSProp,
    SGDMomentum,
    Updater,
    getupdater,
    normgrad_,
)

__all__ = [
    "SGD", "ADAM", "AdaGrad", "AdaDelta", "AdaMax", "RMSProp", "Nadam",
    "getupdater", "normgrad_", "Updater", "MxState", "NormGrad", "SGDMomentum",
    "LearningRate", "Momentum", "get", "update_",
    "AbstractOptimizer", "AbstractLearningRateScheduler", "AbstractMomentumScheduler",
    "OptimizationState", "NDArray", "fit",
]

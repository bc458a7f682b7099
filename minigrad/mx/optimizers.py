"""MXNet.jl's built-in optimizers, ``normgrad_`` and ``getupdater``.

Every optimizer works with the normalised gradient ``g = clip(scale·∇, ±clip) + λ·W``
(:func:`normgrad_`) and then updates its state and ``W``.  Both halves are per-element math,
written once each as a ``math`` function with no float literals (the constants come in as
hyperparameters of the array's dtype, so float32 stays float32):

* :class:`NormGrad` is the normalisation stage;
* each optimizer class carries its own ``math`` and ``state_fill``.

``descend_`` runs the two stages fused into ONE compiled loop over memory
(:func:`minigrad.optimise.kernels.fused_kernel`, the same machinery as the Flux rules), and
``normgrad_`` runs the normalisation stage alone, in place on the gradient.  Per-step scalars
(η from the scheduler, the momentum, ADAM's bias correction, Nadam's momentum products) are
computed in Python before the loop and committed after it, so a failing call changes nothing.
"""

from __future__ import annotations

import math

import numpy as np

from ..arrays import device_dtype, on_device
from ..keywords import normal, resolve, spellings
from ..optimise import cpu
from ..optimise.backend import backend_for, backend_of
from ..optimise.kernels import finite_sum
from ..optimise.rules import _State
from ..tracker import Node, _describe
from . import learning_rate as LearningRate
from . import momentum as Momentum
from .base import (
    AbstractLearningRateScheduler,
    AbstractMomentumScheduler,
    AbstractOptimizer,
    checked,
    label,
)

__all__ = ["SGD", "ADAM", "AdaGrad", "AdaDelta", "AdaMax", "RMSProp", "Nadam", "normgrad_",
           "getupdater", "Updater", "MxState", "NormGrad"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# -- the normalisation stage ---------------------------------------------------------------------

class NormGrad:
    """The kernel stage of :func:`normgrad_`: ``g = clip(scale·∇, −clip, clip) + λ·W``.

    Its hyperparameters encode MXNet.jl's three switches without a branch on a float literal:
    ``scale = 0`` (do not rescale) is passed as 1, ``clip = 0`` (do not clip) as +∞, and
    ``λ = 0`` adds ``0·W``.  NaN gradients pass through the clip unchanged, as with Julia's
    ``clamp``.

    >>> from minigrad import mx
    >>> mx.NormGrad.hypers(mx.SGD())
    (1, inf, 0.0001)
    """

    state_fill = ()

    @staticmethod
    def math(d, x, scale, clip, lam):
        return np.minimum(np.maximum(d * scale, -clip), clip) + lam * x

    @staticmethod
    def hypers(opt) -> tuple:
        """``(scale or 1, clip or ∞, λ)`` for optimizer ``opt``."""
        scale, clip, lam = opt.scale, opt.clip, opt.lambda_
        return (scale if scale != 0 else 1, clip if clip > 0 else math.inf,
                lam if lam > 0 else 0.0)


# -- operands, state and the kernel launch -------------------------------------------------------

def _operands(name: str, W, grad, write_grad: bool = False) -> tuple:
    """The storage of ``W`` and ``grad`` as NumPy arrays, after every check on them."""
    target = W.data if isinstance(W, Node) else W
    g = grad.data if isinstance(grad, Node) else grad
    if (type(target) is np.ndarray and type(g) is np.ndarray and target.dtype in _FLOATS
            and g.dtype == target.dtype and g.shape == target.shape
            and target.flags.writeable and (not write_grad or g.flags.writeable)):
        return target, g        # the common case, checked cheaply
    if on_device(target) or on_device(g):
        # GPU arrays: the checks (and later the kernels) of minigrad.optimise.cuda.
        return backend_for(name, W, grad).operands(name, W, grad, not write_grad)
    if not isinstance(target, np.ndarray):
        raise TypeError(f"{name}: W must be a NumPy array or a trainable array, got "
                        f"{_describe(W)}")
    if target.dtype not in _FLOATS:
        raise TypeError(f"{name}: W has dtype {target.dtype}; the MXNet optimizers run on "
                        "float32 or float64 arrays (mx.NDArray(x) gives float32)")
    if not target.flags.writeable:
        raise ValueError(f"{name}: W (shape {target.shape}) is read-only")
    if not isinstance(g, np.ndarray):
        raise TypeError(f"{name}: grad must be a NumPy array or a trainable array, got "
                        f"{_describe(grad)}")
    if g.shape != target.shape:
        raise ValueError(f"{name}: grad has shape {g.shape} but W has shape {target.shape}")
    if g.dtype != target.dtype:
        raise TypeError(f"{name}: grad has dtype {g.dtype} but W has dtype {target.dtype}; "
                        "convert one of them")
    if write_grad and not g.flags.writeable:
        raise ValueError(f"{name}: grad is read-only, but normgrad_ works in place on it")
    return target, g


def _launch(stages: tuple, update: bool, target, g, hypers: tuple, arrays: tuple) -> None:
    """Run ``stages`` as one fused kernel over ``target`` (and ``g``), in place, on their
    backend (see :mod:`minigrad.optimise.backend`).

    ``update=True``: ``target -= step`` and ``g`` is only read.  ``update=False``: ``g`` is
    overwritten with the result.  Non-contiguous host arrays are worked on as contiguous
    copies and written back (GPU arrays are checked C-contiguous).
    """
    be = backend_of(target)
    x, gf = be.flat_view(target), be.flat_view(g)
    be.run(stages, update, x, gf, list(hypers), arrays)
    if be is cpu:
        if update and not np.shares_memory(x, target):
            target[...] = x.reshape(target.shape)
        if not update and not np.shares_memory(gf, g):
            g[...] = gf.reshape(g.shape)


class MxState(_State):
    """One parameter's optimizer state: flat arrays (the ``state_fill`` of the optimizer's
    kernel stage) and per-parameter scalars, made on the parameter's first step (the Flux
    rules' per-parameter state, with its kernel stage and dtype, and names).

    Read them by name, shaped like the parameter: ``state.m`` and ``state.v`` for ADAM
    (scalars ``eta``, ``beta1_t``, ``beta2_t``), ``state.nu`` for SGD with momentum,
    ``state.x`` for AdaGrad, ``state.x``/``state.dx`` for AdaDelta, ``state.m``/``state.u``
    for AdaMax (scalar ``beta1_t``), ``state.s`` for RMSProp, ``state.m``/``state.n`` for
    Nadam (scalars ``pi_mu``, ``beta2_t``, ``t``).  Plain SGD keeps no arrays (MXNet.jl's
    state ``nothing``).

    >>> import numpy as np
    >>> from minigrad import mx
    >>> descend_ = mx.getupdater(mx.ADAM())
    >>> W = descend_(0, np.ones(2), np.zeros(2))
    >>> s = descend_.states[0]; s.m, s.beta1_t
    (array([0.1, 0.1]), 0.81)
    """

    __slots__ = ("stage", "dtype")

    def __init__(self, stage: type, arrays: tuple, scalars: list, shape: tuple, dtype):
        super().__init__(arrays, scalars, shape)
        self.stage, self.dtype = stage, dtype

    def __getattr__(self, name: str):
        try:
            stage = object.__getattribute__(self, "stage")
        except AttributeError:
            raise AttributeError(name) from None
        if name in stage.state_names:
            return self.arrays[stage.state_names.index(name)].reshape(self.shape)
        if name in stage.scalar_names:
            return self.scalars[stage.scalar_names.index(name)]
        raise AttributeError(f"{stage.__name__}'s state has no {name!r}; it has "
                             f"{', '.join(stage.state_names + stage.scalar_names) or 'nothing'}")

    def check(self, name: str, index: int, target: np.ndarray) -> None:
        """Raise if ``target`` is not the kind of array this state was made for."""
        be = backend_of(target)
        if self.arrays and be is not backend_of(self.arrays[0]):
            raise TypeError(f"{name}: W (index {index}) is on {be.NAME} but the state of index "
                            f"{index} is not; use a new index (or updater) after moving W")
        if tuple(target.shape) != self.shape or device_dtype(target) != self.dtype:
            raise ValueError(
                f"{name}: W (index {index}) has shape {target.shape} and dtype "
                f"{target.dtype}, but the state of index {index} was made for shape "
                f"{self.shape} and dtype {self.dtype}; use one index per parameter")

    def __repr__(self) -> str:
        names = [*self.stage.state_names, *(f"{n}={v!r}" for n, v in
                                            zip(self.stage.scalar_names, self.scalars,
                                                strict=True))]
        return f"MxState({self.stage.__name__}: {', '.join(names) or 'no state'})"


def _index(name: str, index) -> int:
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"{name}: index must be an int (the parameter's key), got {index!r}")
    return int(index)


# -- the optimizers ------------------------------------------------------------------------------

def _lr_sched(owner, name, value):
    if not isinstance(value, AbstractLearningRateScheduler):
        raise TypeError(f"{owner}: {name} must be a learning rate scheduler "
                        f"(mx.LearningRate.Fixed/Exp/Inv), got {value!r}")
    return value


def _mom_sched(owner, name, value):
    if not isinstance(value, AbstractMomentumScheduler):
        raise TypeError(f"{owner}: {name} must be a momentum scheduler "
                        f"(mx.Momentum.Null/Fixed/NadamScheduler), got {value!r}")
    return value


def _nadam_sched(owner, name, value):
    if not isinstance(value, Momentum.NadamScheduler):
        raise TypeError(f"{owner}: {name} must be a Momentum.NadamScheduler, got {value!r}")
    return value


def _flag(owner, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


_CHECKS = {"lrsched": _lr_sched, "momsched": _mom_sched, "nadamsched": _nadam_sched,
           "flag": _flag}

# Fields every optimizer shares, in MXNet.jl's order after the rule's own.
_CLIP = ("clip", None, 0, ">=0")
_SCALE = ("scale", None, 0, "real")
_ETA_SCHED = ("eta_sched", "η_sched", lambda o: LearningRate.initlrsched(o.eta), "lrsched")


def _lambda(default):
    return ("lambda_", "λ", default, ">=0")


class _Builtin(AbstractOptimizer):
    """A built-in MXNet optimizer: keyword-only constructor, checked fields, kernel math.

    Subclasses set ``fields`` (``(attr, greek, default, rule)`` in MXNet.jl's order; a
    callable default receives the optimizer), ``state_fill``/``state_names`` (per-element
    state), ``scalar_names``/``_scalars()`` (per-parameter scalar state), the static
    ``math`` and ``_hypers(state)``.
    """

    fields: tuple = ()
    state_fill: tuple = ()
    state_names: tuple = ()
    scalar_names: tuple = ()
    _rebuild = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        spell = spellings(cls.fields)
        if "lambda_" in spell:
            spell["lambda"] = "lambda_"
        cls._spellings = spell
        cls._rules = {attr: (greek, rule) for attr, greek, _, rule in cls.fields}

    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        if args:
            raise TypeError(f"{name} takes keyword arguments only, as MXNet.jl's "
                            f"{name}(; kwargs...): e.g. {name}(η=0.1); got {len(args)} "
                            "positional argument(s)")
        values = resolve(name, kwargs, self._spellings)
        for attr, _, default, _ in self.fields:
            value = values[attr] if attr in values else (
                default(self) if callable(default) else default)
            object.__setattr__(self, attr, self._checked(attr, value))

    def _checked(self, attr: str, value):
        greek, rule = self._rules[attr]
        name, owner = label(attr, greek), type(self).__name__
        check = _CHECKS.get(rule)
        return check(owner, name, value) if check else checked(owner, name, value, rule)

    def __setattr__(self, attr: str, value) -> None:
        attr = self._spellings.get(normal(attr), attr)
        if attr in self._rules:
            value = self._checked(attr, value)
            # opt.eta = v (and SGD's opt.mu = v) take effect at the next step, as every
            # minigrad hyperparameter does: a constant schedule follows the new value.
            if attr == "eta" and isinstance(getattr(self, "eta_sched", None),
                                            LearningRate.Fixed):
                object.__setattr__(self, "eta_sched", LearningRate.Fixed(value))
            if attr == "mu" and isinstance(getattr(self, "mu_sched", None),
                                           (Momentum.Null, Momentum.Fixed)):
                object.__setattr__(self, "mu_sched", Momentum.initmomsched(value))
        object.__setattr__(self, attr, value)

    def __getattr__(self, attr: str):
        # Only called for names not found: the Greek spellings (opt.η, opt.λ).
        spelled = getattr(type(self), "_spellings", {})
        real = spelled.get(normal(attr))
        if real is None or real == attr:
            raise AttributeError(f"{type(self).__name__} has no attribute {attr!r}")
        return getattr(self, real)

    def __repr__(self) -> str:
        args = ", ".join(f"{attr}={getattr(self, attr)!r}" for attr, _, _, _ in self.fields)
        return f"{type(self).__name__}({args})"

    # -- MXNet.jl's protocol -----------------------------------------------------------------
    def _stage(self) -> type:
        """The kernel stage type a new state uses (the class that defines ``math``)."""
        for cls in type(self).__mro__:
            if "math" in cls.__dict__:
                return cls
        raise TypeError(f"{type(self).__name__} defines no math")

    def _scalars(self) -> list:
        return []

    def _new_state(self, target) -> MxState:
        stage, dtype = self._stage(), device_dtype(target)
        be = backend_of(target)         # (a GPU parameter keeps its state on the GPU)
        size = be.flat_view(target).size
        arrays = tuple(be.full(size, fill, dtype) for fill in stage.state_fill)
        return MxState(stage, arrays, self._scalars(), tuple(target.shape), dtype)

    def create_state(self, index: int, W) -> MxState:
        """MXNet.jl's ``create_state(opt, index, W)``: zero state shaped like ``W``."""
        target = W.data if isinstance(W, Node) else W
        if not (isinstance(target, np.ndarray) or on_device(target)) or \
                device_dtype(target) not in _FLOATS:
            raise TypeError(f"{type(self).__name__}.create_state: W must be a float32 or "
                            f"float64 array, got {_describe(W)}")
        return self._new_state(target)

    def update_(self, index: int, W, grad, state: MxState):
        """MXNet.jl's ``update!(opt, index, W, ∇, state)``: one step, in place on ``W``
        (weight before gradient); returns ``W``.  ``grad`` is not modified."""
        name = f"{type(self).__name__}.update_"
        target, g = _operands(name, W, grad)
        if not isinstance(state, MxState):
            raise TypeError(f"{name}: state must come from create_state, got {state!r}")
        state.check(name, index, target)
        self._step(target, g, state)
        return W

    def _step(self, target: np.ndarray, g: np.ndarray, state: MxState) -> None:
        hypers, scalars = self._hypers(state)
        hypers = NormGrad.hypers(self) + hypers
        if not finite_sum(hypers[:1] + hypers[2:]):     # [1] is clip: +∞ when clipping is off
            raise ValueError(f"{type(self).__name__}: this step's hyperparameters are not all "
                             f"finite (scale, clip, λ, then the rule's): {hypers}")
        _launch((NormGrad, state.stage), True, target, g, hypers, state.arrays)
        state.scalars[:] = scalars

    def _hypers(self, state: MxState) -> tuple:
        """``(hyperparameters for math, the scalar state after this step)``; no side effects."""
        raise NotImplementedError


class SGD(_Builtin):
    """``SGD(; η=0.01, μ=0.0, clip=0, scale=0, λ=0.0001, η_sched=Fixed(η),
    μ_sched=initmomsched(μ))``: stochastic gradient descent.

    With ``g`` from :func:`normgrad_` and ``η = get(η_sched)``:

    * vanilla (``μ_sched`` is ``Momentum.Null()``, the default for ``μ = 0``):
      ``W ← W − η·g``;
    * with momentum (``μ = get(μ_sched)``): ``ν ← μ·ν − η·g``, ``W ← W + ν``.

    Whether momentum is used is decided by the type of ``μ_sched`` when a parameter's state
    is made (as MXNet.jl dispatches on the state).  Checks: η > 0, μ ≥ 0, clip ≥ 0, λ ≥ 0.

    >>> import numpy as np
    >>> from minigrad import mx
    >>> W = np.array([1.0, 2.0])
    >>> mx.getupdater(mx.SGD(η=0.1, λ=0))(0, np.array([1.0, 1.0]), W)
    array([0.9, 1.9])
    """

    fields = (("eta", "η", 0.01, ">0"), ("mu", "μ", 0.0, ">=0"), _CLIP, _SCALE,
              _lambda(0.0001), _ETA_SCHED,
              ("mu_sched", "μ_sched", lambda o: Momentum.initmomsched(o.mu), "momsched"))

    @staticmethod
    def math(d, x, eta):
        return d * eta

    def _stage(self) -> type:
        return SGD if isinstance(self.mu_sched, Momentum.Null) else SGDMomentum

    def _hypers(self, state):
        if state.stage is SGD:
            return (self.eta_sched.get(),), state.scalars
        return (self.eta_sched.get(), self.mu_sched.get()), state.scalars


class SGDMomentum:
    """The kernel stage of :class:`SGD` with momentum: ``ν ← μ·ν − η·g``, step ``−ν``.

    >>> from minigrad import mx
    >>> mx.SGDMomentum.math(1.0, 0.0, 0.5, 0.1, 0.9)   # (step, new ν) for g=1, ν=0.5
    (-0.35, 0.35)
    """

    state_fill = (0.0,)
    state_names = ("nu",)
    scalar_names = ()

    @staticmethod
    def math(d, x, nu, eta, mu):
        nu = mu * nu - eta * d
        return -nu, nu


class ADAM(_Builtin):
    """``ADAM(; η=0.001, β1=0.9, β2=0.999, ϵ=1e-8, clip=0, scale=0, λ=1e-5,
    η_sched=Fixed(η), freeze_eta=True)``: Kingma & Ba's Adam, as MXNet.jl computes it::

        m ← β1·m + (1−β1)·g        v ← β2·v + (1−β2)·g²
        a = √(1−β2ᵗ)/(1−β1ᵗ)       W ← W − η·a·m/(√v + ϵ)

    with ``β1ᵗ, β2ᵗ`` per parameter, starting at ``β1, β2`` (so the first step has the usual
    t = 1 correction) and multiplied by β after each step.  ϵ is outside the square root.

    **Quirk (MXNet.jl's):** η is read from ``η_sched`` once, when a parameter's state is
    made, and kept in the state (``state.eta``): a decaying schedule has no effect on ADAM.
    ``freeze_eta=False`` (a minigrad addition) reads ``get(η_sched)`` at every step instead,
    as every other optimizer does.  Checks: η > 0, 0 ≤ β1, β2 < 1, ϵ > 0, clip ≥ 0, λ ≥ 0.

    >>> import numpy as np
    >>> from minigrad import mx
    >>> W = mx.getupdater(mx.ADAM(λ=0))(0, np.array([4.0]), np.array([1.0]))
    >>> round(float(W[0]), 9)         # the first step is η·sign(g)
    0.999
    """

    fields = (("eta", "η", 0.001, ">0"), ("beta1", "β1", 0.9, "[0,1)"),
              ("beta2", "β2", 0.999, "[0,1)"), ("epsilon", "ϵ", 1e-8, ">0"), _CLIP, _SCALE,
              _lambda(1e-5), _ETA_SCHED, ("freeze_eta", None, True, "flag"))
    state_fill = (0.0, 0.0)
    state_names = ("m", "v")
    scalar_names = ("eta", "beta1_t", "beta2_t")

    @staticmethod
    def math(d, x, m, v, lr, b1, b2, one_b1, one_b2, eps):
        m = b1 * m + one_b1 * d
        v = b2 * v + one_b2 * (d * d)
        return lr * m / (np.sqrt(v) + eps), m, v

    def _scalars(self):
        return [self.eta_sched.get(), self.beta1, self.beta2]

    def _hypers(self, state):
        eta, p1, p2 = state.scalars
        if not self.freeze_eta:
            eta = self.eta_sched.get()
        b1, b2 = self.beta1, self.beta2
        lr = eta * (math.sqrt(1.0 - p2) / (1.0 - p1))
        return (lr, b1, b2, 1 - b1, 1 - b2, self.epsilon), [eta, p1 * b1, p2 * b2]


class AdaGrad(_Builtin):
    """``AdaGrad(; η=0.1, ϵ=1e-6, clip=0, scale=0, λ=1e-5, η_sched=Fixed(η))``::

        x ← x + g²        W ← W − η·g/√(x + ϵ)

    ϵ is inside the square root, and ``x`` accumulates ``g`` with ``λ·W`` already added.
    Checks: η > 0, ϵ > 0, clip ≥ 0, λ ≥ 0.

    >>> import numpy as np
    >>> from minigrad import mx
    >>> W = mx.getupdater(mx.AdaGrad(λ=0, ϵ=1e-12))(0, np.array([3.0]), np.array([1.0]))
    >>> round(float(W[0]), 9)
    0.9
    """

    fields = (("eta", "η", 0.1, ">0"), ("epsilon", "ϵ", 1e-6, ">0"), _CLIP, _SCALE,
              _lambda(1e-5), _ETA_SCHED)
    state_fill = (0.0,)
    state_names = ("x",)

    @staticmethod
    def math(d, x, acc, eta, eps):
        acc = acc + d * d
        return eta * d / np.sqrt(acc + eps), acc

    def _hypers(self, state):
        return (self.eta_sched.get(), self.epsilon), state.scalars


class AdaDelta(_Builtin):
    """``AdaDelta(; η=1.0, ρ=0.95, ϵ=1e-6, clip=0, scale=0, λ=1e-5, η_sched=Fixed(η))``::

        x  ← ρ·x + (1−ρ)·g²
        d  = g·√(Δx + ϵ)/√(x + ϵ)          (with the old Δx)
        W  ← W − η·d
        Δx ← ρ·Δx + (1−ρ)·d²

    The accumulator ``Δx`` stores ``d`` without η (no difference at the default η = 1).
    Checks: η > 0, 0 < ρ < 1, ϵ > 0, clip ≥ 0, λ ≥ 0.

    >>> import numpy as np
    >>> from minigrad import mx
    >>> W = mx.getupdater(mx.AdaDelta(λ=0))(0, np.array([1.0]), np.array([1.0]))
    >>> round(float(W[0]), 7)          # 1 − √1e-6/√(0.05 + 1e-6)
    0.9955279
    """

    fields = (("eta", "η", 1.0, ">0"), ("rho", "ρ", 0.95, "(0,1)"),
              ("epsilon", "ϵ", 1e-6, ">0"), _CLIP, _SCALE, _lambda(1e-5), _ETA_SCHED)
    state_fill = (0.0, 0.0)
    state_names = ("x", "dx")

    @staticmethod
    def math(d, x, acc, dacc, eta, rho, one_rho, eps):
        acc = rho * acc + one_rho * (d * d)
        delta = d * np.sqrt(dacc + eps) / np.sqrt(acc + eps)
        dacc = rho * dacc + one_rho * (delta * delta)
        return eta * delta, acc, dacc

    def _hypers(self, state):
        return (self.eta_sched.get(), self.rho, 1 - self.rho, self.epsilon), state.scalars


class AdaMax(_Builtin):
    """``AdaMax(; η=0.002, β1=0.9, β2=0.999, ϵ=1e-8, clip=0, scale=0, λ=1e-5,
    η_sched=Fixed(η))``: Adam with the infinity norm::

        m ← β1·m + (1−β1)·g      u ← max(β2·u, |g|)
        W ← W − (η/(1−β1ᵗ))·m/(u + ϵ),  then β1ᵗ ← β1ᵗ·β1

    ``β1ᵗ`` starts at β1; ϵ is added to ``u``; ``u`` has no bias correction.
    Checks: η > 0, 0 ≤ β1, β2 < 1, ϵ > 0, clip ≥ 0, λ ≥ 0.

    >>> import numpy as np
    >>> from minigrad import mx
    >>> W = mx.getupdater(mx.AdaMax(λ=0))(0, np.array([5.0]), np.array([1.0]))
    >>> round(float(W[0]), 9)
    0.998
    """

    fields = (("eta", "η", 0.002, ">0"), ("beta1", "β1", 0.9, "[0,1)"),
              ("beta2", "β2", 0.999, "[0,1)"), ("epsilon", "ϵ", 1e-8, ">0"), _CLIP, _SCALE,
              _lambda(1e-5), _ETA_SCHED)
    state_fill = (0.0, 0.0)
    state_names = ("m", "u")
    scalar_names = ("beta1_t",)

    @staticmethod
    def math(d, x, m, u, lr, b1, one_b1, b2, eps):
        m = b1 * m + one_b1 * d
        u = np.maximum(b2 * u, abs(d))
        return lr * m / (u + eps), m, u

    def _scalars(self):
        return [self.beta1]

    def _hypers(self, state):
        (p1,), b1 = state.scalars, self.beta1
        lr = self.eta_sched.get() / (1 - p1)
        return (lr, b1, 1 - b1, self.beta2, self.epsilon), [p1 * b1]


class RMSProp(_Builtin):
    """``RMSProp(; η=0.001, ρ=0.9, ϵ=1e-8, clip=0, scale=0, λ=1e-5, η_sched=Fixed(η))``::

        s ← ρ·s + (1−ρ)·g²        W ← W − η·g/√(s + ϵ)

    ϵ inside the square root; no momentum, no centred variant.  (MXNet.jl's docstring gives
    η = 0.1; its code, followed here, 0.001.)  Checks: η > 0, 0 < ρ < 1, ϵ > 0, clip ≥ 0,
    λ ≥ 0.

    >>> import numpy as np
    >>> from minigrad import mx
    >>> W = mx.getupdater(mx.RMSProp(λ=0))(0, np.array([1.0]), np.array([1.0]))
    >>> round(float(W[0]), 9)          # 1 − 0.001/√0.1
    0.996837722
    """

    fields = (("eta", "η", 0.001, ">0"), ("rho", "ρ", 0.9, "(0,1)"),
              ("epsilon", "ϵ", 1e-8, ">0"), _CLIP, _SCALE, _lambda(1e-5), _ETA_SCHED)
    state_fill = (0.0,)
    state_names = ("s",)

    @staticmethod
    def math(d, x, s, eta, rho, one_rho, eps):
        s = rho * s + one_rho * (d * d)
        return eta * d / np.sqrt(s + eps), s

    def _hypers(self, state):
        return (self.eta_sched.get(), self.rho, 1 - self.rho, self.epsilon), state.scalars


class Nadam(_Builtin):
    """``Nadam(; η=0.001, β1=0.99, β2=0.999, ϵ=1e-8, clip=0, scale=0, λ=1e-5,
    η_sched=Fixed(η), μ_sched=NadamScheduler(μ=β1))``: Adam with Nesterov momentum (Dozat).

    Per parameter it keeps ``m, n`` and the scalars ``Πμ = 1``, ``β2ᵗ = β2``, ``t = 1``.  One
    step, with ``(μₜ, μₜ₊₁) = get(μ_sched, t)``::

        Πμ ← Πμ·μₜ,   Πμ′ = Πμ·μₜ₊₁,   g′ = g/(1−Πμ)
        m ← β1·m + (1−β1)·g,   m̂ = m/(1−Πμ′)
        n ← β2·n + (1−β2)·g²,  n̂ = n/(1−β2ᵗ),  then β2ᵗ ← β2ᵗ·β2 and t ← t+1
        m̄ = (1−μₜ)·g′ + μₜ₊₁·m̂,   W ← W − η·m̄/(√n̂ + ϵ)

    The ``m`` update uses the fixed β1, not μₜ.  (MXNet.jl's docstring says ``η_sched``
    defaults to ``nothing``; its code, followed here, uses ``Fixed(η)``.)
    Checks: η > 0, 0 ≤ β1, β2 < 1, ϵ > 0, clip ≥ 0, λ ≥ 0.

    >>> import numpy as np
    >>> from minigrad import mx
    >>> descend_ = mx.getupdater(mx.Nadam())
    >>> W = descend_(0, np.array([0.1]), np.array([1.0])); descend_.states[0].t
    2
    """

    fields = (("eta", "η", 0.001, ">0"), ("beta1", "β1", 0.99, "[0,1)"),
              ("beta2", "β2", 0.999, "[0,1)"), ("epsilon", "ϵ", 1e-8, ">0"), _CLIP, _SCALE,
              _lambda(1e-5), _ETA_SCHED,
              ("mu_sched", "μ_sched", lambda o: Momentum.NadamScheduler(mu=o.beta1),
               "nadamsched"))
    state_fill = (0.0, 0.0)
    state_names = ("m", "n")
    scalar_names = ("pi_mu", "beta2_t", "t")

    @staticmethod
    def math(d, x, m, n, eta, b1, one_b1, b2, one_b2, one_pi, one_pi2, one_mu, mu1, one_b2t,
             eps):
        gp = d / one_pi
        m = b1 * m + one_b1 * d
        mhat = m / one_pi2
        n = b2 * n + one_b2 * (d * d)
        nhat = n / one_b2t
        mbar = one_mu * gp + mu1 * mhat
        return eta * mbar / (np.sqrt(nhat) + eps), m, n

    def _scalars(self):
        return [1.0, self.beta2, 1]

    def _hypers(self, state):
        pi_mu, p2, t = state.scalars
        mu_t, mu_t1 = self.mu_sched.get(t)
        pi_mu = pi_mu * mu_t
        pi_next = pi_mu * mu_t1
        b1, b2 = self.beta1, self.beta2
        hypers = (self.eta_sched.get(), b1, 1.0 - b1, b2, 1.0 - b2, 1.0 - pi_mu, 1.0 - pi_next,
                  1.0 - mu_t, mu_t1, 1.0 - p2, self.epsilon)
        return hypers, [pi_mu, p2 * b2, t + 1]


# -- the public functions ------------------------------------------------------------------------

def normgrad_(opt, W, grad):
    """MXNet.jl's ``normgrad!(opt, W, ∇)``: normalise ``grad`` in place and return it.

    In this order: rescale (``grad *= scale`` if ``scale != 0``; the default 0 means "do not
    rescale", not "multiply by 0"), clip (``clamp(grad, −clip, clip)`` if ``clip > 0``),
    weight decay (``grad += λ·W`` if ``λ > 0``, with ``W`` as it is before the step).  ``opt``
    needs ``scale``, ``clip`` and ``lambda_`` attributes; ``W`` is not modified.

    >>> import numpy as np
    >>> from minigrad import mx
    >>> W, grad = np.array([1.0, 2.0, 3.0]), np.array([-30.0, 0.5, 40.0])
    >>> mx.normgrad_(mx.SGD(scale=0.1, clip=2, λ=0.01), W, grad)
    array([-1.99,  0.07,  2.03])
    >>> grad                                  # changed in place
    array([-1.99,  0.07,  2.03])
    """
    missing = [a for a in ("scale", "clip", "lambda_") if not hasattr(opt, a)]
    if missing:
        raise TypeError(f"normgrad_: the optimizer {opt!r} has no {', '.join(missing)} "
                        "attribute(s)")
    target, g = _operands("normgrad_", W, grad, write_grad=True)
    hypers = NormGrad.hypers(opt)
    if not finite_sum(hypers[::2]):
        raise ValueError(f"normgrad_: scale and λ must be finite numbers, got scale={opt.scale!r}"
                         f", λ={opt.lambda_!r}")
    _launch((NormGrad,), False, target, g, hypers, ())
    return grad


class Updater:
    """What :func:`getupdater` returns: ``descend_(index, grad, W)`` (MXNet.jl's
    ``decend!``, typo and all, in its docs; note the gradient comes before the weight).

    On the first call for an integer ``index`` it makes that parameter's state
    (``opt.create_state(index, W)``) and keeps it in ``self.states[index]``; every call then
    runs one step of the optimizer, in place on ``W``.  All parameters share the optimizer
    (and its ``η_sched``).  For the built-in optimizers a step is one fused kernel pass; it
    checks ``index``, the shape and dtype of ``grad`` against ``W``, and ``W`` against the
    state of ``index`` first, so a bad call leaves ``W`` and the state untouched.  It returns
    ``W`` (MXNet.jl returned whatever its ``update!`` did), and leaves ``grad`` as it was.

    >>> import numpy as np
    >>> from minigrad import mx
    >>> descend_ = mx.getupdater(mx.SGD(η=0.2))
    >>> W = np.zeros((2, 3))
    >>> descend_(1, np.ones((2, 3)), W)
    array([[-0.2, -0.2, -0.2],
           [-0.2, -0.2, -0.2]])
    """

    __slots__ = ("optimizer", "states")

    def __init__(self, optimizer: AbstractOptimizer):
        if not isinstance(optimizer, AbstractOptimizer):
            raise TypeError(f"getupdater: expected an mx optimizer (an mx.AbstractOptimizer), "
                            f"got {optimizer!r}")
        self.optimizer = optimizer
        self.states: dict = {}

    def __call__(self, index, grad, W):
        index = _index("descend_", index)
        opt, state = self.optimizer, self.states.get(index)
        if isinstance(opt, _Builtin):
            target, g = _operands("descend_", W, grad)
            if state is None:
                state = opt._new_state(target)
                opt._step(target, g, state)
                self.states[index] = state
            else:
                state.check("descend_", index, target)
                opt._step(target, g, state)
            return W
        if state is None:
            state = opt.create_state(index, W)
            result = opt.update_(index, W, grad, state)
            self.states[index] = state
            return result
        return opt.update_(index, W, grad, state)

    def state_dict(self) -> dict:
        """``{"optimizer": opt, "states": {index: state}}``: the optimizer itself (which saves
        its own attributes) and each index's state; a built-in optimizer's state is
        ``{"stage", "arrays", "scalars", "shape", "dtype"}`` (the live arrays, not copies).

        >>> import numpy as np
        >>> from minigrad import mx
        >>> descend_ = mx.getupdater(mx.SGD(η=0.1, μ=0.9))
        >>> _ = descend_(0, np.ones(2), np.zeros(2))
        >>> descend_.state_dict()["states"][0]["arrays"]
        [array([-0.1, -0.1])]
        """
        states = {}
        for index, st in self.states.items():
            if isinstance(st, MxState):
                st = {"stage": st.stage.__qualname__, "arrays": list(st.arrays),
                      "scalars": list(st.scalars), "shape": tuple(st.shape),
                      "dtype": np.dtype(st.dtype).str}
            states[index] = st
        return {"optimizer": self.optimizer, "states": states}

    def _state(self, index, entry) -> MxState:
        """The :class:`MxState` a saved built-in state describes, or a ``ValueError``."""
        label = f"Updater: states[{index!r}]"
        arrays, scalars = entry.get("arrays"), entry.get("scalars")
        try:
            shape, dtype = tuple(entry["shape"]), np.dtype(entry["dtype"])
            if not all(isinstance(n, int) and n >= 0 for n in shape):
                raise ValueError(f"shape {shape}")
            stage, n_scalars = self.optimizer._stage(), len(self.optimizer._scalars())
        except (AttributeError, TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{label}: {type(self.optimizer).__name__} cannot take this "
                             f"state ({type(err).__name__}: {err})") from None
        if stage.__qualname__ != entry["stage"]:
            raise ValueError(f"{label}: the state is {entry['stage']}'s, "
                             f"{type(self.optimizer).__name__} keeps {stage.__qualname__}'s")
        size = math.prod(shape)
        if (not isinstance(arrays, list) or len(arrays) != len(stage.state_fill) or any(
                not isinstance(a, np.ndarray) or a.shape != (size,) or a.dtype != dtype
                for a in arrays) or not isinstance(scalars, list) or len(scalars) != n_scalars):
            raise ValueError(f"{label}: the state's arrays or scalars do not fit "
                             f"{stage.__qualname__} for shape {shape} {dtype}")
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError(f"{label}: a state array holds NaN or infinite values")
        for name, value in zip(stage.scalar_names, scalars, strict=True):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                                 np.floating)) \
                    or not math.isfinite(value) or (name.endswith("_t") and not 0 <= value < 1):
                wanted = "in [0, 1)" if name.endswith("_t") else "a finite real number"
                raise ValueError(f"{label}: the scalar {name} must be {wanted}, the state "
                                 f"has {value!r}")
        return MxState(stage, tuple(np.array(a) for a in arrays), list(scalars), shape, dtype)

    def check_state_dict(self, state, name=None):
        """Check ``state`` (as :meth:`state_dict` returns it, with this updater's own
        optimizer) and return a function of no arguments that loads it: arrays written in
        place where the index has a state of the same kind, other states replaced.  A
        ``ValueError`` names the index and the problem (another stage, shape or dtype, NaN,
        ``βᵗ`` outside ``[0, 1)``)."""
        if not isinstance(state, dict) or sorted(state) != ["optimizer", "states"] \
                or not isinstance(state["states"], dict):
            raise ValueError("Updater: the state is a dict with 'optimizer' and 'states', got "
                             f"{str(state)[:80]}")
        if state["optimizer"] is not self.optimizer:
            raise ValueError("Updater: the state's optimizer must be this updater's own "
                             "(it loads its own state)")
        made = {}
        for index, entry in state["states"].items():
            made[index] = (self._state(index, entry) if isinstance(entry, dict)
                           and "stage" in entry else entry)  # else a user optimizer's state

        def commit():
            old = dict(self.states)
            self.states.clear()
            for index, st in made.items():
                before = old.get(index)
                if (isinstance(st, MxState) and isinstance(before, MxState)
                        and before.stage is st.stage and before.shape == st.shape
                        and before.dtype == st.dtype and all(
                            type(a) is np.ndarray and a.flags.writeable for a in before.arrays)):
                    for dst, src in zip(before.arrays, st.arrays, strict=True):
                        dst[...] = src             # in place
                    before.scalars[:] = st.scalars
                    st = before
                self.states[index] = st
        return commit

    def load_state_dict(self, state) -> None:
        """See :meth:`check_state_dict`."""
        self.check_state_dict(state)()

    def __repr__(self) -> str:
        return f"Updater({self.optimizer!r}, {len(self.states)} states)"


def getupdater(opt: AbstractOptimizer) -> Updater:
    """MXNet.jl's ``getupdater(optimizer)``: the function ``descend_(index, grad, W)`` that
    updates parameter ``W`` in place, keeping one state per integer ``index`` in its closure
    (see :class:`Updater`).

    >>> import numpy as np
    >>> from minigrad import mx
    >>> descend_ = mx.getupdater(mx.SGD(η=10))
    >>> W = mx.NDArray([1, 2, 3, 4]); grad = mx.NDArray([.1, .2, .3, .4])
    >>> print(descend_(1, grad, W))
    [-0.00100005 -0.00200009 -0.00300002 -0.00400019]
    """
    return Updater(opt)

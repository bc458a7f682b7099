"""The rules Optimisers.jl (v0.4) added to Flux's, and Muon: each written once as per-element
math on the machinery of :mod:`minigrad.optimise.rules` (fused kernels, ``Optimiser`` chains,
flat buffers, checkpoints), except Muon, whose orthogonalisation needs whole matrices.

Four names here are Optimisers.jl's own spelling of a rule Flux also has, with Optimisers.jl's
defaults and options: :class:`ClipNorm` (a p-norm, ``throw``), :class:`AdamW` (``couple``),
:func:`RMSProp` (``centred``).  ``minigrad.ClipNorm``, ``minigrad.AdamW`` and
``minigrad.RMSProp`` stay Flux's; the explicit-state API (``minigrad.optimisers``) takes
these.  The others (:class:`Rprop`, :class:`Signum`, :class:`SignDecay`, :class:`ClipGrad`,
:class:`AccumGrad`, :class:`CentredRMSProp`, :class:`Lion`, :class:`Muon`) are exported by
``minigrad`` as well.  ``docs/optimisers.md`` has each rule's formula, defaults and the
differences from Optimisers.jl and Flux.
"""

from __future__ import annotations

import math as _math

import numpy as np

from ..arrays import library, on_device
from ..tracker import _describe, data
from . import rules
from .rules import IdDict, Rule, _BiasCorrected, _hyper
from .step import apply_
from .train import DomainError

__all__ = ["Rprop", "Signum", "SignDecay", "ClipGrad", "ClipNorm", "AccumGrad", "AdamW",
           "RMSProp", "CentredRMSProp", "Lion", "Muon", "newton_schulz", "SCALINGS"]


class Rprop(Rule):
    """Rprop (resilient backpropagation), per element: when the gradient keeps its sign the
    step size grows, ``ηᵢ = min(ηᵢ·ℓ+, Γmax)``; when it flips, ``ηᵢ = max(ηᵢ·ℓ−, Γmin)`` and
    the gradient is forgotten (``gprev = 0``, no step); otherwise ``gprev = g``.  Step
    ``ηᵢ·sign(gprev)``; ``ηᵢ`` starts at ``η``.

    ``Rprop(η=0.001, ℓ=(0.5, 1.2), Γ=(1e-6, 50.0))``; fields ``eta``, ``ell``, ``bounds``
    (Optimisers.jl's ``gamma``: here ``gamma`` is InvDecay's scalar).

    >>> import numpy as np, minigrad as mg
    >>> o, x = mg.Rprop(0.1), np.zeros(2)
    >>> [mg.apply_(o, x, np.array(g)).tolist() for g in ([1.0, 1.0], [1.0, -1.0], [1.0, 1.0])]
    [[0.1, 0.1], [0.12, 0.0], [0.144, 0.05]]
    """

    fields = (("eta", "η", 0.001), ("ell", "ℓ", (0.5, 1.2)), ("bounds", "Γ", (1e-6, 50.0)))
    state_fill = (0.0, "eta")

    @staticmethod
    def math(d, x, gprev, etai, ell_minus, ell_plus, eta_min, eta_max):
        s = gprev * d
        if s > 0:
            etai = min(etai * ell_plus, eta_max)
        elif s < 0:
            etai = max(etai * ell_minus, eta_min)
            d = eta_min - eta_min       # (a zero of the array's type: no literals)
        return etai * np.sign(d), d, etai

    def hypers(self, scalars, key, delta):
        return (*self.ell, *self.bounds)


class Signum(Rule):
    """Signum (sign of the momentum, Bernstein et al. 2018): ``m = βm + (1−β)g``, step
    ``η·sign(m)``.  ``Signum(η=0.01, β=0.9)`` (MXNet's defaults); ``β = 0`` is signSGD.  The
    field is ``rho`` (``beta`` is a pair in minigrad); ``β`` and ``beta`` are accepted as
    keywords.

    >>> import numpy as np, minigrad as mg
    >>> o, x = mg.Signum(), np.zeros(2)
    >>> [mg.apply_(o, x, np.array(g)).tolist() for g in ([1.0, -2.0], [-2.0, 1.0])]
    [[0.01, -0.01], [-0.01, -0.01]]
    """

    fields = (("eta", "η", 0.01), ("rho", "ρ", 0.9))
    state_fill = (0.0,)

    def _keyword(self, key):
        return "rho" if key in ("beta", "β") else super()._keyword(key)

    @staticmethod
    def math(d, x, m, eta, rho, one_rho):
        m = rho * m + one_rho * d
        return eta * np.sign(m), m

    def hypers(self, scalars, key, delta):
        return (self.eta, self.rho, 1 - self.rho)


class SignDecay(rules.WeightDecay):
    """L1 regularisation: add ``λ·sign(x)`` to the step.  ``SignDecay(λ=1e-3)``; the field is
    ``wd`` (keywords ``λ``, ``lambda``), as WeightDecay's.

    >>> import numpy as np, minigrad as mg
    >>> mg.apply_(mg.SignDecay(0.1), np.array([2.0, -3.0, 0.0]), np.ones(3))
    array([1.1, 0.9, 1. ])
    """

    fields = (("wd", "λ", 1e-3),)

    @staticmethod
    def math(d, x, wd):
        return d + wd * np.sign(x)


class ClipGrad(rules.ClipValue):
    """Clamp each element of the step to ``[−δ, δ]``: Flux's ClipValue with Optimisers.jl's
    name and default.  ``ClipGrad(δ=10.0)``; the field is ``thresh`` (keywords ``δ``,
    ``delta``).

    >>> import numpy as np, minigrad as mg
    >>> mg.apply_(mg.ClipGrad(2.0), np.zeros(3), np.array([-3.0, 0.5, 2.5]))
    array([-2. ,  0.5,  2. ])
    """

    fields = (("thresh", "δ", 10.0),)

    def __init__(self, *args, **kwargs):
        Rule.__init__(self, *args, **kwargs)

    def _keyword(self, key):
        return "thresh" if key == "delta" else super()._keyword(key)


class ClipNorm(rules.NormClip):
    """Optimisers.jl's ClipNorm: scale the step by ``min(ω/‖g‖ₚ, 1)``, the p-norm taken per
    array (``p = inf``: the largest ``|gᵢ|``).  With ``throw=True`` (the default) a norm that
    is infinite or NaN raises :class:`~minigrad.DomainError` before anything changes; with
    ``throw=False`` an infinite norm gives a zero step and a NaN norm a NaN step, as in Julia.

    ``ClipNorm(ω=10.0, p=2; throw=True)``; fields ``omega`` (> 0) and ``p`` (> 0, inf
    allowed).  ``throw`` is set at construction (and saved with the state).  Flux's
    ``minigrad.ClipNorm(thresh)`` (L2, no default, a NaN norm passes the step unchanged) is
    unchanged.

    >>> import numpy as np
    >>> from minigrad.optimise.rules_extra import ClipNorm
    >>> import minigrad as mg
    >>> mg.apply_(ClipNorm(1.0, 1), np.zeros(2), np.array([3.0, -1.0]))
    array([ 0.75, -0.25])
    >>> mg.apply_(ClipNorm(), np.zeros(1), np.array([np.inf]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    minigrad.optimise.train.DomainError: gradient has 2.0-norm inf, for array a numpy array ...
    """

    fields = (("omega", "ω", 10.0), ("p", None, 2.0))
    settings = ("throw",)

    def __init__(self, *args, throw: bool = True, **kwargs):
        if not isinstance(throw, bool):
            raise TypeError(f"ClipNorm: throw must be True or False, got {throw!r}")
        object.__setattr__(self, "throw", throw)
        super().__init__(*args, **kwargs)

    @staticmethod
    def math(d, x, scale):
        return d * scale

    def norm_hypers(self, norm, key):
        if self.throw and not _math.isfinite(norm):
            raise DomainError(f"gradient has {float(self.p)}-norm {norm}, for array "
                              f"{_describe(key)}")
        return (1.0 if norm == 0 else min(self.omega / norm, 1.0),)

    def __repr__(self) -> str:
        return f"ClipNorm(omega={self.omega!r}, p={self.p!r}, throw={self.throw})"


class AccumGrad(Rule):
    """Accumulate ``n`` gradients, then step by their mean: the ``k``-th call of each cycle
    sets ``acc = g/n`` (``k = 1``) or ``acc = acc + g/n``, and returns ``acc`` when ``k = n``,
    else a zero step (Optimisers.jl returns ``nothing`` and stops the chain).  The counter
    ``k`` is per-parameter scalar state.  ``AccumGrad(n)``, ``n`` an integer ≥ 1.

    In a chain (``Optimiser(AccumGrad(n), Adam())``), the stages after it run only when it
    gives its mean, as Optimisers.jl's chain stops at ``nothing``: their state does not move
    on the silent calls.  Such a chain runs parameter by parameter (AccumGrad's kernel, then
    the rest's); AccumGrad alone, or last, updates a whole model in one kernel call.

    >>> import numpy as np, minigrad as mg
    >>> o, x = mg.Optimiser(mg.AccumGrad(2), mg.Descent(0.1)), np.zeros(1)
    >>> [mg.apply_(o, x, np.array([g])).tolist() for g in (1.0, 3.0, 5.0, 7.0)]
    [[0.0], [0.2], [0.0], [0.6000000000000001]]
    """

    fields = (("n", None, None),)
    state_fill = (0.0,)

    def __init__(self, n, **kwargs):
        super().__init__(n, **kwargs)

    @staticmethod
    def math(d, x, acc, n, first, last):
        acc = d / n if first > 0 else acc + d / n
        return acc if last > 0 else n - n, acc      # (n − n: a zero without a literal)

    def scalars(self) -> list:
        return [1]          # the call counter k of Optimisers.jl

    def hypers(self, scalars, key, delta):
        k = scalars[0]
        return (self.n, 1.0 if k == 1 else 0.0, 1.0 if k >= self.n else 0.0)

    def advance(self, scalars, key) -> None:
        scalars[0] = 1 if scalars[0] >= self.n else scalars[0] + 1

    def gate(self, rest: list) -> _AfterAccumulation:
        """The stage that runs the chain's ``rest`` after this one (see :class:`Optimiser`)."""
        return _AfterAccumulation(self, rules.Optimiser(*rest))


class _AfterAccumulation(rules.AbstractOptimiser):
    """The stages after an :class:`AccumGrad` in a chain, run only on the calls where it gave
    its mean (its counter is back at 1); on the others the step stays AccumGrad's zero."""

    def __init__(self, accum: AccumGrad, rest):
        self.accum, self.rest = accum, rest

    def apply_(self, x, Δ):
        if self.accum.state[x].scalars[0] == 1:
            return apply_(self.rest, x, Δ)
        return Δ


class AdamW(_BiasCorrected):
    """Optimisers.jl 0.4's AdamW: with Adam's ``a = m̂/(√v̂ + ϵ)`` (learning rate 1), step
    ``η·(a + λx)`` with ``couple=True`` (the default, as PyTorch's AdamW) or ``η·a + λx`` with
    ``couple=False`` (Optimisers.jl before 0.4, and Flux's ``minigrad.AdamW``).

    ``AdamW(η=0.001, β=(0.9, 0.999), λ=0.0, ϵ=1e-8; couple=True)``; fields ``eta``, ``beta``,
    ``wd`` (keywords ``λ``, ``lambda``), ``epsilon``.  ``couple`` is set at construction (and
    saved with the state).

    >>> import numpy as np
    >>> from minigrad.optimise.rules_extra import AdamW
    >>> import minigrad as mg
    >>> x = np.array([2.0])
    >>> [round(float(mg.apply_(AdamW(0.1, λ=0.5, couple=c), x, np.array([1.0]))[0]), 6)
    ...  for c in (True, False)]      # 0.1·(1 + 0.5·2), 0.1·1 + 0.5·2
    [0.2, 1.1]
    """

    fields = (("eta", "η", 0.001), ("beta", "β", (0.9, 0.999)), ("wd", "λ", 0.0),
              ("epsilon", "ϵ", rules.EPS))
    settings = ("couple",)
    state_fill = (0.0, 0.0)

    def __init__(self, *args, couple: bool = True, **kwargs):
        if not isinstance(couple, bool):
            raise TypeError(f"AdamW: couple must be True or False, got {couple!r}")
        object.__setattr__(self, "couple", couple)
        super().__init__(*args, **kwargs)

    def _keyword(self, key):
        return "wd" if key in ("lambda", "lambda_") else super()._keyword(key)

    @staticmethod
    def math(d, x, m, v, b1, b2, one_b1, one_b2, inv_corr1, inv_corr2, eps, eta, decay):
        m = b1 * m + one_b1 * d
        v = b2 * v + one_b2 * d * d
        return eta * (m * inv_corr1 / (np.sqrt(v * inv_corr2) + eps)) + decay * x, m, v

    def hypers(self, scalars, key, delta):
        (b1, b2), (p1, p2) = self.beta, scalars
        decay = self.eta * self.wd if self.couple else self.wd
        return (b1, b2, 1 - b1, 1 - b2, 1 / (1 - p1), 1 / (1 - p2), self.epsilon, self.eta,
                decay)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, couple={self.couple})"


class CentredRMSProp(Rule):
    """Centred RMSProp (Graves 2013; Optimisers.jl's ``RMSProp(centred=true)``):
    ``quad = ρ·quad + (1−ρ)g²``, ``lin = ρ·lin + (1−ρ)g``, step ``g·η/(√(quad − lin²) + ϵ)``:
    the gradient normalised by an estimate of its variance.

    ``CentredRMSProp(η=0.001, ρ=0.9, ϵ=1e-8)``; or ``RMSProp(..., centred=True)`` from this
    module.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.CentredRMSProp(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.003333333
    """

    fields = rules.RMSProp.fields
    state_fill = (0.0, 0.0)

    @staticmethod
    def math(d, x, quad, lin, eta, rho, one_rho, eps):
        quad = rho * quad + one_rho * d * d
        lin = rho * lin + one_rho * d
        return d * (eta / (np.sqrt(quad - lin * lin) + eps)), quad, lin

    hypers = rules.RMSProp.hypers


def RMSProp(*args, centred: bool = False, centered: bool = False, **kwargs):
    """Optimisers.jl's ``RMSProp(η=0.001, ρ=0.9, ϵ=1e-8; centred=false)``: Flux's
    :class:`minigrad.RMSProp` (the same math and defaults), or :class:`CentredRMSProp` with
    ``centred=True`` (or ``centered=True``).  The variants keep different state, so
    ``centred`` is chosen here once (Optimisers.jl refuses to ``adjust`` it too).

    >>> from minigrad.optimise.rules_extra import RMSProp
    >>> RMSProp(0.01, centred=True)
    CentredRMSProp(eta=0.01, rho=0.9, epsilon=1e-08)
    """
    return (CentredRMSProp if centred or centered else rules.RMSProp)(*args, **kwargs)


class Lion(Rule):
    """Lion (Chen et al. 2023, as the paper and optax write it): the step is
    ``η·sign(β1·m + (1−β1)g)``, then ``m = β2·m + (1−β2)g``.  ``Lion(η=0.001, β=(0.9, 0.999))``
    (Optimisers.jl's defaults; the paper and optax use β2 = 0.99).

    Optimisers.jl 0.4 instead updates ``m = β2·g + (1−β2)·m`` (the two weights swapped) and
    steps by ``η·sign((β2−β1)g + β1·m)`` with that new ``m``.  No weight decay here: optax's
    ``lion(..., weight_decay=λ)`` is ``Optimiser(Lion(η), WeightDecay(η·λ))``.

    >>> import numpy as np, minigrad as mg
    >>> o, x = mg.Lion(0.1), np.zeros(2)
    >>> [mg.apply_(o, x, np.array(g)).tolist() for g in ([1.0, -1.0], [-2.0, 0.5])]
    [[0.1, -0.1], [-0.1, 0.1]]
    """

    fields = (("eta", "η", 0.001), ("beta", "β", (0.9, 0.999)))
    state_fill = (0.0,)

    @staticmethod
    def math(d, x, m, eta, b1, one_b1, b2, one_b2):
        step = eta * np.sign(b1 * m + one_b1 * d)
        m = b2 * m + one_b2 * d
        return step, m

    def hypers(self, scalars, key, delta):
        b1, b2 = self.beta
        return (self.eta, b1, 1 - b1, b2, 1 - b2)


# -- Muon: whole-matrix math ------------------------------------------------------------------

def newton_schulz(g, coefficients=(3.4445, -4.7750, 2.0315), steps: int = 5,
                  epsilon: float = 1e-7):
    """An approximately orthogonal matrix near ``g``'s polar factor (``UVᵀ`` of ``g = USVᵀ``),
    by Muon's quintic Newton–Schulz iteration, in ``g``'s dtype: ``X = g/max(‖g‖_F, ϵ)``
    (transposed first when ``g`` has more rows than columns, so ``XXᵀ`` is the smaller
    Gram matrix), then ``steps`` times ``A = XXᵀ``, ``X = aX + (bA + cA²)X``.

    >>> import numpy as np
    >>> o = newton_schulz(np.array([[3.0, 0.0], [0.0, 0.5]]))
    >>> np.round(np.diag(o), 2).tolist()   # singular values pushed towards 1 (not exactly)
    [0.71, 1.04]
    """
    a, b, c = coefficients
    tall = g.shape[0] > g.shape[1]
    x = g.T if tall else g
    x = x / max(_math.sqrt(float((x * x).sum())), epsilon)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if tall else x


#: Muon's shape-dependent learning-rate scalings, by name (torch.optim.Muon's
#: ``adjust_lr_fn``): the factor for an ``A × B`` weight.
SCALINGS = {"original": lambda a, b: _math.sqrt(max(1.0, a / b)),
            "match_rms_adamw": lambda a, b: 0.2 * _math.sqrt(max(a, b))}


class Muon(rules.AbstractOptimiser):
    """Muon (MomentUm Orthogonalized by Newton–Schulz, Jordan et al. 2024) for 2-D weights;
    every other array goes to ``fallback`` (an :class:`AdamW` by default).

    For an ``A × B`` weight ``x`` with gradient ``g``, momentum ``B = ρB + (1−ρ)g`` (from
    zero), Nesterov ``u = ρB + (1−ρ)g`` (``nesterov=False``: ``u = B``),
    ``O = newton_schulz(u)`` (coefficients (3.4445, −4.7750, 2.0315), 5 steps), and step
    ``η·s(A, B)·O + η·λ·x``: ``x ← (1 − ηλ)x − η·s·O``, torch.optim.Muon's update, with
    ``s = √max(1, A/B)`` (``scaling="original"``, Keller Jordan's, torch's default) or
    ``0.2·√max(A, B)`` (``"match_rms_adamw"``, Moonshot's).

    ``Muon(η=0.001, ρ=0.95, λ=0.1; ϵ=1e-7, nesterov=True, coefficients=..., steps=5,
    scaling="original", fallback=AdamW())``: torch.optim.Muon's defaults (``lr``,
    ``momentum``, ``weight_decay``, ``eps``, ``ns_steps``); fields ``eta``, ``rho``, ``wd``,
    ``epsilon``.  Unlike torch it orthogonalises in the parameter's own dtype (torch: bfloat16)
    and, unlike torch (which refuses them), hands non-2-D arrays to ``fallback``.  On the GPU,
    2-D weights must be CuPy arrays (their matrix products); the fallback takes any.

    >>> import numpy as np, minigrad as mg
    >>> W = mg.param(np.eye(2)); b = mg.param(np.zeros(2))
    >>> opt = mg.Muon(0.1, λ=0.0)
    >>> _ = mg.update_(opt, W, np.array([[2.0, 0.0], [0.0, 1.0]]))
    >>> _ = mg.update_(opt, b, np.ones(2))        # (1-D: AdamW)
    >>> np.round(W.data, 3).tolist(), np.round(b.data, 6).tolist()
    ([[0.931, 0.0], [0.0, 0.889]], [-0.001, -0.001])
    """

    _CHECKED = ("eta", "rho", "wd", "epsilon")

    def __init__(self, eta=0.001, rho=0.95, wd=0.1, *, epsilon=1e-7, nesterov: bool = True,
                 coefficients=(3.4445, -4.7750, 2.0315), steps: int = 5,
                 scaling: str = "original", fallback=None, **greek):
        names = {"η": "eta", "ρ": "rho", "λ": "wd", "ϵ": "epsilon", "ε": "epsilon",
                 "momentum": "rho", "lambda": "wd"}
        values = {"eta": eta, "rho": rho, "wd": wd, "epsilon": epsilon}
        for key, value in greek.items():
            if key not in names:
                raise TypeError(f"Muon got an unexpected keyword {key!r}")
            values[names[key]] = value
        if not (isinstance(nesterov, bool) and isinstance(steps, int)
                and not isinstance(steps, bool) and steps >= 1 and scaling in SCALINGS
                and len(coefficients) == 3
                and all(isinstance(c, (int, float)) and _math.isfinite(c)
                        for c in coefficients)):
            raise ValueError("Muon: nesterov must be a bool, steps an integer >= 1, "
                             f"scaling one of {sorted(SCALINGS)} and coefficients three "
                             f"finite numbers; got {nesterov!r}, {steps!r}, {scaling!r}, "
                             f"{coefficients!r}")
        if fallback is not None and not isinstance(fallback, rules.AbstractOptimiser):
            raise TypeError(f"Muon: fallback must be an optimiser, got {fallback!r}")
        for attr, value in values.items():
            setattr(self, attr, value)
        self.nesterov, self.steps, self.scaling = nesterov, steps, scaling
        self.coefficients = tuple(float(c) for c in coefficients)
        self.fallback = AdamW() if fallback is None else fallback
        self.momentum = IdDict()

    def __setattr__(self, attr, value):
        if attr in self._CHECKED:
            value = _hyper("Muon", attr, value)
        object.__setattr__(self, attr, value)

    def apply_(self, x, Δ):
        if len(Δ.shape) != 2:
            return apply_(self.fallback, x, Δ)
        if on_device(Δ) and library(Δ) != "cupy":
            raise TypeError(f"Muon: a 2-D GPU weight needs CuPy arrays (the Newton–Schulz "
                            f"iteration multiplies matrices), got {_describe(Δ)}")
        for attr in self._CHECKED:
            _hyper("Muon", attr, getattr(self, attr))
        rho = self.rho
        m = self.momentum.get(x)
        if m is None:
            m = self.momentum[x] = np.zeros_like(Δ)
        m[...] = rho * m + (1 - rho) * Δ
        u = rho * m + (1 - rho) * Δ if self.nesterov else m
        o = newton_schulz(u, self.coefficients, self.steps, self.epsilon)
        scale = self.eta * SCALINGS[self.scaling](*Δ.shape)
        Δ[...] = scale * o + (self.eta * self.wd) * data(x)
        return Δ

    def __repr__(self) -> str:
        return (f"Muon(eta={self.eta!r}, rho={self.rho!r}, wd={self.wd!r}, "
                f"epsilon={self.epsilon!r}, nesterov={self.nesterov}, steps={self.steps}, "
                f"scaling={self.scaling!r}, fallback={self.fallback!r})")


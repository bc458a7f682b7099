"""Flux's optimiser rules (v0.13.17 math and defaults), each written once as per-element math.

A rule is a class with

* ``fields``: its hyperparameters ``(attribute, Greek keyword, default)`` in Flux's positional
  order; they are plain mutable attributes (``opt.eta = 0.01`` applies at the next step);
* ``state_fill``: how each per-element state array starts (``0.0`` or ``"epsilon"``);
* ``math(d, x, *state, *hyper)``: the step for one element, returning ``d`` or
  ``(d, *new_state)``.  It is compiled by :mod:`minigrad.optimise.kernels` into fused loops;
  it must use no float literals, so that float32 stays float32 (constants come in ``hyper``);
* ``hypers(scalars)``: the values ``math`` receives this step, and ``advance(scalars)`` for
  per-parameter scalar state such as Adam's ``βp``.

State lives in ``opt.state``, an :class:`IdDict` keyed by the parameter's identity whose
entries disappear with their parameter.  The step functions (``apply_``/``update_``) are in
:mod:`minigrad.optimise.step`.
"""

from __future__ import annotations

import math as _math
import unicodedata
import weakref

import numpy as np

from ..tracker import Param, Params
from .backend import backend_of
from .flat import FLAT_GROUPS
from .step import _run, apply_, update_

__all__ = [
    "AbstractOptimiser", "IdDict", "Rule", "Descent", "Momentum", "Nesterov", "RMSProp", "Adam",
    "RAdam", "AdaMax", "OAdam", "AdaGrad", "AdaDelta", "AMSGrad", "NAdam", "AdaBelief", "AdamW",
    "Optimiser", "WeightDecay", "ClipValue", "ClipNorm", "ExpDecay", "InvDecay",
    "ADAM", "RADAM", "OADAM", "ADAGrad", "ADADelta", "NADAM", "ADAMW", "EPS",
    "LegacyOptimiser", "SGD", "builtin_rules",
]

#: Flux's default ϵ.
EPS = 1e-8

def slot_values(obj) -> dict:
    """``obj``'s attributes kept in ``__slots__`` (those of every class it derives from), by
    name; unset slots are left out.

    >>> class Point:
    ...     __slots__ = ("x", "y")
    >>> p = Point(); p.x = 1.0
    >>> slot_values(p)
    {'x': 1.0}
    """
    return {name: getattr(obj, name) for cls in type(obj).__mro__
            for name in getattr(cls, "__slots__", ())
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name)}


class IdDict:
    """A dictionary keyed by object identity (Julia's ``IdDict``), for per-parameter state.

    Keys are compared with ``is``, never ``==``, so arrays work as keys.  An entry disappears
    when its key is garbage collected (for keys that support weak references, such as NumPy
    arrays and trainable arrays), so state neither leaks nor is inherited by a new array that
    happens to reuse a freed one's address.  ``get_(key, default)`` is Julia's ``get!``.

    >>> import numpy as np, minigrad as mg
    >>> d = mg.IdDict(); x = np.zeros(2)
    >>> v = d.get_(x, np.ones(2)); v is d[x], x in d, np.zeros(2) in d
    (True, True, False)
    """

    __slots__ = ("_entries", "version", "__weakref__")

    def __init__(self):
        self._entries: dict[int, tuple] = {}
        #: Counts every change of an entry (set, delete, forgotten key): a cache built from the
        #: entries (the flat groups of :mod:`minigrad.optimise.flat`) is valid while it stands.
        self.version = 0

    def _reference(self, key):
        entries = self._entries
        ident = id(key)
        this = weakref.ref(self)

        def forget(ref):
            if entries.get(ident, (None,))[0] is ref:
                del entries[ident]
                owner = this()
                if owner is not None:
                    owner.version += 1

        try:
            return weakref.ref(key, forget)
        except TypeError:       # not weak-referenceable: hold it strongly, as Julia does
            return lambda: key

    def __getitem__(self, key):
        entry = self._entries.get(id(key))
        if entry is None or entry[0]() is not key:
            raise KeyError(f"no entry for this {type(key).__name__}")
        return entry[1]

    def __setitem__(self, key, value) -> None:
        self.version += 1
        entry = self._entries.get(id(key))
        if entry is not None and entry[0]() is key:
            self._entries[id(key)] = (entry[0], value)
        else:
            self._entries[id(key)] = (self._reference(key), value)

    def __delitem__(self, key) -> None:
        self[key]           # raises KeyError when absent
        del self._entries[id(key)]
        self.version += 1

    def get(self, key, default=None):
        """The value for ``key``, or ``default``."""
        entry = self._entries.get(id(key))
        return entry[1] if entry is not None and entry[0]() is key else default

    def get_(self, key, default):
        """Julia's ``get!``: the value for ``key``, storing ``default`` first if absent."""
        entry = self._entries.get(id(key))
        if entry is not None and entry[0]() is key:
            return entry[1]
        self[key] = default
        return default

    def __contains__(self, key) -> bool:
        entry = self._entries.get(id(key))
        return entry is not None and entry[0]() is key

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self):
        return (ref() for ref, _ in list(self._entries.values()))

    def values(self):
        return (value for _, value in list(self._entries.values()))

    def items(self):
        return ((ref(), value) for ref, value in list(self._entries.values()))

    def __repr__(self) -> str:
        return f"IdDict(<{len(self)} entries>)"

    # Copies and pickles hold the (key, value) pairs, so that each key's entry follows its
    # copy: copy a model and its optimiser in one call (``copy.deepcopy((model, opt))``, one
    # ``pickle.dump``) and the copied state belongs to the copied parameters.  A key copied
    # without anything else holding it dies at once, and its entry with it.
    def __getstate__(self) -> list:
        return [(key, value) for key, value in self.items() if key is not None]

    def __setstate__(self, pairs: list) -> None:
        self._entries, self.version = {}, 0
        for key, value in pairs:
            self[key] = value


class AbstractOptimiser:
    """Base of every optimiser.  Subclass it and define ``apply_(self, x, Δ)``.

    ``apply_`` receives the parameter ``x`` (use it as the key of per-parameter state, e.g. an
    :class:`IdDict`) and a fresh, writable array ``Δ`` holding the gradient; it overwrites
    ``Δ`` with the step and returns it.  ``update_``, ``Optimiser`` and ``train_`` then work.

    >>> import numpy as np, minigrad as mg
    >>> class Momentum(mg.AbstractOptimiser):
    ...     def __init__(self, eta, rho):
    ...         self.eta, self.rho, self.velocity = eta, rho, mg.IdDict()
    ...     def apply_(self, x, Δ):
    ...         η, ρ = self.eta, self.rho
    ...         v = self.velocity.get_(x, np.zeros_like(x))
    ...         v[...] = ρ * v - η * Δ
    ...         Δ[...] = -v
    ...         return Δ
    >>> w = mg.param([1.0])
    >>> mg.update_(Momentum(0.1, 0.9), w, np.array([1.0]))
    param([0.9])
    """

    def apply_(self, x, Δ):
        raise NotImplementedError(f"{type(self).__name__} must define apply_(self, x, Δ)")

    def stages(self) -> list:
        """The chain of single optimisers this one runs, in order (``[self]``; an
        :class:`Optimiser` gives its members')."""
        return [self]

    def update_(self, x, x̄):
        """``minigrad.update_(self, x, x̄)``: one step of this optimiser (Tracker-era Flux added
        this method to Tracker's ``update!``, see :func:`minigrad.tracker.update_`)."""
        return update_(self, x, x̄)

    def __getstate__(self):
        """What ``copy`` and ``pickle`` keep: every attribute but the flat groups (see
        :data:`FLAT_GROUPS`)."""
        state = {k: v for k, v in vars(self).items() if k != FLAT_GROUPS}
        slots = slot_values(self)
        return (state, slots) if slots else state


class _State:
    """One parameter's state for one rule: flat arrays and mutable scalars."""

    __slots__ = ("arrays", "scalars", "shape")

    def __init__(self, arrays: tuple, scalars: list, shape: tuple):
        self.arrays, self.scalars, self.shape = arrays, scalars, shape

    def __getitem__(self, i):
        """The ``i``-th state array, shaped like the parameter."""
        return self.arrays[i].reshape(self.shape)

    def __repr__(self) -> str:
        return f"State(arrays={len(self.arrays)}, scalars={self.scalars})"


def _finite(owner: str, name: str, value) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not _math.isfinite(v):
            raise ValueError(f"{owner}: hyperparameter {name} must be a finite real number, "
                             f"got {value!r}")


class Rule(AbstractOptimiser):
    """A built-in rule: per-element ``math`` compiled into fused kernels (see module docs).

    Constructors take Flux's positional arguments, or keywords in ASCII or Greek
    (``eta``/``η``, ``rho``/``ρ``, ``beta``/``β`` (a pair; also ``β1``/``β2``),
    ``epsilon``/``ϵ``).  Given a list of parameters first (``Momentum([W, b], 0.01)``), a
    constructor returns the legacy closure optimiser of Tracker-era Flux.
    """

    fields: tuple = ()
    state_fill: tuple = ()

    def __new__(cls, *args, **kwargs):
        if args and _is_parameter_list(args[0]):
            decay = kwargs.pop("decay", 0)
            return LegacyOptimiser(cls(*args[1:], **kwargs), args[0], decay)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        if len(args) > len(self.fields):
            raise TypeError(f"{name} takes at most {len(self.fields)} positional arguments "
                            f"({', '.join(f[0] for f in self.fields)}), got {len(args)}")
        values = {attr: default for attr, _, default in self.fields}
        values.update(zip((f[0] for f in self.fields), args, strict=False))
        given = {f[0] for f in self.fields[:len(args)]}
        beta = list(values.get("beta", ()))
        for key, value in kwargs.items():
            field = self._keyword(key)
            if field in ("beta1", "beta2") and "beta" in values:
                beta[int(field[-1]) - 1] = value
                values["beta"] = tuple(beta)
            elif field is None:
                known = ", ".join(f"{a} ({g})" if g else a for a, g, _ in self.fields)
                raise TypeError(f"{name} got an unexpected keyword {key!r}; it takes {known}")
            elif field in given:
                raise TypeError(f"{name} got {field} twice (as {key!r} and positionally or "
                                "under another spelling)")
            else:
                values[field] = value
                given.add(field)
        for attr, value in values.items():
            if attr == "beta":
                value = tuple(value)
                if len(value) != 2:
                    raise ValueError(f"{name}: beta must be a pair (β1, β2), got {value!r}")
            _finite(name, attr, value)
            setattr(self, attr, value)
        self.state = IdDict()

    def _keyword(self, key: str):
        # Python reads identifiers in NFKC form: the keyword ϵ (U+03F5) arrives as ε (U+03B5).
        key = unicodedata.normalize("NFKC", key)
        for attr, greek, _ in self.fields:
            if key in (attr, greek and unicodedata.normalize("NFKC", greek)):
                return attr
        if key in ("β1", "beta1"):
            return "beta1"
        if key in ("β2", "beta2"):
            return "beta2"
        return None

    def check(self) -> None:
        """Raise ``ValueError`` naming any hyperparameter that is not a finite number."""
        for attr, _, _ in self.fields:
            _finite(type(self).__name__, attr, getattr(self, attr))

    # The per-rule interface; the defaults suit stateless, scalar-free rules.
    def scalars(self) -> list:
        """Fresh per-parameter scalar state."""
        return []

    def hypers(self, scalars: list, key, delta: np.ndarray) -> tuple:
        """The hyperparameter values ``math`` receives for this step (without side effects)."""
        raise NotImplementedError

    def advance(self, scalars: list, key) -> None:
        """Commit this step's scalar-state changes (after the kernel ran)."""

    def new_state(self, x: np.ndarray) -> _State:
        """Fresh state for parameter storage ``x``: flat arrays on ``x``'s device."""
        fills = [self.epsilon if fill == "epsilon" else fill for fill in self.state_fill]
        full = backend_of(x).full
        arrays = tuple(full(x.size, fill, x.dtype) for fill in fills)
        return _State(arrays, self.scalars(), x.shape)

    #: Overwrite ``Δ`` with this rule's step for parameter ``x`` and return it: the fused
    #: pass of :func:`minigrad.optimise.step.apply_`, which recognises a rule that keeps it.
    apply_ = apply_

    def __repr__(self) -> str:
        args = ", ".join(f"{attr}={getattr(self, attr)!r}" for attr, _, _ in self.fields)
        return f"{type(self).__name__}({args})"


def _is_parameter_list(x) -> bool:
    if isinstance(x, Params):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(p, Param) for p in x)


class _BiasCorrected(Rule):
    """Rules keeping Flux's per-parameter ``βp = [β1ᵗ, β2ᵗ]``, multiplied by β after each step."""

    def scalars(self) -> list:
        return list(self.beta)

    def advance(self, scalars: list, key) -> None:
        scalars[0] *= self.beta[0]
        scalars[1] *= self.beta[1]


# -- the rules -----------------------------------------------------------------------------------

class Descent(Rule):
    """Plain gradient descent: step ``η·g``.  ``Descent(η=0.1)``.

    >>> import numpy as np, minigrad as mg
    >>> mg.apply_(mg.Descent(0.1), np.zeros(2), np.array([1.0, -2.0]))
    array([ 0.1, -0.2])
    """

    fields = (("eta", "η", 0.1),)

    @staticmethod
    def math(d, x, eta):
        return d * eta

    def hypers(self, scalars, key, delta):
        return (self.eta,)


class Momentum(Rule):
    """Momentum: ``v = ρv − ηg``, step ``−v``.  ``Momentum(η=0.01, ρ=0.9)``.

    >>> import numpy as np, minigrad as mg
    >>> o, x = mg.Momentum(), np.zeros(1)
    >>> [round(float(mg.apply_(o, x, np.array([1.0]))[0]), 12) for _ in range(2)]
    [0.01, 0.019]
    """

    fields = (("eta", "η", 0.01), ("rho", "ρ", 0.9))
    state_fill = (0.0,)

    @staticmethod
    def math(d, x, v, eta, rho):
        v = rho * v - eta * d
        return -v, v

    def hypers(self, scalars, key, delta):
        return (self.eta, self.rho)


class Nesterov(Rule):
    """Nesterov momentum: step ``−(ρ²v − (1+ρ)ηg)`` with the old ``v``, then ``v = ρv − ηg``.

    ``Nesterov(η=0.001, ρ=0.9)``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.Nesterov(), np.zeros(1), np.array([1.0]))[0]), 10)
    0.0019
    """

    fields = (("eta", "η", 0.001), ("rho", "ρ", 0.9))
    state_fill = (0.0,)

    @staticmethod
    def math(d, x, v, eta, rho, rho2, rho1_eta):
        step = rho2 * v - rho1_eta * d
        v = rho * v - eta * d
        return -step, v

    def hypers(self, scalars, key, delta):
        return (self.eta, self.rho, self.rho ** 2, (1 + self.rho) * self.eta)


class RMSProp(Rule):
    """RMSProp: ``acc = ρ·acc + (1−ρ)g²``, step ``g·η/(√acc + ϵ)``.

    ``RMSProp(η=0.001, ρ=0.9, ϵ=1e-8)``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.RMSProp(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.003162278
    """

    fields = (("eta", "η", 0.001), ("rho", "ρ", 0.9), ("epsilon", "ϵ", EPS))
    state_fill = (0.0,)

    @staticmethod
    def math(d, x, acc, eta, rho, one_rho, eps):
        acc = rho * acc + one_rho * d * d
        return d * (eta / (np.sqrt(acc) + eps)), acc

    def hypers(self, scalars, key, delta):
        return (self.eta, self.rho, 1 - self.rho, self.epsilon)


class Adam(_BiasCorrected):
    """Adam: ``m = β1m + (1−β1)g``, ``v = β2v + (1−β2)g²``,
    step ``m/(1−β1ᵗ) / (√(v/(1−β2ᵗ)) + ϵ) · η``.  ``Adam(η=0.001, β=(0.9, 0.999), ϵ=1e-8)``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.Adam(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.001
    """

    fields = (("eta", "η", 0.001), ("beta", "β", (0.9, 0.999)), ("epsilon", "ϵ", EPS))
    state_fill = (0.0, 0.0)

    @staticmethod
    def math(d, x, m, v, b1, b2, one_b1, one_b2, lr, inv_corr2, eps):
        # lr = η/(1−β1ᵗ) and inv_corr2 = 1/(1−β2ᵗ): one division per element instead of three
        # keeps the kernel memory-bound (divisions and square roots are the slow vector ops).
        m = b1 * m + one_b1 * d
        v = b2 * v + one_b2 * d * d
        return m * lr / (np.sqrt(v * inv_corr2) + eps), m, v

    def hypers(self, scalars, key, delta):
        (b1, b2), (p1, p2) = self.beta, scalars
        return (b1, b2, 1 - b1, 1 - b2, self.eta / (1 - p1), 1 / (1 - p2), self.epsilon)


class RAdam(_BiasCorrected):
    """Rectified Adam: Adam's step times ``r`` once the variance is tractable (``ρₜ > 4``),
    else the bias-corrected momentum ``m/(1−β1ᵗ)·η``.  ``RAdam(η=0.001, β=(0.9, 0.999), ϵ)``.

    ``ρ∞ = 2/(1−β2) − 1``, ``ρₜ = ρ∞ − 2t·β2ᵗ/(1−β2ᵗ)``,
    ``r = √((ρₜ−4)(ρₜ−2)ρ∞ / ((ρ∞−4)(ρ∞−2)ρₜ))``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.RAdam(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.001
    """

    fields = Adam.fields
    state_fill = (0.0, 0.0)

    @staticmethod
    def math(d, x, m, v, b1, b2, one_b1, one_b2, lr, inv_corr2, eps, r, rectified):
        m = b1 * m + one_b1 * d
        v = b2 * v + one_b2 * d * d
        if rectified > 0:
            return m * (lr * r) / (np.sqrt(v * inv_corr2) + eps), m, v
        return m * lr, m, v

    def scalars(self) -> list:
        return [*self.beta, 1]          # βp and the step counter t

    def hypers(self, scalars, key, delta):
        (b1, b2), (p1, p2, t) = self.beta, scalars
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * p2 / (1 - p2)
        if rho > 4:
            r = _math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        else:
            r = 0.0
        return (b1, b2, 1 - b1, 1 - b2, self.eta / (1 - p1), 1 / (1 - p2), self.epsilon, r,
                1.0 if rho > 4 else 0.0)

    def advance(self, scalars, key) -> None:
        super().advance(scalars, key)
        scalars[2] += 1


class AdaMax(_BiasCorrected):
    """AdaMax: ``m`` as Adam, ``u = max(β2u, |g|)``, step ``(η/(1−β1ᵗ))·m/(u + ϵ)``.

    ``AdaMax(η=0.001, β=(0.9, 0.999), ϵ=1e-8)``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.AdaMax(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.001
    """

    fields = Adam.fields
    state_fill = (0.0, 0.0)

    @staticmethod
    def math(d, x, m, u, b1, one_b1, b2, lr, eps):
        m = b1 * m + one_b1 * d
        u = np.maximum(b2 * u, abs(d))
        return lr * m / (u + eps), m, u

    def hypers(self, scalars, key, delta):
        (b1, b2), p1 = self.beta, scalars[0]
        return (b1, 1 - b1, b2, self.eta / (1 - p1), self.epsilon)


class OAdam(_BiasCorrected):
    """Optimistic Adam: ``term = η·m/(1−β1ᵗ)/(√(v/(1−β2ᵗ)) + ϵ)``, step ``2·term − previous term``.

    ``OAdam(η=0.001, β=(0.5, 0.9), ϵ=1e-8)`` (the code's default η; Flux's docstring says 1e-4).

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.OAdam(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.002
    """

    fields = (("eta", "η", 0.001), ("beta", "β", (0.5, 0.9)), ("epsilon", "ϵ", EPS))
    state_fill = (0.0, 0.0, 0.0)

    @staticmethod
    def math(d, x, m, v, previous, b1, b2, one_b1, one_b2, lr, inv_corr2, eps):
        m = b1 * m + one_b1 * d
        v = b2 * v + one_b2 * d * d
        term = m * lr / (np.sqrt(v * inv_corr2) + eps)
        return -previous + (term + term), m, v, term

    hypers = Adam.hypers


class AdaGrad(Rule):
    """AdaGrad: ``acc += g²`` (``acc`` starts at ϵ), step ``g·η/(√acc + ϵ)``.

    ``AdaGrad(η=0.1, ϵ=1e-8)``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.AdaGrad(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.099999999
    """

    fields = (("eta", "η", 0.1), ("epsilon", "ϵ", EPS))
    state_fill = ("epsilon",)

    @staticmethod
    def math(d, x, acc, eta, eps):
        acc = acc + d * d
        return d * (eta / (np.sqrt(acc) + eps)), acc

    def hypers(self, scalars, key, delta):
        return (self.eta, self.epsilon)


class AdaDelta(Rule):
    """AdaDelta (no learning rate): ``acc = ρ·acc + (1−ρ)g²``,
    step ``Δ = g·√(Δacc + ϵ)/√(acc + ϵ)``, then ``Δacc = ρ·Δacc + (1−ρ)Δ²``.

    ``AdaDelta(ρ=0.9, ϵ=1e-8)``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.AdaDelta(), np.zeros(1), np.array([1.0]))[0]), 10)
    0.0003162278
    """

    fields = (("rho", "ρ", 0.9), ("epsilon", "ϵ", EPS))
    state_fill = (0.0, 0.0)

    @staticmethod
    def math(d, x, acc, dacc, rho, one_rho, eps):
        acc = rho * acc + one_rho * d * d
        d = d * np.sqrt((dacc + eps) / (acc + eps))
        dacc = rho * dacc + one_rho * d * d
        return d, acc, dacc

    def hypers(self, scalars, key, delta):
        return (self.rho, 1 - self.rho, self.epsilon)


class AMSGrad(Rule):
    """AMSGrad: ``m, v`` as Adam (all state starts at ϵ), ``v̂ = max(v̂, v)``,
    step ``η·m/(√v̂ + ϵ)`` (no bias correction).  ``AMSGrad(η=0.001, β=(0.9, 0.999), ϵ)``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.AMSGrad(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.003162261
    """

    fields = Adam.fields
    state_fill = ("epsilon", "epsilon", "epsilon")

    @staticmethod
    def math(d, x, m, v, vhat, eta, b1, b2, one_b1, one_b2, eps):
        m = b1 * m + one_b1 * d
        v = b2 * v + one_b2 * (d * d)
        vhat = np.maximum(vhat, v)
        return eta * m / (np.sqrt(vhat) + eps), m, v, vhat

    def hypers(self, scalars, key, delta):
        b1, b2 = self.beta
        return (self.eta, b1, b2, 1 - b1, 1 - b2, self.epsilon)


class NAdam(_BiasCorrected):
    """Nesterov Adam: step
    ``(β1m/(1−β1·β1ᵗ) + (1−β1)g/(1−β1ᵗ)) / (√(v·β2/(1−β2ᵗ)) + ϵ) · η``.

    ``NAdam(η=0.001, β=(0.9, 0.999), ϵ=1e-8)``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.NAdam(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.001474422
    """

    fields = Adam.fields
    state_fill = (0.0, 0.0)

    @staticmethod
    def math(d, x, m, v, b1, b2, one_b1, one_b2, lr_m, lr_g, b2_corr2, eps):
        # lr_m = ηβ1/(1−β1·β1ᵗ), lr_g = η(1−β1)/(1−β1ᵗ), b2_corr2 = β2/(1−β2ᵗ): one division.
        m = b1 * m + one_b1 * d
        v = b2 * v + one_b2 * d * d
        return (m * lr_m + d * lr_g) / (np.sqrt(v * b2_corr2) + eps), m, v

    def hypers(self, scalars, key, delta):
        (b1, b2), (p1, p2) = self.beta, scalars
        return (b1, b2, 1 - b1, 1 - b2, self.eta * b1 / (1 - b1 * p1),
                self.eta * (1 - b1) / (1 - p1), b2 / (1 - p2), self.epsilon)


class AdaBelief(_BiasCorrected):
    """AdaBelief (Flux ≥ 0.13.1): with ``ε₂ = ϵ²``, ``m = β1m + (1−β1)g``,
    ``s = β2s + (1−β2)(g−m)² + ε₂``, step ``η·m/(1−β1ᵗ) / (√(s/(1−β2ᵗ)) + ε₂)``.

    ``AdaBelief(η=0.001, β=(0.9, 0.999), ϵ=1e-8)``.

    >>> import numpy as np, minigrad as mg
    >>> round(float(mg.apply_(mg.AdaBelief(), np.zeros(1), np.array([1.0]))[0]), 9)
    0.001111111
    """

    fields = Adam.fields
    state_fill = (0.0, 0.0)

    @staticmethod
    def math(d, x, m, s, b1, b2, one_b1, one_b2, lr, inv_corr2, eps2):
        m = b1 * m + one_b1 * d
        belief = d - m
        s = b2 * s + one_b2 * belief * belief + eps2
        return m * lr / (np.sqrt(s * inv_corr2) + eps2), m, s

    def hypers(self, scalars, key, delta):
        (b1, b2), (p1, p2) = self.beta, scalars
        return (b1, b2, 1 - b1, 1 - b2, self.eta / (1 - p1), 1 / (1 - p2), self.epsilon ** 2)


# -- composition, decays and clipping ------------------------------------------------------------

class Optimiser(AbstractOptimiser):
    """Chain optimisers: each one's step is fed to the next (Flux's ``Optimiser(a, b, c...)``).

    Indexable, iterable and appendable like its list ``os``.  Consecutive built-in stages run
    as ONE fused pass over memory.

    >>> import numpy as np, minigrad as mg
    >>> opt = mg.Optimiser(mg.WeightDecay(0.1), mg.Descent(0.5))
    >>> mg.apply_(opt, np.array([2.0]), np.array([1.0]))   # (1 + 0.1·2)·0.5
    array([0.6])
    """

    def __init__(self, *os):
        for i, o in enumerate(os):
            if not isinstance(o, AbstractOptimiser):
                raise TypeError(f"Optimiser: item {i} is not an optimiser: {o!r}")
        self.os = list(os)

    def __getitem__(self, i):
        return Optimiser(*self.os[i]) if isinstance(i, slice) else self.os[i]

    def __setitem__(self, i, o) -> None:
        self.os[i] = o

    def __len__(self) -> int:
        return len(self.os)

    def __iter__(self):
        return iter(self.os)

    def append(self, o: AbstractOptimiser) -> None:
        """Add a stage at the end (Julia's ``push!``)."""
        self.os.append(o)

    apply_ = apply_

    def stages(self) -> list:
        return [s for o in self.os for s in o.stages()]

    def __repr__(self) -> str:
        return f"Optimiser({', '.join(map(repr, self.os))})"


def AdamW(eta=0.001, beta=(0.9, 0.999), decay=0, **kwargs):
    """``Optimiser(Adam(η, β), WeightDecay(decay))``: the decay ``decay·x`` is NOT scaled by η
    (Flux v0.13; PyTorch's AdamW scales it).  ``AdamW(η=0.001, β=(0.9, 0.999), decay=0)``.

    >>> import minigrad as mg
    >>> mg.AdamW(0.001, (0.9, 0.999), 0.1)
    Optimiser(Adam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08), WeightDecay(wd=0.1))
    """
    eta = kwargs.pop("η", eta)
    beta = kwargs.pop("β", beta)
    if kwargs:
        raise TypeError(f"AdamW got unexpected keywords {sorted(kwargs)}; it takes eta (η), "
                        "beta (β), decay")
    return Optimiser(Adam(eta, beta), WeightDecay(decay))


class WeightDecay(Rule):
    """Add ``wd·x`` to the step (L2 regularisation).  ``WeightDecay(λ=0)``; the field is ``wd``.

    >>> import numpy as np, minigrad as mg
    >>> mg.apply_(mg.WeightDecay(0.1), np.array([2.0]), np.array([1.0]))
    array([1.2])
    """

    fields = (("wd", "λ", 0.0),)

    @staticmethod
    def math(d, x, wd):
        return d + wd * x

    def _keyword(self, key):
        return "wd" if key in ("wd", "λ", "lambda_", "lambda") else None

    def hypers(self, scalars, key, delta):
        return (self.wd,)


class ClipValue(Rule):
    """Clamp each element of the step to ``[−thresh, thresh]``.  ``ClipValue(thresh)``.

    >>> import numpy as np, minigrad as mg
    >>> mg.apply_(mg.ClipValue(1.0), np.zeros(3), np.array([-3.0, 0.5, 2.0]))
    array([-1. ,  0.5,  1. ])
    """

    fields = (("thresh", None, None),)

    def __init__(self, thresh, **kwargs):
        super().__init__(thresh, **kwargs)

    @staticmethod
    def math(d, x, thresh):
        # (np.minimum and np.maximum keep NaN, as Julia's clamp does, and work on whole arrays
        # too: see kernels.numpy_pass.)
        return np.minimum(np.maximum(d, -thresh), thresh)

    def hypers(self, scalars, key, delta):
        return (self.thresh,)


class ClipNorm(Rule):
    """Scale the step down to L2 norm ``thresh`` when its norm (per array) exceeds it.

    ``ClipNorm(thresh)``.

    >>> import numpy as np, minigrad as mg
    >>> mg.apply_(mg.ClipNorm(1.0), np.zeros(2), np.array([3.0, 4.0]))
    array([0.6, 0.8])
    """

    fields = (("thresh", None, None),)
    #: The step's norm must be known before the pass, so this stage starts a fused pass.
    needs_whole_step = True

    def __init__(self, thresh, **kwargs):
        super().__init__(thresh, **kwargs)

    @staticmethod
    def math(d, x, scale):
        return d * scale

    def hypers(self, scalars, key, delta):
        norm = backend_of(delta).l2norm(delta)
        return (self.thresh / norm if norm > self.thresh else 1.0,)


class ExpDecay(Rule):
    """Multiply the step by ``η``, decaying ``η ← max(η·decay, clip)`` every ``decay_step``
    steps after ``start`` (η is shared by all parameters and decays once per global step).

    ``ExpDecay(η=0.001, decay=0.1, decay_step=1000, clip=1e-4, start=0)``; fields ``eta, decay,
    step, clip, start``.  The decay is applied before scaling, so with ``decay_step=1`` the
    first step already uses ``η·decay``.

    >>> import numpy as np, minigrad as mg
    >>> o, x = mg.ExpDecay(0.2, 0.5, 1, 1e-3), np.zeros(1)
    >>> [float(mg.apply_(o, x, np.ones(1))[0]) for _ in range(3)]
    [0.1, 0.05, 0.025]
    """

    fields = (("eta", "η", 0.001), ("decay", None, 0.1), ("step", None, 1000),
              ("clip", None, 1e-4), ("start", None, 0))

    def _keyword(self, key):
        return "step" if key == "decay_step" else super()._keyword(key)

    @staticmethod
    def math(d, x, eta):
        return d * eta

    def scalars(self) -> list:
        return [0]          # Flux's current[x]: how many steps this parameter has taken

    def _decays(self, n: int) -> bool:
        return n > self.start and n % self.step == 0

    def _next(self, scalars: list, key) -> tuple:
        """This parameter's next count and the η it will use (Flux's ``count(...) == 1`` rule:
        only the first parameter to reach a decay step decays the shared η)."""
        n = scalars[0] + 1
        eta = self.eta
        if self._decays(n) and not any(
                self._decays(st.scalars[0]) for k, st in self.state.items() if k is not key):
            eta = max(eta * self.decay, self.clip)
        return n, eta

    def hypers(self, scalars, key, delta):
        return (self._next(scalars, key)[1],)

    def advance(self, scalars, key) -> None:
        scalars[0], self.eta = self._next(scalars, key)


class InvDecay(Rule):
    """Multiply the step by ``1/(1 + γn)``, ``n = 1, 2, ...`` counted per parameter.

    ``InvDecay(γ=0.001)``; the field is ``gamma``.

    >>> import numpy as np, minigrad as mg
    >>> o, x = mg.InvDecay(0.5), np.zeros(1)
    >>> [float(mg.apply_(o, x, np.ones(1))[0]) for _ in range(2)]
    [0.6666666666666666, 0.5]
    """

    fields = (("gamma", "γ", 0.001),)

    @staticmethod
    def math(d, x, scale):
        return d * scale

    def scalars(self) -> list:
        return [1]

    def hypers(self, scalars, key, delta):
        return (1 / (1 + self.gamma * scalars[0]),)

    def advance(self, scalars, key) -> None:
        scalars[0] += 1


# Old (Flux ≤ 0.13.3) spellings.
ADAM, RADAM, OADAM, ADAGrad, ADADelta, NADAM, ADAMW = (
    Adam, RAdam, OAdam, AdaGrad, AdaDelta, NAdam, AdamW)


def builtin_rules() -> list:
    """Every built-in rule class of this module (those with per-element ``math``).

    >>> import minigrad as mg
    >>> mg.Adam in builtin_rules() and mg.Optimiser not in builtin_rules()
    True
    """
    return list(dict.fromkeys(    # (once each: ADAM is Adam)
        cls for cls in globals().values()
        if isinstance(cls, type) and issubclass(cls, Rule) and "math" in vars(cls)))


# -- the Tracker-era closures -------------------------------------------------------------------

class LegacyOptimiser:
    """Tracker-era Flux optimiser closure: ``opt = SGD([W, b], 0.1); ...; opt()``.

    Calling it updates every parameter from its accumulated ``.grad`` (see
    :func:`minigrad.tracker.back_`) and resets the gradient.  ``decay > 0`` adds inverse time
    decay of the step, as ``Optimiser(rule, InvDecay(decay))``.

    >>> import minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> opt = mg.SGD([W], 0.1)
    >>> mg.tracker.back_(lambda: mg.sum(W * W)); opt(); W
    param([0.8, 1.6])
    """

    def __init__(self, rule: AbstractOptimiser, ps, decay=0):
        self.opt = Optimiser(rule, InvDecay(decay)) if decay else rule
        self.params = ps if isinstance(ps, Params) else Params(ps)

    def __call__(self) -> None:
        for p in self.params:
            if p._grad is not None:
                _run(self.opt, p, p._grad, update=True, name="legacy optimiser")
                p._grad = None

    def __repr__(self) -> str:
        return f"LegacyOptimiser({self.opt!r}, {len(self.params)} parameters)"


def SGD(*args, **kwargs):
    """Tracker-era gradient descent: ``SGD(params, η=0.1; decay=0)`` returns a
    :class:`LegacyOptimiser`; ``SGD(η)`` without parameters is ``Descent(η)``.

    >>> import minigrad as mg
    >>> mg.SGD(0.3)
    Descent(eta=0.3)
    """
    return Descent(*args, **kwargs)

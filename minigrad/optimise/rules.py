"""Flux's optimiser rules (v0.13.17 math and defaults), each written once as per-element math.

A rule is a class with

* ``fields``: its hyperparameters ``(attribute, Greek keyword, default)`` in Flux's positional
  order; they are plain mutable attributes (``opt.eta = 0.01`` applies at the next step);
* ``state_fill``: how each per-element state array starts (a number, or the name of a
  hyperparameter whose value it starts at, such as ``"epsilon"``);
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
import weakref

import numpy as np

from ..keywords import lookup, spellings
from ..tracker import Param, Params, _describe
from .backend import backend_of
from .flat import FLAT_GROUPS
from .step import _run, apply_, update_

__all__ = [
    "AbstractOptimiser", "IdDict", "Rule", "Descent", "Momentum", "Nesterov", "RMSProp", "Adam",
    "RAdam", "AdaMax", "OAdam", "AdaGrad", "AdaDelta", "AMSGrad", "NAdam", "AdaBelief", "AdamW",
    "Optimiser", "WeightDecay", "ClipValue", "NormClip", "ClipNorm", "ExpDecay", "InvDecay",
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


#: The values each hyperparameter may take, by attribute: one name means one range in every
#: rule (the table in docs/optimisers.md).  A field not listed must be a finite real number.
_RANGES = {
    "eta": ">= 0", "rho": "in [0, 1]", "beta": "in [0, 1)", "epsilon": ">= 0", "wd": ">= 0",
    "thresh": "> 0", "gamma": ">= 0", "decay": "in (0, 1]", "step": "an integer >= 1",
    "clip": ">= 0", "start": "an integer >= 0", "ell": "> 0", "bounds": ">= 0",
    "omega": "> 0", "p": "> 0 (inf allowed)", "n": "an integer >= 1",
}
#: The hyperparameters that are pairs, each item in the field's range: ``beta`` = (β1, β2),
#: Rprop's ``ell`` = (ℓ−, ℓ+) and ``bounds`` = (Γmin, Γmax).
_PAIRS = {"beta": "(β1, β2)", "ell": "(ℓ−, ℓ+)", "bounds": "(Γmin, Γmax)"}
_TESTS = {
    ">= 0": lambda v: v >= 0,
    "> 0": lambda v: v > 0,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "in (0, 1]": lambda v: 0 < v <= 1,
    "an integer >= 1": lambda v: float(v).is_integer() and v >= 1,
    "an integer >= 0": lambda v: float(v).is_integer() and v >= 0,
    "> 0 (inf allowed)": lambda v: v > 0,
}


def _real(v) -> bool:
    return (not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.integer,
                                                                   np.floating))
            and _math.isfinite(v))


def _hyper(owner: str, attr: str, value):
    """``value`` for hyperparameter ``attr`` (``beta`` as a tuple), or a ``ValueError`` naming
    the field and its allowed values."""
    wanted = _RANGES.get(attr)
    test = _TESTS[wanted] if wanted else None
    if attr in _PAIRS:
        pair = tuple(value) if isinstance(value, (tuple, list)) else None
        if pair is None or len(pair) != 2 or not all(_real(v) and test(v) for v in pair):
            raise ValueError(f"{owner}: hyperparameter {attr} must be a finite real number "
                             f"pair {_PAIRS[attr]}, each {wanted}, got {value!r}")
        return pair
    if not (_real(value) or ("inf allowed" in (wanted or "") and value == _math.inf)):
        raise ValueError(f"{owner}: hyperparameter {attr} must be a finite real number, got "
                         f"{value!r}{f' (allowed: {wanted})' if wanted else ''}")
    if test is not None and not test(value):
        raise ValueError(f"{owner}: hyperparameter {attr} must be {wanted}, got {value!r}")
    return value


class Rule(AbstractOptimiser):
    """A built-in rule: per-element ``math`` compiled into fused kernels (see module docs).

    Constructors take Flux's positional arguments, or keywords in ASCII or Greek
    (``eta``/``η``, ``rho``/``ρ``, ``beta``/``β`` (a pair; also ``β1``/``β2``),
    ``epsilon``/``ϵ``).  Given a list of parameters first (``Momentum([W, b], 0.01)``), a
    constructor returns the legacy closure optimiser of Tracker-era Flux.

    Hyperparameters are checked when set, in the constructor and on assignment
    (``opt.eta = 0.01``): each must be a finite real number in its range (``η ≥ 0``,
    ``β`` in ``[0, 1)``, ``ϵ ≥ 0``, ``thresh > 0``, ...; the table is in the optimiser docs),
    or a ``ValueError`` names the field and its range and nothing changes.

    ``state_dict()`` / ``load_state_dict(state)`` save and restore the hyperparameters, the
    settings and the per-parameter state (see :meth:`state_dict`).

    >>> import minigrad as mg
    >>> opt = mg.Adam(); opt.eta = float("nan")
    Traceback (most recent call last):
    ...
    ValueError: Adam: hyperparameter eta must be a finite real number, got nan (allowed: >= 0)
    """

    fields: tuple = ()
    state_fill: tuple = ()
    #: Options fixed at construction (``AdamW``'s ``couple``): saved with the state and
    #: restored by :meth:`load_state_dict`, so that a resumed run takes the same steps.
    settings: tuple = ()

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
            if field in ("beta1", "beta2"):
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
            setattr(self, attr, value)          # checked by __setattr__
        self.state = IdDict()

    def __setattr__(self, attr: str, value) -> None:
        if any(attr == field[0] for field in self.fields):
            value = _hyper(type(self).__name__, attr, value)
        object.__setattr__(self, attr, value)

    def _keyword(self, key: str):
        return lookup(key, spellings(self.fields))

    def check(self) -> None:
        """Raise ``ValueError`` naming any hyperparameter outside its range (one set without
        ``setattr``, e.g. through ``__dict__``)."""
        for attr, _, _ in self.fields:
            _hyper(type(self).__name__, attr, getattr(self, attr))

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
        fills = [getattr(self, fill) if isinstance(fill, str) else fill
                 for fill in self.state_fill]
        full = backend_of(x).full
        arrays = tuple(full(x.size, fill, x.dtype) for fill in fills)
        return _State(arrays, self.scalars(), x.shape)

    # -- saving and restoring: the checkpoint format of minigrad.checkpoint --------------------
    def state_dict(self) -> dict:
        """This rule's state as plain data: ``{"hyper": {field: value, ...}, "state": d}``,
        ``d`` an :class:`IdDict` mapping each parameter to ``{"arrays": [...], "scalars":
        [...]}``: its flat state arrays (the live arrays, not copies) and its scalars (Adam's
        ``βp``, step counters).

        >>> import numpy as np, minigrad as mg
        >>> W = mg.param([1.0, 2.0]); opt = mg.Momentum(0.1)
        >>> _ = mg.update_(opt, W, np.ones(2))
        >>> s = opt.state_dict(); s["hyper"], s["state"][W]
        ({'eta': 0.1, 'rho': 0.9}, {'arrays': [array([-0.1, -0.1])], 'scalars': []})
        """
        states = IdDict()
        for key, st in self.state.items():
            if key is not None:
                states[key] = {"arrays": list(st.arrays), "scalars": list(st.scalars)}
        saved = {"hyper": {attr: getattr(self, attr) for attr, _, _ in self.fields},
                 "state": states}
        if self.settings:
            saved["settings"] = {attr: getattr(self, attr) for attr in self.settings}
        return saved

    def _scalar_problem(self, scalars) -> str | None:
        """What is wrong with one parameter's saved scalars, or ``None``.  A fresh state's
        scalars are the template: an integer there (a step counter) must be an integer at
        least as large, anything else a finite real number."""
        template = self.scalars()
        if not isinstance(scalars, list) or len(scalars) != len(template):
            return f"{type(self).__name__} keeps {len(template)} scalar(s), the state has " \
                   f"{scalars!r}"
        for j, (s, t) in enumerate(zip(scalars, template, strict=True)):
            if isinstance(t, int) and not (
                    isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= t):
                return f"scalar {j} is a step counter (an integer >= {t}), the state has {s!r}"
            if not _real(s):
                return f"scalar {j} must be a finite real number, the state has {s!r}"
        return None

    def check_state_dict(self, state, name=_describe):
        """Check ``state`` (as :meth:`state_dict` returns it) against this rule and return a
        function of no arguments that loads it; changes nothing itself.

        A ``ValueError`` lists every problem: other hyperparameter names, a value outside its
        range, state arrays not shaped ``(parameter.size,)`` in the parameter's dtype or not
        finite, scalars that are not this rule's (``name(parameter)`` labels parameters).
        Loading sets the hyperparameters, writes the arrays and scalars in place where the
        parameter has state (views into flat buffers stay valid) and drops the state of
        parameters that ``state`` has none for.

        >>> import numpy as np, minigrad as mg
        >>> W = mg.param([1.0]); opt = mg.Adam()
        >>> _ = mg.update_(opt, W, np.ones(1)); state = opt.state_dict()
        >>> state["state"][W]["scalars"] = [1.0, 1.0]
        >>> opt.check_state_dict(state, name=lambda p: "W")
        Traceback (most recent call last):
        ...
        ValueError: Adam: state[W]: βp (the powers β1ᵗ, β2ᵗ) must be in [0, 1), the state has
        [1.0, 1.0]
        """
        rule = type(self).__name__
        keys = {"hyper", "state", "settings"} if self.settings else {"hyper", "state"}
        if not isinstance(state, dict) or not {"hyper", "state"} <= set(state) <= keys:
            raise ValueError(f"{rule}: a rule's state is a dict with 'hyper' and 'state'"
                             f"{' (and settings)' if self.settings else ''}, got "
                             f"{str(state)[:80]}")
        hyper, states = state["hyper"], state["state"]
        settings = state.get("settings", {})     # (absent from files of older versions)
        if not isinstance(settings, dict) or not set(settings) <= set(self.settings) or any(
                type(v) is not type(getattr(self, k)) for k, v in settings.items()):
            raise ValueError(f"{rule}: the saved settings are {settings!r}; this rule's are "
                             f"{ {k: getattr(self, k) for k in self.settings} }")
        fields = [attr for attr, _, _ in self.fields]
        if not isinstance(hyper, dict) or sorted(hyper) != sorted(fields):
            raise ValueError(f"{rule}: the state's hyperparameters are "
                             f"{sorted(hyper) if isinstance(hyper, dict) else hyper!r}, this "
                             f"rule's are {sorted(fields)}")
        values = {attr: _hyper(rule, attr, hyper[attr]) for attr in fields}
        if not isinstance(states, IdDict):
            raise ValueError(f"{rule}: the state is not keyed by parameters (an IdDict)")
        n_arrays, problems = len(self.state_fill), []
        for p, entry in states.items():
            label = f"state[{name(p)}]"
            arrays = entry.get("arrays") if isinstance(entry, dict) else None
            if not isinstance(arrays, list) or len(arrays) != n_arrays:
                problems.append(f"{label}: {rule} keeps {n_arrays} state array(s), the state "
                                f"has {len(arrays) if isinstance(arrays, list) else 0}")
                continue
            for j, a in enumerate(arrays):
                if not isinstance(a, np.ndarray) or a.shape != (p.size,) or a.dtype != p.dtype:
                    got = f"shape {a.shape} {a.dtype}" if isinstance(a, np.ndarray) else \
                        type(a).__name__
                    problems.append(f"{label}: state array {j} has {got}, the parameter "
                                    f"needs shape ({p.size},) {p.dtype}")
                elif not np.isfinite(a).all():
                    problems.append(f"{label}: state array {j} holds "
                                    f"{int(np.size(a) - np.isfinite(a).sum())} NaN or "
                                    "infinite value(s)")
            problem = self._scalar_problem(entry.get("scalars"))
            if problem:
                problems.append(f"{label}: {problem}")
        if problems:
            raise ValueError(f"{rule}: " + "; ".join(problems))

        def commit():
            for attr, value in values.items():
                setattr(self, attr, value)
            for attr, value in settings.items():
                object.__setattr__(self, attr, value)
            for key in list(self.state.keys()):
                if key not in states:
                    del self.state[key]
            # Parameters updated together may share one scalars list (a flat group's): write
            # it once; a member whose saved scalars differ gets its own list, and storing its
            # state again tells the group.
            shared = {}
            for st in self.state.values():
                shared[id(st.scalars)] = shared.get(id(st.scalars), 0) + 1
            written = set()
            for p, entry in states.items():
                old = self.state.get(p)
                if old is not None and len(old.arrays) == n_arrays and all(
                        a.shape == (p.size,) and a.dtype == p.dtype and a.flags.writeable
                        for a in old.arrays):
                    for dst, src in zip(old.arrays, entry["arrays"], strict=True):
                        dst[...] = src          # in place: flat buffers' views stay valid
                    if id(old.scalars) not in written:
                        old.scalars[:] = entry["scalars"]
                        if shared[id(old.scalars)] > 1:
                            written.add(id(old.scalars))
                    elif old.scalars != entry["scalars"]:
                        old.scalars = list(entry["scalars"])
                        self.state[p] = old
                else:
                    self.state[p] = _State(tuple(np.array(a) for a in entry["arrays"]),
                                           list(entry["scalars"]), p.shape)
        return commit

    def load_state_dict(self, state) -> None:
        """Load ``state`` (as :meth:`state_dict` returns it), all or nothing: see
        :meth:`check_state_dict`.

        >>> import numpy as np, minigrad as mg
        >>> W = mg.param([1.0]); a, b = mg.Adam(0.1), mg.Adam()
        >>> _ = mg.update_(a, W, np.ones(1)); b.load_state_dict(a.state_dict())
        >>> b.eta, b.state[W].scalars
        (0.1, [0.81, 0.998001])
        """
        self.check_state_dict(state)()

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

    def _scalar_problem(self, scalars) -> str | None:
        problem = super()._scalar_problem(scalars)
        if problem is None and not all(0 <= s < 1 for s in scalars[:2]):
            # βp = 1 would divide by 1 − βp = 0 at the next step.
            problem = f"βp (the powers β1ᵗ, β2ᵗ) must be in [0, 1), the state has {scalars!r}"
        return problem


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
        """The members' stages in order; a stage that can hold the rest of the chain back
        (AccumGrad, with a ``gate(rest)`` method) hands the stages after it to its gate."""
        stages = [s for o in self.os for s in o.stages()]
        for i, stage in enumerate(stages[:-1]):
            gate = getattr(stage, "gate", None)
            if gate is not None:
                return [*stages[:i + 1], gate(stages[i + 1:])]
        return stages

    def __repr__(self) -> str:
        return f"Optimiser({', '.join(map(repr, self.os))})"

    def state_dict(self) -> dict:
        """``{"os": [stage, ...]}``: the stages themselves, each saving its own state.

        >>> import minigrad as mg
        >>> mg.Optimiser(mg.ClipNorm(1.0), mg.Descent()).state_dict()
        {'os': [ClipNorm(thresh=1.0), Descent(eta=0.1)]}
        """
        return {"os": list(self.os)}

    def check_state_dict(self, state, name=_describe):
        """Check that ``state`` lists this chain's own stages (the checkpoint restores each
        stage in place through its own methods); return a function that loads nothing more.

        >>> import minigrad as mg
        >>> opt = mg.Optimiser(mg.Descent())
        >>> opt.load_state_dict(opt.state_dict())
        """
        os = state.get("os") if isinstance(state, dict) and list(state) == ["os"] else None
        if not (isinstance(os, list) and len(os) == len(self.os)
                and all(a is b for a, b in zip(os, self.os, strict=True))):
            raise ValueError(f"Optimiser: the state must list this chain's {len(self.os)} "
                             "stage(s) themselves (load each stage's state with its own "
                             f"load_state_dict), got {str(state)[:80]}")
        return lambda: None

    def load_state_dict(self, state) -> None:
        """See :meth:`check_state_dict`."""
        self.check_state_dict(state)()


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
        # (np.minimum and np.maximum keep NaN, as Julia's clamp does.)
        return np.minimum(np.maximum(d, -thresh), thresh)

    def hypers(self, scalars, key, delta):
        return (self.thresh,)


class NormClip(Rule):
    """Base of the rules that scale each array's step by a factor of its ``p``-norm (the two
    ClipNorms): ``hypers`` takes the norm of the whole step (the backend's ``pnorm``) and
    hands it to :meth:`norm_hypers`.  A sharded step (minigrad.distributed), where a rank
    holds pieces of several arrays, computes each array's norm across the ranks and calls
    :meth:`norm_hypers` itself.

    >>> import numpy as np, minigrad as mg
    >>> mg.ClipNorm(1.0).hypers([], None, np.array([3.0, 4.0])), mg.ClipNorm(1.0).p
    ((0.2,), 2.0)
    """

    #: The step's norm must be known before the pass, so this stage starts a fused pass.
    needs_whole_step = True
    #: The norm's order (a field of its own where a subclass lets it be chosen).
    p = 2.0

    def norm_hypers(self, norm: float, key) -> tuple:
        """The hyperparameters ``math`` receives for an array whose step has ``p``-norm
        ``norm`` (``key``, its parameter, names it in errors)."""
        raise NotImplementedError

    def hypers(self, scalars, key, delta):
        return self.norm_hypers(backend_of(delta).pnorm(delta, self.p), key)


class ClipNorm(NormClip):
    """Scale the step down to L2 norm ``thresh`` when its norm (per array) exceeds it.

    ``ClipNorm(thresh)``.

    >>> import numpy as np, minigrad as mg
    >>> mg.apply_(mg.ClipNorm(1.0), np.zeros(2), np.array([3.0, 4.0]))
    array([0.6, 0.8])
    """

    fields = (("thresh", None, None),)

    def __init__(self, thresh, **kwargs):
        super().__init__(thresh, **kwargs)

    @staticmethod
    def math(d, x, scale):
        return d * scale

    def norm_hypers(self, norm, key):
        return (self.thresh / norm if norm > self.thresh else 1.0,)


class ExpDecay(Rule):
    """Multiply the step by ``η``, decaying ``η ← max(η·decay, clip)`` every ``decay_step``
    steps after ``start`` (η is shared by all parameters and decays once per global step).

    ``ExpDecay(η=0.001, decay=0.1, decay_step=1000, clip=1e-4, start=0)``; fields ``eta, decay,
    step, clip, start``.  The decay is applied before scaling, so with ``decay_step=1`` the
    first step already uses ``η·decay``.  Ranges: ``η ≥ 0``, ``decay`` in ``(0, 1]``,
    ``decay_step`` an integer ≥ 1, ``clip ≥ 0``, ``start`` an integer ≥ 0.

    Each parameter counts its steps; the global step is the highest count, and η decays when
    the first parameter reaches a decay step.  Flux v0.13 decays only when no other parameter's
    count is ALSO a decay step (``count(...) == 1``), so with two or more parameters and
    ``decay_step=1`` its η decays once and never again; minigrad keeps decaying.

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
        """This parameter's next count and the η it will use.  The global step is the highest
        count of any parameter: the first parameter to reach step ``n`` decays the shared η
        when ``n`` is a decay step, the others reaching ``n`` later use it as it is."""
        n = scalars[0] + 1
        eta = self.eta
        if self._decays(n) and n > max((st.scalars[0] for st in self.state.values()), default=0):
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
    """Every built-in rule class: the :class:`Rule` subclasses with per-element ``math`` of
    :mod:`minigrad.optimise` (this module and :mod:`~minigrad.optimise.rules_extra`), the
    same list whichever other parts of minigrad a process has imported.

    >>> import minigrad as mg
    >>> mg.Adam in builtin_rules() and mg.Lion in builtin_rules()
    True
    """
    found, stack = [], [Rule]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if "math" in vars(cls) and cls.__module__.startswith("minigrad.optimise.") and \
                cls not in found:
            found.append(cls)
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


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

    # Checkpoints: the closure has no state of its own; its rule saves itself.
    def state_dict(self) -> dict:
        """``{"opt": rule}``: the rule (or chain) it runs, which saves its own state."""
        return {"opt": self.opt}

    def check_state_dict(self, state, name=None):
        """Check that ``state`` holds this closure's own rule (a checkpoint restores the rule
        in place); returns the (empty) commit."""
        if not isinstance(state, dict) or state.get("opt") is not self.opt:
            raise ValueError("the state must hold this legacy optimiser's own rule")
        return lambda: None

    def load_state_dict(self, state) -> None:
        """See :meth:`check_state_dict`."""
        self.check_state_dict(state)()

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

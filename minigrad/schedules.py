"""Hyperparameter schedules: ``minigrad.schedules`` is ParameterSchedulers.jl (v0.4) in Python.

A schedule maps the iteration ``t = 1, 2, 3, ...`` to a value (Julia's 1-based ``t`` is kept):

* call it: ``s(t)`` with an integer ``t >= 1`` (a float with an integral value is accepted;
  ``t < 1`` or ``t = 2.5`` raises ``ValueError``);
* iterate it: ``for v in s`` yields ``s(1), s(2), ...`` and never ends, except ``Poly`` and
  ``OneCycle``, which stop after their last step (as their Julia iterators do).  So
  ``zip(s, range(1, 101))`` and ``itertools.islice(s, 100)`` give the first 100 values;
* ``Stateful(s)`` remembers where it is: ``next_(st)`` returns the current value and advances,
  ``reset_(st)`` goes back to ``t = 1`` (Julia's ``next!`` / ``reset!``);
* ``Scheduler(Rule, s...)`` is an optimiser that sets ``Rule``'s hyperparameters from the
  schedules at every step and then applies it (see :class:`Scheduler`).

Keywords.  Both generations work, with no deprecation warning: v0.4's ``start, decay,
step_sizes, degree, max_iter, l0, l1, period, restart`` and v0.3's ``λ`` (``start``), ``γ``
(``decay``), ``p`` (``degree``), ``λ0``/``λ1`` (``l0``/``l1``), with the ASCII spellings
``lambda_``, ``gamma``, ``lambda0``, ``lambda1``.  The cyclic schedules take
``(range, offset, period)`` positionally (v0.3+) and the endpoints ``l0, l1`` as keywords, with
``range = |l0 - l1|`` and ``offset = min(l0, l1)``.  The one exception is ``Cos``, the v0.2 name
of ``CosAnneal``: its positional arguments are the endpoints, as they were in v0.2.

Values are plain Python numbers.  Schedules compare equal when they are the same kind with the
same parameters, so ``Exp(λ=0.1, γ=0.5) == Exp(start=0.1, decay=0.5) == Exp(0.1, 0.5)``.

>>> from minigrad.schedules import Exp, Stateful, next_
>>> s = Exp(start=1.0, decay=0.5)
>>> s(1), s(3)
(1.0, 0.25)
>>> [v for v, _ in zip(s, range(1, 5))]
[1.0, 0.5, 0.25, 0.125]
>>> st = Stateful(s); next_(st), next_(st)
(1.0, 0.5)
"""

from __future__ import annotations

import bisect
import itertools
import math
import numbers
from collections.abc import Callable

from .keywords import lookup
from .optimise.rules import AbstractOptimiser, IdDict, Optimiser, Rule

__all__ = [
    "AbstractSchedule", "BoundsError", "Step", "Exp", "Poly", "Inv", "Triangle", "TriangleDecay2",
    "TriangleExp", "Sin", "SinDecay2", "SinExp", "CosAnneal", "Cos", "Constant", "Sequence",
    "Loop", "Interpolator", "Shifted", "OneCycle", "Stateful", "next_", "reset_", "Scheduler",
]


class BoundsError(IndexError):
    """``t`` past the end of a finite schedule (``Poly``, ``OneCycle``): Julia's ``BoundsError``."""


class _Required:
    def __repr__(self) -> str:
        return "<required>"


#: Default of a parameter that must be given (by its v0.4 name, its old name, or position).
_REQUIRED = _Required()

#: v0.3 keyword names (and ASCII spellings) -> v0.4 names.
_OLD_NAMES = {
    "λ": "start", "lambda_": "start", "lambda": "start",
    "γ": "decay", "gamma": "decay",
    "p": "degree",
    "λ0": "l0", "lambda0": "l0",
    "λ1": "l1", "lambda1": "l1",
}


# -- argument checks -----------------------------------------------------------------------------

def _time(owner: str, t) -> int:
    """``t`` as an ``int >= 1``, or a ``ValueError`` naming it."""
    if not isinstance(t, bool):
        if isinstance(t, numbers.Integral) and t >= 1:
            return int(t)
        if (isinstance(t, numbers.Real) and math.isfinite(t) and float(t).is_integer()
                and t >= 1):
            return int(t)
    raise ValueError(f"{owner}: t must be an integer >= 1 (schedules count from t = 1, as in "
                     f"Julia), got {t!r}")


def _real(owner: str, name: str, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite real number, got {value!r}")
    return value


def _count(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def _flag(owner: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return value


def _callable(owner: str, name: str, f):
    if not callable(f):
        raise TypeError(f"{owner}: {name} must be a schedule or a function of t, got {f!r}")
    return f


def _as_schedule(owner: str, name: str, s):
    """A number becomes ``Constant(s)`` (as in ParameterSchedulers); a callable stays."""
    if isinstance(s, numbers.Number) and not isinstance(s, bool):
        return Constant(s)
    if isinstance(s, tuple) and s and all(isinstance(v, numbers.Real) for v in s):
        return Constant(s)
    return _callable(owner, name, s)


def _keywords(owner: str, values: dict, old: dict) -> list:
    """Merge v0.3 keywords (``old``) into ``values`` (v0.4 names); return them in order."""
    for key, value in old.items():
        name = lookup(key, _OLD_NAMES)
        if name not in values:
            accepted = ", ".join(values) + "".join(
                f", {o}" for o, n in _OLD_NAMES.items() if n in values)
            raise TypeError(f"{owner} got an unexpected keyword {key!r}; it takes {accepted}")
        if values[name] is not _REQUIRED:
            raise TypeError(f"{owner} got {name!r} twice (the second time as {key!r})")
        values[name] = value
    missing = [name for name, value in values.items() if value is _REQUIRED]
    if missing:
        raise TypeError(f"{owner} is missing {', '.join(map(repr, missing))}")
    return list(values.values())


def _cyclic(owner: str, range, offset, l0, l1, old: dict) -> tuple:
    """``(range, offset)`` from the positional form or from the endpoints ``l0, l1``."""
    ends = {"l0": l0, "l1": l1}
    rest = {}
    for key, value in old.items():
        name = lookup(key, _OLD_NAMES)
        if name in ends:
            if ends[name] is not _REQUIRED:
                raise TypeError(f"{owner} got {name!r} twice (the second time as {key!r})")
            ends[name] = value
        else:
            rest[key] = value
    if ends["l0"] is _REQUIRED and ends["l1"] is _REQUIRED:
        return range, offset, rest
    if ends["l0"] is _REQUIRED or ends["l1"] is _REQUIRED:
        raise TypeError(f"{owner}: give both endpoints l0 and l1 (λ0 and λ1)")
    if range is not _REQUIRED or offset is not _REQUIRED:
        raise TypeError(f"{owner}: give either range and offset, or the endpoints l0 and l1, "
                        "not both")
    l0 = _real(owner, "l0", ends["l0"])
    l1 = _real(owner, "l1", ends["l1"])
    return abs(l0 - l1), min(l0, l1), rest


# -- the base class ------------------------------------------------------------------------------

class AbstractSchedule:
    """Base of every schedule: ``s(t)`` checks ``t`` and returns ``self._value(t)``.

    Iteration yields ``s(1), s(2), ...`` (forever, unless the schedule has a length).
    """

    _fields: tuple = ()

    def __call__(self, t):
        return self._value(_time(type(self).__name__, t))

    def _value(self, t: int):
        raise NotImplementedError

    def __iter__(self):
        try:
            n = len(self)
        except TypeError:
            return map(self, itertools.count(1))
        return map(self, range(1, n + 1))

    def _key(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({args})"

    # A schedule is configuration, fixed at construction: it has no state to save.
    def state_dict(self) -> dict:
        """``{}``: a schedule has no state (``Stateful`` keeps the step).

        >>> from minigrad.schedules import Exp
        >>> Exp(0.1, 0.5).state_dict()
        {}
        """
        return {}

    def check_state_dict(self, state, name=None):
        """Check that ``state`` is ``{}``; return a function that loads nothing."""
        if not isinstance(state, dict) or state:
            raise ValueError(f"{type(self).__name__}: a schedule has no state, got "
                             f"{str(state)[:80]}")
        return lambda: None

    def load_state_dict(self, state) -> None:
        """See :meth:`check_state_dict`."""
        self.check_state_dict(state)()


# -- decay schedules -----------------------------------------------------------------------------

class Step(AbstractSchedule):
    """``start·decay^i`` where ``i`` is how many of the cumulative step sizes are ``< t``.

    ``Step(start, decay, step_sizes)``; old keywords ``λ, γ``.  An integer step size repeats
    forever (decay every ``step_sizes`` steps: ``i = (t - 1) // step_sizes``); a list of step
    sizes decays once at the end of each, then stays at ``start·decay^len(step_sizes)``.

    >>> from minigrad.schedules import Step
    >>> [Step(1.0, 0.5, 2)(t) for t in range(1, 7)]
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    >>> [Step(1.0, 0.5, [1, 3])(t) for t in range(1, 7)]
    [1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    """

    _fields = ("start", "decay", "step_sizes")

    def __init__(self, start=_REQUIRED, decay=_REQUIRED, step_sizes=_REQUIRED, **old):
        start, decay, step_sizes = _keywords(
            "Step", {"start": start, "decay": decay, "step_sizes": step_sizes}, old)
        self.start = _real("Step", "start", start)
        self.decay = _real("Step", "decay", decay)
        if isinstance(step_sizes, numbers.Integral) and not isinstance(step_sizes, bool):
            self.step_sizes = _count("Step", "step_sizes", step_sizes)
            self._ends = None
        else:
            if not isinstance(step_sizes, (list, tuple)) or not step_sizes:
                raise ValueError("Step: step_sizes must be an integer >= 1 or a non-empty list "
                                 f"of them, got {step_sizes!r}")
            self.step_sizes = tuple(_count("Step", "step_sizes", n) for n in step_sizes)
            self._ends = list(itertools.accumulate(self.step_sizes))

    def _value(self, t):
        if self._ends is None:
            i = (t - 1) // self.step_sizes
        else:
            i = bisect.bisect_left(self._ends, t)      # how many cumulative sums are < t
        return self.start * self.decay ** i


class Exp(AbstractSchedule):
    """Exponential decay: ``start·decay^(t−1)``.  ``Exp(start, decay)``; old keywords ``λ, γ``.

    >>> from minigrad.schedules import Exp
    >>> [Exp(0.1, 0.5)(t) for t in (1, 2, 3)]
    [0.1, 0.05, 0.025]
    """

    _fields = ("start", "decay")

    def __init__(self, start=_REQUIRED, decay=_REQUIRED, **old):
        start, decay = _keywords("Exp", {"start": start, "decay": decay}, old)
        self.start = _real("Exp", "start", start)
        self.decay = _real("Exp", "decay", decay)

    def _value(self, t):
        return self.start * self.decay ** (t - 1)


class Poly(AbstractSchedule):
    """Polynomial decay: ``start·(1 − (t−1)/max_iter)^degree`` for ``t <= max_iter``.

    ``Poly(start, degree, max_iter)``; old keywords ``λ, p``.  ``t > max_iter`` raises
    :class:`BoundsError` (an ``IndexError``), and iteration stops after ``max_iter`` values
    (``len(s) == max_iter``).  ParameterSchedulers' docstring shows "/" where the code, and
    this schedule, multiply.

    >>> from minigrad.schedules import Poly
    >>> s = Poly(start=1.0, degree=2, max_iter=4)
    >>> list(s)
    [1.0, 0.5625, 0.25, 0.0625]
    """

    _fields = ("start", "degree", "max_iter")

    def __init__(self, start=_REQUIRED, degree=_REQUIRED, max_iter=_REQUIRED, **old):
        start, degree, max_iter = _keywords(
            "Poly", {"start": start, "degree": degree, "max_iter": max_iter}, old)
        self.start = _real("Poly", "start", start)
        self.degree = _real("Poly", "degree", degree)
        self.max_iter = _count("Poly", "max_iter", max_iter)

    def __len__(self) -> int:
        return self.max_iter

    def _value(self, t):
        if t > self.max_iter:
            raise BoundsError(f"Poly: t = {t} is past max_iter = {self.max_iter}")
        return self.start * (1 - (t - 1) / self.max_iter) ** self.degree


class Inv(AbstractSchedule):
    """Inverse decay: ``start / (1 + (t−1)·decay)^degree``.

    ``Inv(start, decay, degree)``; old keywords ``λ, γ, p``.

    >>> from minigrad.schedules import Inv
    >>> [Inv(1.0, 0.5, 2)(t) for t in (1, 2, 3)]
    [1.0, 0.4444444444444444, 0.25]
    """

    _fields = ("start", "decay", "degree")

    def __init__(self, start=_REQUIRED, decay=_REQUIRED, degree=_REQUIRED, **old):
        start, decay, degree = _keywords(
            "Inv", {"start": start, "decay": decay, "degree": degree}, old)
        self.start = _real("Inv", "start", start)
        self.decay = _real("Inv", "decay", decay)
        self.degree = _real("Inv", "degree", degree)

    def _value(self, t):
        return self.start / (1 + (t - 1) * self.decay) ** self.degree


# -- cyclic schedules ----------------------------------------------------------------------------

def _tri(t: int, period: int) -> float:
    """The triangle wave, 0 at ``t = 1`` and 1 at ``t = 1 + period/2``:
    ``(2/π)|asin(sin(π(t−1)/period))|``."""
    return (2 / math.pi) * abs(math.asin(math.sin(math.pi * (t - 1) / period)))


def _sin(t: int, period: int) -> float:
    """The rectified sine wave, 0 at ``t = 1``: ``|sin(π(t−1)/period)|``."""
    return abs(math.sin(math.pi * (t - 1) / period))


class _Cyclic(AbstractSchedule):
    """``range·wave(t) + offset``; the wave is in ``[0, 1]``, so values lie in
    ``[offset, offset + range]``."""

    _fields = ("range", "offset", "period")

    def __init__(self, range=_REQUIRED, offset=_REQUIRED, period=_REQUIRED, *,
                 l0=_REQUIRED, l1=_REQUIRED, **old):
        name = type(self).__name__
        range, offset, old = _cyclic(name, range, offset, l0, l1, old)
        range, offset, period = _keywords(
            name, {"range": range, "offset": offset, "period": period}, old)
        self.range = _real(name, "range", range)
        self.offset = _real(name, "offset", offset)
        self.period = _count(name, "period", period)

    def _value(self, t):
        return self.range * self._wave(t) + self.offset


class _CyclicDecay(_Cyclic):
    """A cyclic schedule with a ``decay`` rate as its fourth argument (old keyword ``γ``)."""

    _fields = ("range", "offset", "period", "decay")

    def __init__(self, range=_REQUIRED, offset=_REQUIRED, period=_REQUIRED, decay=_REQUIRED,
                 *, l0=_REQUIRED, l1=_REQUIRED, **old):
        name = type(self).__name__
        range, offset, old = _cyclic(name, range, offset, l0, l1, old)
        range, offset, period, decay = _keywords(
            name, {"range": range, "offset": offset, "period": period, "decay": decay}, old)
        super().__init__(range, offset, period)
        self.decay = _real(name, "decay", decay)


class Triangle(_Cyclic):
    """Triangle wave: ``range·(2/π)|asin(sin(π(t−1)/period))| + offset``.

    ``Triangle(range, offset, period)`` or ``Triangle(l0=, l1=, period=)`` (old ``λ0, λ1``).
    It starts at the minimum (``offset``) and reaches the maximum at ``t = 1 + period/2``, so
    one full cycle lasts ``period`` steps.

    >>> from minigrad.schedules import Triangle
    >>> s = Triangle(l0=0.0, l1=1.0, period=4)
    >>> [round(s(t), 12) for t in range(1, 6)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    def _wave(self, t):
        return _tri(t, self.period)


class TriangleDecay2(_Cyclic):
    """Triangle wave whose amplitude halves every period:
    ``range·tri(t)·0.5^((t−1)//period) + offset`` (``tri`` as in :class:`Triangle`).

    ``TriangleDecay2(range, offset, period)`` or ``TriangleDecay2(l0=, l1=, period=)``.

    >>> from minigrad.schedules import TriangleDecay2
    >>> s = TriangleDecay2(l0=0.0, l1=1.0, period=2)
    >>> [round(s(t), 12) for t in range(1, 7)]
    [0.0, 1.0, 0.0, 0.5, 0.0, 0.25]
    """

    def _wave(self, t):
        return _tri(t, self.period) * 0.5 ** ((t - 1) // self.period)


class TriangleExp(_CyclicDecay):
    """Triangle wave with exponentially decaying amplitude: ``range·tri(t)·decay^(t−1) + offset``.

    ``TriangleExp(range, offset, period, decay)`` or ``TriangleExp(l0=, l1=, period=, decay=)``
    (old ``λ0, λ1, γ``).

    >>> from minigrad.schedules import TriangleExp
    >>> s = TriangleExp(l0=0.0, l1=1.0, period=2, decay=0.5)
    >>> [round(s(t), 12) for t in range(1, 5)]
    [0.0, 0.5, 0.0, 0.125]
    """

    def _wave(self, t):
        return _tri(t, self.period) * self.decay ** (t - 1)


class Sin(_Cyclic):
    """Rectified sine wave: ``range·|sin(π(t−1)/period)| + offset``.

    ``Sin(range, offset, period)`` or ``Sin(l0=, l1=, period=)``.  Starts at the minimum.

    >>> from minigrad.schedules import Sin
    >>> s = Sin(l0=0.0, l1=1.0, period=4)
    >>> [round(s(t), 6) for t in range(1, 6)]
    [0.0, 0.707107, 1.0, 0.707107, 0.0]
    """

    def _wave(self, t):
        return _sin(t, self.period)


class SinDecay2(_Cyclic):
    """Sine wave whose amplitude halves every period:
    ``range·|sin(π(t−1)/period)|·0.5^((t−1)//period) + offset``.

    ``SinDecay2(range, offset, period)`` or ``SinDecay2(l0=, l1=, period=)``.

    >>> from minigrad.schedules import SinDecay2
    >>> s = SinDecay2(l0=0.0, l1=1.0, period=2)
    >>> [round(s(t), 12) for t in range(1, 7)]
    [0.0, 1.0, 0.0, 0.5, 0.0, 0.25]
    """

    def _wave(self, t):
        return _sin(t, self.period) * 0.5 ** ((t - 1) // self.period)


class SinExp(_CyclicDecay):
    """Sine wave with exponentially decaying amplitude:
    ``range·|sin(π(t−1)/period)|·decay^(t−1) + offset``.

    ``SinExp(range, offset, period, decay)`` or ``SinExp(l0=, l1=, period=, decay=)``.

    >>> from minigrad.schedules import SinExp
    >>> s = SinExp(l0=0.0, l1=1.0, period=2, decay=0.5)
    >>> [round(s(t), 12) for t in range(1, 5)]
    [0.0, 0.5, 0.0, 0.125]
    """

    def _wave(self, t):
        return _sin(t, self.period) * self.decay ** (t - 1)


class CosAnneal(_Cyclic):
    """Cosine annealing (SGDR): ``range·(1 + cos(π·t̂/period))/2 + offset`` with
    ``t̂ = (t−1) mod period`` when ``restart`` (the default), else ``t̂ = t − 1``.

    ``CosAnneal(range, offset, period, restart=True)`` or ``CosAnneal(l0=, l1=, period=,
    restart=True)`` (old ``λ0, λ1``).  It starts at the MAXIMUM (``offset + range``) and falls
    to the minimum; with ``restart`` it jumps back up every ``period`` steps, without it the
    cosine simply continues (rising again during the second period).

    >>> from minigrad.schedules import CosAnneal
    >>> s = CosAnneal(l0=0.0, l1=1.0, period=4)
    >>> [round(s(t), 12) for t in range(1, 7)]
    [1.0, 0.853553390593, 0.5, 0.146446609407, 1.0, 0.853553390593]
    >>> [round(CosAnneal(1.0, 0.0, 4, False)(t), 12) for t in (5, 9)]
    [0.0, 1.0]
    """

    _fields = ("range", "offset", "period", "restart")

    def __init__(self, range=_REQUIRED, offset=_REQUIRED, period=_REQUIRED, restart=True, *,
                 l0=_REQUIRED, l1=_REQUIRED, **old):
        super().__init__(range, offset, period, l0=l0, l1=l1, **old)
        self.restart = _flag("CosAnneal", "restart", restart)

    def _wave(self, t):
        t̂ = (t - 1) % self.period if self.restart else t - 1
        return (1 + math.cos(math.pi * t̂ / self.period)) / 2


def Cos(l0=_REQUIRED, l1=_REQUIRED, period=_REQUIRED, **old) -> CosAnneal:
    """ParameterSchedulers v0.2's name for cosine annealing that always restarts:
    ``CosAnneal(l0=l0, l1=l1, period=period, restart=True)``, i.e.
    ``|l0 − l1|·(1 + cos(π·((t−1) mod period)/period))/2 + min(l0, l1)``.

    ``Cos(λ0=, λ1=, period=)`` as in the Flux documentation (``l0, l1, lambda0, lambda1`` work
    too).  Unlike ``CosAnneal``, its positional arguments are the two endpoints, as they were
    in v0.2.  Returns a :class:`CosAnneal`.

    >>> from minigrad.schedules import Cos
    >>> schedule = Cos(λ0=1e-4, λ1=1e-2, period=10)
    >>> schedule(1), schedule(11)
    (0.01, 0.01)
    >>> round(schedule(6), 12), round(schedule(100), 12)
    (0.00505, 0.000342270244)
    """
    ends = {"l0": l0, "l1": l1}
    for key, value in old.items():
        name = lookup(key, _OLD_NAMES)
        if name not in ends:
            raise TypeError(f"Cos got an unexpected keyword {key!r}; it takes λ0 (l0), "
                            "λ1 (l1), period")
        if ends[name] is not _REQUIRED:
            raise TypeError(f"Cos got {name!r} twice (the second time as {key!r})")
        ends[name] = value
    return CosAnneal(l0=ends["l0"], l1=ends["l1"], period=period, restart=True)


# -- composite schedules -------------------------------------------------------------------------

class Constant(AbstractSchedule):
    """Always ``value``: ``Constant(value)``.

    >>> from minigrad.schedules import Constant
    >>> Constant(0.1)(7)
    0.1
    """

    _fields = ("value",)

    def __init__(self, value):
        values = value if isinstance(value, tuple) else (value,)
        if not values or not all(isinstance(v, numbers.Number) and not isinstance(v, bool)
                                 for v in values):
            raise ValueError(f"Constant: value must be a number (or a tuple of numbers), "
                             f"got {value!r}")
        self.value = value

    def _value(self, t):
        return self.value


def _is_pair(x) -> bool:
    return (isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], numbers.Integral)
            and not isinstance(x[1], bool))


class Sequence(AbstractSchedule):
    """Schedules one after another: the ``k``-th runs for ``n_k`` steps, seeing the local time
    ``t − (n_1 + ... + n_{k−1})``; the last one keeps running after the end.

    Julia's ``Sequence(s1 => n1, s2 => n2, ...)`` is written with tuples for the pairs::

        Sequence((s1, n1), (s2, n2), ...)        # or Sequence([(s1, n1), (s2, n2), ...])

    and Julia's ``Sequence(schedules, step_sizes)`` with two LISTS (or keywords)::

        Sequence([s1, s2, ...], [n1, n2, ...])   # or Sequence(schedules=..., step_sizes=...)

    (Positional tuples are always read as pairs.)  A number ``s`` means ``Constant(s)``.  An
    iterator of pairs (a generator, possibly endless) is read lazily, as needed.

    >>> from minigrad.schedules import Sequence, Step
    >>> s = Sequence((1, 1), (Step(0.1, 0.5, 10), 50))
    >>> s(1), s(2), s(42), s(52)
    (1, 0.1, 0.00625, 0.003125)
    >>> s == Sequence([1, Step(0.1, 0.5, 10)], [1, 50])
    True
    """

    def __init__(self, *stages, schedules=None, step_sizes=None):
        if schedules is not None or step_sizes is not None:
            if stages or schedules is None or step_sizes is None:
                raise TypeError("Sequence: give schedules= and step_sizes= together, and "
                                "no positional stages")
            pairs = self._zip(schedules, step_sizes)
        elif stages and all(_is_pair(s) for s in stages):
            pairs = list(stages)
        elif len(stages) == 2 and all(isinstance(s, (list, tuple)) for s in stages):
            pairs = self._zip(*stages)
        elif len(stages) == 1 and not isinstance(stages[0], (str, bytes)) and (
                hasattr(stages[0], "__iter__")):
            pairs = stages[0]
            if isinstance(pairs, (list, tuple)):
                pairs = list(pairs)
        else:
            raise TypeError("Sequence takes pairs (schedule, steps), a list of them, or two "
                            f"lists (schedules, step_sizes); got {stages!r}")
        self._schedules: list = []
        self._steps: list = []
        self._ends: list = []
        if isinstance(pairs, list):
            self._source = None
            for pair in pairs:
                self._add(pair)
        else:
            self._source = iter(pairs)
            self._pull()
        if not self._schedules:
            raise ValueError("Sequence: needs at least one (schedule, steps) pair")

    @staticmethod
    def _zip(schedules, step_sizes):
        if isinstance(schedules, (list, tuple)) and isinstance(step_sizes, (list, tuple)):
            if len(schedules) != len(step_sizes):
                raise ValueError(f"Sequence: {len(schedules)} schedules but {len(step_sizes)} "
                                 "step sizes")
            return list(zip(schedules, step_sizes, strict=True))
        return zip(schedules, step_sizes, strict=False)      # lazy, possibly endless

    def _add(self, pair) -> None:
        k = len(self._schedules)
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"Sequence: stage {k} must be a pair (schedule, steps), "
                            f"got {pair!r}")
        s, n = pair
        self._schedules.append(_as_schedule("Sequence", f"stage {k}'s schedule", s))
        n = _count("Sequence", f"stage {k}'s step size", n)
        self._steps.append(n)
        self._ends.append((self._ends[-1] if self._ends else 0) + n)

    def _pull(self) -> bool:
        """Read one more pair from a lazy source; False once it is exhausted."""
        if self._source is None:
            return False
        try:
            pair = next(self._source)
        except StopIteration:
            self._source = None
            return False
        self._add(pair)
        return True

    @property
    def schedules(self) -> tuple:
        """The schedules read so far (all of them unless built from an endless iterator)."""
        return tuple(self._schedules)

    @property
    def step_sizes(self) -> tuple:
        return tuple(self._steps)

    def _key(self) -> tuple:
        if self._source is not None:
            return (id(self),)
        return (self.schedules, self.step_sizes)

    def __repr__(self) -> str:
        pairs = ", ".join(f"({s!r}, {n})" for s, n in zip(self._schedules, self._steps,
                                                           strict=True))
        more = ", ..." if self._source is not None else ""
        return f"Sequence({pairs}{more})"

    def _value(self, t):
        while self._ends[-1] < t and self._pull():
            pass
        k = min(bisect.bisect_left(self._ends, t), len(self._ends) - 1)
        return self._schedules[k](t - (self._ends[k] - self._steps[k]))


class Loop(AbstractSchedule):
    """Repeat ``f`` every ``period`` steps: ``f(mod1(t, period))``, i.e. ``f((t−1) % period + 1)``.

    ``Loop(f, period)``; ``f`` is a schedule or any function of ``t``.

    >>> from minigrad.schedules import Loop, Exp
    >>> [Loop(Exp(1.0, 0.5), 3)(t) for t in range(1, 7)]
    [1.0, 0.5, 0.25, 1.0, 0.5, 0.25]
    """

    _fields = ("f", "period")

    def __init__(self, f, period):
        self.f = _callable("Loop", "f", f)
        self.period = _count("Loop", "period", period)

    def _value(self, t):
        return self.f((t - 1) % self.period + 1)


class Interpolator(AbstractSchedule):
    """``schedule(ceil_fn(t / rate))``: run a schedule at a different rate.

    ``Interpolator(schedule, rate, ceil_fn=math.ceil)``.  For instance, with a schedule in
    epochs and ``rate`` batches per epoch, ``Interpolator(s, rate)`` is called once per batch.
    Unlike the other schedules it accepts any real ``t > 0`` (the rate may be fractional);
    its schedule checks the time it receives.

    >>> from minigrad.schedules import Interpolator, Sequence
    >>> s = Interpolator(Sequence([1, 2], [1, 1]), 2)     # 2 batches per epoch
    >>> [s(t) for t in range(1, 6)]
    [1, 1, 2, 2, 2]
    """

    _fields = ("schedule", "rate", "ceil_fn")

    def __init__(self, schedule, rate, ceil_fn: Callable = math.ceil):
        self.schedule = _callable("Interpolator", "schedule", schedule)
        self.rate = _real("Interpolator", "rate", rate)
        if rate <= 0:
            raise ValueError(f"Interpolator: rate must be > 0, got {rate!r}")
        self.ceil_fn = _callable("Interpolator", "ceil_fn", ceil_fn)

    def __call__(self, t):
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) \
                or t <= 0:
            raise ValueError(f"Interpolator: t must be a finite number > 0, got {t!r}")
        return self._value(t)

    def _value(self, t):
        return self.schedule(self.ceil_fn(t / self.rate))


class Shifted(AbstractSchedule):
    """``schedule(t − 1 + offset)``: start ``schedule`` at ``t = offset``.

    ``Shifted(schedule, offset)`` with an integer ``offset >= 1``.

    >>> from minigrad.schedules import Shifted, Exp
    >>> [Shifted(Exp(1.0, 0.5), 3)(t) for t in (1, 2)]
    [0.25, 0.125]
    """

    _fields = ("schedule", "offset")

    def __init__(self, schedule, offset):
        self.schedule = _callable("Shifted", "schedule", schedule)
        self.offset = _count("Shifted", "offset", offset)

    def _value(self, t):
        return self.schedule(t - 1 + self.offset)


class OneCycle(AbstractSchedule):
    """The one-cycle policy: a cosine warm-up from ``startval`` to ``maxval`` over
    ``w = ceil(percent_start·nsteps)`` steps, then a cosine decay to ``endval`` over the
    remaining ``nsteps − w`` steps.  With ``cyc(a, b, x) = |a − b|·x + min(a, b)``:

    * ``t <= w``: ``cyc(startval, maxval, (1 + cos(π(t + w − 1)/w))/2)``;
    * ``w < t <= nsteps``: ``cyc(maxval, endval, (1 + cos(π(t − w − 1)/(nsteps − w)))/2)``;
    * ``t > nsteps``: :class:`BoundsError`; iteration stops after ``nsteps`` values.

    ``OneCycle(nsteps, maxval, startval=maxval/25, endval=maxval/1e5, percent_start=0.25)``.

    >>> from minigrad.schedules import OneCycle
    >>> s = OneCycle(8, 1.0, startval=0.0, endval=0.0, percent_start=0.25)
    >>> [round(v, 6) for v in s]
    [0.0, 0.5, 1.0, 0.933013, 0.75, 0.5, 0.25, 0.066987]
    """

    _fields = ("nsteps", "maxval", "startval", "endval", "percent_start")

    def __init__(self, nsteps, maxval, startval=None, endval=None, percent_start=0.25):
        self.nsteps = _count("OneCycle", "nsteps", nsteps)
        self.maxval = _real("OneCycle", "maxval", maxval)
        self.startval = _real("OneCycle", "startval",
                              maxval / 25 if startval is None else startval)
        self.endval = _real("OneCycle", "endval", maxval / 1e5 if endval is None else endval)
        self.percent_start = _real("OneCycle", "percent_start", percent_start)
        if not 0 <= percent_start <= 1:
            raise ValueError(f"OneCycle: percent_start must lie in [0, 1], got {percent_start!r}")
        self._warmup = math.ceil(percent_start * self.nsteps)

    def __len__(self) -> int:
        return self.nsteps

    def _value(self, t):
        if t > self.nsteps:
            raise BoundsError(f"OneCycle: t = {t} is past nsteps = {self.nsteps}")
        w = self._warmup
        if t <= w:
            a, b, x = self.startval, self.maxval, (1 + math.cos(math.pi * (t + w - 1) / w)) / 2
        else:
            a, b = self.maxval, self.endval
            x = (1 + math.cos(math.pi * (t - w - 1) / (self.nsteps - w))) / 2
        return abs(a - b) * x + min(a, b)


# -- Stateful ------------------------------------------------------------------------------------

class Stateful:
    """A schedule that remembers where it is: ``Stateful(schedule, advance=lambda state: True)``.

    ``state`` starts at 1.  :func:`next_` returns ``schedule(state)`` and then adds 1 to
    ``state`` if ``advance(state)`` is true; :func:`reset_` sets it back to 1.  It is also a
    Python iterator (``next(st)`` is ``next_(st)``).

    >>> from minigrad.schedules import Stateful, Exp, next_, reset_
    >>> st = Stateful(Exp(1.0, 0.5))
    >>> [next_(st) for _ in range(3)], st.state
    ([1.0, 0.5, 0.25], 4)
    >>> next_(reset_(st))
    1.0
    >>> st = Stateful(Exp(1.0, 0.5), advance=lambda state: state < 2)
    >>> [next_(st) for _ in range(4)]
    [1.0, 0.5, 0.5, 0.5]
    """

    def __init__(self, schedule, advance: Callable[[int], bool] = lambda state: True):
        self.schedule = _callable("Stateful", "schedule", schedule)
        self.advance = _callable("Stateful", "advance", advance)
        self.state = 1

    def next_(self):
        """Julia's ``next!``: the value at the current state, then advance."""
        value = self.schedule(self.state)
        if self.advance(self.state):
            self.state += 1
        return value

    def reset_(self) -> Stateful:
        """Julia's ``reset!``: back to ``state = 1``; returns the schedule."""
        self.state = 1
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.next_()

    def __repr__(self) -> str:
        return f"Stateful({self.schedule!r}, state={self.state})"

    def state_dict(self) -> dict:
        """``{"state": t}``: where the schedule stands (the schedule itself is configuration).

        >>> from minigrad.schedules import Stateful, Exp
        >>> st = Stateful(Exp(1.0, 0.5)); st.load_state_dict({"state": 3}); next(st)
        0.25
        """
        return {"state": self.state}

    def check_state_dict(self, state, name=None):
        """Check ``state`` (``{"state": t}``, ``t`` an integer >= 1) and return a function
        that loads it; a ``ValueError`` otherwise."""
        if not isinstance(state, dict) or list(state) != ["state"]:
            raise ValueError(f"Stateful: the state is {{'state': t}}, got {str(state)[:80]}")
        t = _count("Stateful", "state", state["state"])

        def commit():
            self.state = t
        return commit

    def load_state_dict(self, state) -> None:
        """See :meth:`check_state_dict`."""
        self.check_state_dict(state)()


def next_(st: Stateful):
    """Julia's ``next!(st)``: ``st.schedule(st.state)``, then advance the state (see
    :class:`Stateful`)."""
    if not isinstance(st, Stateful):
        raise TypeError(f"next_ needs a Stateful schedule, got {st!r}; wrap it: Stateful(s)")
    return st.next_()


def reset_(st: Stateful) -> Stateful:
    """Julia's ``reset!(st)``: set the state back to 1 and return ``st``."""
    if not isinstance(st, Stateful):
        raise TypeError(f"reset_ needs a Stateful schedule, got {st!r}")
    return st.reset_()


# -- Scheduler -----------------------------------------------------------------------------------

def _is_hyper(value) -> bool:
    if isinstance(value, tuple):
        return bool(value) and all(isinstance(v, numbers.Number) for v in value)
    return isinstance(value, numbers.Number)


def _transplant(source, target) -> None:
    """Copy the hyperparameters of a freshly built optimiser onto ``target`` (same kind),
    leaving ``target``'s per-parameter state alone."""
    if type(source) is not type(target):
        raise TypeError(f"Scheduler: the constructor returned a {type(source).__name__} this "
                        f"time and a {type(target).__name__} before")
    if isinstance(source, Optimiser):
        if len(source) != len(target):
            raise TypeError("Scheduler: the constructor returned chains of different lengths")
        for s, t in zip(source, target, strict=True):
            _transplant(s, t)
    elif isinstance(source, Rule):
        for attr, _, _ in source.fields:
            setattr(target, attr, getattr(source, attr))
    else:                           # a user-defined rule: its numbers are its hyperparameters
        for attr, value in vars(source).items():
            if _is_hyper(value):
                setattr(target, attr, value)


def _set_eta(opt, value) -> None:
    opt.eta = value


class Scheduler(AbstractOptimiser):
    """An optimiser whose hyperparameters follow schedules (ParameterSchedulers v0.4).

    ``Scheduler(Rule, s1, s2, ...)`` or ``Scheduler(Rule, eta=s1, rho=s2, ...)`` (Greek
    keywords work, as for ``Rule`` itself): ``Rule`` is the optimiser's constructor
    (``mg.Descent``, not ``mg.Descent()``) and each schedule is a schedule, a function of
    ``t``, or a number (which becomes :class:`Constant`).  Each parameter has its own step
    counter ``t``, starting at 1.  At every step for parameter ``x`` it builds
    ``Rule(s1(t), ...)``, copies those hyperparameters onto ONE inner ``Rule`` instance
    (``sched.opt``), whose per-parameter state (momentum, Adam's moments) lives on across
    steps, applies it, and sets ``t += 1``.  So ``Scheduler(Descent, Exp(0.1, 0.5))`` steps by
    ``g·s(t)``, and ``Scheduler(Momentum, eta=se, rho=sr)`` steps by
    ``Δₜ = ρ(t)·Δₜ₋₁ + η(t)·g`` (Flux's ``v = ρv − ηg``, step ``−v``).  It is an
    ``AbstractOptimiser``: use it in ``update_``, ``Optimiser`` and ``train_``.
    ``sched.state[x]`` is the ``t`` of the next step for ``x``.

    The v0.3 form ``Scheduler(schedule, opt, update_func=lambda opt, v: ...)`` wraps an
    optimiser INSTANCE and, before each step, calls ``update_func(opt, schedule(t))`` (by
    default it sets ``opt.eta``); ``sched.optim`` is ``opt``.

    >>> import numpy as np, minigrad as mg
    >>> from minigrad.schedules import Scheduler, Exp
    >>> w = mg.param([1.0])
    >>> opt = Scheduler(mg.Descent, Exp(0.1, 0.5))
    >>> for _ in range(3):
    ...     _ = mg.update_(opt, w, np.array([1.0]))       # steps 0.1, 0.05, 0.025
    >>> w, opt.state[w]
    (param([0.825]), 4)
    """

    def __init__(self, constructor, *schedules, update_func=None, **named):
        self.state = IdDict()       # parameter -> the t of its next step (starts at 1)
        if schedules and isinstance(schedules[0], AbstractOptimiser):
            self._init_v03(constructor, schedules, update_func, named)
            return
        if update_func is not None:
            raise TypeError("Scheduler: update_func belongs to the v0.3 form "
                            "Scheduler(schedule, opt, update_func=...)")
        if isinstance(constructor, AbstractOptimiser):
            raise TypeError("Scheduler: pass the optimiser's constructor, not an instance: "
                            f"Scheduler({type(constructor).__name__}, schedule...) rather than "
                            f"Scheduler({constructor!r}, ...)")
        if not callable(constructor):
            raise TypeError("Scheduler: constructor must be an optimiser class or function, "
                            f"got {constructor!r}")
        if not schedules and not named:
            raise TypeError("Scheduler: give at least one schedule, e.g. Scheduler(Descent, "
                            "Exp(0.1, 0.5)) or Scheduler(Momentum, eta=..., rho=...)")
        self.constructor = constructor
        self.schedules = tuple(_as_schedule("Scheduler", f"schedule {i}", s)
                               for i, s in enumerate(schedules))
        self.named = {k: _as_schedule("Scheduler", f"schedule {k}", s) for k, s in named.items()}
        self.update_func = None
        self.opt = self._build(1)
        if not isinstance(self.opt, AbstractOptimiser):
            raise TypeError(f"Scheduler: {constructor!r} returned {self.opt!r}, which is not "
                            "an optimiser")

    def _init_v03(self, schedule, rest, update_func, named) -> None:
        if len(rest) != 1 or named:
            raise TypeError("Scheduler: the v0.3 form is Scheduler(schedule, opt, "
                            "update_func=...)")
        self.schedule = _callable("Scheduler", "schedule", schedule)
        self.opt = rest[0]
        if update_func is None:
            if not hasattr(self.opt, "eta"):
                raise TypeError(f"Scheduler: {type(self.opt).__name__} has no eta to "
                                "schedule; pass update_func=lambda opt, value: ...")
            update_func = _set_eta
        self.update_func = _callable("Scheduler", "update_func", update_func)
        self.constructor = None

    @property
    def optim(self):
        """The inner optimiser (v0.3's field name)."""
        return self.opt

    def _build(self, t: int):
        args = [s(t) for s in self.schedules]
        kwargs = {k: s(t) for k, s in self.named.items()}
        return self.constructor(*args, **kwargs)

    def apply_(self, x, Δ):
        t = self.state.get(x, 1)
        if self.update_func is not None:
            self.update_func(self.opt, self.schedule(t))
        else:
            _transplant(self._build(t), self.opt)
        Δ = self.opt.apply_(x, Δ)
        self.state[x] = t + 1
        return Δ

    def state_dict(self) -> dict:
        """``{"state": d, "opt": opt}``: ``d`` maps each parameter to the ``t`` of its next
        step (an :class:`~minigrad.IdDict`); ``opt`` is the inner optimiser itself (which
        saves its own state).

        >>> import numpy as np, minigrad as mg
        >>> from minigrad.schedules import Scheduler, Exp
        >>> w = mg.param([1.0]); opt = Scheduler(mg.Descent, Exp(0.1, 0.5))
        >>> _ = mg.update_(opt, w, np.array([1.0])); opt.state_dict()["state"][w]
        2
        """
        return {"state": self.state, "opt": self.opt}

    def check_state_dict(self, state, name=None):
        """Check ``state`` (as :meth:`state_dict` returns it, with this scheduler's own
        ``opt``; every ``t`` an integer >= 1) and return a function that loads it."""
        if not isinstance(state, dict) or sorted(state) != ["opt", "state"]:
            raise ValueError("Scheduler: the state is a dict with 'state' and 'opt', got "
                             f"{str(state)[:80]}")
        if state["opt"] is not self.opt:
            raise ValueError("Scheduler: the state's 'opt' must be this scheduler's own "
                             "optimiser (load its state with its own load_state_dict)")
        counters = state["state"]
        if not isinstance(counters, IdDict):
            raise ValueError("Scheduler: the step counters are not keyed by parameters (an "
                             "IdDict)")
        loaded = IdDict()
        for p, t in counters.items():
            where = f"the step counter of {name(p)}" if name else "a step counter"
            loaded[p] = _count("Scheduler", where, t)

        def commit():
            self.state = loaded
        return commit

    def load_state_dict(self, state) -> None:
        """See :meth:`check_state_dict`."""
        self.check_state_dict(state)()

    def __repr__(self) -> str:
        if self.update_func is not None:
            return f"Scheduler({self.schedule!r}, {self.opt!r})"
        parts = [getattr(self.constructor, "__name__", repr(self.constructor))]
        parts += [repr(s) for s in self.schedules]
        parts += [f"{k}={s!r}" for k, s in self.named.items()]
        return f"Scheduler({', '.join(parts)})"

"""MXNet.jl's abstract types, ``OptimizationState``, ``NDArray`` and the checks they share.

Also the two generic functions of MXNet.jl's optimizer API: :func:`get` (Julia's ``Base.get``
on a scheduler) and :func:`update_` (Julia's ``update!``: tick a scheduler, or run one
optimizer step on a state).
"""

from __future__ import annotations

import math

import numpy as np

from ..optimise.rules import slot_values

__all__ = [
    "AbstractOptimizer", "AbstractLearningRateScheduler", "AbstractMomentumScheduler",
    "OptimizationState", "NDArray", "get", "update_",
]


class SavesFields:
    """What the mx types save in checkpoints: their attributes (``__dict__`` and
    ``__slots__``).  ``state_dict()`` returns them (nested schedulers as the objects
    themselves, which save their own state), ``check_state_dict(state)`` checks ``state``
    and returns a function that sets them, ``load_state_dict(state)`` does both.

    The built-in types (``_rebuild = True``) check the values as their constructor does, by
    building one from them; a user-defined subclass gets its attributes back as saved.

    >>> from minigrad import mx
    >>> s = mx.LearningRate.Exp(0.1); s.state_dict()
    {'eta0': 0.1, 'gamma': 0.9, 't': 0}
    >>> s.load_state_dict({"eta0": 0.1, "gamma": 0.9, "t": 5}); s.t
    5
    >>> s.load_state_dict({"eta0": 0.1, "gamma": 1.5, "t": 5})
    Traceback (most recent call last):
    ...
    ValueError: Exp: the state does not fit: LearningRate.Exp: γ (gamma) must be in (0, 1), got 1.5
    """

    __slots__ = ()
    _rebuild = False

    def state_dict(self) -> dict:
        """The attributes, by name (the live values, not copies)."""
        return {**getattr(self, "__dict__", {}), **slot_values(self)}

    def check_state_dict(self, state, name=None):
        """Check ``state`` (the same attribute names; nested schedulers this object's own;
        values a built-in constructor accepts) and return a function that sets them; a
        ``ValueError`` otherwise, before anything changes."""
        owner = type(self).__name__
        current = self.state_dict()
        if not isinstance(state, dict) or sorted(state, key=str) != sorted(current, key=str):
            raise ValueError(f"{owner}: the state has the attributes "
                             f"{sorted(state, key=str) if isinstance(state, dict) else state!r}"
                             f", the object has {sorted(current, key=str)}")
        for attr, value in current.items():
            if hasattr(value, "state_dict") and state[attr] is not value:
                raise ValueError(f"{owner}: the state's {attr} must be this object's own "
                                 "(it loads its own state)")
        values = dict(state)
        if self._rebuild:
            try:
                values = type(self)(**state).state_dict()
            except (TypeError, ValueError) as err:
                raise ValueError(f"{owner}: the state does not fit: {err}") from None

        def commit():
            for attr, value in values.items():
                object.__setattr__(self, attr, value)   # (checked above, as setattr would)
        return commit

    def load_state_dict(self, state) -> None:
        """``check_state_dict(state)``, then set the attributes."""
        self.check_state_dict(state)()


class AbstractOptimizer(SavesFields):
    """Base type for all MXNet-style optimizers (``mx.AbstractOptimizer``).

    A subclass works with :func:`~minigrad.mx.getupdater` once it defines MXNet.jl's internal
    protocol: ``create_state(self, index, W)`` (the state of parameter ``index``, created on
    its first step) and ``update_(self, index, W, grad, state)`` (one step, in place on ``W``;
    note that ``W`` comes before ``grad`` here, while the updater takes ``grad`` first).
    Give it ``scale``, ``clip`` and ``lambda_`` attributes and :func:`~minigrad.mx.normgrad_`
    works on it too.

    >>> import numpy as np, minigrad as mg
    >>> class Halve(mg.mx.AbstractOptimizer):
    ...     def create_state(self, index, W):
    ...         return None
    ...     def update_(self, index, W, grad, state):
    ...         W -= 0.5 * grad
    ...         return W
    >>> descend_ = mg.mx.getupdater(Halve())
    >>> descend_(0, np.ones(2), np.zeros(2))
    array([-0.5, -0.5])
    """

    def create_state(self, index: int, W):
        raise NotImplementedError(
            f"{type(self).__name__} must define create_state(self, index, W)")

    def update_(self, index: int, W, grad, state):
        raise NotImplementedError(
            f"{type(self).__name__} must define update_(self, index, W, grad, state)")


class AbstractLearningRateScheduler(SavesFields):
    """Base type for all learning rate schedulers (``mx.AbstractLearningRateScheduler``).

    A scheduler has ``get()`` (the current η); one with a counter ``t`` is advanced by
    :func:`update_` (``t += 1``).

    >>> import minigrad as mg
    >>> isinstance(mg.mx.LearningRate.Exp(0.1), mg.mx.AbstractLearningRateScheduler)
    True
    """

    def get(self) -> float:
        raise NotImplementedError(f"{type(self).__name__} must define get(self)")


class AbstractMomentumScheduler(SavesFields):
    """Base type for all momentum schedulers (``mx.AbstractMomentumScheduler``).

    >>> import minigrad as mg
    >>> isinstance(mg.mx.Momentum.Null(), mg.mx.AbstractMomentumScheduler)
    True
    """

    def get(self, *t):
        raise NotImplementedError(f"{type(self).__name__} must define get(self)")


def get(sched, *t):
    """Julia's ``get(sched)``: the current learning rate or momentum of a scheduler.

    ``get(NadamScheduler, t)`` takes the iteration count and returns the pair ``(μₜ, μₜ₊₁)``.

    >>> from minigrad import mx
    >>> mx.get(mx.LearningRate.Fixed(0.42)), mx.get(mx.Momentum.Null())
    (0.42, 0.0)
    >>> [round(μ, 7) for μ in mx.get(mx.Momentum.NadamScheduler(), 1)]
    [0.4950808, 0.4951616]
    """
    if not isinstance(sched, (AbstractLearningRateScheduler, AbstractMomentumScheduler)):
        raise TypeError(f"get: expected a learning rate or momentum scheduler, got {sched!r}")
    return sched.get(*t)


def update_(*args):
    """Julia's ``update!`` of the MXNet optimizer API, in its two forms.

    * ``update_(sched)``: advance a scheduler's counter, ``sched.t += 1`` (a scheduler without
      a counter, such as ``LearningRate.Fixed`` or any momentum scheduler, is left as it is).
      Returns the scheduler.  ``fit`` calls it once per epoch or once per batch.
    * ``update_(opt, index, W, grad, state)``: one step of ``opt`` on ``W`` with the state
      made by ``opt.create_state(index, W)``; the weight comes before the gradient here, as
      in MXNet.jl.  :func:`~minigrad.mx.getupdater` is the usual way to run steps.

    >>> from minigrad import mx
    >>> sched = mx.LearningRate.Exp(0.1)
    >>> mx.get(sched), mx.get(mx.update_(sched)), sched.t
    (0.1, 0.09000000000000001, 1)
    """
    if len(args) == 1:
        sched = args[0]
        if not isinstance(sched, (AbstractLearningRateScheduler, AbstractMomentumScheduler)):
            raise TypeError(f"update_: expected a scheduler, got {sched!r}")
        if hasattr(sched, "t"):
            sched.t += 1
        return sched
    if len(args) == 5:
        opt = args[0]
        if not isinstance(opt, AbstractOptimizer):
            raise TypeError(f"update_: expected an mx optimizer first, got {opt!r}")
        return opt.update_(*args[1:])
    raise TypeError(f"update_ takes (sched) or (opt, index, W, grad, state); got {len(args)} "
                    "arguments")


class OptimizationState(SavesFields):
    """Where training stands (``mx.OptimizationState``); :func:`~minigrad.mx.fit` keeps it.

    * ``batch_size``: the size of the mini-batch;
    * ``curr_epoch``: 0 before training, 1 during the first pass through the data, 2 during
      the second, and so on (the MXNet.jl docstring's "second pass ... will be 1" is a typo);
    * ``curr_batch``: the mini-batch count within the epoch: 0 at the start of each epoch, 1
      during the first mini-batch;
    * ``curr_iter``: the total number of mini-batches so far, never reset.

    ``OptimizationState(batch_size)`` starts the three counters at 0.  The optimizers never
    read it (as in MXNet.jl since its optimizer overhaul); callbacks do.

    >>> from minigrad import mx
    >>> mx.OptimizationState(32)
    OptimizationState(batch_size=32, curr_epoch=0, curr_batch=0, curr_iter=0)
    """

    __slots__ = ("batch_size", "curr_epoch", "curr_batch", "curr_iter")
    _rebuild = True

    def __init__(self, batch_size: int, curr_epoch: int = 0, curr_batch: int = 0,
                 curr_iter: int = 0):
        self.batch_size = _count("OptimizationState", "batch_size", batch_size, low=1)
        self.curr_epoch = _count("OptimizationState", "curr_epoch", curr_epoch)
        self.curr_batch = _count("OptimizationState", "curr_batch", curr_batch)
        self.curr_iter = _count("OptimizationState", "curr_iter", curr_iter)

    def __repr__(self) -> str:
        return (f"OptimizationState(batch_size={self.batch_size}, curr_epoch={self.curr_epoch}, "
                f"curr_batch={self.curr_batch}, curr_iter={self.curr_iter})")


def NDArray(x) -> np.ndarray:
    """``mx.NDArray(x)``: a new float32 NumPy array holding ``x`` (MXNet's default dtype).

    The MXNet optimizers take any float32 or float64 NumPy array or trainable array; this
    only spells the seed's ``NDArray(Float32[1, 2, 3, 4])``.

    >>> from minigrad import mx
    >>> mx.NDArray([1, 2, 3, 4])
    array([1., 2., 3., 4.], dtype=float32)
    """
    try:
        return np.array(np.asarray(x), dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise TypeError(f"NDArray: cannot make a float32 array from {x!r}: {err}") from None


# -- checks shared by the optimizers and the schedulers ------------------------------------------

def label(attr: str, greek: str | None) -> str:
    """How an error names a parameter: ``η (eta)``, or just ``clip``."""
    return f"{greek} ({attr})" if greek and greek != attr else attr


def real(owner: str, name: str, value) -> float | int:
    """``value`` as a finite real number (int or float), or a clear error naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    value = value.item() if isinstance(value, (np.integer, np.floating)) else value
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    return value


def checked(owner: str, name: str, value, rule: str):
    """``value`` after checking ``rule``: ``'>0'``, ``'>=0'``, ``'[0,1)'``, ``'(0,1)'``,
    ``'[0,1]'`` or ``'real'``; the error names the owner, the parameter and the value."""
    value = real(owner, name, value)
    ok = {
        ">0": lambda v: v > 0,
        ">=0": lambda v: v >= 0,
        "[0,1)": lambda v: 0 <= v < 1,
        "(0,1)": lambda v: 0 < v < 1,
        "[0,1]": lambda v: 0 <= v <= 1,
        "real": lambda v: True,
    }[rule](value)
    if not ok:
        wanted = {">0": "> 0", ">=0": ">= 0", "[0,1)": "in [0, 1)", "(0,1)": "in (0, 1)",
                  "[0,1]": "in [0, 1]"}[rule]
        raise ValueError(f"{owner}: {name} must be {wanted}, got {value!r}")
    return value


def _count(owner: str, name: str, value, low: int = 0) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{owner}: {name} must be >= {low}, got {value!r}")
    return int(value)


def required(owner: str, values: dict, attr: str, positional, symbol: str, needs: str):
    """The one required argument ``attr``, given positionally (``positional``) or among the
    keywords ``values`` (taken out of them), but not both; ``needs`` says what to pass when it
    is missing, e.g. ``"the momentum μ, e.g. Fixed(0.9)"``."""
    if positional is not None and attr in values:
        raise TypeError(f"{owner} got {symbol} twice (positionally and as a keyword)")
    value = values.pop(attr, positional)
    if value is None:
        raise TypeError(f"{owner} needs {needs}")
    return value

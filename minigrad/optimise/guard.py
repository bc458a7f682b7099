"""``ApplyIfFinite``: skip, or refuse, an update whose gradient is not finite.

optax's ``apply_if_finite`` for minigrad: wrap any optimiser, and a step whose gradient holds a
NaN or an infinity is not taken.  With ``on_nonfinite="skip"`` (the default) the parameters
AND the wrapped optimiser's state stay exactly as they were (no moment update, no ``βp``
advance, no decay counted) and the skip is counted; with ``on_nonfinite="raise"`` a
:class:`NonFiniteGradientError` names the parameter instead.

One ``update_(guard, ps, gs)`` is all or nothing, as in optax: if any parameter's gradient is
not finite, no parameter moves and ``skipped`` grows by one.  Use the guard outermost
(``ApplyIfFinite(Optimiser(...))``, not inside a chain): inside ``Optimiser(...)`` it can only
zero its own stage's step, and later stages still run.
"""

from __future__ import annotations

import math

import numpy as np

from ..tracker import Params, _describe, data
from .rules import AbstractOptimiser
from .step import _operands, update_
from .train import DomainError

__all__ = ["ApplyIfFinite", "NonFiniteGradientError"]

_MODES = ("skip", "raise")


class NonFiniteGradientError(DomainError):
    """A gradient with NaN or infinite values, refused by ``ApplyIfFinite(on_nonfinite="raise")``.

    A :class:`~minigrad.DomainError` (so a ``ValueError``); ``.parameter`` is the parameter's
    name (or description) and ``.nan``/``.inf`` count the bad values.

    >>> import numpy as np, minigrad as mg
    >>> issubclass(mg.NonFiniteGradientError, mg.DomainError)
    True
    """

    def __init__(self, message: str, parameter: str = "", nan: int = 0, inf: int = 0):
        super().__init__(message)
        self.parameter, self.nan, self.inf = parameter, nan, inf


def all_finite(g) -> bool:
    """Whether every value of the array ``g`` is finite (integers always are).

    One sum decides the common case: NaN and ±inf survive a sum, so a finite sum means every
    value is finite; only a non-finite sum (which may also be an overflow) looks element-wise.

    >>> import numpy as np
    >>> all_finite(np.ones(3)), all_finite(np.array([1.0, np.nan])), all_finite(np.full(2, 1e308))
    (True, False, True)
    """
    a = data(g)
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.dtype.kind not in "fc":
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(a, axis=None)
    if math.isfinite(abs(total)):
        return True
    return bool(np.isfinite(a).all())


class ApplyIfFinite(AbstractOptimiser):
    """Wrap ``opt`` so that a step with a NaN or infinite gradient is skipped (or refused).

    ``ApplyIfFinite(opt, on_nonfinite="skip", model=None)``:

    * ``"skip"``: the step is not taken; the parameters and ``opt``'s state are untouched;
      ``skipped`` (the total) and ``consecutive`` (skips since the last step taken) grow by one.
    * ``"raise"``: :class:`NonFiniteGradientError` naming the first parameter whose gradient is
      not finite, before anything changes (nothing is counted).

    ``model`` (optional) names parameters in messages as checkpoints do (``layers.0.weight``,
    see :func:`minigrad.checkpoint.named_params`); without it they are described by position,
    dtype and shape.  Works in ``update_(guard, ps, gs)`` (all or nothing over ``ps``),
    ``update_(guard, p, g)``, ``apply_(guard, x, Δ)`` (a skipped step is all zeros) and
    ``train_``.  Its counters and ``opt``'s state are saved by :func:`minigrad.save`.

    >>> import numpy as np, minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> guard = mg.ApplyIfFinite(mg.Adam(0.1))
    >>> _ = mg.update_(guard, W, np.array([np.nan, 1.0]))      # skipped
    >>> W, guard.skipped, guard.consecutive, len(guard.opt.state)
    (param([1., 2.]), 1, 1, 0)
    >>> _ = mg.update_(guard, W, np.array([1.0, 1.0])); W, guard.consecutive
    (param([0.9, 1.9]), 0)
    """

    def __init__(self, opt, on_nonfinite: str = "skip", *, model=None):
        if not isinstance(opt, AbstractOptimiser):
            raise TypeError(f"ApplyIfFinite: expected an optimiser to wrap, got {opt!r}")
        if getattr(opt, "collective", False):
            # Its step communicates: a rank whose guard skipped would leave the others waiting.
            name = type(opt).__name__
            raise TypeError(f"ApplyIfFinite({name}(...)) would decide on each rank's own "
                            f"gradient; put the guard inside: {name}(ApplyIfFinite(...)) "
                            "decides on the averaged gradient, the same on every rank")
        if on_nonfinite not in _MODES:
            raise ValueError(f"ApplyIfFinite: on_nonfinite must be 'skip' or 'raise', got "
                             f"{on_nonfinite!r}")
        self.opt = opt
        self.on_nonfinite = on_nonfinite
        self.model = model
        self.skipped = 0            # steps skipped in total
        self.consecutive = 0        # steps skipped since the last step taken

    # -- the three entry points ---------------------------------------------------------------
    def _guarded_update(self, x, g):
        """``update_(self, x, g)`` (called by :func:`minigrad.optimise.update_`)."""
        name = f"update_({type(self).__name__})"
        if isinstance(x, (Params, list, tuple)):
            for i, p in enumerate(x):
                gp = g[p]
                if gp is not None and not all_finite(gp):
                    # Check every pair as update_ would, so a skip never hides a bad call.
                    for q in x:
                        if g[q] is not None:
                            _operands(name, q, g[q], True)
                    return self._reject(x, p, gp, f"parameter {i} of {len(x)}")
        elif not all_finite(g):
            _operands(name, x, g, True)
            return self._reject(x, x, g, "the parameter")
        result = update_(self.opt, x, g)
        self.consecutive = 0
        return result

    def apply_(self, x, Δ):
        """Overwrite ``Δ`` with the wrapped optimiser's step, or with zeros if it is skipped."""
        if not all_finite(Δ):
            self._reject(None, x, Δ, "the parameter")
            Δ[...] = 0
            return Δ
        Δ = self.opt.apply_(x, Δ)
        self.consecutive = 0
        return Δ

    # -- helpers ------------------------------------------------------------------------------
    def _reject(self, result, p, g, where: str):
        """Refuse (``on_nonfinite='raise'``) or count as skipped the step whose gradient ``g``
        of parameter ``p`` is not finite; returns ``result``."""
        if self.on_nonfinite == "raise":
            a = np.asarray(data(g))
            self.refuse(p, where, int(np.isnan(a).sum()), int(np.isinf(a).sum()), a.size)
        self.skip()
        return result

    def skip(self) -> None:
        """Count one skipped step (a sharded DistributedOptimiser decides across the ranks
        and calls this and :meth:`refuse` itself).

        >>> import minigrad as mg
        >>> guard = mg.ApplyIfFinite(mg.Descent()); guard.skip()
        >>> guard.skipped, guard.consecutive
        (1, 1)
        """
        self.skipped += 1
        self.consecutive += 1

    def refuse(self, p, where: str, nan: int, inf: int, size: int):
        """Raise :class:`NonFiniteGradientError` for parameter ``p`` (``where`` describes it
        without a model) whose gradient of ``size`` values has ``nan`` NaN and ``inf``
        infinite ones.

        >>> import minigrad as mg
        >>> mg.ApplyIfFinite(mg.Descent()).refuse(mg.param([1.0]), "parameter 1", 1, 0, 1)
        Traceback (most recent call last):
        ...
        minigrad.optimise.guard.NonFiniteGradientError: ApplyIfFinite: the gradient of parameter 1 \
(a param of dtype float64 and shape (1,)) has 1 NaN and 0 infinite value(s) of 1; ...
        """
        name = self._name(p, where)
        raise NonFiniteGradientError(
            f"ApplyIfFinite: the gradient of {name} has {nan} NaN and {inf} infinite "
            f"value(s) of {size}; no parameter was updated (on_nonfinite='raise'; use "
            "'skip' to skip such steps)", name, nan, inf)

    def _name(self, p, where: str) -> str:
        if self.model is not None:
            from ..checkpoint import named_params
            for name, q in named_params(self.model):
                if q is p:
                    return f"{name} ({_describe(p)})"
        return f"{where} ({_describe(p)})"

    # -- saving and restoring: the checkpoint format of minigrad.checkpoint ------------------
    def state_dict(self) -> dict:
        """``{"skipped": n, "consecutive": k, "opt": opt}``: the counters and the wrapped
        optimiser itself (which saves its own state).

        >>> import minigrad as mg
        >>> mg.ApplyIfFinite(mg.Descent()).state_dict()
        {'skipped': 0, 'consecutive': 0, 'opt': Descent(eta=0.1)}
        """
        return {"skipped": self.skipped, "consecutive": self.consecutive, "opt": self.opt}

    def check_state_dict(self, state, name=_describe):
        """Check ``state`` (as :meth:`state_dict` returns it, with this guard's own ``opt``)
        and return a function of no arguments that sets the counters; a ``ValueError`` names
        a counter that is not an integer with ``0 <= consecutive <= skipped``.

        >>> import minigrad as mg
        >>> g = mg.ApplyIfFinite(mg.Descent())
        >>> g.load_state_dict({"skipped": 3, "consecutive": 1, "opt": g.opt}); g.skipped
        3
        """
        if not isinstance(state, dict) or sorted(state) != ["consecutive", "opt", "skipped"]:
            raise ValueError("ApplyIfFinite: the state is a dict with 'skipped', 'consecutive' "
                             f"and 'opt', got {str(state)[:80]}")
        if state["opt"] is not self.opt:
            raise ValueError("ApplyIfFinite: the state's 'opt' must be this guard's own "
                             "optimiser (load its state with its own load_state_dict)")
        skipped, consecutive = state["skipped"], state["consecutive"]
        for field, value in (("skipped", skipped), ("consecutive", consecutive)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"ApplyIfFinite: {field} must be an integer >= 0, the state "
                                 f"has {value!r}")
        if consecutive > skipped:
            raise ValueError(f"ApplyIfFinite: consecutive ({consecutive}) cannot exceed "
                             f"skipped ({skipped})")

        def commit():
            self.skipped, self.consecutive = int(skipped), int(consecutive)
        return commit

    def load_state_dict(self, state) -> None:
        """See :meth:`check_state_dict`."""
        self.check_state_dict(state)()

    def __repr__(self) -> str:
        return (f"ApplyIfFinite({self.opt!r}, on_nonfinite={self.on_nonfinite!r}, "
                f"skipped={self.skipped})")

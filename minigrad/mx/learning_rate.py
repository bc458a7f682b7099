"""``mx.LearningRate``: learning rate schedulers (MXNet.jl's module of the same name).

``get(sched)`` is the current η; ``update_(sched)`` advances the counter ``t`` of a scheduler
that has one (``Exp``, ``Inv``); ``Fixed`` has none.  ``t`` starts at 0 and nothing but
``update_`` advances it: :func:`minigrad.mx.fit` calls it once per epoch (``η_decay="epoch"``,
the default) or once per mini-batch (``η_decay="batch"``), so the first epoch or batch uses η₀.
The optimizers only read ``get(sched)``.

>>> from minigrad import mx
>>> s = mx.LearningRate.Exp(1.0)
>>> [round(mx.get(mx.update_(s)), 6) for _ in range(3)]
[0.9, 0.81, 0.729]
"""

from __future__ import annotations

from ..keywords import resolve
from .base import (
    AbstractLearningRateScheduler,
    _count,
    checked,
    get,
    required,
    update_,
)

__all__ = ["Fixed", "Exp", "Inv", "get", "update_", "initlrsched"]


class Fixed(AbstractLearningRateScheduler):
    """``LearningRate.Fixed(η)``: always returns the same learning rate η (> 0).

    >>> from minigrad import mx
    >>> s = mx.LearningRate.Fixed(0.42)
    >>> mx.get(s), mx.get(mx.update_(s))
    (0.42, 0.42)
    """

    _rebuild = True

    def __init__(self, eta=None, **kwargs):
        values = resolve("LearningRate.Fixed", kwargs, {"eta": "eta", "η": "eta"})
        eta = required("LearningRate.Fixed", values, "eta", eta, "η",
                       "the learning rate η, e.g. Fixed(0.01)")
        self.eta = float(checked("LearningRate.Fixed", "η (eta)", eta, ">0"))

    def get(self) -> float:
        """The learning rate η."""
        return self.eta

    def __repr__(self) -> str:
        return f"LearningRate.Fixed({self.eta!r})"


def _eta0(owner: str, eta0, values: dict) -> float:
    eta0 = required(owner, values, "eta0", eta0, "η₀",
                    f"the initial learning rate η₀, e.g. {owner}(0.1)")
    return float(checked(owner, "η₀ (eta0)", eta0, ">0"))


class Exp(AbstractLearningRateScheduler):
    """``LearningRate.Exp(η₀; γ=0.9, t=0)``: exponential decay, ``η_t = η₀·γ^t``, 0 < γ < 1.

    ``t`` counts epochs or iterations (see the module notes).  Fields ``eta0, gamma, t``.

    >>> from minigrad import mx
    >>> s = mx.LearningRate.Exp(0.1)
    >>> mx.get(s), mx.get(mx.update_(s)), s.t
    (0.1, 0.09000000000000001, 1)
    """

    _rebuild = True

    def __init__(self, eta0=None, **kwargs):
        owner = "LearningRate.Exp"
        values = resolve(owner, kwargs, {"eta0": "eta0", "η0": "eta0", "gamma": "gamma",
                                          "γ": "gamma", "t": "t"})
        self.eta0 = _eta0(owner, eta0, values)
        self.gamma = float(checked(owner, "γ (gamma)", values.get("gamma", 0.9), "(0,1)"))
        self.t = _count(owner, "t", values.get("t", 0))

    def get(self) -> float:
        """``η₀·γ^t``."""
        return self.eta0 * self.gamma ** self.t

    def __repr__(self) -> str:
        return f"LearningRate.Exp({self.eta0!r}, gamma={self.gamma!r}, t={self.t!r})"


class Inv(AbstractLearningRateScheduler):
    """``LearningRate.Inv(η₀; γ=0.9, p=0.5, t=0)``: inverse decay,
    ``η_t = η₀·(1 + γ·t)^(−p)``, with 0 < γ < 1 and p ≥ 0.  Fields ``eta0, gamma, p, t``.

    >>> from minigrad import mx
    >>> s = mx.LearningRate.Inv(1.0)
    >>> [round(mx.get(s), 6)] + [round(mx.get(mx.update_(s)), 6) for _ in range(2)]
    [1.0, 0.725476, 0.597614]
    """

    _rebuild = True

    def __init__(self, eta0=None, **kwargs):
        owner = "LearningRate.Inv"
        values = resolve(owner, kwargs, {"eta0": "eta0", "η0": "eta0", "gamma": "gamma",
                                          "γ": "gamma", "p": "p", "t": "t"})
        self.eta0 = _eta0(owner, eta0, values)
        self.gamma = float(checked(owner, "γ (gamma)", values.get("gamma", 0.9), "(0,1)"))
        self.p = float(checked(owner, "p", values.get("p", 0.5), ">=0"))
        self.t = _count(owner, "t", values.get("t", 0))

    def get(self) -> float:
        """``η₀·(1 + γ·t)^(−p)``."""
        return self.eta0 * (1 + self.gamma * self.t) ** (-self.p)

    def __repr__(self) -> str:
        return (f"LearningRate.Inv({self.eta0!r}, gamma={self.gamma!r}, p={self.p!r}, "
                f"t={self.t!r})")


def initlrsched(eta) -> Fixed:
    """The default learning rate scheduler of an optimizer built with ``η``: ``Fixed(η)``.

    >>> from minigrad import mx
    >>> mx.LearningRate.initlrsched(0.01)
    LearningRate.Fixed(0.01)
    """
    return Fixed(eta)


# ``get`` and ``update_`` are the generic functions of minigrad.mx, re-exported here as in Julia.
get = get
update_ = update_

"""``mx.Momentum``: momentum schedulers (MXNet.jl's module of the same name).

``get(sched)`` is the current momentum; ``get(NadamScheduler, t)`` takes the iteration count
and returns the pair ``(μₜ, μₜ₊₁)``.  ``initmomsched(μ)`` is the default scheduler of an
optimizer built with ``μ``: ``Null()`` when μ is zero (no momentum at all), else ``Fixed(μ)``.

>>> from minigrad import mx
>>> mx.Momentum.initmomsched(0), mx.Momentum.initmomsched(0.9)
(Momentum.Null(), Momentum.Fixed(0.9))
"""

from __future__ import annotations

from ..keywords import resolve
from .base import AbstractMomentumScheduler, checked, get, required, update_

__all__ = ["Null", "Fixed", "NadamScheduler", "get", "update_", "initmomsched"]


class Null(AbstractMomentumScheduler):
    """``Momentum.Null()``: momentum 0, and the explicit sign that momentum is not used at all
    (``SGD`` with a ``Null`` scheduler keeps no velocity state).

    >>> from minigrad import mx
    >>> mx.get(mx.Momentum.Null())
    0.0
    """

    _rebuild = True

    def get(self) -> float:
        """Always ``0.0``."""
        return 0.0

    def __eq__(self, other) -> bool:
        return type(other) is Null

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "Momentum.Null()"


class Fixed(AbstractMomentumScheduler):
    """``Momentum.Fixed(μ)``: always returns the same momentum μ (≥ 0).  Field ``mu``.

    >>> from minigrad import mx
    >>> mx.get(mx.Momentum.Fixed(42))
    42.0
    """

    _rebuild = True

    def __init__(self, mu=None, **kwargs):
        values = resolve("Momentum.Fixed", kwargs, {"mu": "mu", "μ": "mu"})
        mu = required("Momentum.Fixed", values, "mu", mu, "μ", "the momentum μ, e.g. Fixed(0.9)")
        self.mu = float(checked("Momentum.Fixed", "μ (mu)", mu, ">=0"))

    def get(self) -> float:
        """The momentum μ."""
        return self.mu

    def __repr__(self) -> str:
        return f"Momentum.Fixed({self.mu!r})"


class NadamScheduler(AbstractMomentumScheduler):
    """``NadamScheduler(; μ=0.99, δ=0.004, γ=0.5, α=0.96)``: Nesterov-accelerated adaptive
    momentum (Dozat, "Incorporating Nesterov Momentum into Adam")::

        μₜ = μ·(1 − γ·α^(t·δ))

    with 0 ≤ μ < 1, δ ≥ 0, 0 ≤ γ ≤ 1, 0 ≤ α ≤ 1.  ``get(n, t)`` returns ``(μₜ, μₜ₊₁)``;
    ``t`` is the iteration count, which :class:`~minigrad.mx.Nadam` keeps per parameter.
    With γ = 0.5 the momentum is about μ/2, not μ.  Fields ``mu, delta, gamma, alpha``.

    >>> from minigrad import mx
    >>> n = mx.Momentum.NadamScheduler(μ=0.99)
    >>> [round(μ, 7) for μ in mx.get(n, 2)]
    [0.4951616, 0.4952424]
    """

    _rebuild = True

    def __init__(self, **kwargs):
        owner = "NadamScheduler"
        values = resolve(owner, kwargs, {"mu": "mu", "μ": "mu", "delta": "delta", "δ": "delta",
                                          "gamma": "gamma", "γ": "gamma", "alpha": "alpha",
                                          "α": "alpha"})
        self.mu = float(checked(owner, "μ (mu)", values.get("mu", 0.99), "[0,1)"))
        self.delta = float(checked(owner, "δ (delta)", values.get("delta", 0.004), ">=0"))
        self.gamma = float(checked(owner, "γ (gamma)", values.get("gamma", 0.5), "[0,1]"))
        self.alpha = float(checked(owner, "α (alpha)", values.get("alpha", 0.96), "[0,1]"))

    def get(self, *t) -> tuple:
        """``(μₜ, μₜ₊₁)`` for iteration count ``t``."""
        if len(t) != 1:
            raise TypeError("get(NadamScheduler, t) needs the iteration count t")
        t = t[0]
        return (self.mu * (1.0 - self.gamma * self.alpha ** (t * self.delta)),
                self.mu * (1.0 - self.gamma * self.alpha ** ((t + 1) * self.delta)))

    def __repr__(self) -> str:
        return (f"Momentum.NadamScheduler(mu={self.mu!r}, delta={self.delta!r}, "
                f"gamma={self.gamma!r}, alpha={self.alpha!r})")


def initmomsched(mu) -> AbstractMomentumScheduler:
    """``Null()`` if ``μ`` is zero, else ``Fixed(μ)``.

    >>> from minigrad import mx
    >>> mx.Momentum.initmomsched(0.0)
    Momentum.Null()
    """
    return Null() if mu == 0 else Fixed(mu)


get = get
update_ = update_

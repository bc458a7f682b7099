"""Optimisers and training (``minigrad.optimise`` = ``Flux.Optimise``).

Sign convention: Flux.Optimise's ``update_`` SUBTRACTS the step; Tracker's
:func:`minigrad.tracker.update_` adds it.
"""

from __future__ import annotations

import numpy as np

from ..tracker import checked_target, data

__all__ = ["update_"]


def update_(x, x̄):
    """Flux's ``update!(x, x̄)``: ``x .-= x̄`` in place; returns ``x``.

    ``x`` is a trainable array or a writable float NumPy array; ``x̄`` must broadcast to its
    shape.  Nothing is changed when the check fails.

    >>> import minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> mg.optimise.update_(W, [0.5, 0.5])
    param([0.5, 1.5])
    """
    target = checked_target("update_", x, x̄)
    np.subtract(target, data(x̄), out=target)
    return x

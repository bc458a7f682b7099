"""Flux's ``param``, ``gradient`` and ``withgradient`` (Zygote semantics: parameters are
recorded only inside a gradient computation, and the loss value is not checked).

The engine is :func:`minigrad.tracker.differentiate`; :mod:`minigrad.tracker` has the Tracker
flavour of all three: parameters recorded everywhere, a NaN or infinite loss raising.
"""

from __future__ import annotations

from .tracker import Param, differentiate, param_value

__all__ = ["param", "gradient", "withgradient"]


def param(x, dtype=None) -> Param:
    """A new trainable array holding a copy of ``x``.

    Integers and booleans become float64, as Tracker's ``float.(xs)``; ``dtype`` overrides
    (float32 and float64 only: the optimisers' kernels run on those).  Operations on it are
    recorded only inside :func:`gradient` and friends; elsewhere they cost what NumPy costs.

    >>> import minigrad as mg
    >>> mg.param([1, 2, 3])
    param([1., 2., 3.])
    """
    return Param(param_value(x, dtype))


def gradient(f, *args):
    """Gradient of the scalar ``f`` with respect to parameters or arguments.

    * Implicit form (Flux): ``gradient(lambda: loss(x, y), ps)`` with ``ps`` a
      :class:`~minigrad.Params` returns :class:`~minigrad.Grads`; ``grads[W]`` is ``∂loss/∂W``
      (``None`` if the loss does not depend on ``W``).
    * Explicit form (Zygote): ``gradient(f, x1, x2, ...)`` returns a tuple with ``∂f/∂xᵢ`` for
      each argument (fresh copies of the arguments are differentiated).

    ``f`` must return a scalar.  A NaN loss gives NaN gradients, as in Zygote; use
    :func:`minigrad.tracker.gradient` to have it raise instead.  Calling ``gradient`` never
    touches the parameters' ``.grad`` (only :func:`minigrad.tracker.back_` accumulates there).

    >>> import numpy as np, minigrad as mg
    >>> W = mg.param([[1.0, 2.0]]); x = np.array([3.0, 4.0])
    >>> mg.gradient(lambda: mg.sum(W @ x), mg.params(W))[W]
    array([[3., 4.]])
    >>> mg.gradient(lambda a, b: mg.sum(a * b), [1.0, 2.0], [3.0, 4.0])
    (array([3., 4.]), array([1., 2.]))
    """
    return differentiate(f, args, check_finite=False)[1]


def withgradient(f, *args):
    """Like :func:`gradient`, but return ``(value, grads)``: the loss and its gradients.

    >>> import minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> value, gs = mg.withgradient(lambda: mg.sum(W * W), mg.params(W))
    >>> float(value), gs[W]
    (5.0, array([2., 4.]))
    """
    return differentiate(f, args, check_finite=False)

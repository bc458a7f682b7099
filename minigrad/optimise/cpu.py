"""The CPU backend: optimiser steps on NumPy arrays.

:mod:`minigrad.optimise.step` and :mod:`minigrad.optimise.flat` ask an array's backend
(:func:`minigrad.optimise.backend.backend_of`) for everything that touches memory: checks,
allocation, copies, norms and the kernel call.  This module and :mod:`minigrad.optimise.cuda`
answer the same questions, with the same function names, for host and GPU arrays.

>>> import numpy as np
>>> x = np.ones(3); run((), True, x, np.full(3, 0.25), [], []); x
array([0.75, 0.75, 0.75])
"""

from __future__ import annotations

import math

import numpy as np

from ..tracker import _describe, checked_target, data
from .kernels import as_hyper
from .kernels import run as run_kernel

__all__ = ["NAME", "operands", "flat_view", "empty", "full", "copy", "gather", "assign",
           "store", "l2norm", "pnorm", "run", "subtract", "update"]

#: Where this backend's arrays live, for error messages.
NAME = "the host"

#: The dtypes of the CPU kernels (native byte order).
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def operands(name: str, x, g, update: bool) -> tuple:
    """The storage of host parameter ``x`` and the gradient ``g`` as arrays, after every check
    on them: same shape, same float32 or float64 dtype, ``x`` writable and C-contiguous (and,
    for ``apply_``, which writes the step into it, ``g`` too).

    >>> import numpy as np
    >>> operands("update_", np.zeros(2), [1.0, 2.0], True)[1]
    array([1., 2.])
    """
    target, gd = data(x), data(g)
    if (type(target) is np.ndarray and type(gd) is np.ndarray and target.dtype in DTYPES
            and gd.shape == target.shape and gd.dtype == target.dtype
            and target.flags.writeable and target.flags.c_contiguous
            and (update or (gd.flags.writeable and gd.flags.c_contiguous))):
        return target, gd       # the common case, checked cheaply
    target = checked_target(name, x, g)
    if target.dtype not in DTYPES:
        raise TypeError(f"{name}: the optimisers' kernels take float32 or float64 parameters, "
                        f"got {_describe(x)}; convert it (for example "
                        "minigrad.param(x, dtype=np.float32))")
    if not isinstance(gd, np.ndarray):
        gd = np.asarray(gd)
    if gd.shape != target.shape:
        raise ValueError(f"{name}: the gradient has shape {gd.shape} but the parameter "
                         f"({_describe(x)}) has shape {target.shape}")
    if gd.dtype != target.dtype:
        raise TypeError(f"{name}: the gradient has dtype {gd.dtype} but the parameter "
                        f"({_describe(x)}) has dtype {target.dtype}; convert one of them")
    if not target.flags.c_contiguous:
        raise ValueError(f"{name}: the parameter ({_describe(x)}) must be C-contiguous")
    if not update and not (gd.flags.writeable and gd.flags.c_contiguous):
        raise ValueError(f"{name}: Δ must be a writable, C-contiguous array")
    return target, gd


def flat_view(a: np.ndarray) -> np.ndarray:
    """``a`` as a flat, writable, C-contiguous array: a view when it is one, else a copy (so
    each kernel is compiled for one kind of array only).

    >>> a = np.zeros((2, 3)); flat_view(a).base is a, flat_view(a.T).base is a
    (True, False)
    """
    if a.flags.c_contiguous and a.flags.writeable:
        return a.reshape(-1)
    return np.array(a, order="C").reshape(-1)


def empty(like, size: int) -> np.ndarray:
    """A new flat array of ``size`` elements of ``like``'s dtype.

    >>> empty(np.zeros(2, np.float32), 5).shape, empty(np.zeros(2, np.float32), 5).dtype
    ((5,), dtype('float32'))
    """
    return np.empty(size, like.dtype)


def full(size: int, fill, dtype) -> np.ndarray:
    """A new flat array of ``size`` elements, all ``fill`` (optimiser state).

    >>> full(3, 0.5, np.float32)
    array([0.5, 0.5, 0.5], dtype=float32)
    """
    return np.full(size, fill, dtype=dtype)


def copy(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` (a step's scratch copy of the gradient).

    >>> a = np.ones(2); copy(a) is not a and bool((copy(a) == a).all())
    True
    """
    return a.copy()


def assign(part: np.ndarray, a) -> None:
    """Copy array ``a`` (any shape, ``part.size`` elements) into the flat ``part``.

    >>> part = np.zeros(4); assign(part, np.ones((2, 2))); part
    array([1., 1., 1., 1.])
    """
    part[...] = np.reshape(a, -1)


def gather(arrays: list, out: np.ndarray) -> np.ndarray:
    """The arrays, flattened, one after the other in ``out``; returns ``out``.

    >>> gather([np.ones((1, 2)), np.zeros(1)], np.empty(3))
    array([1., 1., 0.])
    """
    return np.concatenate([np.reshape(a, -1) for a in arrays], out=out)


def store(delta: np.ndarray, result, stage) -> None:
    """Make ``result``, what a Python stage's ``apply_`` returned, the step ``delta``.

    >>> delta = np.zeros(2); store(delta, [1.0, 2.0], None); delta
    array([1., 2.])
    """
    delta[...] = result


def l2norm(a) -> float:
    """The L2 norm of ``a`` as a Python float, even where the squares overflow.

    >>> l2norm(np.array([3e200, 4e200])) / 1e200      # (the squares overflow float64)
    5.0
    """
    with np.errstate(over="ignore"):
        norm = float(np.linalg.norm(a))
    if norm == math.inf:        # the squares overflowed: scale first (an inf element stays inf)
        big = float(np.max(np.abs(a)))
        if math.isfinite(big):
            norm = big * float(np.linalg.norm(a / np.asarray(big, a.dtype)))
    return norm


def pnorm(a, p: float) -> float:
    """The ``p``-norm ``(Σ|aᵢ|ᵖ)^(1/p)`` of ``a`` as a Python float (``p = inf``: the largest
    ``|aᵢ|``; ``p = 2``: :func:`l2norm`), even where the powers overflow: the elements are
    scaled by the largest first.  A NaN element gives NaN, an infinite one inf.

    >>> pnorm(np.array([3.0, -4.0]), 1), pnorm(np.array([3.0, -4.0]), math.inf)
    (7.0, 4.0)
    """
    if p == 2:
        return l2norm(a)
    big = float(np.max(np.abs(a))) if a.size else 0.0
    if p == math.inf or not 0 < big < math.inf:
        return big
    return big * float(np.sum((np.abs(a) / np.asarray(big, a.dtype)) ** p)) ** (1 / p)


def run(types: tuple, update: bool, x: np.ndarray, d: np.ndarray, hypers: list,
        states: list) -> None:
    """One fused pass of the rule types ``types`` over the flat arrays (see
    :func:`minigrad.optimise.kernels.run`).

    >>> import minigrad as mg
    >>> x = np.ones(2); run((mg.Descent,), True, x, np.array([1.0, 2.0]), [0.5], []); x
    array([0.5, 0. ])
    """
    run_kernel(types, update, x, d, as_hyper(hypers, x.dtype), *states)


def subtract(x: np.ndarray, d: np.ndarray) -> None:
    """``x -= d`` in place.

    >>> x = np.ones(2); subtract(x, np.array([0.5, 1.0])); x
    array([0.5, 0. ])
    """
    np.subtract(x, d, out=x)


def update(x, x̄):
    """``update_(x, x̄)``: ``x -= x̄`` in place (``x̄`` may broadcast); returns ``x``.

    >>> update(np.ones(2), 0.25)
    array([0.75, 0.75])
    """
    target = checked_target("update_", x, x̄)
    np.subtract(target, data(x̄), out=target)
    return x

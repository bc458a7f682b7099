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
from . import kernels
from .kernels import as_hyper, helper
from .kernels import run as run_kernel

__all__ = ["NAME", "operands", "flat_view", "empty", "full", "copy", "gather", "assign",
           "store", "l2norm", "pnorm", "norms", "block_sums", "block_kernel", "block_maxes",
           "NORM_BLOCK", "NORM_LANES", "run", "subtract", "update"]

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
    target, _ = checked_target(name, x, g)
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


# -- norms: one definition, the same bits on one process and summed from the ranks' parts --------

#: The canonical norm's block: each array is cut into blocks of this many elements from its
#: first, and each block is summed on its own (see :func:`norms`).  Large enough that the
#: per-block work outside the loop does not count, small enough that a rank of a sharded step
#: fetches at most this many elements from the next rank (minigrad.distributed).
NORM_BLOCK = 1 << 16

#: The float64 accumulators of a block's sum (a power of two): element ``i`` of a block goes
#: to lane ``i mod NORM_LANES`` (counted from the block's start), and the lanes are added
#: pairwise at the end.  Independent lanes are what let the compiler vectorise the loop
#: without reordering a sum (which it must not: the order is the definition).
NORM_LANES = 64

_BLOCK_SUMS = '''\
# Generated by minigrad.optimise.cpu; safe to delete.
# For arrays of {dtype}, {variant}.
import numpy as np
from numba import njit, prange


@njit(cache=True, error_model="numpy", parallel={parallel})
def kernel(a, block, p, big, out):
    # out[k]: the sum of (|a[i]| / big) ** p over block k (elements k * block onwards), in
    # float64, in a fixed order: element i goes to lane (i - start) % {lanes}, then the lanes
    # are added pairwise.  The block's whole rows of lanes are a 2-D view, whose inner loop
    # the compiler vectorises; with p = 2 and big = 1 (the common case) the terms are a[i] * a[i]
    # (the same bits as |a[i]| / 1 squared).  Blocks are independent: each thread sums whole
    # blocks, so the bits do not depend on the threads.
    plain = p == 2.0 and big == 1.0
    for k in {loop}(out.size):
        start = k * block
        stop = min(start + block, a.size)
        whole = (stop - start) // {lanes}
        rows = a[start:start + whole * {lanes}].reshape(whole, {lanes})
        lanes = np.zeros({lanes})
        if plain:
            for r in range(whole):
                row = rows[r]
                for j in range({lanes}):
                    v = np.float64(row[j])
                    lanes[j] += v * v
        else:
            for r in range(whole):
                row = rows[r]
                for j in range({lanes}):
                    t = abs(np.float64(row[j])) / big
                    lanes[j] += t * t if p == 2.0 else t ** p
        tail = start + whole * {lanes}
        for j in range(stop - tail):
            t = abs(np.float64(a[tail + j])) / big
            lanes[j] += t * t if p == 2.0 else t ** p
        width = {lanes}
        while width > 1:
            width //= 2
            for j in range(width):
                lanes[j] += lanes[j + width]
        out[k] = lanes[0]
'''


def _float_view(a) -> np.ndarray:
    """``a`` as a flat, writable, C-contiguous float32 or float64 array (other dtypes become
    float64, exactly for every float16 and for integers up to 2⁵³)."""
    a = np.asarray(a)
    if a.dtype not in DTYPES:
        a = a.astype(np.float64)
    return flat_view(a)


def block_sums(a, p: float = 2.0, big: float = 1.0, block: int | None = None) -> np.ndarray:
    """The sums of ``(|aᵢ|/big)ᵖ`` over each block of ``block`` (:data:`NORM_BLOCK`) elements
    of array ``a`` (flattened; the last block may be shorter), from its first element, in
    float64: the parts of :func:`norms`.  Each is summed in a fixed order (:data:`NORM_LANES`
    lanes, then pairwise), so the same block gives the same bits wherever it lies in memory.

    >>> block_sums(np.array([3.0, 4.0])), block_sums(np.array([3.0, -4.0]), 1, 2.0)
    (array([25.]), array([3.5]))
    """
    a = _float_view(a)
    block = NORM_BLOCK if block is None else block
    out = np.empty(-(-a.size // block))
    # (the fused kernels' threading policy: the bits are the same either way)
    kernel = block_kernel(a.dtype, a.size >= kernels.PARALLEL_THRESHOLD)
    kernel(a, block, float(p), float(big), out)
    return out


def block_kernel(dtype, parallel: bool):
    """The compiled kernel behind :func:`block_sums` for arrays of ``dtype``, serial or
    multi-threaded (over blocks), loaded or compiled at its first use in the process:
    ``kernel(a, block, p, big, out)`` writes the block sums of ``a`` into ``out``.

    >>> out = np.empty(1)
    >>> block_kernel(np.float64, False)(np.array([3.0, 4.0]), 4, 2.0, 1.0, out); out
    array([25.])
    """
    dtype = np.dtype(dtype)
    source = _BLOCK_SUMS.format(dtype=dtype.name, lanes=NORM_LANES, parallel=parallel,
                                loop="prange" if parallel else "range",
                                variant="multi-threaded" if parallel else "serial")
    return helper(source, lambda k: k(np.zeros(1, dtype), 1, 2.0, 1.0, np.zeros(1)),
                  "the compiled code of the norm's block sums")


def block_maxes(a, block: int | None = None) -> np.ndarray:
    """The largest ``|aᵢ|`` of each block of ``block`` (:data:`NORM_BLOCK`) elements of array
    ``a`` (flattened), in float64; NaN where the block holds one.

    >>> block_maxes(np.array([3.0, -4.0, 1.0]), block=2)
    array([4., 1.])
    """
    a = np.reshape(a, -1)
    block = NORM_BLOCK if block is None else block
    return np.array([np.max(np.abs(a[s:s + block])) for s in range(0, a.size, block)],
                    np.float64)


def _in_order(parts: np.ndarray) -> float:
    """The sum of ``parts``, added one after the other from the first (inf if it overflows:
    :func:`norms` then scales)."""
    if not parts.size:
        return 0.0
    with np.errstate(over="ignore"):
        return float(np.add.accumulate(parts)[-1])


def _largest(maxes: np.ndarray) -> float:
    """The largest of ``maxes`` (NaN if one is; 0 for none)."""
    return float(np.max(maxes)) if maxes.size else 0.0


def norms(p: float, count: int, sums, maxes) -> list:
    """The ``p``-norms of ``count`` arrays, from the parts of their blocks: ``sums(bigs)``
    gives each array's :func:`block_sums` with ``big = bigs[j]`` (anything where ``bigs[j]`` is
    ``None``), ``maxes()`` each array's :func:`block_maxes`.  This is minigrad's one definition
    of a host array's norm, :func:`pnorm` (one array, its parts at hand) and a sharded step's
    ClipNorm (parts computed by the ranks that hold them) alike:

    * ``p = 2``: ``√(Σₖ sₖ)``, ``sₖ`` the block sums of ``aᵢ²`` added in order; where that sum
      overflows, ``b·√(Σₖ sₖ')`` with ``b`` the largest ``|aᵢ|`` and ``sₖ'`` the block sums of
      ``(aᵢ/b)²`` (an infinite element gives inf, a NaN gives NaN);
    * ``p = inf``: ``b``;
    * any other ``p``: ``b·(Σₖ sₖ')^(1/p)``, ``sₖ'`` the block sums of ``(|aᵢ|/b)ᵖ`` (``b`` itself
      when it is 0, inf or NaN).

    At most three calls (``sums``; ``maxes`` or not; ``sums`` again or not), each decided by
    what the earlier ones returned, so ranks that get the same parts make the same calls.

    >>> a = np.array([3.0, 4.0])
    >>> norms(2, 1, lambda bigs: [block_sums(a, 2, bigs[0])], lambda: [block_maxes(a)])
    [5.0]
    """
    if p == 2:
        totals = [_in_order(s) for s in sums([1.0] * count)]
        result = [math.sqrt(t) for t in totals]
        if math.inf not in totals:
            return result
        bigs = [b if t == math.inf and 0 < b < math.inf else None
                for b, t in zip(map(_largest, maxes()), totals, strict=True)]
    else:
        result = [_largest(m) for m in maxes()]
        if p == math.inf:
            return result
        bigs = [b if 0 < b < math.inf else None for b in result]
    if any(b is not None for b in bigs):
        for j, s in enumerate(sums(bigs)):
            if bigs[j] is not None:
                total = _in_order(s)
                result[j] = bigs[j] * (math.sqrt(total) if p == 2 else total ** (1 / p))
    return result


def pnorm(a, p: float) -> float:
    """The ``p``-norm ``(Σ|aᵢ|ᵖ)^(1/p)`` of array ``a`` as a Python float (``p = inf``: the
    largest ``|aᵢ|``), as :func:`norms` defines it: accumulated in float64 block by block in
    a fixed order, so a sharded step's norm, summed from the ranks' parts, is bitwise this
    one; even where the powers overflow (the elements are then scaled by the largest).  A NaN
    element gives NaN, an infinite one inf.

    >>> pnorm(np.array([3.0, -4.0]), 1), pnorm(np.array([3.0, -4.0]), math.inf)
    (7.0, 4.0)
    """
    return norms(p, 1, lambda bigs: [None if bigs[0] is None else block_sums(a, p, bigs[0])],
                 lambda: [block_maxes(a)])[0]


def l2norm(a) -> float:
    """The L2 norm of ``a`` as a Python float (:func:`pnorm` with ``p = 2``), even where the
    squares overflow.

    >>> l2norm(np.array([3e200, 4e200])) / 1e200      # (the squares overflow float64)
    5.0
    """
    return pnorm(a, 2)


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
    target, step = checked_target("update_", x, x̄)
    np.subtract(target, step, out=target)
    return x

"""The CUDA backend: optimiser steps on GPU arrays, with kernels generated from each rule's
per-element math.

:mod:`minigrad.optimise.step` and :mod:`minigrad.optimise.flat` come here (through
:func:`minigrad.optimise.backend.backend_of`) when a parameter's storage is a GPU array
(anything exposing ``__cuda_array_interface__``: Numba device arrays, CuPy arrays, PyTorch CUDA
tensors; see :mod:`minigrad.arrays`).  This module answers the same questions as
:mod:`minigrad.optimise.cpu`, with the same function names:

* A fused pass of built-in rules is ONE ``@cuda.jit`` kernel launch.  The kernel is written by
  :func:`minigrad.optimise.kernels.fused_kernel` with ``target="cuda"``: the same generator and
  the same per-element body as the CPU loop, each rule's ``math`` compiled as a CUDA device
  function, so no formula exists twice and any new rule type runs on the GPU with no code
  here.  The kernel is a grid-stride loop over flat 1-D views; hyperparameters are passed as
  scalars of the parameter's dtype (so float32 kernels stay float32) and per-parameter scalar
  state (Adam's ``βp``) stays on the host.
* Optimiser state of a GPU parameter is allocated on the GPU as Numba device arrays
  (``opt.state[p][i]`` is one); a flat group's parameters move into one flat buffer of their
  own library, and each step copies the gradients into one flat device buffer (device to
  device) and launches one kernel.
* ``ClipNorm`` takes the norm with a reduction kernel (one 8-byte read back per step).
* Any other :class:`~minigrad.AbstractOptimiser` runs its Python ``apply_(x, Δ)`` with ``Δ`` a
  GPU array of the gradient's own library (a CuPy array for CuPy gradients); it must return a
  GPU array.

Values never pass through the host, except the hyperparameters (a few scalars per launch)
and ClipNorm's norm.  Nothing here imports ``numba.cuda`` before the first GPU step.  The
functions' examples are those of :mod:`minigrad.optimise.cpu`, with GPU arrays;
``tests/test_gpu.py`` runs them in Numba's CUDA simulator.

>>> import minigrad as mg
>>> mg.optimise.cuda.THREADS
256
"""

from __future__ import annotations

import math

import numpy as np

from ..arrays import cuda_module, device_dtype, library, on_device
from ..tracker import _describe, data
from . import cpu
from .kernels import _load, fused_kernel

__all__ = ["NAME", "THREADS", "launch", "operands", "flat_view", "empty", "full", "copy",
           "gather", "assign", "store", "l2norm", "pnorm", "run", "subtract", "update"]

#: Where this backend's arrays live, for error messages.
NAME = "the GPU"
#: Threads per block of every kernel launch.
THREADS = 256
#: Blocks per launch at most; the kernels loop (grid-stride) over larger arrays.
MAX_BLOCKS = 65536


def launch(kernel, n: int, *args) -> None:
    """Launch the grid-stride ``kernel`` over ``n`` elements with ``args`` (nothing if ``n``
    is 0): one thread per element up to ``MAX_BLOCKS`` blocks of ``THREADS`` threads.

    >>> launch(None, 0)     # an empty array launches nothing
    """
    if n:
        threads = min(THREADS, -(-n // 32) * 32)
        kernel[min(-(-n // threads), MAX_BLOCKS), threads](*args)


# -- GPU arrays of any library as Numba views ----------------------------------------------------

def _numba(a) -> bool:
    return bool(getattr(type(a), "__cuda_ndarray__", False))


def flat_view(a):
    """A flat 1-D Numba device view of the contiguous GPU array ``a`` (Numba, CuPy or PyTorch);
    never a copy.  On a GPU, ``flat_view(cupy.zeros((2, 3))).shape`` is ``(6,)``."""
    if not _numba(a):
        # Synchronise the producer's stream only when it is not a default stream (None, 1, 2):
        # Numba launches on the legacy default stream, which already waits for those, and a
        # host-side wait per step would stop the GPU from running ahead of Python.
        stream = a.__cuda_array_interface__.get("stream")
        a = cuda_module().as_cuda_array(a, sync=stream not in (None, 1, 2))
    return a if a.ndim == 1 else a.reshape(a.size)


def _shape(a) -> tuple:
    return tuple(a.shape)


def _c_contiguous(a) -> bool:
    if _numba(a):
        return a.is_c_contiguous()
    interface = a.__cuda_array_interface__
    strides = interface.get("strides")
    if strides is None:
        return True
    expected = np.dtype(interface["typestr"]).itemsize
    for n, stride in zip(reversed(interface["shape"]), reversed(strides), strict=True):
        if n != 1 and stride != expected:
            return False
        expected *= n
    return True


def empty(like, size: int):
    """A new flat GPU array of ``size`` elements, of ``like``'s library and dtype."""
    kind = library(like)
    if kind == "cupy":
        import cupy
        return cupy.empty(size, dtype=like.dtype)
    if kind == "torch":
        import torch
        return torch.empty(size, dtype=like.dtype, device=like.device)
    return cuda_module().device_array(size, dtype=like.dtype)


def copy(a):
    """A copy of GPU array ``a`` in its own library (a device-to-device copy)."""
    kind = library(a)
    if kind == "cupy":
        return a.copy()
    if kind == "torch":
        return a.clone()
    out = cuda_module().device_array_like(a)
    out.copy_to_device(a)
    return out


# -- helper kernels (fill, sum of squares), cached on disk like the rule kernels -----------------

_HELPERS = '''\
# Generated by minigrad.optimise.cuda; safe to delete.
from numba import cuda, float64


@cuda.jit(cache=True)
def fill(a, value):
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


@cuda.jit(cache=True)
def sumsq(a, out):
    # Each block sums its share of a² in float64 (blockDim.x a power of two, at most 256), then
    # one thread adds the block's total to out[0].
    partial = cuda.shared.array(256, float64)
    t = cuda.threadIdx.x
    acc = float64(0)
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        v = float64(a[i])
        acc += v * v
    partial[t] = acc
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            partial[t] += partial[t + half]
        cuda.syncthreads()
        half //= 2
    if t == 0:
        cuda.atomic.add(out, 0, partial[0])


class kernel:       # what minigrad.optimise.kernels._load hands back
    fill, sumsq = fill, sumsq
'''


def _helpers():
    cuda_module()
    return _load(_HELPERS)


def full(size: int, fill, dtype):
    """A new flat Numba device array of ``size`` elements of ``dtype``, all ``fill`` (the GPU
    ``np.full`` used for optimiser state).  Needs CUDA (or ``NUMBA_ENABLE_CUDASIM=1``)."""
    out = cuda_module().device_array(size, dtype=dtype)
    launch(_helpers().fill, size, out, np.dtype(dtype).type(fill))
    return out


def l2norm(a) -> float:
    """The L2 norm of GPU array ``a`` (accumulated in float64), as a Python float."""
    flat = flat_view(a)
    out = cuda_module().to_device(np.zeros(1))
    if flat.size:
        threads = min(THREADS, 1 << max(5, (flat.size - 1).bit_length()))   # a power of two
        _helpers().sumsq[min(-(-flat.size // threads), 1024), threads](flat, out)
    return math.sqrt(float(out.copy_to_host()[0]))


def pnorm(a, p: float) -> float:
    """The ``p``-norm of GPU array ``a`` (see :func:`minigrad.optimise.cpu.pnorm`): the L2
    norm on the GPU, any other ``p`` from a copy of ``a`` on the host."""
    if p == 2:
        return l2norm(a)
    return cpu.pnorm(flat_view(a).copy_to_host(), p)


# -- checks ---------------------------------------------------------------------------------------

def operands(name: str, x, g, update: bool = True) -> tuple:
    """The storage of GPU parameter ``x`` and GPU gradient ``g``, after every check on them:
    same shape, same float32 or float64 dtype, C-contiguous (both on the GPU: see
    :func:`minigrad.optimise.backend.backend_for`)."""
    target, gd = data(x), data(g)
    dtype = device_dtype(target)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: a GPU parameter must be float32 or float64, got "
                        f"{_describe(x)}")
    if _shape(gd) != _shape(target):
        raise ValueError(f"{name}: the gradient has shape {_shape(gd)} but the parameter "
                         f"({_describe(x)}) has shape {_shape(target)}")
    if device_dtype(gd) != dtype:
        raise TypeError(f"{name}: the gradient has dtype {device_dtype(gd)} but the parameter "
                        f"({_describe(x)}) has dtype {dtype}; convert one of them")
    for what, a in (("parameter", target), ("gradient", gd)):
        if not _c_contiguous(a):
            raise ValueError(f"{name}: the {what} ({_describe(a)}) must be C-contiguous")
    return target, gd


# -- the kernel call and the rest of the backend ----------------------------------------------

def run(types: tuple, update: bool, flat_x, flat_d, hypers: list, states: list) -> None:
    """One fused pass as one kernel launch, the hyperparameters as scalars of the dtype."""
    kernel = fused_kernel(types, update, flat_x.size, target="cuda")
    cast = flat_x.dtype.type
    launch(kernel, flat_x.size, flat_x, flat_d, *map(cast, hypers), *states)


def subtract(flat_x, flat_d) -> None:
    """``x -= d`` on flat views: the kernel of an empty chain of rules."""
    launch(fused_kernel((), True, flat_x.size, target="cuda"), flat_x.size, flat_x, flat_d)


def update(x, x̄):
    """``update_(x, x̄)`` on the GPU: ``x -= x̄`` in place; returns ``x``."""
    target, gd = operands("update_", x, x̄)
    subtract(flat_view(target), flat_view(gd))
    return x


def assign(part, a) -> None:
    """Copy GPU array ``a`` (any shape, ``part.size`` elements) into the flat Numba view
    ``part`` (device to device)."""
    part.copy_to_device(flat_view(a))


def gather(arrays: list, out):
    """The arrays, flattened, one after the other in the flat Numba view ``out``; returns
    ``out``."""
    start = 0
    for a in arrays:
        view = flat_view(a)
        out[start:start + view.size].copy_to_device(view)
        start += view.size
    return out


def store(delta, result, stage) -> None:
    """Make ``result``, what a Python stage's ``apply_`` returned, the step ``delta``."""
    result = data(result)
    if not on_device(result) or _shape(result) != _shape(delta):
        raise TypeError(
            f"{type(stage).__name__}.apply_ returned {_describe(result)} for a GPU "
            f"parameter; return a GPU array of shape {_shape(delta)} (for example Δ, "
            "updated in place)")
    flat_view(delta).copy_to_device(flat_view(result))

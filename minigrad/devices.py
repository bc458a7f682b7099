"""Devices: :func:`gpu` and :func:`cpu` for arrays, parameters and models; array-module dispatch.

A *GPU array* is any array exposing ``__cuda_array_interface__``: a Numba device array, a CuPy
array or a PyTorch CUDA tensor (and the CUDA simulator's arrays, for tests).  The optimisers
run on GPU arrays with CUDA kernels compiled from the same per-element math as their CPU
kernels (:mod:`minigrad.optimise.cuda`), without copying through the host.  The helpers that
tell where an array lives are in :mod:`minigrad.arrays` (re-exported here).

* :func:`gpu` moves host arrays to the GPU: to CuPy arrays when CuPy is installed (then the
  autograd runs on the GPU too, through NumPy's dispatch to CuPy), else to Numba device arrays
  (enough for the optimisers alone).  Parameters become new parameters holding GPU arrays;
  models (any object holding parameters, as :func:`minigrad.params` sees them) are copied with
  their parameters moved, tied parameters staying tied.
* :func:`cpu` moves everything back to NumPy.

Nothing here imports ``numba.cuda`` until a GPU is actually used: importing minigrad and
running on the CPU never needs ``numba-cuda``, a driver or a GPU.  On the CPU both functions
leave host values as they are, so code written with ``gpu(...)`` still runs without a GPU only
if it never calls ``gpu`` on a machine without CUDA; there, :func:`gpu` raises an error that
says what to install.

>>> import numpy as np, minigrad as mg
>>> mg.cpu(np.ones(2)), mg.devices.on_device(np.ones(2))
(array([1., 1.]), False)
"""

from __future__ import annotations

import numpy as np

from .arrays import (  # (re-exported: minigrad.devices.on_device etc. are public)
    CUDAUnavailableError,
    array_module,
    as_array,
    cuda_module,
    device_dtype,
    library,
    on_device,
    simulated,
)
from .tracker import Node, Param, Params
from .tree import fmap

__all__ = ["gpu", "cpu", "on_device", "array_module", "as_array", "device_dtype",
           "CUDAUnavailableError", "cuda_module"]


def _to_gpu_array(a):
    if on_device(a):
        return a
    a = np.asarray(a)
    cuda = cuda_module()        # checks for a usable GPU first, even when CuPy is there
    if not simulated():
        try:
            import cupy
        except ImportError:
            pass
        else:
            return cupy.asarray(a)
    return cuda.to_device(np.ascontiguousarray(a))


def _to_host_array(a):
    if not on_device(a):
        return a
    kind = library(a)
    if kind == "cupy":
        return a.get()
    if kind == "torch":
        return a.detach().cpu().numpy()
    return a.copy_to_host()


def _leaf(move):
    """The leaf function of :func:`minigrad.tree.fmap` that moves every array and parameter
    with ``move``: a parameter becomes a new one of its kind holding the moved array (itself
    if nothing moved), a tracked value its moved data."""
    def leaf(x):
        if isinstance(x, Param):
            moved = move(x.data)
            return x if moved is x.data else type(x)(moved)
        if isinstance(x, Node):
            return move(x.data)
        if isinstance(x, np.ndarray) or on_device(x):
            return move(x)
        return NotImplemented
    return leaf


def _fmap(move, x):
    """``x`` with every array and parameter ``a`` replaced by ``move(a)``; models are copied
    only where something moved (see :func:`minigrad.tree.fmap`)."""
    return fmap(_leaf(move), x, (Params,))


def gpu(x):
    """``x`` moved to the GPU: arrays, parameters, :class:`~minigrad.Params` and models.

    Host arrays become CuPy arrays when CuPy is installed, else Numba device arrays.  A
    parameter becomes a NEW parameter holding the GPU array (optimiser state is per parameter,
    so an optimiser starts afresh on it, as in Flux); a model is copied with its parameters
    moved (write ``m = gpu(m)``).  Values already on the GPU are returned as they are, and
    anything that holds no array (a number, a function) is returned unchanged.

    Without numba-cuda, or without a GPU and driver, it raises
    :class:`CUDAUnavailableError` saying what to install.

    >>> import minigrad as mg
    >>> try:
    ...     W = mg.gpu(mg.param([1.0, 2.0]))     # a new parameter, on the GPU
    ...     ok = mg.devices.on_device(W.data) and mg.cpu(W).tolist() == [1.0, 2.0]
    ... except mg.devices.CUDAUnavailableError as err:
    ...     ok = "numba-cuda" in str(err)        # no GPU here: the error says what to install
    >>> ok
    True
    """
    return _fmap(_to_gpu_array, x)


def cpu(x):
    """``x`` moved back to the host: GPU arrays become NumPy arrays, GPU parameters new
    parameters holding them, and models copies holding those.  Host values are returned
    unchanged, so ``cpu`` never needs CUDA.

    >>> import minigrad as mg
    >>> m = mg.Dense(3, 2)
    >>> mg.cpu(m) is m
    True
    """
    return _fmap(_to_host_array, x)

"""Arrays on either device: which device an array lives on, its array module and dtype, and
``numba.cuda`` on first use.  The rest of minigrad asks these helpers instead of importing
CUDA code, so importing minigrad and running on the CPU never needs ``numba-cuda``, a driver or
a GPU.

A *GPU array* is any array exposing ``__cuda_array_interface__``: a Numba device array, a CuPy
array or a PyTorch CUDA tensor (and the CUDA simulator's arrays, for tests).

>>> import numpy as np
>>> on_device(np.ones(2)), device_dtype(np.ones(2, np.float32))
(False, dtype('float32'))
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["on_device", "array_module", "as_array", "device_dtype", "cuda_module",
           "CUDAUnavailableError", "INSTALL", "library", "simulated"]

#: What to install for GPU support, named in every error about it.
INSTALL = 'pip install "minigrad[gpu]"  (the numba-cuda package)'


class CUDAUnavailableError(RuntimeError):
    """No usable CUDA: ``numba-cuda`` is missing, or no GPU/driver was found."""


def on_device(a) -> bool:
    """Whether ``a`` is a GPU array (exposes ``__cuda_array_interface__``, or is a Numba or
    CUDA-simulator device array).  Cheap for NumPy arrays, and never imports ``numba.cuda``.

    >>> import numpy as np
    >>> on_device(np.zeros(3)), on_device(3.0)
    (False, False)
    """
    if type(a) is np.ndarray:
        return False
    return bool(getattr(type(a), "__cuda_ndarray__", False)) or hasattr(
        a, "__cuda_array_interface__")


def library(a) -> str:
    """The library of GPU array ``a``: ``"cupy"``, ``"torch"`` or ``"numba"`` (a Numba or
    simulator device array; the answer for anything else).

    >>> library(np.zeros(1))
    'numba'
    """
    root = type(a).__module__.partition(".")[0]
    return root if root in ("cupy", "torch") else "numba"


def array_module(a):
    """The array module for ``a``'s values: :mod:`cupy` for CuPy arrays, else :mod:`numpy`.

    Use it to write code that runs on both (``xp = array_module(x); xp.exp(x)``).

    >>> import numpy as np
    >>> array_module(np.ones(1)) is np
    True
    """
    if type(a) is np.ndarray:
        return np
    if type(a).__module__.partition(".")[0] == "cupy":
        import cupy
        return cupy
    return np


def as_array(a):
    """``a`` as an array without leaving its device: GPU arrays as they are, anything else
    through ``np.asarray``.

    >>> import numpy as np, minigrad as mg
    >>> mg.devices.as_array([1.0, 2.0]), mg.devices.as_array(np.float32(2.5))
    (array([1., 2.]), array(2.5, dtype=float32))
    """
    if type(a) is np.ndarray:
        return a
    if isinstance(a, np.generic) or not on_device(a):   # (a loss value: no device probe)
        return np.asarray(a)
    return a


def device_dtype(a) -> np.dtype:
    """The NumPy dtype of array ``a`` (host or GPU; PyTorch's dtypes are translated).

    >>> import numpy as np
    >>> device_dtype(np.zeros(2, np.float32))
    dtype('float32')
    """
    dtype = getattr(a, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype
    return np.dtype(a.__cuda_array_interface__["typestr"])


def cuda_module():
    """``numba.cuda``, imported on first use, after checking that it can run kernels.

    Raises :class:`CUDAUnavailableError` naming what to install when ``numba-cuda`` is missing,
    or what is missing when there is no GPU or driver (``NUMBA_ENABLE_CUDASIM=1`` runs the
    kernels in Numba's simulator instead, slowly, for tests).
    """
    global _cuda
    if _cuda is not None:
        return _cuda
    try:
        from numba import cuda
    except ImportError as err:     # pragma: no cover (numba-cuda is a test dependency)
        raise CUDAUnavailableError(f"GPU support needs numba-cuda: {INSTALL}") from err
    if not cuda.is_available():
        raise CUDAUnavailableError(
            "no usable CUDA GPU: numba.cuda found no GPU or no CUDA driver "
            f"(GPU support needs an NVIDIA GPU, its driver and {INSTALL}; "
            "set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels in Numba's simulator)")
    _cuda = cuda
    return cuda


_cuda = None


def simulated() -> bool:
    """Whether Numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM`` set, not to 0).

    >>> isinstance(simulated(), bool)
    True
    """
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")



"""Where NumPy keeps an array's type, data pointer, shape, dtype and flags in its object, and
where CPython keeps a list's items.

The many-tensor kernel reads these fields in compiled code (see
:mod:`minigrad.optimise._pointers`) instead of handing Numba the arrays themselves.  They are
those of ``PyArrayObject_fields`` and ``PyArray_Descr`` in NumPy's C headers
(``numpy/ndarraytypes.h``), at the same offsets from NumPy 1.7 to 2.x on 64-bit CPython, and
those of ``PyListObject`` in CPython's (``Include/cpython/listobject.h``).
:func:`layout_checked` compares them with NumPy's and Python's own accessors once per process;
where they differ, minigrad never reads them (it updates parameter by parameter).  This module
needs neither Numba nor a compiler, so the check costs no start-up.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

# Word offsets (8 bytes each) in an array object: after the object header (reference count,
# type) come the data pointer, the number of dimensions (a C int, then padding), the shape
# pointer, the strides pointer, the base object, the dtype (descr) pointer and the flags (a C
# int, then padding).
TYPE, DATA, NDIM, SHAPE, DESCR, FLAGS = 1, 2, 3, 4, 7, 8
# In a dtype object: its scalar type (word 2); then the characters kind, type and byteorder
# (bytes 24, 25, 26 of the object, little-endian, so bits 16-23 of word 3).
SCALAR_TYPE, CHARACTERS, BYTEORDER_SHIFT = 2, 3, 16
LOW_INT = 0xFFFFFFFF            # a C int's bits in its word
C_CONTIGUOUS, ALIGNED, WRITEABLE = 0x1, 0x100, 0x400
NATIVE = ord("=")               # the byteorder character of a native dtype
# In a list object: after the object header, its length, then the pointer to its items (the
# items' ids, in order).
LIST_SIZE, LIST_ITEMS = 2, 3


def _word(obj, index: int) -> int:
    return ctypes.c_ssize_t.from_address(id(obj) + 8 * index).value


@functools.cache
def layout_checked() -> bool:
    """Whether the offsets above are those of this process's NumPy and Python: read, through
    ``ctypes``, the fields of a few arrays, dtypes and lists and compare them with NumPy's and
    Python's own accessors.

    >>> layout_checked()
    True
    """
    if ctypes.sizeof(ctypes.c_void_p) != 8 or not np.little_endian:
        return False
    probes = [np.zeros((2, 3), np.float32), np.zeros(9)[::2], np.zeros(0, np.float16),
              np.zeros((), np.float64), np.zeros((3, 4), order="F")[1:]]
    probes.append(probes[0].view(np.dtype(np.float32).newbyteorder()))
    probes[1].flags.writeable = False
    for a in probes:
        shape = ctypes.cast(_word(a, SHAPE), ctypes.POINTER(ctypes.c_ssize_t))
        byteorder = (_word(a.dtype, CHARACTERS) >> BYTEORDER_SHIFT) & 0xFF
        if (_word(a, TYPE) != id(np.ndarray) or _word(a, DATA) != a.ctypes.data
                or _word(a, NDIM) & LOW_INT != a.ndim
                or tuple(shape[d] for d in range(a.ndim)) != a.shape
                or _word(a, DESCR) != id(a.dtype)
                or bool(_word(a, FLAGS) & C_CONTIGUOUS) != a.flags.c_contiguous
                or bool(_word(a, FLAGS) & ALIGNED) != a.flags.aligned
                or bool(_word(a, FLAGS) & WRITEABLE) != a.flags.writeable
                or _word(a.dtype, SCALAR_TYPE) != id(a.dtype.type)
                or (byteorder == NATIVE) != (a.dtype.byteorder == "=")):
            return False
    for items in ([], probes, probes[::-1]):
        if _word(items, LIST_SIZE) != len(items) or any(
                ctypes.c_ssize_t.from_address(_word(items, LIST_ITEMS) + 8 * k).value != id(a)
                for k, a in enumerate(items)):
            return False
    return True

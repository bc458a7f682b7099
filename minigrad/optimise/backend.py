"""Which backend serves an array: :mod:`minigrad.optimise.cpu` for host arrays,
:mod:`minigrad.optimise.cuda` for GPU arrays (imported at the first GPU step only, so the CPU
path never needs CUDA).

>>> import numpy as np
>>> backend_of(np.zeros(2)).NAME
'the host'
"""

from __future__ import annotations

import numpy as np

from ..arrays import on_device
from ..tracker import _describe, data
from . import cpu

__all__ = ["backend_of", "backend_for"]


def backend_of(a):
    """The backend module of array ``a``: :mod:`minigrad.optimise.cpu` for anything but a GPU
    array.

    >>> backend_of([1.0, 2.0]).NAME
    'the host'
    """
    if type(a) is np.ndarray or not on_device(a):
        return cpu
    from . import cuda
    return cuda


def backend_for(name: str, x, g):
    """The backend of parameter ``x``, after checking that its gradient ``g`` is on the same
    device (an optimiser step never copies between host and GPU).

    >>> import minigrad as mg
    >>> backend_for("update_", mg.param([1.0]), np.ones(1)).NAME
    'the host'
    """
    target, gd = data(x), data(g)
    be = backend_of(target)
    if be is not backend_of(gd):
        raise TypeError(
            f"{name}: the parameter ({_describe(x)}) is on {be.NAME} but the gradient "
            f"({_describe(g)}) is on {backend_of(gd).NAME}; move both with minigrad.gpu(...) "
            "or minigrad.cpu(...)")
    return be

"""Reading an array through its address inside a Numba kernel (used by generated kernels only).

The many-tensor kernel (see :mod:`minigrad.optimise.kernels`) receives a tuple of gradient
arrays and reads each one where it lies, instead of first copying them into one buffer.  Inside
its parallel loop a chunk names its tensor by a run-time index, which Numba can do cheaply for
an array of addresses but not for a tuple of arrays; this intrinsic turns an address back into
a typed pointer for ``numba.carray``.  It lives apart from ``kernels.py`` because importing
Numba's extension API must not happen at ``import minigrad``.
"""

from numba import types
from numba.extending import intrinsic


@intrinsic
def pointer_like(typingctx, address, like):
    """``address`` (an integer) as a pointer to ``like``'s dtype, for ``carray(pointer, n)``."""
    pointer = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(types.intp, like), codegen

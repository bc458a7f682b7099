"""Reading arrays through their addresses inside Numba kernels (used by generated kernels only).

The many-tensor kernel (see :mod:`minigrad.optimise.kernels`) reads a model's gradients where
they lie.  Handing Numba the gradients themselves costs a step more than its checks and its
arithmetic on small models: Numba types and unboxes every array of the call, and Python first
makes each one 1-D (one new array object per tensor).  So the kernel receives the address
(``id``) of the list holding the gradients instead and reads, in compiled code, the list's
items and the few fields of each NumPy array object it needs (see
:mod:`minigrad.optimise._layout`, which checks their offsets before any kernel relies on
them).  It compares them with what the parameters expect, and checks that each parameter's
storage (a list of views, read the same way) is still writable; it refuses the whole call,
writing nothing, if one does not fit.

This module imports Numba's extension API, which must not happen at ``import minigrad``.
"""

from numba import carray, types
from numba.extending import intrinsic, register_jitable

from ._layout import (
    ALIGNED,
    BYTEORDER_SHIFT,
    C_CONTIGUOUS,
    CHARACTERS,
    DATA,
    DESCR,
    FLAGS,
    LIST_ITEMS,
    LIST_SIZE,
    LOW_INT,
    NATIVE,
    NDIM,
    SCALAR_TYPE,
    SHAPE,
    TYPE,
    WRITEABLE,
)


@intrinsic
def pointer_like(typingctx, address, like):
    """``address`` (an integer) as a pointer to ``like``'s dtype, for ``carray(pointer, n)``."""
    pointer = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(types.intp, like), codegen


@intrinsic
def words(typingctx, address):
    """``address`` (an integer) as a pointer to machine words, for ``carray(pointer, n)``."""
    pointer = types.CPointer(types.intp)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(types.intp), codegen


@register_jitable
def list_items(address):
    """The ids of the items of the list at ``address`` (its ``id``), as an array of words
    (in compiled code only)."""
    head = carray(words(address), LIST_ITEMS + 1)
    return carray(words(head[LIST_ITEMS]), head[LIST_SIZE])


def gradient_addresses(grads, views, kinds, shapes, addresses):
    """Fill ``addresses[k]`` with the data address of item ``k`` of the list whose ``id`` is
    ``grads``; return whether every item is an array the kernel may read: exactly of type
    ``kinds[0]`` (``numpy.ndarray``), with a native dtype of scalar type ``kinds[1]``,
    C-contiguous and aligned, of shape ``shapes[k, 1:1 + shapes[k, 0]]``, one per row of
    ``shapes``; and whether every array of the list whose ``id`` is ``views`` (the
    parameters' storage) is writable.  On ``False`` the caller must not use ``addresses``.
    (Compiled by Numba inside the generated kernels; both lists, and their items, must be
    alive and unchanged during the call.)"""
    objects = list_items(grads)
    if objects.size != shapes.shape[0]:
        return False
    for k in range(objects.size):
        head = carray(words(objects[k]), FLAGS + 1)
        if head[TYPE] != kinds[0]:      # (read first: any object has a type; only arrays more)
            return False
        ndim = head[NDIM] & LOW_INT
        flags = head[FLAGS] & LOW_INT
        if ndim != shapes[k, 0] or flags & (C_CONTIGUOUS | ALIGNED) != C_CONTIGUOUS | ALIGNED:
            return False
        dtype = carray(words(head[DESCR]), CHARACTERS + 1)
        if (dtype[SCALAR_TYPE] != kinds[1]
                or (dtype[CHARACTERS] >> BYTEORDER_SHIFT) & 0xFF != NATIVE):
            return False
        if ndim:
            shape = carray(words(head[SHAPE]), ndim)
            for d in range(ndim):
                if shape[d] != shapes[k, 1 + d]:
                    return False
        addresses[k] = head[DATA]
    for view in list_items(views):
        if not carray(words(view), FLAGS + 1)[FLAGS] & WRITEABLE:
            return False
    return True

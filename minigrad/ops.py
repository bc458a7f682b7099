"""Differentiable operations: each forward next to its vector-Jacobian product (VJP).

Every op computes its result with NumPy on the raw values, then hands it to
:func:`minigrad.tracker.record` with a closure ``vjp(g)`` returning one gradient per input.
Outside a gradient computation ``record`` returns the NumPy result untouched, so the only
cost over NumPy is one function call.  Broadcasting is NumPy's; :func:`unbroadcast` sums a
gradient back to the shape of the input it belongs to.

The Python operators and NumPy's ufunc/function protocols of trainable arrays are bound at the
end of this file.
"""

from __future__ import annotations

import builtins

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .devices import array_module, as_array, on_device
from .tracker import Node, current_tape, data, record

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "matmul", "sum", "mean", "exp", "log", "sqrt",
    "abs", "tanh", "sigmoid", "σ", "relu", "leakyrelu", "softplus", "logsigmoid", "logσ",
    "softmax", "logsoftmax", "maximum", "minimum", "reshape", "transpose", "concatenate",
    "getindex", "astype", "identity", "dense", "unbroadcast", "flatten", "conv", "maxpool",
    "meanpool", "normalise",
]


def unbroadcast(g, shape: tuple):
    """Sum ``g`` over the axes that broadcasting added or stretched, giving ``shape``."""
    g = as_array(g)
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g.reshape(shape)


def _elementwise(name: str, fn, a, b):
    """Apply the NumPy binary ``fn``; name the op and the shapes if they do not broadcast."""
    ad, bd = data(a), data(b)
    try:
        return ad, bd, fn(ad, bd)
    except ValueError as err:
        raise ValueError(
            f"{name}: shapes {np.shape(ad)} and {np.shape(bd)} do not broadcast together "
            "(NumPy aligns trailing axes; a bias of shape (n,) added to an (n, batch) matrix "
            "must be written b[:, None])"
        ) from err


# -- arithmetic ----------------------------------------------------------------------------------

def add(a, b):
    """``a + b`` with broadcasting.  VJP: ``g`` summed back to each input's shape."""
    ad, bd, y = _elementwise("add", np.add, a, b)
    sa, sb = np.shape(ad), np.shape(bd)
    return record(y, (a, b), lambda g: (unbroadcast(g, sa), unbroadcast(g, sb)))


def sub(a, b):
    """``a - b`` with broadcasting.  VJP: ``(g, -g)`` summed back to each input's shape."""
    ad, bd, y = _elementwise("sub", np.subtract, a, b)
    sa, sb = np.shape(ad), np.shape(bd)
    return record(y, (a, b), lambda g: (unbroadcast(g, sa), unbroadcast(-g, sb)))


def mul(a, b):
    """``a * b`` elementwise.  VJP: ``(g·b, g·a)``."""
    ad, bd, y = _elementwise("mul", np.multiply, a, b)
    sa, sb = np.shape(ad), np.shape(bd)
    ta, tb = isinstance(a, Node), isinstance(b, Node)
    return record(y, (a, b), lambda g: (
        unbroadcast(g * bd, sa) if ta else None,
        unbroadcast(g * ad, sb) if tb else None,
    ))


def div(a, b):
    """``a / b`` elementwise.  VJP: ``(g/b, -g·a/b²)``."""
    ad, bd, y = _elementwise("div", np.true_divide, a, b)
    sa, sb = np.shape(ad), np.shape(bd)
    ta, tb = isinstance(a, Node), isinstance(b, Node)
    return record(y, (a, b), lambda g: (
        unbroadcast(g / bd, sa) if ta else None,
        unbroadcast(-g * y / bd, sb) if tb else None,
    ))


def pow(a, b):
    """``a ** b`` elementwise.  VJP: ``(g·b·a^(b-1), g·log(a)·a^b)``."""
    ad, bd, y = _elementwise("pow", np.power, a, b)
    sa, sb = np.shape(ad), np.shape(bd)
    ta, tb = isinstance(a, Node), isinstance(b, Node)

    def vjp(g):
        if not ta:
            ga = None
        elif isinstance(bd, (int, float)) and bd == 2:
            ga = g * 2 * ad
        else:
            e = bd if np.isscalar(bd) else as_array(bd)   # the exponent may be a list
            ga = unbroadcast(g * e * ad ** (e - 1), sa)
        return ga, (unbroadcast(g * np.log(ad) * y, sb) if tb else None)

    return record(y, (a, b), vjp)


def neg(x):
    """``-x``.  VJP: ``-g``."""
    return record(-data(x), (x,), lambda g: (-g,))


def matmul(a, b):
    """Matrix product ``a @ b`` (NumPy rules, vectors included).

    VJP: ``(g @ bᵀ, aᵀ @ g)``, with vectors treated as NumPy treats them.
    """
    ad, bd = as_array(data(a)), as_array(data(b))
    try:
        y = ad @ bd
    except ValueError as err:
        raise ValueError(
            f"matmul: shapes {np.shape(ad)} and {np.shape(bd)} do not align: the last axis of "
            "the left operand must match the first (or second-to-last) axis of the right one"
        ) from err
    ta, tb = isinstance(a, Node), isinstance(b, Node)

    def vjp(g):
        if ad.ndim == 1 and bd.ndim == 1:
            return (g * bd if ta else None), (g * ad if tb else None)
        if bd.ndim == 1:            # (..., m, k) @ (k,) -> (..., m)
            ga = g[..., :, None] * bd if ta else None
            gb = unbroadcast(np.swapaxes(ad, -1, -2) @ g[..., None], bd.shape + (1,))[..., 0] \
                if tb else None
            return ga, gb
        if ad.ndim == 1:            # (k,) @ (..., k, n) -> (..., n)
            ga = unbroadcast((bd @ g[..., :, None])[..., 0], ad.shape) if ta else None
            gb = ad[:, None] * g[..., None, :] if tb else None
            return ga, gb
        ga = unbroadcast(g @ np.swapaxes(bd, -1, -2), ad.shape) if ta else None
        gb = unbroadcast(np.swapaxes(ad, -1, -2) @ g, bd.shape) if tb else None
        return ga, gb

    return record(y, (a, b), vjp)


# -- reductions ----------------------------------------------------------------------------------

def _spread(g, shape: tuple, axis, keepdims: bool):
    """A fresh array of ``shape`` holding a reduction's gradient repeated over the reduced axes.

    (Fresh rather than a broadcast view: it is cheaper to build, and a parameter's gradient made
    here can be handed to the user without another copy.)
    """
    if axis is not None and not keepdims:
        kept = list(shape)
        for a in (axis,) if isinstance(axis, int) else axis:
            kept[a] = 1
        g = np.reshape(g, kept)
    dtype = g.dtype if hasattr(g, "dtype") else np.result_type(g)
    out = array_module(g).empty(shape, dtype=dtype)
    out[...] = g
    return out


def sum(x, axis=None, keepdims: bool = False):
    """Sum of elements, over ``axis`` (an int or tuple; all axes by default).

    VJP: ``g`` broadcast back over the summed axes.

    >>> import minigrad as mg
    >>> mg.sum([[1.0, 2.0], [3.0, 4.0]], axis=0)
    array([4., 6.])
    """
    xd = as_array(data(x))
    shape = xd.shape
    y = xd.sum(axis=axis, keepdims=keepdims)
    return record(y, (x,), lambda g: (_spread(g, shape, axis, keepdims),))


def mean(x, axis=None, keepdims: bool = False):
    """Mean of elements, over ``axis`` (all axes by default).

    VJP: ``g / n`` broadcast back over the averaged axes, ``n`` the number averaged.

    >>> import minigrad as mg
    >>> mg.mean([[1.0, 2.0], [3.0, 4.0]], axis=1)
    array([1.5, 3.5])
    """
    xd = as_array(data(x))
    shape = xd.shape
    total = xd.sum(axis=axis, keepdims=keepdims)    # sum / n: what ndarray.mean computes
    n = xd.size // np.size(total) if xd.size else 0
    y = total / n if n else xd.mean(axis=axis, keepdims=keepdims)
    return record(y, (x,), lambda g: (_spread(g / max(n, 1), shape, axis, keepdims),))


# -- elementwise functions -----------------------------------------------------------------------

def exp(x):
    """``eˣ``.  VJP: ``g·eˣ``."""
    y = np.exp(data(x))
    return record(y, (x,), lambda g: (g * y,))


def log(x):
    """Natural logarithm.  VJP: ``g/x``."""
    xd = data(x)
    return record(np.log(xd), (x,), lambda g: (g / xd,))


def sqrt(x):
    """``√x``.  VJP: ``g/(2√x)``."""
    y = np.sqrt(data(x))
    return record(y, (x,), lambda g: (g / (2 * y),))


def abs(x):
    """``|x|``.  VJP: ``g·sign(x)`` (zero at zero)."""
    xd = data(x)
    return record(np.abs(xd), (x,), lambda g: (g * np.sign(xd),))


def tanh(x):
    """Hyperbolic tangent.  VJP: ``g·(1 - tanh²x)``."""
    y = np.tanh(data(x))
    return record(y, (x,), lambda g: (g * (1 - y * y),))


def _sigmoid(xd):
    # With e = exp(-|x|) ≤ 1 nothing overflows, and for x < 0 the result e/(1 + e) keeps its
    # relative precision down to the smallest float (σ(-40) ≈ 4.2e-18, so log σ(-40) = -40;
    # the former 0.5·(1 + tanh(x/2)) rounded it to 0).
    xd = np.asarray(xd)
    e = np.exp(-np.abs(xd))
    return np.where(xd >= 0, 1, e) / (1 + e)


def sigmoid(x):
    """Logistic function ``σ(x) = 1/(1 + e⁻ˣ)``.  VJP: ``g·σ(x)(1 - σ(x))``.

    Computed stably: ``σ(x) = e/(1 + e)`` with ``e = exp(-|x|)`` for ``x < 0``, so small
    values keep their precision (``log(σ(-40.0)) == -40`` in float64).

    >>> import minigrad as mg
    >>> mg.σ(0.0)
    np.float64(0.5)
    >>> float(mg.log(mg.σ(-40.0)))
    -40.0
    """
    y = _sigmoid(data(x))
    return record(y, (x,), lambda g: (g * y * (1 - y),))


σ = sigmoid


def relu(x):
    """Rectified linear unit ``max(x, 0)``.  VJP: ``g`` where ``x > 0``, else 0."""
    y = np.maximum(data(x), 0)
    return record(y, (x,), lambda g: (g * (y > 0),))


def leakyrelu(x, a: float = 0.01):
    """``x`` for ``x > 0``, else ``a·x`` (Flux's default ``a = 0.01``).  VJP: ``g`` or ``a·g``."""
    xd = as_array(data(x))
    positive = xd > 0
    y = np.where(positive, xd, a * xd)
    return record(y, (x,), lambda g: (np.where(positive, g, a * g),))


def softplus(x):
    """``log(1 + eˣ)``, computed without overflow.  VJP: ``g·σ(x)``."""
    xd = data(x)
    return record(np.logaddexp(0, xd), (x,), lambda g: (g * _sigmoid(xd),))


def logsigmoid(x):
    """``log σ(x) = -softplus(-x)``.  VJP: ``g·(1 - σ(x))``."""
    xd = data(x)
    return record(-np.logaddexp(0, -xd), (x,), lambda g: (g * _sigmoid(-xd),))


logσ = logsigmoid


def softmax(x, axis: int = 0):
    """``exp(x) / sum(exp(x))`` along ``axis`` (the first axis, Flux's ``dims=1``).

    VJP: ``y·(g - sum(g·y))`` along ``axis``.

    >>> import minigrad as mg
    >>> mg.softmax([[0.0, 1.0], [0.0, 1.0]])
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    xd = as_array(data(x))
    e = np.exp(xd - xd.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return record(y, (x,), lambda g: (y * (g - (g * y).sum(axis=axis, keepdims=True)),))


def logsoftmax(x, axis: int = 0):
    """``x - log(sum(exp(x)))`` along ``axis`` (first axis by default), computed stably.

    VJP: ``g - softmax(x)·sum(g)`` along ``axis``.
    """
    xd = as_array(data(x))
    shifted = xd - xd.max(axis=axis, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return record(y, (x,), lambda g: (g - np.exp(y) * g.sum(axis=axis, keepdims=True),))


def maximum(a, b):
    """Elementwise maximum.  VJP: ``g`` goes to the larger input (to ``a`` on ties)."""
    ad, bd, y = _elementwise("maximum", np.maximum, a, b)
    sa, sb = np.shape(ad), np.shape(bd)
    first = np.greater_equal(ad, bd)
    return record(y, (a, b), lambda g: (unbroadcast(g * first, sa),
                                        unbroadcast(g * ~first, sb)))


def minimum(a, b):
    """Elementwise minimum.  VJP: ``g`` goes to the smaller input (to ``a`` on ties)."""
    ad, bd, y = _elementwise("minimum", np.minimum, a, b)
    sa, sb = np.shape(ad), np.shape(bd)
    first = np.less_equal(ad, bd)
    return record(y, (a, b), lambda g: (unbroadcast(g * first, sa),
                                        unbroadcast(g * ~first, sb)))


def identity(x):
    """Returns ``x`` unchanged (the default activation of :class:`minigrad.Dense`)."""
    return x


# -- shape ---------------------------------------------------------------------------------------

def reshape(x, *shape):
    """``x`` with a new shape (``reshape(x, 2, 3)`` or ``reshape(x, (2, 3))``).  VJP: reshape back.
    """
    xd = as_array(data(x))
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        y = xd.reshape(shape)
    except ValueError as err:
        raise ValueError(f"reshape: cannot reshape an array of shape {xd.shape} "
                         f"({xd.size} elements) into shape {shape}") from err
    return record(y, (x,), lambda g: (np.reshape(g, xd.shape),))


def flatten(x):
    """Collapse every axis but the last (the batch axis) into one: shape ``(…, n)`` becomes
    ``(prod(…), n)`` (Flux's ``flatten``, used between convolutional and dense layers).

    The features are ordered as NumPy's row-major ``reshape`` orders them (Julia's reshape is
    column-major, so weights ported from Flux need their rows permuted).  VJP: reshape back.

    >>> import numpy as np, minigrad as mg
    >>> mg.flatten(np.zeros((4, 4, 16, 32))).shape
    (256, 32)
    """
    shape = np.shape(data(x))
    if not shape:
        raise ValueError("flatten: needs an array with at least one axis, got a scalar")
    return reshape(x, (-1, shape[-1]))


def transpose(x, axes=None):
    """Permute the axes (reverse them by default; ``x.T`` does that).  VJP: the inverse permutation.
    """
    xd = as_array(data(x))
    y = np.transpose(xd, axes)
    # Negative axes count from the end; normalise them before inverting the permutation.
    inverse = None if axes is None else np.argsort([a % xd.ndim for a in axes])
    return record(y, (x,), lambda g: (np.transpose(g, inverse),))


def getindex(x, index):
    """``x[index]``: basic slicing or fancy indexing.  VJP: ``g`` scattered back (summing repeats).
    """
    xd = data(x)
    if isinstance(index, tuple):
        index = tuple(data(i) for i in index)
    else:
        index = data(index)
    y = xd[index]
    fancy = isinstance(index, (np.ndarray, list)) or (
        isinstance(index, tuple) and builtins.any(isinstance(i, (np.ndarray, list))
                                                  for i in index))

    def vjp(g):
        gx = np.zeros_like(xd, dtype=np.result_type(xd, g))
        if fancy:
            if array_module(gx) is np:
                np.add.at(gx, index, g)
            else:       # CuPy
                import cupyx
                cupyx.scatter_add(gx, index, g)
        else:
            gx[index] = g
        return (gx,)

    return record(y, (x,), vjp)


def concatenate(xs, axis: int | None = 0):
    """Join arrays along an existing ``axis`` (``None``: flatten them first, as NumPy does).

    VJP: ``g`` split back into the pieces.

    >>> import minigrad as mg
    >>> mg.concatenate([[1.0], [2.0, 3.0]])
    array([1., 2., 3.])
    """
    xs = tuple(xs)
    if axis is None:
        return concatenate([reshape(x, -1) for x in xs], axis=0)
    values = [as_array(data(x)) for x in xs]
    y = np.concatenate(values, axis=axis)
    ends = np.cumsum([v.shape[axis] for v in values])[:-1]
    return record(y, xs, lambda g: tuple(np.split(g, ends, axis=axis)))


def astype(x, dtype):
    """``x`` converted to ``dtype``.  VJP: ``g`` converted back to ``x``'s dtype."""
    xd = data(x)
    return record(xd.astype(dtype), (x,), lambda g: (as_array(g).astype(xd.dtype),))


# -- fused layer op ------------------------------------------------------------------------------

# Activations whose derivative is a function of their output alone, so that Dense can apply
# them inside one tape node: value → (in-place forward on z, derivative from y).
def _sigmoid_inplace(z):
    z[...] = _sigmoid(z)
    return z


_FUSED_ACTIVATIONS = {
    identity: (None, None),
    relu: (lambda z: np.maximum(z, 0, out=z), lambda y: y > 0),
    tanh: (lambda z: np.tanh(z, out=z), lambda y: 1 - y * y),
    sigmoid: (_sigmoid_inplace, lambda y: y * (1 - y)),
}


def dense(W, x, b=None, activation=identity):
    """``activation(W @ x + b)`` as one tape node, for ``x`` of shape ``(in,)`` or ``(in, batch)``.

    The bias is added along the first axis (features first, as in Flux).  For ``identity``,
    ``relu``, ``tanh`` and ``σ`` the activation is fused into the node; any other function is
    applied after it.  VJP with ``gz = g·activation'``: ``(gz @ xᵀ, Wᵀ @ gz, Σ_batch gz)``.
    """
    Wd, xd = as_array(data(W)), as_array(data(x))
    if Wd.ndim != 2 or xd.ndim not in (1, 2) or Wd.shape[1] != xd.shape[0]:
        raise ValueError(
            f"dense: weight of shape {Wd.shape} (out, in) needs an input of shape "
            f"({Wd.shape[-1]},) or ({Wd.shape[-1]}, batch), got shape {xd.shape}"
        )
    z = Wd @ xd
    if b is not None:
        bd = as_array(data(b))
        bias = bd[:, None] if z.ndim == 2 else bd
        if bd.dtype == z.dtype:
            z += bias           # z is fresh: add in place
        else:
            z = z + bias
    forward, derivative = _FUSED_ACTIVATIONS.get(activation, (None, None))
    y = forward(z) if forward is not None else z
    tx, tb = isinstance(x, Node), b is not None and isinstance(b, Node)

    def vjp(g):
        gz = g if derivative is None else g * derivative(y)
        gW = gz @ xd.T if gz.ndim == 2 else np.outer(gz, xd)
        gx = Wd.T @ gz if tx else None
        gb = ((np.add.reduce(gz, axis=1) if type(gz) is np.ndarray else gz.sum(axis=1))
              if gz.ndim == 2 else gz) if tb else None
        return gW, gx, gb

    out = record(y, (W, x, b), vjp)
    if activation in _FUSED_ACTIVATIONS:
        return out
    return activation(out)


# -- images: convolution, pooling, normalisation ------------------------------------------------
#
# Images follow Flux's layout: width × height × channels × batch.  Every windowed op reads its
# windows through one strided view of the (padded) input, of shape
# (out_w, out_h, k_w, k_h, channels, batch), and sends gradients back through the reverse
# scatter-add, :func:`_unwindows`.

def _windows(x: np.ndarray, size: tuple, stride: tuple, dilation: tuple) -> np.ndarray:
    """Read-only view of the ``size`` windows of ``x`` (W, H, C, N): shape (Wo, Ho, kW, kH, C, N).

    Output size per spatial axis: ``(n - dilation·(k - 1) - 1) ÷ stride + 1`` (as Flux's).
    """
    (W, H, C, N), (kw, kh), (sw, sh), (dw, dh) = x.shape, size, stride, dilation
    Wo, Ho = (W - dw * (kw - 1) - 1) // sw + 1, (H - dh * (kh - 1) - 1) // sh + 1
    if Wo < 1 or Ho < 1:
        raise ValueError(
            f"a {kw}×{kh} window (dilation {dilation}) does not fit an input of width × height "
            f"{W}×{H} (after padding); use a smaller window or pad the input")
    tw, th, tc, tn = x.strides
    return as_strided(x, (Wo, Ho, kw, kh, C, N), (sw * tw, sh * th, dw * tw, dh * th, tc, tn),
                      writeable=False)


def _unwindows(part, size: tuple, shape: tuple, stride: tuple, dilation: tuple) -> np.ndarray:
    """The gradient of :func:`_windows`: a fresh array of ``shape`` (W, H, C, N) in which
    ``part(i, j)``, the gradient of the elements at offset ``(i, j)`` of every window (shape
    (Wo, Ho, C, N)), is summed back where those elements came from (overlaps add up)."""
    (kw, kh), (sw, sh), (dw, dh) = size, stride, dilation
    gx = None
    for j in range(kh):                     # width fastest: maxpool's first maximum is the
        for i in range(kw):                 # first in PyTorch's order too
            g = part(i, j)
            if gx is None:
                gx = np.zeros(shape, dtype=g.dtype)
            Wo, Ho = g.shape[:2]
            gx[i * dw: i * dw + sw * (Wo - 1) + 1: sw,
               j * dh: j * dh + sh * (Ho - 1) + 1: sh] += g
    return gx


def _padded(xd: np.ndarray, pad: tuple, value: float = 0.0) -> np.ndarray:
    """``xd`` with ``pad = (w_lo, w_hi, h_lo, h_hi)`` entries of ``value`` around width and height.
    """
    if not builtins.any(pad):
        return xd
    W, H = xd.shape[:2]
    # (np.pad does the same at ten times the cost for these small images)
    out = np.full((W + pad[0] + pad[1], H + pad[2] + pad[3]) + xd.shape[2:], value, xd.dtype)
    out[pad[0]: pad[0] + W, pad[2]: pad[2] + H] = xd
    return out


def _unpadded(g: np.ndarray, pad: tuple) -> np.ndarray:
    W, H = g.shape[:2]
    return g[pad[0]: W - pad[1], pad[2]: H - pad[3]]


def _image(name: str, xd) -> np.ndarray:
    xd = as_array(xd)
    if on_device(xd):
        raise TypeError(f"{name}: the image layers run on the CPU (NumPy) only; this input is "
                        "a GPU array: move the model and data with minigrad.cpu(...)")
    if xd.ndim != 4:
        raise ValueError(
            f"{name}: expected images of shape (width, height, channels, batch), got shape "
            f"{xd.shape}; a single image needs a batch axis (x[..., None]), and flat features "
            "need reshaping (minigrad.reshape(x, (w, h, c, -1)))")
    return xd


def conv(x, w, b=None, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1), flipped=True):
    """2-D convolution in Flux's layout: ``x`` (W, H, Cin, N), ``w`` (kW, kH, Cin, Cout), ``b``
    (Cout,) or ``None``; result (Wo, Ho, Cout, N).

    With ``flipped=True`` (Flux's ``Conv``, the convolution of mathematics) the kernel is
    flipped along width and height: ``y[i, j, o, n] = b[o] + Σ_{p,q,c} w[kW-1-p, kH-1-q, c, o]
    · xp[i·s + p·d, j·s + q·d, c, n]`` with ``xp`` the padded input; ``flipped=False`` is the
    cross-correlation (Flux's ``CrossCor``, PyTorch's ``conv2d``).  ``pad`` is
    ``(w_lo, w_hi, h_lo, h_hi)``.

    Computed as im2col plus one matrix product (BLAS): the windows are copied into a matrix
    ``cols`` of shape (kW·kH·Cin, Wo·Ho·N), the batch axis innermost as in the input, so the
    copy reads memory in order, and ``y = wᵀ @ cols`` with ``w`` as a (kW·kH·Cin, Cout)
    matrix; the result is a view of that (Cout, Wo, Ho, N) product.  VJP with ``gy`` the
    gradient as (Cout, Wo·Ho·N): ``gw = cols @ gyᵀ``, ``gb = Σ gy``, ``gx`` = the windows of
    ``w @ gy`` summed back.  (At the main job's sizes its forward pass is 1.8-2.9x faster than the
    (Wo·Ho·N, kW·kH·Cin) layout, and than direct Numba loops except for a single input
    channel; see docs/performance.md.)

    >>> import numpy as np, minigrad as mg
    >>> x = np.arange(9.0).reshape(3, 3, 1, 1)
    >>> w = np.array([1.0, 0.0]).reshape(2, 1, 1, 1)
    >>> mg.ops.conv(x, w)[:, :, 0, 0]             # flipped: picks x[i + 1, j]
    array([[3., 4., 5.],
           [6., 7., 8.]])
    >>> mg.ops.conv(x, w, flipped=False)[:, :, 0, 0]
    array([[0., 1., 2.],
           [3., 4., 5.]])
    """
    xd, wd = _image("conv", data(x)), as_array(data(w))
    if wd.ndim != 4 or wd.shape[2] != xd.shape[2]:
        raise ValueError(f"conv: a weight of shape {wd.shape} (kW, kH, in, out) does not fit "
                         f"images of shape {xd.shape} (width, height, {xd.shape[2]} channels, "
                         "batch): the weight's third axis must be the input's channels")
    kw, kh, cin, cout = wd.shape
    xp = _padded(xd, pad)
    win = _windows(xp, (kw, kh), stride, dilation)
    Wo, Ho, N = win.shape[0], win.shape[1], xd.shape[3]
    cols = win.transpose(2, 3, 4, 0, 1, 5).reshape(kw * kh * cin, Wo * Ho * N)   # im2col: a copy
    wk = wd[::-1, ::-1] if flipped else wd
    wm = wk.reshape(kw * kh * cin, cout)
    y = wm.T @ cols
    if b is not None:
        y += as_array(data(b))[:, None]
    tx, tb = isinstance(x, Node), b is not None and isinstance(b, Node)

    def vjp(g):
        gy = np.transpose(g, (2, 0, 1, 3)).reshape(cout, Wo * Ho * N)
        gw = (cols @ gy.T).reshape(kw, kh, cin, cout)
        if flipped:
            gw = np.ascontiguousarray(gw[::-1, ::-1])
        gx = None
        if tx:
            gcols = (wm @ gy).reshape(kw, kh, cin, Wo, Ho, N)
            gx = _unpadded(_unwindows(lambda i, j: gcols[i, j].transpose(1, 2, 0, 3), (kw, kh),
                                      xp.shape, stride, dilation), pad)
        return gx, gw, (gy.sum(axis=1) if tb else None)

    return record(y.reshape(cout, Wo, Ho, N).transpose(1, 2, 0, 3), (x, w, b), vjp)


def maxpool(x, size, stride=None, pad=(0, 0, 0, 0)):
    """Largest value of each ``size`` window of images ``x`` (W, H, C, N) (Flux's ``maxpool``).

    ``stride`` defaults to the window size; padding is ``-inf``, so it is never picked.  VJP:
    ``g`` goes to the first largest element of each window, scanning along the width first
    (as PyTorch does).

    >>> import numpy as np, minigrad as mg
    >>> x = np.arange(16.0).reshape(4, 4, 1, 1)
    >>> mg.ops.maxpool(x, (2, 2))[:, :, 0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    xd = _image("maxpool", data(x))
    stride = size if stride is None else stride
    xp = _padded(xd, pad, -np.inf)
    win = _windows(xp, size, stride, (1, 1))
    y = win.max(axis=(2, 3))

    def vjp(g):
        taken = np.zeros(y.shape, dtype=bool)

        def part(i, j):                     # g where (i, j) holds the window's first maximum
            first = win[:, :, i, j] == y
            first &= ~taken
            taken[...] |= first
            return g * first

        return (_unpadded(_unwindows(part, size, xp.shape, stride, (1, 1)), pad),)

    return record(y, (x,), vjp)


def meanpool(x, size, stride=None, pad=(0, 0, 0, 0)):
    """Mean of each ``size`` window of images ``x`` (W, H, C, N) (Flux's ``meanpool``).

    ``stride`` defaults to the window size; padding is zeros and counts in the mean (as in
    Flux and PyTorch).  VJP: ``g / (kW·kH)`` to every element of the window.

    >>> import numpy as np, minigrad as mg
    >>> x = np.arange(16.0).reshape(4, 4, 1, 1)
    >>> mg.ops.meanpool(x, (2, 2))[:, :, 0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    xd = _image("meanpool", data(x))
    stride = size if stride is None else stride
    xp = _padded(xd, pad)
    win = _windows(xp, size, stride, (1, 1))
    area = size[0] * size[1]
    y = win.sum(axis=(2, 3)) / area

    def vjp(g):
        share = np.asarray(g) / area
        return (_unpadded(_unwindows(lambda i, j: share, size, xp.shape, stride, (1, 1)), pad),)

    return record(y, (x,), vjp)


def normalise(x, axis, ϵ: float = 1e-5):
    """``(x - μ) / √(σ² + ϵ)`` with the mean ``μ`` and the (biased) variance ``σ²`` over ``axis``
    (Flux's ``normalise``, the core of :class:`~minigrad.BatchNorm` and
    :class:`~minigrad.LayerNorm`).

    VJP, with ``x̂`` the result and means over ``axis``:
    ``(g - mean(g) - x̂·mean(g·x̂)) / √(σ² + ϵ)``.

    >>> import minigrad as mg
    >>> mg.ops.normalise([[1.0, 3.0]], axis=1, ϵ=0.0)
    array([[-1.,  1.]])
    """
    xd = as_array(data(x))
    μ = xd.mean(axis=axis, keepdims=True)
    centred = xd - μ
    inv = 1 / np.sqrt((centred * centred).mean(axis=axis, keepdims=True) + ϵ)
    y = centred * inv

    def vjp(g):
        return (inv * (g - g.mean(axis=axis, keepdims=True)
                       - y * (g * y).mean(axis=axis, keepdims=True)),)

    return record(y, (x,), vjp)


# -- binding the array protocols to trainable arrays ---------------------------------------------

def _swap(fn):
    return lambda a, b: fn(b, a)


def _inplace(fn, ufunc):
    """In-place operator: a trainable array is updated in its own storage (as optimisers do);
    a tracked intermediate value is rebound to a new node instead, so the tape stays valid."""
    def op(self, other):
        if not self.is_leaf:
            return fn(self, other)
        if current_tape() is not None:
            raise RuntimeError(
                "in-place arithmetic on a trainable array while a gradient is being taken would "
                "change values the tape has saved; update parameters after gradient() returns")
        ufunc(self.data, data(other), out=self.data)
        return self
    return op


_UFUNCS = {
    np.add: add, np.subtract: sub, np.multiply: mul, np.true_divide: div, np.power: pow,
    np.negative: neg, np.exp: exp, np.log: log, np.sqrt: sqrt, np.absolute: abs, np.tanh: tanh,
    np.matmul: matmul, np.maximum: maximum, np.minimum: minimum,
}
_FUNCTIONS = {
    np.sum: sum, np.mean: mean, np.reshape: reshape, np.transpose: transpose,
    np.concatenate: concatenate,
}


def _unwrap(x):
    if isinstance(x, Node):
        return x.data
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(i) for i in x)
    return x


def _untracked(name: str, fn, args, kwargs):
    """Run a NumPy function minigrad cannot differentiate on raw values.

    While a gradient is being taken, a floating-point result computed from tracked inputs
    would silently cut the gradient, so that is an error that says what to do instead.
    """
    result = fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
    if current_tape() is not None and np.asarray(result).dtype.kind in "fc" and builtins.any(
            isinstance(a, Node) for a in _flatten(args)):
        raise TypeError(
            f"numpy.{name} is not differentiable in minigrad, so it cannot be used on tracked "
            f"values inside gradient(); use the minigrad ops ({', '.join(__all__[:20])}, ...) "
            f"or apply it to minigrad.data(x) if it should be a constant"
        )
    return result


def _numpy_attribute(self, name: str):
    """Any other attribute of NumPy arrays (``max``, ``argmax``, ``copy``, ``strides``, ...),
    read from the raw values; methods follow the rule of :func:`_untracked`."""
    if name.startswith("_") or name == "data":  # protocol probes, private names, half-built objects
        raise AttributeError(name)
    attribute = getattr(self.data, name)
    if not callable(attribute):
        return attribute
    return lambda *args, **kwargs: _untracked(
        f"ndarray.{name}", lambda _self, *a, **k: attribute(*a, **k), (self, *args), kwargs)


def _flatten(args):
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from _flatten(a)
        else:
            yield a


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    op = _UFUNCS.get(ufunc)
    if op is not None and method == "__call__" and not kwargs:
        return op(*inputs)
    return _untracked(ufunc.__name__, getattr(ufunc, method), inputs, kwargs)


def _array_function(self, func, types, args, kwargs):
    op = _FUNCTIONS.get(func)
    if op is not None:
        return op(*args, **kwargs)
    return _untracked(func.__name__, func, args, kwargs)


def _bind_operators() -> None:
    binary = {"add": (add, np.add), "sub": (sub, np.subtract), "mul": (mul, np.multiply),
              "truediv": (div, np.true_divide), "pow": (pow, np.power), "matmul": (matmul, None)}
    for name, (fn, ufunc) in binary.items():
        setattr(Node, f"__{name}__", fn)
        setattr(Node, f"__r{name}__", _swap(fn))
        if ufunc is not None:
            setattr(Node, f"__i{name}__", _inplace(fn, ufunc))
    Node.__neg__ = neg
    Node.__pos__ = identity
    Node.__abs__ = abs
    Node.__getitem__ = getindex
    Node.__iter__ = lambda self: (getindex(self, i) for i in range(len(self)))
    for name in ("lt", "le", "gt", "ge", "eq", "ne"):
        compare = getattr(np.ndarray, f"__{name}__")
        setattr(Node, f"__{name}__", lambda self, other, c=compare: c(self.data, data(other)))
    Node.sum = sum
    Node.mean = mean
    Node.reshape = reshape
    Node.transpose = lambda self, *axes: transpose(
        self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes or None)
    Node.T = property(transpose)
    Node.astype = astype
    Node.ravel = Node.flatten = lambda self: reshape(self, -1)
    Node.__getattr__ = _numpy_attribute
    Node.__array_ufunc__ = _array_ufunc
    Node.__array_function__ = _array_function


_bind_operators()

"""Layers with Flux's layout (features first, batch last; images width × height × channels ×
batch): :class:`Dense`, :class:`Chain`, :class:`Conv`, :class:`CrossCor`, :class:`MaxPool`,
:class:`MeanPool`, :class:`BatchNorm`, :class:`LayerNorm`, :class:`Dropout`, :class:`Embedding`.

Activations are plain functions from :mod:`minigrad.ops` (``σ``, ``relu``, ``tanh``, ``softmax``,
...), applied to whole arrays.  Layers hold float32 trainable arrays, as Flux's do.  Every
constructor that draws random weights takes ``rng`` (a ``numpy.random.Generator`` or an int
seed); without it, NumPy's global random state is used (``np.random.seed`` makes it
reproducible), so models built in different threads should each get their own ``rng``.
"""

from __future__ import annotations

import numpy as np

from .ops import conv, dense, getindex, identity, maxpool, meanpool, mul, normalise, reshape
from .tracker import Param, current_tape
from .tree import children

__all__ = ["Dense", "Chain", "Conv", "CrossCor", "MaxPool", "MeanPool", "BatchNorm",
           "LayerNorm", "Dropout", "Embedding", "trainmode_", "testmode_", "glorot_uniform"]


def _random(rng):
    """Where random numbers come from: NumPy's global state, or a generator made from ``rng``
    (``default_rng`` returns a ``Generator`` unchanged, so a shared one keeps its stream)."""
    return np.random if rng is None else np.random.default_rng(rng)


def glorot_uniform(*shape: int, dtype=np.float32, rng=None) -> np.ndarray:
    """Uniform on ``[-a, a]`` with ``a = √(6 / (fan_in + fan_out))`` (Flux's default init).

    Fans as Flux's ``nfan``: a matrix of shape ``(out, in)`` has fans ``in`` and ``out``; a
    convolution kernel ``(kW, kH, in, out)`` has ``kW·kH·in`` and ``kW·kH·out``.  ``rng`` (a
    ``numpy.random.Generator`` or an int seed) gives the random numbers; by default NumPy's
    global random state, so ``np.random.seed`` makes it reproducible.

    >>> import numpy as np, minigrad as mg
    >>> w = mg.glorot_uniform(5, 10)
    >>> w.shape, w.dtype, bool(np.abs(w).max() <= np.sqrt(6 / 15))
    ((5, 10), dtype('float32'), True)
    >>> bool((mg.glorot_uniform(3, 3, 1, 4, rng=7) == mg.glorot_uniform(3, 3, 1, 4, rng=7)).all())
    True
    """
    if len(shape) > 2:
        receptive = int(np.prod(shape[:-2]))
        fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
    else:
        fan_out = shape[0] if shape else 1
        fan_in = shape[1] if len(shape) > 1 else 1
    scale = np.sqrt(6.0 / (fan_in + fan_out))
    return ((_random(rng).random(shape) * 2 - 1) * scale).astype(dtype)


def _standard_normal(*shape: int, dtype=np.float32, rng=None) -> np.ndarray:
    """Standard normal samples (Flux's ``randn32``), the default init of :class:`Embedding`."""
    return _random(rng).standard_normal(shape).astype(dtype)


def _initial(init, shape: tuple, rng, layer: str) -> Param:
    """``init(*shape)`` (given ``rng=rng`` when there is one) as a trainable array, checked."""
    value = np.asarray(init(*shape) if rng is None else init(*shape, rng=rng))
    if value.shape != shape:
        raise ValueError(f"{layer}: init returned shape {value.shape}, expected {shape}")
    return Param(value)


class Dense:
    """Fully connected layer ``y = σ.(W x .+ b)`` (Flux's ``Dense(in, out, σ)``).

    ``weight`` has shape ``(out, in)`` and ``bias`` shape ``(out,)`` (``bias=False`` drops it);
    ``x`` has shape ``(in,)`` or ``(in, batch)``.  ``init(out, in)`` makes the weight
    (default :func:`glorot_uniform`, float32; with ``rng``, ``init(out, in, rng=rng)``); the
    bias starts at zero.  The Flux ≤0.11 field names ``W`` and ``b`` are aliases.

    >>> import numpy as np, minigrad as mg
    >>> layer = mg.Dense(10, 5, mg.relu)
    >>> layer.weight.shape, layer.bias.shape, layer(np.ones((10, 3), np.float32)).shape
    ((5, 10), (5,), (5, 3))
    """

    def __init__(self, in_features: int, out_features: int, σ=identity, *, bias=True,
                 init=glorot_uniform, rng=None):
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"Dense: {name} must be a positive integer, got {n!r}")
        if not callable(σ):
            raise TypeError(f"Dense: the activation must be a function, got {σ!r}")
        self.weight = _initial(init, (out_features, in_features), rng, "Dense")
        self.bias = Param(np.zeros(out_features, dtype=self.weight.dtype)) if bias else None
        self.σ = σ

    W = property(lambda self: self.weight, doc="Alias of ``weight`` (Flux ≤0.11 name).")
    b = property(lambda self: self.bias, doc="Alias of ``bias`` (Flux ≤0.11 name).")

    def __call__(self, x):
        return dense(self.weight, x, self.bias, self.σ)

    def __repr__(self) -> str:
        out, inp = self.weight.shape
        act = "" if self.σ is identity else f", {getattr(self.σ, '__name__', self.σ)}"
        bias = "" if self.bias is not None else ", bias=False"
        return f"Dense({inp}, {out}{act}{bias})"


class Chain:
    """Apply layers (or any functions) in sequence: ``Chain(f, g)(x) == g(f(x))``.

    Indexable (``m[0]``; a slice gives a ``Chain``), iterable and sized, like Flux's ``Chain``.

    >>> import numpy as np, minigrad as mg
    >>> m = mg.Chain(mg.Dense(10, 5, mg.σ), mg.Dense(5, 2), mg.softmax)
    >>> len(m), m[0].weight.shape, m(np.ones(10)).shape
    (3, (5, 10), (2,))
    """

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"Chain: layer {i} is not callable: {layer!r}")
        self.layers = tuple(layers)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Chain(*self.layers[i])
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        names = ", ".join(getattr(f, "__name__", None) or repr(f) for f in self.layers)
        return f"Chain({names})"


# -- images --------------------------------------------------------------------------------------

def _pair(layer: str, name: str, value) -> tuple[int, int]:
    """An int or a pair of positive ints, as a pair (width, height)."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 and v >= 1 for v in pair):
        raise ValueError(f"{layer}: {name} must be a positive int or a pair (width, height) of "
                         f"them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _padding(layer: str, pad, size: tuple, dilation: tuple) -> tuple[int, int, int, int]:
    """Flux's ``pad``: an int, ``(w, h)``, ``(w_lo, w_hi, h_lo, h_hi)``, or ``"same"`` (Flux's
    ``SamePad()``: the output keeps the input's size at stride 1)."""
    if isinstance(pad, str) and pad == "same":
        total = [d * (k - 1) for k, d in zip(size, dilation, strict=True)]
        return total[0] // 2, total[0] - total[0] // 2, total[1] // 2, total[1] - total[1] // 2
    pads = (pad,) * 4 if isinstance(pad, (int, np.integer)) else tuple(pad)
    if len(pads) == 2:
        pads = (pads[0], pads[0], pads[1], pads[1])
    if len(pads) != 4 or not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool)
                                 and p >= 0 for p in pads):
        raise ValueError(f"{layer}: pad must be a non-negative int, (w, h), (w_lo, w_hi, h_lo, "
                         f"h_hi) or 'same', got {pad!r}")
    return tuple(int(p) for p in pads)


class Conv:
    """2-D convolution layer ``y = σ.(conv(x, weight) .+ bias)`` (Flux's ``Conv``).

    ``Conv((kw, kh), (cin, cout), σ)`` (Flux's ``Conv((kw, kh), cin => cout, σ)``) takes images
    of shape (width, height, cin, batch) and holds ``weight`` of shape (kw, kh, cin, cout) and
    ``bias`` (cout,).  Output width ``(W + pad_w - dilation·(kw - 1) - 1) ÷ stride + 1``, and so
    for the height.  As in Flux it is a TRUE convolution: the kernel is flipped along width and
    height (:class:`CrossCor` does not flip it, like PyTorch's ``Conv2d``).  ``stride`` and
    ``dilation`` are ints or pairs; ``pad`` an int, a pair, ``(w_lo, w_hi, h_lo, h_hi)`` or
    ``"same"`` (Flux's ``SamePad()``).  ``init(kw, kh, cin, cout)`` makes the weight (default
    :func:`glorot_uniform`, float32), drawing from ``rng`` when given.  See
    :func:`minigrad.ops.conv` for the formula and how it is computed.

    >>> import numpy as np, minigrad as mg
    >>> layer = mg.Conv((3, 3), (1, 4), mg.relu, pad=1, rng=0)
    >>> layer.weight.shape, layer(np.ones((8, 8, 1, 2), np.float32)).shape
    ((3, 3, 1, 4), (8, 8, 4, 2))
    """

    _flipped = True

    def __init__(self, size, channels, σ=identity, *, stride=1, pad=0, dilation=1, bias=True,
                 init=glorot_uniform, rng=None):
        layer = type(self).__name__
        self.size = _pair(layer, "the kernel size", size)
        cin, cout = _pair(layer, "channels (in, out)", channels)
        if not callable(σ):
            raise TypeError(f"{layer}: the activation must be a function, got {σ!r}")
        self.stride = _pair(layer, "stride", stride)
        self.dilation = _pair(layer, "dilation", dilation)
        self.pad = _padding(layer, pad, self.size, self.dilation)
        self.weight = _initial(init, (*self.size, cin, cout), rng, layer)
        self.bias = Param(np.zeros(cout, dtype=self.weight.dtype)) if bias else None
        self.σ = σ

    def __call__(self, x):
        y = conv(x, self.weight, self.bias, self.stride, self.pad, self.dilation, self._flipped)
        return y if self.σ is identity else self.σ(y)

    def __repr__(self) -> str:
        kw, kh, cin, cout = self.weight.shape
        act = "" if self.σ is identity else f", {getattr(self.σ, '__name__', self.σ)}"
        return f"{type(self).__name__}(({kw}, {kh}), ({cin}, {cout}){act})"


class CrossCor(Conv):
    """Like :class:`Conv`, but the kernel is not flipped: the cross-correlation
    ``y[i, j, o, n] = Σ_{p,q,c} w[p, q, c, o] · x[i·s + p·d, j·s + q·d, c, n]`` (plus bias),
    which is what PyTorch's ``Conv2d`` computes (Flux's ``CrossCor``).

    >>> import numpy as np, minigrad as mg
    >>> c = mg.CrossCor((2, 1), (1, 1), bias=False, init=lambda *s: np.ones(s, np.float32))
    >>> c(np.arange(3.0, dtype=np.float32).reshape(3, 1, 1, 1)).ravel()
    array([1., 3.], dtype=float32)
    """

    _flipped = False


class MaxPool:
    """Largest value of each window (Flux's ``MaxPool``): ``MaxPool((2, 2))`` halves width and
    height of images (W, H, C, N).  ``stride`` defaults to the window; ``pad`` as in
    :class:`Conv` (padding never wins the max).  See :func:`minigrad.ops.maxpool`.

    >>> import numpy as np, minigrad as mg
    >>> mg.MaxPool((2, 2))(np.zeros((8, 8, 4, 1))).shape
    (4, 4, 4, 1)
    """

    _op = staticmethod(maxpool)

    def __init__(self, size, *, pad=0, stride=None):
        layer = type(self).__name__
        self.size = _pair(layer, "the window size", size)
        self.stride = self.size if stride is None else _pair(layer, "stride", stride)
        self.pad = _padding(layer, pad, self.size, (1, 1))

    def __call__(self, x):
        return self._op(x, self.size, self.stride, self.pad)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.size})"


class MeanPool(MaxPool):
    """Mean of each window (Flux's ``MeanPool``); arguments as :class:`MaxPool`'s.  Zero padding
    counts in the mean.  See :func:`minigrad.ops.meanpool`.

    >>> import numpy as np, minigrad as mg
    >>> mg.MeanPool((2, 2))(np.ones((4, 4, 1, 1))).ravel()
    array([1., 1., 1., 1.])
    """

    _op = staticmethod(meanpool)


# -- modes: Dropout and BatchNorm behave differently while training ------------------------------

class _Modal:
    """A layer with Flux's ``active`` field: ``True`` (training behaviour), ``False`` (testing
    behaviour) or ``None``, automatic: training behaviour exactly while a gradient is taken
    (Flux's default, ``NNlib.within_gradient``).  Set it with :func:`trainmode_` /
    :func:`testmode_`."""

    active: bool | None = None

    def _training(self) -> bool:
        return current_tape() is not None if self.active is None else self.active


def _set_mode(m, active):
    stack, seen = [m], set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, _Modal):
            x.active = active
        stack.extend(child for _, child in children(x) or ())
    return m


def _mode(name: str, mode) -> bool | None:
    if mode == "auto":
        return None
    if not isinstance(mode, bool):
        raise ValueError(f"{name}: mode must be True, False or 'auto', got {mode!r}")
    return mode


def trainmode_(m, mode=True):
    """Put every :class:`Dropout` and :class:`BatchNorm` inside ``m`` in training mode
    (Flux's ``trainmode!``): dropout drops and batch statistics are used (and tracked) even
    outside ``gradient``.  ``mode=False`` is :func:`testmode_`; ``mode="auto"`` restores the
    default (training behaviour only while a gradient is taken).  Returns ``m``.

    >>> import numpy as np, minigrad as mg
    >>> m = mg.trainmode_(mg.Chain(mg.Dropout(0.5, rng=0)))
    >>> bool((m(np.ones(1000)) == 0).any())
    True
    >>> bool((mg.testmode_(m)(np.ones(1000)) == 1).all())
    True
    """
    return _set_mode(m, _mode("trainmode_", mode))


def testmode_(m, mode=True):
    """Put every :class:`Dropout` and :class:`BatchNorm` inside ``m`` in test mode (Flux's
    ``testmode!``): dropout is the identity and batch norm uses its running statistics, even
    inside ``gradient``.  ``mode=False`` is :func:`trainmode_`; ``"auto"`` the default.
    Returns ``m``.

    >>> import numpy as np, minigrad as mg
    >>> d = mg.testmode_(mg.Dropout(0.5))
    >>> W = mg.param(np.ones(4))
    >>> mg.gradient(lambda: mg.sum(d(W)), mg.params(W))[W]        # no dropout, even here
    array([1., 1., 1., 1.])
    """
    mode = _mode("testmode_", mode)
    return _set_mode(m, mode if mode is None else not mode)


class Dropout(_Modal):
    """Randomly zero each element with probability ``p`` and scale the rest by ``1/(1-p)``
    (Flux's ``Dropout(p)``), in training mode only; otherwise the identity.

    Training mode is automatic (only while a gradient is taken) unless set with
    :func:`trainmode_`/:func:`testmode_`.  The masks are drawn from ``rng`` (a generator or an
    int seed; NumPy's global random state by default) in ``x``'s dtype.

    >>> import numpy as np, minigrad as mg
    >>> d = mg.Dropout(0.5)
    >>> bool((d(np.ones(4)) == 1).all())            # outside gradient: the identity
    True
    """

    def __init__(self, p: float, *, rng=None):
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p is a probability in [0, 1], got {p!r}")
        self.p = p
        self.rng = _random(rng)

    def __call__(self, x):
        if not self._training() or self.p == 0:
            return x
        value = np.asarray(x)                # (a trainable array gives its storage: no copy)
        shape = value.shape
        dtype = value.dtype if value.dtype.kind == "f" else np.dtype(np.float64)
        keep = self.rng.random(shape) >= self.p
        return mul(x, keep.astype(dtype) / dtype.type(1 - self.p) if self.p < 1 else
                   np.zeros(shape, dtype))

    def __repr__(self) -> str:
        return f"Dropout({self.p})"


class BatchNorm(_Modal):
    """Batch normalisation over the channel axis, the second-to-last (Flux's
    ``BatchNorm(channels, σ)``): ``y = σ.(γ · (x - μ) / √(σ² + ϵ) + β)``.

    ``x`` is (channels, batch) or images (W, H, channels, batch).  In training mode the mean
    ``μ`` and biased variance ``σ²`` are those of the batch (over every axis but the channel
    axis, ``m`` values each), and the running statistics are updated as Flux does:
    ``μ_run = (1 - momentum)·μ_run + momentum·μ`` and
    ``σ2_run = (1 - momentum)·σ2_run + momentum·σ²·m/(m - 1)``.  In test mode the running
    statistics are used.  Mode as :class:`Dropout`'s.  Trainable ``β`` (zeros) and ``γ`` (ones)
    with ``affine=True``; running statistics ``μ`` and ``σ2`` (Flux's ``σ²``) are plain arrays,
    not parameters.

    >>> import numpy as np, minigrad as mg
    >>> bn = mg.BatchNorm(2)
    >>> x = np.array([[1.0, 3.0], [10.0, 30.0]], np.float32)
    >>> g = mg.gradient(lambda: mg.sum(bn(x) ** 2), mg.params(bn))   # trains: batch statistics
    >>> bn.μ                                         # 0.9·0 + 0.1·mean
    array([0.2, 2. ], dtype=float32)
    """

    def __init__(self, channels: int, σ=identity, *, ϵ: float = 1e-5, epsilon=None,
                 momentum: float = 0.1, affine: bool = True, track_stats: bool = True):
        if not isinstance(channels, (int, np.integer)) or channels < 1:
            raise ValueError(f"BatchNorm: channels must be a positive integer, got {channels!r}")
        self.σ, self.ϵ, self.momentum = σ, float(ϵ if epsilon is None else epsilon), momentum
        self.β = Param(np.zeros(channels, np.float32)) if affine else None
        self.γ = Param(np.ones(channels, np.float32)) if affine else None
        self.μ = np.zeros(channels, np.float32)
        self.σ2 = np.ones(channels, np.float32)
        self.track_stats = track_stats

    def __call__(self, x):
        shape = np.shape(x)
        channels = self.μ.size
        if len(shape) < 2 or shape[-2] != channels:
            raise ValueError(f"BatchNorm({channels}): expected channels on the second-to-last "
                             f"axis, (…, {channels}, batch), got shape {shape}")
        axes = tuple(i for i in range(len(shape)) if i != len(shape) - 2)
        along = (channels, 1)        # broadcasts a (channels,) vector along the channel axis
        if self._training() or not self.track_stats:
            y = normalise(x, axes, self.ϵ)
            if self._training() and self.track_stats:
                xd = np.asarray(x)
                m = xd.size // channels
                mtm = self.momentum
                self.μ[...] = (1 - mtm) * self.μ + mtm * xd.mean(axis=axes)
                self.σ2[...] = (1 - mtm) * self.σ2 + mtm * xd.var(axis=axes) * m / max(m - 1, 1)
        else:
            y = (x - self.μ.reshape(along)) / np.sqrt(self.σ2.reshape(along) + self.ϵ)
        if self.γ is not None:
            y = y * reshape(self.γ, along) + reshape(self.β, along)
        return y if self.σ is identity else self.σ(y)

    def state_dict(self) -> dict:
        """The running statistics (not parameters, so not in ``params``; checkpoints save them
        with the model's parameters).

        >>> import minigrad as mg
        >>> mg.BatchNorm(2).state_dict()
        {'μ': array([0., 0.], dtype=float32), 'σ2': array([1., 1.], dtype=float32)}
        """
        return {"μ": self.μ.copy(), "σ2": self.σ2.copy()}

    def check_state_dict(self, state, name=None):
        """Check ``state`` (as :meth:`state_dict` gives it: arrays of the running statistics'
        shapes, finite, the variances not negative) without changing anything; return the
        function that sets it."""
        if not isinstance(state, dict) or sorted(state) != ["μ", "σ2"]:
            raise ValueError(f"{self!r}: the state must be a dict of μ and σ2, got {state!r:.80}")
        values = {}
        for key in ("μ", "σ2"):
            value, target = np.asarray(state[key]), getattr(self, key)
            if value.shape != target.shape or value.dtype.kind != "f":
                raise ValueError(f"{self!r}: {key} must be a float array of shape "
                                 f"{target.shape}, got shape {value.shape} dtype {value.dtype}")
            if not np.isfinite(value).all() or (key == "σ2" and (value < 0).any()):
                raise ValueError(f"{self!r}: {key} holds a non-finite"
                                 f"{' or negative' if key == 'σ2' else ''} value")
            values[key] = value

        def commit():
            for key, value in values.items():
                getattr(self, key)[...] = value
        return commit

    def load_state_dict(self, state: dict) -> None:
        """Set the running statistics back from :meth:`state_dict`'s output (checked first:
        see :meth:`check_state_dict`)."""
        self.check_state_dict(state)()

    def __repr__(self) -> str:
        act = "" if self.σ is identity else f", {getattr(self.σ, '__name__', self.σ)}"
        return f"BatchNorm({self.μ.size}{act})"


class LayerNorm:
    """Layer normalisation (Flux's ``LayerNorm(n)``): each sample is normalised over its first
    axis (or its first ``len(n)`` axes for a tuple ``n``), then scaled and shifted per feature:
    ``y = σ.(scale · (x - μ) / √(σ² + ϵ) + bias)``, with ``μ`` and the biased ``σ²`` over those
    axes.  Trainable ``scale`` (ones) and ``bias`` (zeros) with ``affine=True``.

    >>> import numpy as np, minigrad as mg
    >>> mg.LayerNorm(2)(np.array([[1.0, 0.0], [3.0, 0.0]])).round(3)
    array([[-1.,  0.],
           [ 1.,  0.]])
    """

    def __init__(self, n, σ=identity, *, ϵ: float = 1e-5, epsilon=None, affine: bool = True):
        self.shape = (n,) if isinstance(n, (int, np.integer)) else tuple(n)
        if not self.shape or not all(isinstance(k, (int, np.integer)) and k >= 1
                                     for k in self.shape):
            raise ValueError(f"LayerNorm: n must be a positive int or a tuple of them, got {n!r}")
        self.σ, self.ϵ = σ, float(ϵ if epsilon is None else epsilon)
        self.scale = Param(np.ones(self.shape, np.float32)) if affine else None
        self.bias = Param(np.zeros(self.shape, np.float32)) if affine else None

    def __call__(self, x):
        shape, k = np.shape(x), len(self.shape)
        if shape[:k] != self.shape:
            raise ValueError(f"LayerNorm{self.shape}: expected an input whose first axes are "
                             f"{self.shape}, got shape {shape}")
        y = normalise(x, tuple(range(k)), self.ϵ)
        if self.scale is not None:
            along = self.shape + (1,) * (len(shape) - k)
            y = y * reshape(self.scale, along) + reshape(self.bias, along)
        return y if self.σ is identity else self.σ(y)

    def __repr__(self) -> str:
        return f"LayerNorm({', '.join(map(str, self.shape))})"


class Embedding:
    """A lookup table (Flux's ``Embedding(n => dim)``): ``Embedding(n, dim)(i)`` is column ``i``
    of ``weight`` (shape ``(dim, n)``), for integer indices ``0 ≤ i < n`` (0-based, where Julia's
    are 1-based).  An index array of shape ``s`` gives ``(dim,) + s``.  ``init(dim, n)``
    defaults to standard normal float32 (Flux's ``randn32``), drawn from ``rng`` when given.

    >>> import numpy as np, minigrad as mg
    >>> e = mg.Embedding(10, 3, rng=0)
    >>> e(np.array([1, 4, 1])).shape, bool((e(1) == e.weight[:, 1]).all())
    ((3, 3), True)
    """

    def __init__(self, n: int, dim: int, *, init=_standard_normal, rng=None):
        for name, k in (("n", n), ("dim", dim)):
            if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
                raise ValueError(f"Embedding: {name} must be a positive integer, got {k!r}")
        self.weight = _initial(init, (dim, n), rng, "Embedding")

    def __call__(self, indices):
        index = np.asarray(indices)
        n = self.weight.shape[1]
        if index.dtype.kind not in "iu":
            raise TypeError(f"Embedding: needs integer indices in [0, {n}), got dtype "
                            f"{index.dtype} (for one-hot columns use weight @ x)")
        if index.size and (index.min() < 0 or index.max() >= n):
            raise IndexError(f"Embedding({n}, {self.weight.shape[0]}): indices must lie in "
                             f"[0, {n}) (0-based), got {index.min()} to {index.max()}")
        return getindex(self.weight, (slice(None), index))

    def __repr__(self) -> str:
        dim, n = self.weight.shape
        return f"Embedding({n}, {dim})"

"""Layers: :class:`Dense` and :class:`Chain`, with Flux's layout (features first, batch last).

Activations are plain functions from :mod:`minigrad.ops` (``σ``, ``relu``, ``tanh``, ``softmax``,
...), applied to whole arrays.  Layers hold float32 trainable arrays, as Flux's do.
"""

from __future__ import annotations

import numpy as np

from .ops import dense, identity
from .tracker import Param

__all__ = ["Dense", "Chain", "glorot_uniform"]


def glorot_uniform(*shape: int, dtype=np.float32) -> np.ndarray:
    """Uniform on ``[-a, a]`` with ``a = √(6 / (fan_in + fan_out))`` (Flux's default init).

    For a matrix of shape ``(out, in)`` the fans are ``in`` and ``out``.  Uses NumPy's global
    random state, so ``np.random.seed`` makes it reproducible.

    >>> import numpy as np, minigrad as mg
    >>> w = mg.glorot_uniform(5, 10)
    >>> w.shape, w.dtype, bool(np.abs(w).max() <= np.sqrt(6 / 15))
    ((5, 10), dtype('float32'), True)
    """
    fan_out = shape[0] if shape else 1
    fan_in = shape[1] if len(shape) > 1 else 1
    scale = np.sqrt(6.0 / (fan_in + fan_out))
    return ((np.random.random_sample(shape) * 2 - 1) * scale).astype(dtype)


class Dense:
    """Fully connected layer ``y = σ.(W x .+ b)`` (Flux's ``Dense(in, out, σ)``).

    ``weight`` has shape ``(out, in)`` and ``bias`` shape ``(out,)`` (``bias=False`` drops it);
    ``x`` has shape ``(in,)`` or ``(in, batch)``.  ``init(out, in)`` makes the weight
    (default :func:`glorot_uniform`, float32); the bias starts at zero.  The Flux ≤0.11 field
    names ``W`` and ``b`` are aliases.

    >>> import numpy as np, minigrad as mg
    >>> layer = mg.Dense(10, 5, mg.relu)
    >>> layer.weight.shape, layer.bias.shape, layer(np.ones((10, 3), np.float32)).shape
    ((5, 10), (5,), (5, 3))
    """

    def __init__(self, in_features: int, out_features: int, σ=identity, *, bias=True,
                 init=glorot_uniform):
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"Dense: {name} must be a positive integer, got {n!r}")
        if not callable(σ):
            raise TypeError(f"Dense: the activation must be a function, got {σ!r}")
        self.weight = Param(np.asarray(init(out_features, in_features)))
        if self.weight.shape != (out_features, in_features):
            raise ValueError(f"Dense: init returned shape {self.weight.shape}, expected "
                             f"{(out_features, in_features)}")
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

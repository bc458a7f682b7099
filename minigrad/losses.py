"""Loss functions with Flux's definitions and reductions (``minigrad.losses`` = ``Flux.Losses``).

Every loss takes the prediction ``ŷ`` first and the target ``y`` second, checks that their
shapes agree, and reduces with ``agg`` (``minigrad.mean`` by default; ``minigrad.sum`` or any
function of one array works).  Class-probability losses work along ``axis=0``, the feature
axis (Flux's ``dims=1``); ``ϵ`` defaults to the machine epsilon of ``ŷ``'s dtype.
"""

from __future__ import annotations

import numpy as np

from .devices import as_array
from .ops import abs, log, logsigmoid, logsoftmax, mean, sum
from .tracker import Node, data, record

__all__ = ["mse", "mae", "crossentropy", "logitcrossentropy", "binarycrossentropy",
           "logitbinarycrossentropy"]


def _operands(name: str, ŷ, y) -> tuple:
    """``ŷ`` and ``y`` as arrays (tracked ones stay tracked), after checking their shapes agree."""
    ŷ = ŷ if isinstance(ŷ, Node) else as_array(ŷ)
    y = y if isinstance(y, Node) else as_array(y)
    if ŷ.shape != y.shape:
        hint = ""
        if data(y).dtype.kind in "iu" and y.shape == ŷ.shape[1:]:
            hint = (f"; the target looks like integer class labels: one-hot encode them, "
                    f"minigrad.onehotbatch(y, range({ŷ.shape[0]}))")
        raise ValueError(f"{name}: the prediction has shape {ŷ.shape} but the target has shape "
                         f"{y.shape}; they must match{hint}")
    return ŷ, y


def _epsilon(ŷ, ϵ, epsilon) -> float:
    """The ``ϵ`` (or ASCII ``epsilon``) keyword, defaulting to the machine epsilon of ``ŷ``."""
    if ϵ is None:
        ϵ = epsilon
    if ϵ is None:
        dtype = data(ŷ).dtype
        ϵ = np.finfo(dtype if dtype.kind == "f" else np.float64).eps
    return float(ϵ)


def mse(ŷ, y, agg=mean):
    """Mean squared error: ``agg((ŷ - y)²)``.

    With the default ``agg=mean`` it is one fused op whose gradient is ``±2(ŷ - y)/n``.

    >>> import minigrad as mg
    >>> float(mg.losses.mse([1.0, 2.0], [1.0, 4.0]))
    2.0
    """
    ŷ, y = _operands("mse", ŷ, y)
    if agg is not mean:
        return agg((ŷ - y) ** 2)
    r = data(ŷ) - data(y)
    n = max(r.size, 1)
    value = (r * r).sum() / n

    def vjp(g):
        gr = (2 * g / n) * r
        return gr, -gr

    return record(value, (ŷ, y), vjp)


def mae(ŷ, y, agg=mean):
    """Mean absolute error: ``agg(|ŷ - y|)``.

    >>> import minigrad as mg
    >>> float(mg.losses.mae([1.0, 2.0], [1.0, 4.0]))
    1.0
    """
    ŷ, y = _operands("mae", ŷ, y)
    return agg(abs(ŷ - y))


def crossentropy(ŷ, y, axis: int = 0, agg=mean, ϵ=None, epsilon=None):
    """Cross-entropy of probabilities ``ŷ`` against targets ``y``: ``agg(-Σ_axis y·log(ŷ + ϵ))``.

    >>> import minigrad as mg
    >>> round(float(mg.losses.crossentropy([0.5, 0.5], [1.0, 0.0])), 6)
    0.693147
    """
    ŷ, y = _operands("crossentropy", ŷ, y)
    return agg(-sum(y * log(ŷ + _epsilon(ŷ, ϵ, epsilon)), axis=axis))


def logitcrossentropy(ŷ, y, axis: int = 0, agg=mean):
    """Cross-entropy on logits: ``agg(-Σ_axis y·logsoftmax(ŷ))``, computed stably.

    With the default ``agg=mean`` it is one fused op whose gradients are
    ``(softmax(ŷ)·Σ_axis y - y) / n`` for ``ŷ`` and ``-logsoftmax(ŷ) / n`` for ``y``, ``n`` the
    number of samples.

    >>> import minigrad as mg
    >>> round(float(mg.losses.logitcrossentropy([0.0, 0.0], [1.0, 0.0])), 6)
    0.693147
    """
    ŷ, y = _operands("logitcrossentropy", ŷ, y)
    if agg is not mean or type(data(ŷ)) is not np.ndarray:     # (the fused form is NumPy's)
        return agg(-sum(y * logsoftmax(ŷ, axis=axis), axis=axis))
    z, t = data(ŷ), data(y)
    # (np.maximum.reduce and np.add.reduce are ndarray.max and .sum without their Python wrapper)
    shifted = z - np.maximum.reduce(z, axis=axis, keepdims=True)
    e = np.exp(shifted)
    total = np.add.reduce(e, axis=axis, keepdims=True)
    n = z.size // z.shape[axis]
    logp = shifted - np.log(total)
    value = -(t * logp).sum() / n
    ty = isinstance(y, Node)

    def vjp(g):
        gz = e / total              # softmax(ŷ), then in place: (softmax·Σy - y)·g/n
        gz *= np.add.reduce(t, axis=axis, keepdims=True)
        gz -= t
        gz *= g / n
        return gz, (-g * logp / n if ty else None)

    return record(value, (ŷ, y), vjp)


def binarycrossentropy(ŷ, y, agg=mean, ϵ=None, epsilon=None):
    """Binary cross-entropy of probabilities: ``agg(-y·log(ŷ+ϵ) - (1-y)·log(1-ŷ+ϵ))``.

    >>> import minigrad as mg
    >>> round(float(mg.losses.binarycrossentropy([0.5], [1.0])), 6)
    0.693147
    """
    ŷ, y = _operands("binarycrossentropy", ŷ, y)
    ϵ = _epsilon(ŷ, ϵ, epsilon)
    return agg(-(y * log(ŷ + ϵ)) - (1 - y) * log(1 - ŷ + ϵ))


def logitbinarycrossentropy(ŷ, y, agg=mean):
    """Binary cross-entropy on logits: ``agg((1 - y)·ŷ - logσ(ŷ))``, computed stably.

    >>> import minigrad as mg
    >>> round(float(mg.losses.logitbinarycrossentropy([0.0], [1.0])), 6)
    0.693147
    """
    ŷ, y = _operands("logitbinarycrossentropy", ŷ, y)
    return agg((1 - y) * ŷ - logsigmoid(ŷ))

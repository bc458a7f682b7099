"""Batching data and one-hot labels: :class:`DataLoader`, :func:`onehotbatch`, :func:`onecold`.

MLUtils' semantics, as Flux re-exports them: observations lie on the LAST axis of every array
(features first, batch last, as the layers expect), so a batch of a ``(64, 1797)`` array is a
``(64, batchsize)`` array and a batch of a ``(1797,)`` label vector a ``(batchsize,)`` vector.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DataLoader", "onehotbatch", "onecold"]


def _observations(data) -> tuple[tuple, bool]:
    """``(arrays, is_tuple)`` after checking every array has the same number of observations."""
    is_tuple = isinstance(data, tuple)
    arrays = tuple(np.asarray(a) for a in (data if is_tuple else (data,)))
    if not arrays:
        raise ValueError("DataLoader: the data tuple is empty; give an array or a tuple of them")
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            where = f"data[{i}]" if is_tuple else "data"
            raise ValueError(f"DataLoader: {where} is a scalar; observations lie on the last "
                             "axis of an array")
    counts = [a.shape[-1] for a in arrays]
    if len(set(counts)) > 1:
        shapes = ", ".join(f"data[{i}] has {n} (shape {a.shape})"
                           for i, (n, a) in enumerate(zip(counts, arrays, strict=True)))
        raise ValueError(
            f"DataLoader: the arrays hold different numbers of observations on their last axis: "
            f"{shapes}; observations go on the LAST axis (features first, as in Flux), so a "
            "(samples, features) array needs transposing: x.T")
    return arrays, is_tuple


class DataLoader:
    """Iterate over ``data`` in minibatches along its last axis (Flux's / MLUtils' ``DataLoader``).

    ``data`` is an array or a tuple of arrays with the same number ``n`` of observations on
    their last axis; a tuple yields tuples, which :func:`~minigrad.train_` splats into the
    loss.  Each pass yields ``ceil(n / batchsize)`` batches (``n ÷ batchsize`` with
    ``partial=False``, which drops a last, smaller batch); ``len()`` says how many.

    With ``shuffle=True`` every pass draws a new order of the observations from ``rng``: a
    ``numpy.random.Generator``, an int seed (a generator is made from it once, so successive
    epochs differ but the whole sequence is reproducible), or ``None`` for NumPy's global
    random state (``np.random.seed`` makes that reproducible).  Unshuffled batches are views of
    ``data``; shuffled ones are copies.

    >>> import numpy as np, minigrad as mg
    >>> x, y = np.arange(20.0).reshape(2, 10), np.arange(10)
    >>> loader = mg.DataLoader((x, y), batchsize=4)
    >>> len(loader), [yb.tolist() for xb, yb in loader]
    (3, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
    >>> next(iter(loader))[0].shape
    (2, 4)
    >>> [b.tolist() for b in mg.DataLoader(y, batchsize=4, shuffle=True, rng=0, partial=False)]
    [[4, 6, 2, 7], [3, 5, 9, 0]]
    """

    def __init__(self, data, batchsize: int = 1, shuffle: bool = False, partial: bool = True,
                 rng=None):
        if isinstance(batchsize, bool) or not isinstance(batchsize, (int, np.integer)) \
                or batchsize < 1:
            raise ValueError(f"DataLoader: batchsize must be a positive integer, got "
                             f"{batchsize!r}")
        self.data, self._is_tuple = _observations(data)
        self.batchsize, self.shuffle, self.partial = int(batchsize), bool(shuffle), bool(partial)
        self.nobs = self.data[0].shape[-1]
        self.rng = np.random if rng is None else np.random.default_rng(rng)

    def __len__(self) -> int:
        whole = self.nobs / self.batchsize
        return math.ceil(whole) if self.partial else math.floor(whole)

    def __iter__(self):
        order = self.rng.permutation(self.nobs) if self.shuffle else None
        for k in range(len(self)):
            start = k * self.batchsize
            index = slice(start, min(start + self.batchsize, self.nobs)) if order is None \
                else order[start: start + self.batchsize]
            batch = tuple(a[..., index] for a in self.data)
            yield batch if self._is_tuple else batch[0]

    def __repr__(self) -> str:
        shapes = ", ".join(str(a.shape) for a in self.data)
        return (f"DataLoader({shapes}, batchsize={self.batchsize}, shuffle={self.shuffle}, "
                f"partial={self.partial}): {len(self)} batches")


def _labels(xs) -> np.ndarray:
    # A string is a sequence of characters, as in Julia's onehotbatch("abc", 'a':'z').
    return np.asarray(list(xs) if isinstance(xs, (str, range)) else xs)


def onehotbatch(labels, classes, default=None, dtype=np.float32) -> np.ndarray:
    """One-hot encode ``labels``: ``y[k, i] = 1`` where ``labels[i] == classes[k]``, else 0.

    The result has shape ``(len(classes),) + labels.shape`` (classes on the first axis, as
    Flux's ``onehotbatch``) and dtype ``float32`` by default, so it mixes with the layers'
    float32 outputs in a loss (Flux returns a Boolean ``OneHotMatrix``).  A label that is not
    among ``classes`` is an error, unless ``default`` (one of the classes) is given for it.

    >>> import minigrad as mg
    >>> mg.onehotbatch([2, 0, 2], range(3))
    array([[0., 1., 0.],
           [0., 0., 0.],
           [1., 0., 1.]], dtype=float32)
    >>> mg.onehotbatch("abz", "abc", default="c").argmax(axis=0)
    array([0, 1, 2])
    """
    labels, classes = _labels(labels), _labels(classes)
    if classes.ndim != 1 or classes.size == 0:
        raise ValueError(f"onehotbatch: classes must be a non-empty sequence, got {classes!r}")
    if len(set(classes.tolist())) != classes.size:
        raise ValueError(f"onehotbatch: classes has repeated entries: {classes.tolist()}")
    hot = labels[None, ...] == classes.reshape((-1,) + (1,) * labels.ndim)
    missing = ~hot.any(axis=0)
    if missing.any():
        first = labels[np.unravel_index(np.argmax(missing), labels.shape)].tolist()
        if default is None:
            raise ValueError(
                f"onehotbatch: label {first!r} is not among the classes "
                f"{classes.tolist()[:20]}; pass default=... for labels outside them")
        if default not in classes.tolist():
            raise ValueError(f"onehotbatch: default {default!r} is not among the classes")
        hot[:, missing] = (classes == default)[:, None]
    return hot.astype(dtype)


def onecold(y, classes=None):
    """The inverse of :func:`onehotbatch`: for each column of ``y``, the class with the largest
    value (``classes[argmax(y[:, i])]``; indices ``0, 1, ...`` without ``classes``).

    ``y`` may be one-hot targets, probabilities or logits (a model's output, tracked or not), of
    shape ``(k,)`` (one label) or ``(k, …)``.

    >>> import numpy as np, minigrad as mg
    >>> mg.onecold(np.array([[0.1, 0.9], [0.7, 0.05], [0.2, 0.05]]))
    array([1, 0])
    >>> mg.onecold(mg.onehotbatch("cab", "abc"), "abc").tolist()
    ['c', 'a', 'b']
    """
    y = np.asarray(y)
    if y.ndim == 0:
        raise ValueError("onecold: needs an array of shape (classes, ...), got a scalar")
    index = y.argmax(axis=0)
    if classes is None:
        return index
    classes = _labels(classes)
    if classes.shape != (y.shape[0],):
        raise ValueError(f"onecold: y has {y.shape[0]} classes on its first axis but "
                         f"{classes.size} class labels were given")
    return classes[index]

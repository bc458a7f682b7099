"""``fit``: a small MXNet.jl-style training loop driving an mx optimizer.

MXNet.jl's ``fit(model, optimizer, data; n_epoch, η_decay, callbacks...)`` (its docstrings say
``fit!``) trains a symbolic ``FeedForward`` model.  This is the same loop for minigrad's
autograd: a loss function, parameters and batches, with MXNet.jl's bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..autograd import withgradient
from ..keywords import resolve
from ..optimise.train import DomainError
from ..tracker import Params, data
from .base import AbstractOptimizer, OptimizationState, _count, update_
from .optimizers import getupdater

__all__ = ["fit"]


def _callbacks(name: str, cb) -> list:
    if cb is None:
        return []
    cbs = list(cb) if isinstance(cb, (list, tuple)) else [cb]
    for f in cbs:
        if not callable(f):
            raise TypeError(f"fit: {name} must be a function or a list of functions, got {f!r}")
    return cbs


def _batch_size(item) -> int:
    first = item[0] if isinstance(item, tuple) and item else item
    shape = np.shape(data(first))
    return shape[-1] if len(shape) >= 2 else 1


def fit(loss: Callable, ps, data_, optimizer: AbstractOptimizer, *, n_epoch: int = 10,
        batch_size: int | None = None, eta_decay: str = "epoch", batch_callback=None,
        epoch_callback=None, **kwargs) -> OptimizationState:
    """Train ``ps`` on ``data_`` for ``n_epoch`` epochs with an mx ``optimizer``, MXNet.jl's way.

    * ``state = OptimizationState(batch_size)``; ``batch_size`` defaults to the length of the
      last axis of each item's first array (features first, batch last; 1 for a 1-D array).
    * If ``optimizer.scale == 0`` it is SET to ``1/batch_size`` (this changes the optimizer,
      as in MXNet.jl; an explicit non-zero ``scale`` is kept).  So, as with MXNet's output
      layers, the loss should be the SUM over the batch: ``scale`` turns it into the mean.
    * ``descend_ = getupdater(optimizer)``; parameter ``i`` of ``ps`` (in order, from 0) is
      updated with ``descend_(i, grads[p], p)``; parameters without a gradient are skipped.
    * The counters: ``curr_epoch`` is set to the epoch (1, 2, ...) and ``curr_batch`` to 0 at
      the start of each epoch; ``curr_batch`` and ``curr_iter`` are incremented before each
      update.
    * ``eta_decay`` (``η_decay``): ``"epoch"`` ticks ``update_(optimizer.eta_sched)`` at the
      end of each epoch, ``"batch"`` after each mini-batch (after all parameters are updated).
    * ``epoch_callback(state, loss)`` (a function or a list) runs once before training
      (``curr_epoch == 0``, ``loss`` None) and after each epoch (``loss`` is the epoch's mean
      loss); ``batch_callback(state)`` at the start of each epoch (``curr_batch == 0``) and
      after each mini-batch, as MXNet.jl invokes them.

    Each item of ``data_`` is splatted into ``loss`` when it is a tuple and passed whole
    otherwise; a one-shot iterator is read into a list first so every epoch sees it.  A NaN
    or infinite loss raises :class:`~minigrad.optimise.DomainError` before the update.
    Returns the final ``state``.

    >>> import numpy as np, minigrad as mg
    >>> from minigrad import mx
    >>> W = mg.param(np.zeros((1, 2)))
    >>> x = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]); y = np.array([[1.0, 2.0, 3.0]])
    >>> loss = lambda x, y: mg.sum((W @ x - y) ** 2)        # summed over the batch of 3
    >>> opt = mx.SGD(η=0.5, λ=0)
    >>> state = mx.fit(loss, mg.params(W), [(x, y)], opt, n_epoch=50)
    >>> state, opt.scale
    (OptimizationState(batch_size=3, curr_epoch=50, curr_batch=1, curr_iter=50), 0.3333333333333333)
    >>> np.round(np.asarray(W), 3)
    array([[1., 2.]])
    """
    if kwargs:
        eta_decay = resolve("fit", kwargs, {"η_decay": "eta_decay"})["eta_decay"]
    if not isinstance(optimizer, AbstractOptimizer):
        raise TypeError(f"fit: expected an mx optimizer (e.g. mx.SGD()), got {optimizer!r}")
    if eta_decay not in ("epoch", "batch"):
        raise ValueError(f"fit: η_decay must be 'epoch' or 'batch', got {eta_decay!r}")
    n_epoch = _count("fit", "n_epoch", n_epoch)
    batch_callbacks = _callbacks("batch_callback", batch_callback)
    epoch_callbacks = _callbacks("epoch_callback", epoch_callback)
    ps = ps if isinstance(ps, Params) else Params(ps)
    if iter(data_) is data_:
        data_ = list(data_)
    if batch_size is None:
        first = next(iter(data_), None)
        batch_size = _batch_size(first) if first is not None else 1
    state = OptimizationState(batch_size)
    if getattr(optimizer, "scale", None) == 0:
        optimizer.scale = 1 / batch_size

    def tick():         # update!(optimizer.η_sched), for an optimizer that has one
        sched = getattr(optimizer, "eta_sched", None)
        if sched is not None:
            update_(sched)

    descend_ = getupdater(optimizer)
    params = list(ps)

    for cb in epoch_callbacks:
        cb(state, None)
    for epoch in range(1, n_epoch + 1):
        state.curr_epoch, state.curr_batch = epoch, 0
        for cb in batch_callbacks:
            cb(state)
        total, count = 0.0, 0
        for item in data_:
            args = item if isinstance(item, tuple) else (item,)
            value, grads = withgradient(lambda args=args: loss(*args), ps)
            value = float(data(value))
            if not math.isfinite(value):
                raise DomainError(f"fit: the loss is {value} at epoch {epoch}, batch "
                                  f"{state.curr_batch + 1}; no update was made")
            state.curr_iter += 1
            state.curr_batch += 1
            for i, p in enumerate(params):
                g = grads[p]
                if g is not None:
                    descend_(i, g, p)
            if eta_decay == "batch":
                tick()
            for cb in batch_callbacks:
                cb(state)
            total, count = total + value, count + 1
        if eta_decay == "epoch":
            tick()
        for cb in epoch_callbacks:
            cb(state, total / count if count else None)
    return state

"""``train_``, callbacks and the training-loop helpers (Flux v0.13.17 semantics).

``train_(loss, ps, data, opt, cb=None)`` makes one pass over ``data``.  For item number ``i``:

1. ``value, gs = withgradient(lambda: loss(*d), ps)`` where ``d`` is the item, splatted when it
   is a tuple and passed whole otherwise (Flux's ``batchmemaybe``);
2. a NaN or infinite ``value`` raises :class:`DomainError` before any update;
3. ``update_(opt, ps, gs)``;
4. ``cb()``.

:func:`stop` (from the loss or a callback) ends the loop; :func:`skip` (from the loss) moves to
the next item without updating.  A ``skip()`` in the callback cannot undo the update, which has
already happened (as in Flux).
"""

from __future__ import annotations

import inspect
import math
import sys
import threading
import time
from collections.abc import Callable

from ..autograd import withgradient
from ..tracker import Params, back_, data, recording
from .step import update_

__all__ = ["train_", "stop", "skip", "throttle", "runall", "epochs", "DomainError",
           "StopException", "SkipException"]


class DomainError(ValueError):
    """A value outside the domain where training makes sense (Julia's ``DomainError``)."""


class StopException(Exception):
    """Raised by :func:`stop` to end :func:`train_`'s loop."""


class SkipException(Exception):
    """Raised by :func:`skip` to move :func:`train_` on to the next data item."""


def stop():
    """End the current :func:`train_` loop (call it from the loss or a callback).

    >>> import minigrad as mg
    >>> seen = []
    >>> def loss(i):
    ...     seen.append(i)
    ...     if i == 3: mg.stop()
    ...     return 0.0
    >>> mg.train_(loss, mg.Params([]), range(10), mg.Descent()); seen
    [0, 1, 2, 3]
    """
    raise StopException()


def skip():
    """Skip the current data item of :func:`train_` (call it from the loss: no update happens).

    >>> import minigrad as mg
    >>> W = mg.param([0.0])
    >>> def loss(i):
    ...     if i % 2: mg.skip()
    ...     return mg.sum(W)
    >>> mg.train_(loss, mg.params(W), range(4), mg.Descent(1.0)); W   # items 0 and 2 update
    param([-2.])
    """
    raise SkipException()


def runall(fs) -> Callable[[], None]:
    """One function calling every function of ``fs`` in order (``fs`` may be one function).

    >>> import minigrad as mg
    >>> calls = []
    >>> mg.runall([lambda: calls.append(1), lambda: calls.append(2)])(); calls
    [1, 2]
    """
    if callable(fs):
        return fs
    fs = list(fs)
    for i, f in enumerate(fs):
        if not callable(f):
            raise TypeError(f"runall: callback {i} is not callable: {f!r}")

    def run_all():
        for f in fs:
            f()

    return run_all


class throttle:
    """Wrap ``f`` so that it runs at most once every ``timeout`` seconds (Flux's ``throttle``).

    The first call runs at once (``leading=True``); calls during the following ``timeout``
    seconds are dropped, or, with ``trailing=True``, the last of them runs when the window ends
    (on a timer thread, as Flux runs it in an ``@async`` task).  Each call returns the latest
    result.

    >>> import minigrad as mg
    >>> calls = []
    >>> log = mg.throttle(lambda: calls.append(1) or len(calls), 60)
    >>> log(), log(), log()
    (1, 1, 1)
    """

    def __init__(self, f: Callable, timeout: float, leading: bool = True,
                 trailing: bool = False):
        if not callable(f):
            raise TypeError(f"throttle: f must be callable, got {f!r}")
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout >= 0):
            raise ValueError(f"throttle: timeout must be a finite number of seconds >= 0, "
                             f"got {timeout!r}")
        self.f, self.timeout, self.leading, self.trailing = f, timeout, leading, trailing
        self.result = None
        self._cooldown_until = -math.inf
        self._later = None
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        now = time.monotonic()
        with self._lock:
            idle = now >= self._cooldown_until and self._later is None
            if idle:
                self._cooldown_until = now + self.timeout
                if not self.leading:
                    self._later = (args, kwargs)
                    self._start_timer()
            elif self.trailing:
                first_pending = self._later is None
                self._later = (args, kwargs)
                if first_pending:
                    self._start_timer()
        if idle and self.leading:
            self.result = self.f(*args, **kwargs)
        return self.result

    def _start_timer(self) -> None:
        delay = max(self._cooldown_until - time.monotonic(), 0.0)
        timer = threading.Timer(delay, self._run_later)
        timer.daemon = True
        timer.start()

    def _run_later(self) -> None:
        with self._lock:
            pending, self._later = self._later, None
            self._cooldown_until = time.monotonic() + self.timeout
        if pending is not None:
            self.result = self.f(*pending[0], **pending[1])


def epochs(n: int, log: Callable[[str], object] | None = print):
    """Flux's ``@epochs n body``: ``for epoch in epochs(n): body``, logging "Epoch i".

    Yields ``1, 2, ..., n``; pass ``log=None`` for silence.

    >>> import minigrad as mg
    >>> [e for e in mg.epochs(2)]
    Epoch 1
    Epoch 2
    [1, 2]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"epochs: n must be a non-negative integer, got {n!r}")
    for i in range(1, n + 1):
        if log is not None:
            log(f"Epoch {i}")
        yield i


class _Progress:
    """A one-line progress display on stderr: step, loss and steps per second.

    Each line overwrites the previous one (``\\r``) and is padded with spaces to the previous
    line's length, so a shorter line leaves nothing of a longer one behind (``465 steps/s/s``).
    Padding rather than the "clear to end of line" escape works in files and notebooks too.
    """

    def __init__(self, total: int | None):
        self.total, self.start, self.last = total, time.perf_counter(), 0.0
        self.width = 0

    def show(self, i: int, value: float, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < 0.1:
            return
        self.last = now
        rate = (i + 1) / max(now - self.start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        line = f"step {i + 1}{of}  loss {value:.6g}  {rate:,.0f} steps/s"
        sys.stderr.write("\r" + line.ljust(self.width))
        self.width = len(line)
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _splat(loss, d):
    """Flux's ``batchmemaybe``: a tuple item is splatted into ``loss``, anything else passed."""
    args = d if isinstance(d, tuple) else (d,)
    try:
        return loss(*args)
    except TypeError as err:
        # Only when the call itself cannot bind (checked after the fact: nothing to pay when
        # it works) is the arity the problem; a TypeError from inside the loss passes through.
        try:
            signature = inspect.signature(loss)
        except (TypeError, ValueError):             # no signature to check the call against
            raise err from None
        try:
            signature.bind(*args)
        except TypeError:
            kind = (f"a tuple of {len(d)}, unpacked into {len(d)} arguments" if
                    isinstance(d, tuple) else "not a tuple, passed as one argument")
            raise TypeError(
                f"train_: each data item is given to the loss as its arguments: a tuple item "
                f"is unpacked (loss(*item)), anything else is passed whole (loss(item)); this "
                f"item is {kind}, but the loss has signature {signature}. Make the loss take "
                f"as many arguments as the items hold (for example lambda x, y: ...), or wrap "
                f"each item in a 1-tuple to pass it whole") from err
        raise


def _checked(value, i: int) -> float:
    value = float(data(value))
    if not math.isfinite(value):
        raise DomainError(f"Loss is {value} on data item {i} (counting from 0; item {i + 1} "
                          "counting from 1, as Flux does), stopping training")
    return value


def _loop(data, step, cb, progress: bool) -> None:
    """Run ``step(i, item)`` over ``data`` with callbacks, stop/skip and the progress line."""
    callback = runall(cb) if cb is not None else None
    display = _Progress(_length(data)) if progress else None
    value, last = math.nan, -1
    for i, d in enumerate(data):
        try:
            value = step(i, d)
            if callback is not None:
                callback()
        except StopException:
            break
        except SkipException:
            continue
        last = i
        if display is not None:
            display.show(i, value)
    if display is not None and last >= 0:
        display.show(last, value, final=True)


def train_(loss, *args, cb=None, progress: bool = False) -> None:
    """Flux's ``train!``: one pass over ``data``, updating ``ps`` with ``opt`` after each item.

    ``train_(loss, ps, data, opt, cb=None)``: see the module documentation for the steps.  A
    non-finite loss raises :class:`DomainError` naming the value and the item's index, before
    that item's update.  ``cb`` is a function of no arguments or a list of them (use
    :func:`throttle` to slow it down).  ``progress=True`` shows step, loss and rate on stderr.

    ``train_(loss, data, opt)`` is the Tracker-era form: ``opt`` is a legacy closure optimiser
    (``SGD([W, b], 0.1)``), called after each item's loss is backpropagated with ``back_``.

    >>> import numpy as np, minigrad as mg
    >>> W = mg.param([0.0])
    >>> data = [(np.array([1.0]), np.array([2.0]))] * 50
    >>> mg.train_(lambda x, y: mg.losses.mse(W * x, y), mg.params(W), data, mg.Descent(0.1))
    >>> round(float(W[0]), 4)
    2.0
    """
    if len(args) == 2:
        data_, opt = args
        if not callable(opt):
            raise TypeError("train_(loss, data, opt): opt must be a Tracker-era closure "
                            "optimiser such as SGD([W, b], 0.1); with a rule, use "
                            "train_(loss, ps, data, opt)")

        def legacy_step(i, d):
            with recording():
                value = _splat(loss, d)
            checked = _checked(value, i)
            back_(value)
            opt()
            return checked

        return _loop(data_, legacy_step, cb, progress)
    if len(args) != 3:
        raise TypeError("train_ takes (loss, ps, data, opt) or, Tracker-era, (loss, data, opt)")
    ps, data_, opt = args
    if not isinstance(ps, Params):
        try:
            ps = Params(ps)
        except TypeError as err:
            raise TypeError(
                f"train_(loss, ps, data, opt): ps must be the trainable arrays to update, got "
                f"{type(ps).__name__} {repr(ps)[:80]}; for a model, pass mg.params(model)"
            ) from err

    def step(i, d):
        value, gs = withgradient(lambda: _splat(loss, d), ps)
        checked = _checked(value, i)
        update_(opt, ps, gs)
        return checked

    return _loop(data_, step, cb, progress)


def _length(data) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None

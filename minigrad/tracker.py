"""Trainable arrays, the tape, ``Params``, ``Grads`` and ``gradient`` (Flux.Tracker in Python).

How it works, in one paragraph: a trainable array (:class:`Param`) is a thin wrapper around a
NumPy array (``p.data``).  Outside a gradient computation every operation on it simply runs
NumPy on ``p.data`` and returns a plain NumPy array, so it costs what NumPy costs.  While
:func:`gradient` (or :func:`recording`) is active, a thread-local *tape* is open, and every
differentiable operation whose inputs include a trainable or tracked value appends a
:class:`TrackedArray` node to it: the value, its parent nodes and a closure computing the
vector-Jacobian product.  The tape is in execution order, which is already a topological
order, so the backward pass is a plain reversed loop: no recursion, any depth.

The operations themselves (and the Python operators bound to trainable arrays) live in
:mod:`minigrad.ops`, each forward next to its backward.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable, Iterator
from itertools import repeat
from operator import is_

import numpy as np

from .arrays import array_module, as_array, device_dtype, library, on_device
from .tree import mirror, walk

__all__ = [
    "Param", "TrackerParam", "TrackedArray", "Params", "Grads", "param", "params", "data", "grad",
    "gradient", "withgradient", "back_", "update_", "recording", "istracked", "isleaf",
    "rand", "randn", "zeros", "ones", "NotAParameterError", "Tape",
]


class _TapeState(threading.local):
    # One tape per thread, so two threads can train two models at once.
    tape: Tape | None = None


_state = _TapeState()


class Node:
    """Common base of :class:`Param` (a leaf) and :class:`TrackedArray` (an op's result).

    Behaves like a NumPy array: ``shape``, ``dtype``, indexing, printing, arithmetic and
    ``np.asarray(x)`` (which returns ``x.data`` itself, without a copy).  The arithmetic
    operators are bound in :mod:`minigrad.ops`.  Hashing is by identity, so nodes can key the
    per-parameter state of optimisers (Julia's ``IdDict``).
    """

    __slots__ = ("data", "g")
    is_leaf = False

    __hash__ = object.__hash__

    # -- the array face -----------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def __array__(self, dtype=None, copy=None):
        if dtype is None and not copy:
            return self.data
        return np.array(self.data, dtype=dtype, copy=True if copy else None)

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __bool__(self) -> bool:
        return bool(self.data)

    def item(self):
        """The value of a one-element array as a Python number."""
        return self.data.item()

    def tolist(self):
        """The values as nested Python lists."""
        return self.data.tolist()

    def __str__(self) -> str:
        return str(self.data)

    def __repr__(self) -> str:
        text = repr(self.data)
        if text.startswith("array("):
            text = text[len("array"):]
        return type(self).__name__.lower() + text


#: The dtypes of trainable arrays: those the optimisers' kernels compute in.
PARAM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Param(Node):
    """A trainable array: a leaf of the tape, updated in place by every update function.

    ``p.data`` is the NumPy storage; ``p.grad`` is the gradient accumulated by :func:`back_`
    (allocated as zeros on first access, as Tracker does).  Create one with :func:`param`,
    :func:`minigrad.rand` and friends, or the layers.

    >>> import minigrad as mg
    >>> W = mg.param([[1.0, 2.0]])
    >>> W.shape, W.dtype
    ((1, 2), dtype('float64'))
    """

    __slots__ = ("_grad", "flat", "_storage", "__weakref__")
    is_leaf = True

    def __init__(self, value: np.ndarray):
        if (not isinstance(value, np.ndarray) or value.dtype.kind != "f") and not (
                on_device(value) and device_dtype(value).kind == "f"):    # a GPU array
            raise TypeError(
                "a trainable array needs a floating-point numpy array, got "
                f"{_describe(value)}; use minigrad.param(x) to convert"
            )
        dtype = device_dtype(value)
        if dtype not in PARAM_DTYPES:
            raise TypeError(
                f"a trainable array must be float32 or float64 (native byte order), got "
                f"{_describe(value)}: the optimisers' kernels run on those two only (float16 "
                "or long double would fail later, at the first update); convert it, for "
                "example minigrad.param(x, dtype=np.float32)")
        #: The :class:`FlatBuffer` this parameter's storage is a view into, or ``None``.
        self.flat = None
        self.data = value
        self.g = None
        self._grad = None

    @property
    def data(self) -> np.ndarray:
        """The array's storage.  Assigning new storage takes the parameter out of its
        :class:`FlatBuffer` (the buffer dissolves; see :mod:`minigrad.optimise.flat`)."""
        return self._storage

    @data.setter
    def data(self, value) -> None:
        # New storage takes the parameter out of its flat buffer: dissolve the buffer here, so
        # that a step need not check every parameter's storage (FlatBuffer.holds).
        buffer = getattr(self, "flat", None)    # (not set yet while unpickling)
        if buffer is not None:
            buffer.dissolve()
        self._storage = value

    # Copies and pickles own their storage: they leave the flat buffer behind.
    def __getstate__(self) -> tuple:
        return None, {"data": self.data, "g": None, "_grad": self._grad, "flat": None}

    @property
    def grad(self) -> np.ndarray:
        if self._grad is None:
            self._grad = np.zeros_like(self.data)
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        self._grad = None if value is None else np.asarray(value, dtype=self.data.dtype)

    def __setitem__(self, index, value) -> None:
        self.data[index] = data(value)


class TrackerParam(Param):
    """A trainable array in Tracker's own style: every operation on it is recorded, inside a
    gradient computation or not, so a loss computed from it can be backpropagated later with
    :func:`back_` (Tracker's ``l = loss(x, y); back!(l)``).  :func:`param` (this module's,
    Tracker's ``param``) creates one; ``minigrad.param`` creates a plain :class:`Param`.

    Outside a gradient computation each result is a :class:`TrackedArray` holding its inputs,
    as in Tracker: the graph lives as long as the result does and goes with it (there is no
    tape to clear).  Use ``data(x)`` to compute on the raw values.  Plain parameters and
    everything inside :func:`gradient` are unaffected.

    >>> import minigrad as mg
    >>> from minigrad.tracker import param, back_, grad
    >>> W = param([1.0, 2.0])
    >>> l = mg.sum(W * W)                  # recorded, though no gradient call is open
    >>> back_(l); grad(W)
    array([2., 4.])
    """

    __slots__ = ()

    def __new__(cls, *args):
        # (here, not in __init__: copies and unpickled arrays are made without __init__)
        global _tracker_style
        _tracker_style = True
        return super().__new__(cls)


class TrackedArray(Node):
    """The result of a differentiable operation recorded on the tape.

    ``parents`` holds the tracked inputs (``None`` for constants) and ``vjp(g)`` returns one
    gradient per parent.  These exist only while a gradient is being taken.
    """

    __slots__ = ("parents", "vjp", "tape")

    def __init__(self, value, parents: tuple, vjp, tape: Tape):
        self.data = value if isinstance(value, np.ndarray) else as_array(value)
        self.g = None
        self.parents = parents
        self.vjp = vjp
        self.tape = tape

    def __setitem__(self, index, value):
        raise TypeError(
            "cannot assign into a tracked intermediate value: the tape needs it unchanged; "
            "build a new array instead (for example with minigrad.concatenate)"
        )


class NotAParameterError(KeyError):
    """``grads[x]`` for an ``x`` that was not among the differentiated parameters."""

    def __str__(self) -> str:
        return str(self.args[0])


def _describe(x) -> str:
    """``x`` in words, for error messages: what it is, its dtype and shape (and, for a GPU
    array, its library)."""
    holder = ""
    if isinstance(x, Node):
        if type(x.data) is np.ndarray:
            return f"a {type(x).__name__.lower()} of dtype {x.dtype} and shape {x.shape}"
        holder, x = f"a {type(x).__name__.lower()} holding ", x.data
    if isinstance(x, np.ndarray):
        return f"{holder}a numpy array of dtype {x.dtype} and shape {x.shape}"
    if on_device(x):
        return (f"{holder}a {library(x)} GPU array of dtype {device_dtype(x)} and shape "
                f"{tuple(x.shape)}")
    return f"{type(x).__name__} {x!r}"[:120]


# -- recording -----------------------------------------------------------------------------------

def current_tape() -> Tape | None:
    """The tape of this thread, or ``None`` when no gradient is being taken."""
    return _state.tape


class Tape(list):
    """The recorded nodes, in execution order; ``outer`` is the tape that was open before.

    A gradient taken inside another one records on its own tape, but its values may depend on
    nodes of the outer tape, which were all recorded earlier: walking this tape and then the
    outer ones, each backwards, is still a valid reverse topological order.
    """

    __slots__ = ("outer",)

    def __init__(self, outer: Tape | None = None):
        super().__init__()
        self.outer = outer


class recording:
    """Context manager that records operations so that :func:`back_` can run on the result.

    :func:`gradient` opens one for you; use this only for Tracker's manual style.  Keep the
    block to one step: everything recorded inside stays alive until the block's values go.

    >>> import minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> with mg.tracker.recording():
    ...     l = mg.sum(W * W)
    >>> mg.tracker.back_(l)
    >>> W.grad
    array([2., 4.])
    """

    def __enter__(self) -> Tape:
        self._saved = _state.tape
        _state.tape = self.tape = Tape(self._saved)
        return self.tape

    def __exit__(self, *exc) -> None:
        _state.tape = self._saved


#: Whether a :class:`TrackerParam` was ever made: until then no op outside a tape looks at its
#: inputs, so that inference on plain parameters costs one flag test per op.
_tracker_style = False


def record(value, inputs: tuple, vjp):
    """Return ``value`` as is, or as a tracked node when a tape is open and an input is
    tracked, or when no tape is open and an input is a :class:`TrackerParam` or a value
    computed from one (Tracker's style: such a node is on no tape, ``tape`` is ``None``).

    This is the one hook every op in :mod:`minigrad.ops` goes through.  ``vjp(g)`` must return
    one gradient per input (``None`` allowed for inputs that are constants).
    """
    tape = _state.tape
    if tape is None:
        if not _tracker_style or not any(
                isinstance(x, TrackerParam) or (type(x) is TrackedArray and x.tape is None)
                for x in inputs):
            return value
    tracked = False
    parents = []
    for x in inputs:
        if isinstance(x, Node):
            tracked = True
            parents.append(x)
        else:
            parents.append(None)
    if not tracked:
        return value
    node = TrackedArray(value, tuple(parents), vjp, tape)
    if tape is not None:
        tape.append(node)
    return node


def _graph(loss: TrackedArray) -> list:
    """The tracked values ``loss`` was computed from, ``loss`` last, each after its parents:
    the tape of a graph recorded in Tracker's style (see :class:`TrackerParam`), found by a
    depth-first walk (iterative, so any depth works)."""
    order, seen, stack = [], {id(loss)}, [(loss, iter(loss.parents))]
    while stack:
        node, parents = stack[-1]
        for parent in parents:
            if type(parent) is TrackedArray and id(parent) not in seen:
                seen.add(id(parent))
                stack.append((parent, iter(parent.parents)))
                break
        else:
            stack.pop()
            order.append(node)
    return order


def _backprop(tape: Tape, loss: Node) -> list:
    """Walk ``tape`` (then its outer tapes) backwards from ``loss``; return the leaves reached,
    with their gradients in ``.g``.

    Each node's gradient is freed as soon as it has been pushed to its parents.  A gradient is
    never modified in place here (accumulation is ``a + b``), because an op may hand the same
    array to two parents.
    """
    xp = np if type(loss.data) is np.ndarray else array_module(loss.data)    # (NumPy: no call)
    loss.g = xp.array(1, dtype=loss.data.dtype)
    if loss.is_leaf:
        return [loss]
    leaves = []
    while tape is not None:
        for node in reversed(tape):
            g = node.g
            if g is None:
                continue
            node.g = None
            for parent, pg in zip(node.parents, node.vjp(g), strict=True):
                if parent is None or pg is None:
                    continue
                if parent.g is None:
                    parent.g = pg
                    if parent.is_leaf:
                        leaves.append(parent)
                else:
                    parent.g = parent.g + pg
        tape = getattr(tape, "outer", None)
    return leaves


# -- flat buffers ---------------------------------------------------------------------------------

class FlatBuffer:
    """Parameters of one dtype whose storage is one contiguous buffer, in order.

    ``data`` is the flat buffer, ``views[i]`` the ``i``-th parameter's storage (its ``.data``,
    shaped like it) and ``starts[i]:starts[i + 1]`` its elements in ``data``.  The optimisers
    build one when they first update several parameters together
    (:mod:`minigrad.optimise.flat`); from then on :func:`gradient` taken with exactly these
    parameters writes their gradients into one flat buffer laid out alike (``Grads.flat``), so
    that one kernel call updates them all, and an all-reduce (``minigrad.distributed``) sums
    them in one call.  ``landed`` is ``(that flat gradient, its views in order)`` for the
    latest such gradient on the host, if every parameter's gradient landed (else ``None``): it
    lets a caller that holds the gradients without their ``Grads`` (a gradient tree of
    :mod:`minigrad.optimisers`) recognise them by identity (:meth:`landed_flat`).  So the
    latest gradient stays alive until the next one lands or the buffer dissolves, as PyTorch
    keeps a parameter's ``.grad``.

    A buffer is dissolved (:meth:`dissolve`: it holds no one any more) as soon as one of its
    parameters dies or is given new storage (``p.data = ...``); the survivors form a new one
    at their next update together.

    >>> import numpy as np, minigrad as mg
    >>> ps = mg.Params([mg.param(np.ones(2)), mg.param(np.ones(3))])
    >>> gs = mg.gradient(lambda: mg.sum(ps[0]) + mg.sum(ps[1]), ps)
    >>> _ = mg.update_(mg.Descent(0.5), ps, gs)        # moves both into one buffer
    >>> ps[0].flat.data
    array([0.5, 0.5, 0.5, 0.5, 0.5])
    >>> gs = mg.gradient(lambda: mg.sum(ps[0]) + mg.sum(2 * ps[1]), ps)
    >>> gs.flat, gs[ps[1]].base is gs.flat
    (array([1., 1., 2., 2., 2.]), True)
    """

    __slots__ = ("data", "views", "starts", "ids", "index", "landed", "__weakref__")

    def __init__(self, data, views: list, starts: list, params: list):
        self.data, self.views, self.starts = data, views, starts
        self.ids = tuple(map(id, params))
        self.index = {ident: i for i, ident in enumerate(self.ids)}     # parameter id -> slot
        self.landed = None

    def holds(self, params) -> bool:
        """Whether ``params`` (a :class:`Params` or a list) is exactly this buffer's
        parameters, in order, each still stored in it (a parameter whose ``.data`` was
        reassigned no longer is; once one of them dies, none is)."""
        # (a parameter that died or was given new storage emptied ``views``: see Param.data)
        ids = tuple(params._items) if type(params) is Params else tuple(map(id, params))
        return len(self.views) == len(self.ids) and ids == self.ids

    def dissolve(self) -> None:
        """Hold no parameter any more (``views`` emptied), and let go of the latest gradient.

        >>> import numpy as np, minigrad as mg
        >>> ps = [mg.param(np.ones(2)), mg.param(np.ones(3))]
        >>> _ = mg.update_(mg.Descent(0.5), ps, {p: np.ones(p.shape) for p in ps})
        >>> buffer = ps[0].flat; buffer.dissolve()
        >>> buffer.holds(ps), buffer.landed
        (False, None)
        """
        self.views.clear()
        self.landed = None

    def landed_flat(self, grads: list):
        """The flat gradient whose views ``grads`` are, when they are the views of the latest
        gradient laid out as this buffer (``landed``), in order; else ``None``.

        >>> import numpy as np, minigrad as mg
        >>> ps = [mg.param(np.ones(2)), mg.param(np.ones(3))]
        >>> _ = mg.update_(mg.Descent(0.5), ps, {p: np.ones(p.shape) for p in ps})
        >>> gs = mg.gradient(lambda: mg.sum(ps[0]) + mg.sum(ps[1]), mg.Params(ps))
        >>> buffer = ps[0].flat
        >>> buffer.landed_flat([gs[ps[0]], gs[ps[1]]]) is gs.flat
        True
        >>> buffer.landed_flat([gs[ps[1]], gs[ps[0]]]) is None         # not in its order
        True
        """
        if self.landed is None:
            return None
        flat, views = self.landed
        return flat if len(grads) == len(views) and all(map(is_, grads, views)) else None


def _flat_grads(gs: Grads, leaves: list) -> bool:
    """Store the gradients of ``gs``'s parameters that reach ``leaves`` as views into one new
    flat buffer laid out as their :class:`FlatBuffer` (zeros where the loss does not depend
    on a parameter, whose gradient stays ``None``), if they live in one; return whether."""
    ps = gs.params
    first = next(iter(ps._items.values()), None)
    buffer = first.flat if first is not None else None
    if buffer is None or not buffer.holds(ps):
        return False
    data = buffer.data
    xp = np if type(data) is np.ndarray else array_module(data)
    flat = xp.empty(data.size, dtype=data.dtype)
    reached = set()
    for leaf in leaves:
        i = buffer.index.get(id(leaf))
        if i is None:
            continue
        view = flat[buffer.starts[i]:buffer.starts[i + 1]].reshape(leaf.data.shape)
        view[...] = leaf.g
        gs._grads[id(leaf)] = view
        reached.add(i)
    for i in set(range(len(buffer.ids))) - reached:
        flat[buffer.starts[i]:buffer.starts[i + 1]] = 0
    gs._land(flat, buffer)
    if xp is np:    # (a gradient that stayed None is no view: then none is recognised)
        buffer.landed = ((flat, tuple(gs._grads[i] for i in buffer.ids)) if gs._reached_all
                         else None)
    return True


# -- Params and Grads ----------------------------------------------------------------------------

class Params:
    """An ordered set of trainable arrays, by identity (Flux's ``Params``).

    ``Params([W, b])`` and :func:`params` build one; duplicates are dropped, order is kept.

    >>> import minigrad as mg
    >>> W, b = mg.rand(2, 5), mg.rand(2)
    >>> ps = mg.Params([W, b, W])
    >>> len(ps), ps[0] is W, b in ps
    (2, True, True)
    """

    __slots__ = ("_items",)

    def __init__(self, xs: Iterable = ()):
        self._items: dict[int, Param] = {}
        for i, x in enumerate(xs):
            if not isinstance(x, Param):
                raise TypeError(
                    f"Params holds trainable arrays; item {i} is {_describe(x)} "
                    "(create trainable arrays with minigrad.param(...), minigrad.rand(...), ...)"
                )
            self._items.setdefault(id(x), x)

    def append(self, x: Param) -> None:
        """Add ``x`` unless it is already present (Julia's ``push!``)."""
        if not isinstance(x, Param):
            raise TypeError(f"Params holds trainable arrays, got {_describe(x)}")
        self._items.setdefault(id(x), x)

    def __iter__(self) -> Iterator[Param]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, x) -> bool:
        return self._items.get(id(x)) is x

    def __getitem__(self, i: int) -> Param:
        return list(self._items.values())[i]

    # (Copies and pickles keep the parameters, not the ids they are filed under.)
    def __getstate__(self) -> list:
        return list(self)

    def __setstate__(self, xs: list) -> None:
        self._items = {id(x): x for x in xs}

    def __repr__(self) -> str:
        shapes = ", ".join(str(p.shape) for p in self)
        return f"Params([{shapes}])"


def params(*xs) -> Params:
    """Collect every trainable array in ``xs`` into a :class:`Params` (Flux's ``params``).

    Arguments may be trainable arrays, models (any object whose attributes, lists, tuples or
    dicts hold trainable arrays, such as :class:`minigrad.Chain`), collections of them, or
    ``Params``.  Leaves that are not arrays (``False``, ``None``, numbers, functions) are
    skipped, as Flux skips a ``false`` bias.  A plain NumPy array passed directly is an error,
    because it cannot be differentiated.

    >>> import minigrad as mg
    >>> m = mg.Chain(mg.Dense(10, 5, mg.σ), mg.Dense(5, 2), mg.softmax)
    >>> [p.shape for p in mg.params(m)]
    [(5, 10), (5,), (2, 5), (2,)]
    """
    ps = Params()
    for i, x in enumerate(xs):
        if isinstance(x, np.ndarray):
            raise TypeError(
                f"params() got a plain numpy array as argument {i} (shape {x.shape}); only "
                "trainable arrays can be differentiated: create it with minigrad.param(...)"
            )
        for _, p in walk(x, Param, (Params,)):
            ps.append(p)
    return ps


class Grads:
    """The gradients of one :func:`gradient` call, looked up by parameter (Zygote's ``Grads``).

    ``grads[W]`` is a NumPy array of ``W``'s shape and dtype, or ``None`` when the loss does
    not depend on ``W``.  Asking for an array that was not among the parameters raises
    ``KeyError`` with an explanation.

    >>> import minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> gs = mg.gradient(lambda: mg.sum(W * W), mg.params(W))
    >>> gs[W]
    array([2., 4.])
    """

    __slots__ = ("params", "_grads", "flat", "buffer", "_reached_all")

    def __init__(self, ps: Params):
        self.params = ps
        self._grads: dict[int, np.ndarray | None] = dict.fromkeys(ps._items)
        #: All the gradients in one flat array, each ``grads[p]`` a view into it, when the
        #: parameters live in one :class:`FlatBuffer` (``buffer``, laid out alike); else
        #: ``None`` (both).
        self.flat = self.buffer = None
        self._reached_all = False   # with ``flat``: no parameter's gradient is None

    def _land(self, flat, buffer: FlatBuffer) -> None:
        """Record that every gradient lies in ``flat``, laid out as ``buffer`` (those that are
        ``None`` as zeros there): the one place that sets ``flat``, ``buffer`` and whether the
        step may take them all as they lie (none ``None``)."""
        self.flat, self.buffer = flat, buffer
        self._reached_all = not any(map(is_, self._grads.values(), repeat(None)))

    def __getitem__(self, x) -> np.ndarray | None:
        try:
            if self.params._items[id(x)] is x:
                return self._grads[id(x)]
        except KeyError:
            pass
        raise NotAParameterError(
            f"{_describe(x)} is not one of the {len(self.params)} parameters this gradient was "
            "taken with; include it in the Params given to gradient()"
        )

    def __setitem__(self, x: Param, g) -> None:
        if x not in self.params:
            self.params.append(x)
        self._grads[id(x)] = g
        self.flat = self.buffer = None      # the gradients no longer all lie in it

    def __contains__(self, x) -> bool:
        return x in self.params

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def keys(self) -> Params:
        return self.params

    def values(self) -> list:
        return [self._grads[id(p)] for p in self.params]

    def items(self) -> list:
        return [(p, self._grads[id(p)]) for p in self.params]

    def __getstate__(self) -> tuple:
        return self.params, self.values()

    def __setstate__(self, state: tuple) -> None:
        self.params, values = state
        self._grads = {id(p): g for p, g in zip(self.params, values, strict=True)}
        self.flat = self.buffer = None
        self._reached_all = False

    def __repr__(self) -> str:
        return f"Grads(<{len(self.params)} parameters>)"


# -- gradient ------------------------------------------------------------------------------------

def _loss_value(y):
    """Check that ``y`` is a scalar; return its value as a NumPy scalar."""
    value = y.data if isinstance(y, Node) else np.asarray(y)
    if value.ndim != 0:
        raise ValueError(
            f"the loss must be a scalar, got an array of shape {value.shape}; reduce it with "
            "minigrad.sum or minigrad.mean"
        )
    if value.dtype.kind not in "fiub":
        raise TypeError(f"the loss must be a real number, got dtype {value.dtype}")
    return value[()]


def _own(g: np.ndarray, like: np.ndarray, handed_out: set) -> np.ndarray:
    """Return ``g`` as a fresh, writable array shaped and typed like ``like``.

    The backward pass may pass views or the same array to several parents; the array handed
    to the user must be theirs alone, so copy unless it provably is.
    """
    if (
        type(g) is np.ndarray
        and g.dtype == like.dtype
        and g.shape == like.shape
        and g.base is None
        and g.flags.writeable
        and id(g) not in handed_out
    ):
        handed_out.add(id(g))
        return g
    out = np.empty_like(like)
    out[...] = g
    return out


def _run(f, args: tuple, check_finite: bool):
    with recording() as tape:
        y = f(*args)
    try:
        value = _loss_value(y)
        if check_finite and not np.isfinite(value):
            raise ValueError(f"Loss is {'NaN' if np.isnan(value) else 'infinite'} ({value})")
        return value, (_backprop(tape, y) if isinstance(y, Node) else [])
    finally:
        # Each node points back at its tape; emptying the tape breaks that cycle, so the whole
        # graph is freed by reference counting as soon as the caller drops it (not by the GC).
        tape.clear()


def _collect(ps: Params, leaves: list, handed_out: set) -> Grads:
    """The :class:`Grads` of ``ps`` from the backward pass that reached ``leaves``."""
    gs = Grads(ps)
    if not _flat_grads(gs, leaves):
        for leaf in leaves:
            if leaf in ps:
                gs._grads[id(leaf)] = _own(leaf.g, leaf.data, handed_out)
    return gs


def _implicit(f, ps: Params, check_finite: bool):
    value, leaves = _run(f, (), check_finite)
    gs = _collect(ps, leaves, set())
    for leaf in leaves:
        leaf.g = None
    return value, gs


def _is_model(x) -> bool:
    """Whether an argument of the explicit form is a model: not an array or a number, nor a
    list or tuple of them, but something holding trainable arrays (a layer, a dict)."""
    return not isinstance(x, (Node, np.ndarray, np.generic, int, float)) and bool(
        walk(x, Param, (Params,)))


def _model_grads(model, leaves: list, handed_out: set):
    """The gradient tree of ``model`` (see :func:`differentiate`)."""
    gs = _collect(Params(p for _, p in walk(model, Param, (Params,))), leaves, handed_out)
    met: set = set()

    def leaf(y):
        if not isinstance(y, Param):
            return NotImplemented
        first = id(y) not in met
        met.add(id(y))
        return gs[y] if first else None

    return mirror(model, leaf, (Params,))


def _explicit(f, xs: tuple, check_finite: bool):
    code = getattr(f, "__code__", None)
    if code is not None and code.co_argcount == 0 and not code.co_flags & inspect.CO_VARARGS:
        raise TypeError(
            "gradient(f, x...) calls f(x...), but f takes no arguments: for Flux's implicit "
            "form pass the trainable arrays it uses as minigrad.params(...) (create them with "
            "minigrad.param(x)); for the explicit form write f as lambda x: ...")
    models = []
    for i, x in enumerate(xs):
        if isinstance(x, (list, tuple)) and any(isinstance(item, Param) for item in x):
            raise TypeError(
                f"gradient(f, ...): argument {i} is a list of trainable arrays; for Flux's "
                "implicit form pass minigrad.Params([...]) or minigrad.params(...)")
        models.append(_is_model(x))
        if not models[-1] and not isinstance(x, (Node, np.ndarray, int, float, list, tuple,
                                                 np.generic)):
            raise TypeError(f"gradient(f, x...) differentiates arrays; argument {i} is "
                            f"{_describe(x)} (nor is it a model: an object or dict holding "
                            "trainable arrays)")
    ps = tuple(x if model else Param(param_value(x)) for x, model in zip(xs, models, strict=True))
    value, leaves = _run(f, ps, check_finite)
    handed_out: set = set()
    grads = []
    for p, model in zip(ps, models, strict=True):
        if model:
            grads.append(_model_grads(p, leaves, handed_out))
        else:
            grads.append(None if p.g is None else _own(p.g, p.data, handed_out))
    for leaf in leaves:
        leaf.g = None
    return value, tuple(grads)


def differentiate(f, args: tuple, check_finite: bool):
    """``(value, gradients)`` of ``f``: the engine behind every ``gradient`` function.

    ``args`` is ``(ps,)`` with ``ps`` a :class:`Params` (implicit form, gradients as
    :class:`Grads`) or the arguments of ``f`` (explicit form, gradients as a tuple).

    In the explicit form an array or number is copied into a new trainable array, and its
    gradient is an array (``None`` if the loss does not depend on it).  A model (an object or
    dict holding trainable arrays; not a list of arrays) is passed to ``f`` itself, and its
    gradient is a tree mirroring it, as Zygote's for a struct: an object or dict gives a dict
    of its attributes or keys, a list or tuple a tuple, a trainable array its gradient (or
    ``None``), anything else ``None``.  An array reached twice (tied weights) has its whole
    gradient at the first place :func:`params` finds it and ``None`` at the others.  When
    the model's parameters lie in one :class:`FlatBuffer` (after an update by
    :mod:`minigrad.optimisers`, say), the gradients are views into one flat buffer laid out
    alike, as ``Grads.flat``.

    >>> import minigrad as mg
    >>> m = mg.Dense(2, 1)
    >>> g = mg.gradient(lambda m: mg.sum(m([1.0, 2.0])), m)[0]
    >>> g["weight"], g["bias"], g["σ"]
    (array([[1., 2.]], dtype=float32), array([1.], dtype=float32), None)
    """
    if len(args) == 1 and isinstance(args[0], Params):
        return _implicit(f, args[0], check_finite)
    if not args:
        raise TypeError("gradient(f, ps) needs Params, or gradient(f, x...) needs arguments")
    return _explicit(f, args, check_finite)


def gradient(f, *args):
    """Tracker's ``gradient``: like :func:`minigrad.gradient`, but a NaN or infinite loss raises.

    >>> import minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> mg.tracker.gradient(lambda: mg.sum(W * W), mg.Params([W]))[W]
    array([2., 4.])
    >>> mg.tracker.gradient(lambda: mg.sum(W * float("nan")), mg.Params([W]))
    Traceback (most recent call last):
    ...
    ValueError: Loss is NaN (nan)
    """
    return differentiate(f, args, check_finite=True)[1]


def withgradient(f, *args):
    """Tracker-flavoured :func:`minigrad.withgradient`: ``(value, grads)``, NaN/Inf loss raises."""
    return differentiate(f, args, check_finite=True)


def back_(loss) -> None:
    """Backpropagate from a recorded scalar ``loss``, ADDING into each parameter's ``.grad``.

    Tracker's ``back!``: gradients accumulate across calls until read and reset (for example by
    :func:`update_` or a legacy optimiser's ``opt()``).  ``loss`` is recorded when computed from
    parameters made by this module's :func:`param` (Tracker's style, see
    :class:`TrackerParam`), or inside :class:`recording`; it may also be a function of no
    arguments, which is then recorded for you.  A NaN or infinite loss raises ``ValueError``.

    >>> import minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> mg.tracker.back_(lambda: mg.sum(3 * W)); mg.tracker.back_(lambda: mg.sum(W))
    >>> W.grad
    array([4., 4.])
    >>> V = mg.tracker.param([1.0, 2.0])              # Tracker's style: l = loss(); back!(l)
    >>> l = mg.sum(V * V)
    >>> mg.tracker.back_(l); V.grad
    array([2., 4.])
    """
    if callable(loss) and not isinstance(loss, Node):
        with recording():
            loss = loss()
    value = _loss_value(loss)
    if not np.isfinite(value):
        raise ValueError(f"Loss is {'NaN' if np.isnan(value) else 'infinite'} ({value})")
    if not isinstance(loss, Node):
        raise TypeError(
            "back_() needs a recorded loss: create the parameters with minigrad.tracker.param "
            "(Tracker's style: every operation on them is recorded), or compute the loss "
            "inside `with minigrad.tracker.recording():`, or pass a function of no arguments"
        )
    if not isinstance(loss, TrackedArray):
        tape = Tape()
    else:
        tape = _graph(loss) if loss.tape is None else loss.tape
    handed_out: set = set()
    for leaf in _backprop(tape, loss):
        g = leaf.g
        leaf.g = None
        if leaf._grad is None:
            leaf._grad = _own(g, leaf.data, handed_out)
        else:
            leaf._grad += g


# -- constructors and accessors ------------------------------------------------------------------

def param(x, dtype=None) -> TrackerParam:
    """Tracker's ``param``: a new trainable array holding a copy of ``x``, on which every
    operation is recorded, so that ``back_(loss(x, y))`` works as in Tracker (see
    :class:`TrackerParam`).  ``minigrad.param`` (:func:`minigrad.autograd.param`) makes a plain
    one, recorded only inside a gradient computation, as in Flux with Zygote.

    >>> import minigrad as mg
    >>> W = mg.tracker.param([1, 2, 3])
    >>> W, mg.tracker.istracked(W * 2)
    (trackerparam([1., 2., 3.]), True)
    """
    return TrackerParam(param_value(x, dtype))


def param_value(x, dtype=None) -> np.ndarray:
    """A C-ordered copy of ``x`` as a trainable array's storage: integers and booleans become
    float64 (as Tracker's ``float.(xs)``), ``dtype`` overrides; anything but float32 or float64
    is refused with the fix."""
    value = np.array(data(x), dtype=dtype, copy=True, order="C")  # kernels need C order
    if dtype is None and value.dtype.kind in "iub":
        value = value.astype(np.float64)
    if value.dtype.kind != "f":
        raise TypeError(
            f"param() needs real floating-point data, got dtype {value.dtype} "
            "(complex and non-numeric parameters are not supported)"
        )
    if value.dtype not in PARAM_DTYPES:
        raise TypeError(
            f"param() makes float32 or float64 trainable arrays (the optimisers' kernels run "
            f"on those two), got dtype {value.dtype}"
            f"{' in big-endian byte order' if not value.dtype.isnative else ''}; pass "
            "dtype=np.float32 (float16 data then trains in float32) or dtype=np.float64")
    return value


def data(x):
    """The raw NumPy value of ``x`` (``x`` itself when it is not tracked)."""
    return x.data if isinstance(x, Node) else x


def grad(x: Param) -> np.ndarray:
    """The gradient accumulated in ``x`` by :func:`back_` (Tracker's ``grad``)."""
    if not isinstance(x, Param):
        raise TypeError(f"grad() needs a trainable array, got {_describe(x)}")
    return x.grad


def istracked(x) -> bool:
    """Whether ``x`` is a trainable array or a tracked value."""
    return isinstance(x, Node)


def isleaf(x) -> bool:
    """Whether ``x`` is a trainable array (a leaf of the tape)."""
    return isinstance(x, Param)


def checked_target(name: str, x, step) -> tuple:
    """``(storage of parameter x, raw value of step)`` after checking that ``step`` can update
    ``x`` in place (it may broadcast).

    Every update function calls this before touching anything, so a bad call changes nothing.

    >>> import numpy as np, minigrad as mg
    >>> checked_target("update_", mg.param([1.0, 2.0]), 0.5)
    (array([1., 2.]), 0.5)
    """
    target, step = data(x), data(step)
    if (type(target) is np.ndarray and type(step) is np.ndarray and step.shape == target.shape
            and target.dtype.kind == "f" and target.flags.writeable):
        return target, step     # the common case, checked cheaply (update_ runs once a tensor)
    if not isinstance(target, np.ndarray) or target.dtype.kind != "f":
        raise TypeError(f"{name}: the parameter must be a floating-point array, got "
                        f"{_describe(target)}")
    if not target.flags.writeable:
        raise ValueError(f"{name}: the parameter (shape {target.shape}) is read-only")
    shape = step.shape if isinstance(step, np.ndarray) else np.shape(step)
    if shape != target.shape and not _broadcasts_to(shape, target.shape):
        raise ValueError(f"{name}: a step of shape {shape} does not fit a parameter of shape "
                         f"{target.shape}")
    return target, step


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def update_(x, Δ, *rest):
    """Tracker's ``update!``: ADD ``Δ`` to ``x`` in place and reset its ``.grad``; return ``x``.

    Note the sign: Flux.Optimise's :func:`minigrad.optimise.update_` subtracts instead.

    ``update_(opt, x, x̄)`` and ``update_(opt, ps, gs)`` are the methods Tracker-era Flux
    (v0.8, seed 003) added to Tracker's ``update!``: one step of the optimiser ``opt``, taken
    as :func:`minigrad.optimise.update_` takes it (``x -= step``), after which each
    parameter's ``.grad`` is reset; they return ``x`` (or ``ps``).

    >>> import minigrad as mg
    >>> mg.tracker.update_(mg.param([1, 2, 3]), mg.param([4, 5, 6]))
    param([5., 7., 9.])
    >>> mg.tracker.update_(mg.Descent(0.1), mg.param([1.0]), mg.param([2.0]))   # 1 − 0.1·2
    param([0.8])
    """
    if rest:
        if len(rest) != 1:
            raise TypeError(f"update_ takes (x, Δ), (opt, x, x̄) or (opt, ps, gs); got "
                            f"{2 + len(rest)} arguments")
        opt, xs, gs = x, Δ, rest[0]
        if not callable(getattr(opt, "update_", None)):
            raise TypeError(f"update_(opt, x, x̄): {opt!r} is not an optimiser")
        opt.update_(xs, gs)     # (AbstractOptimiser.update_: minigrad.optimise.update_)
        for p in xs if isinstance(xs, (Params, list, tuple)) else (xs,):
            if isinstance(p, Param):
                p._grad = None
        return xs
    target, step = checked_target("update_", x, Δ)
    target += step
    if isinstance(x, Param):
        x._grad = None
    return x


def _shape_dtype(name: str, args: tuple, dtype) -> tuple:
    """Parse Julia-style ``(T, d1, d2, ...)`` or ``((d1, d2),)`` constructor arguments."""
    if args and isinstance(args[0], (type, np.dtype)):
        dtype, args = args[0], args[1:]
    shape = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0
               for n in shape):
        raise ValueError(f"{name}: dimensions must be non-negative integers, got {shape}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{name}: trainable arrays are floating point, got dtype {dtype}")
    return shape, dtype


def rand(*dims, dtype=np.float64, rng=None) -> Param:
    """Trainable array of uniform samples in ``[0, 1)``: ``rand(2, 5)``, ``rand(np.float32, 3)``.

    float64 by default, as Julia's ``rand``.  ``rng`` (a ``numpy.random.Generator`` or an int
    seed, Julia's ``rand(rng, ...)``) gives the samples; by default NumPy's global random state.

    >>> import numpy as np, minigrad as mg
    >>> W = mg.rand(2, 5)
    >>> W.shape, W.dtype, bool((0 <= W).all() and (W < 1).all())
    ((2, 5), dtype('float64'), True)
    >>> bool((mg.rand(3, rng=1) == mg.rand(3, rng=1)).all())
    True
    """
    shape, dtype = _shape_dtype("rand", dims, dtype)
    source = np.random if rng is None else np.random.default_rng(rng)
    return Param(source.random(shape).astype(dtype, copy=False))


def randn(*dims, dtype=np.float64, rng=None) -> Param:
    """Trainable array of standard normal samples: ``randn(10, 10)``; ``rng`` as :func:`rand`'s.

    >>> import minigrad as mg
    >>> mg.randn(np.float32, 3).dtype
    dtype('float32')
    """
    shape, dtype = _shape_dtype("randn", dims, dtype)
    source = np.random if rng is None else np.random.default_rng(rng)
    return Param(source.standard_normal(shape).astype(dtype, copy=False))


def zeros(*dims, dtype=np.float64) -> Param:
    """Trainable array of zeros: ``zeros(2, 3)``.

    >>> import minigrad as mg
    >>> mg.zeros(2)
    param([0., 0.])
    """
    shape, dtype = _shape_dtype("zeros", dims, dtype)
    return Param(np.zeros(shape, dtype))


def ones(*dims, dtype=np.float64) -> Param:
    """Trainable array of ones: ``ones(2, 3)``.

    >>> import minigrad as mg
    >>> mg.ones(2)
    param([1., 1.])
    """
    shape, dtype = _shape_dtype("ones", dims, dtype)
    return Param(np.ones(shape, dtype))

"""One kernel call for a whole model: parameters, gradients and state in flat buffers.

``update_(opt, ps, gs)`` over many small tensors would otherwise pay Python's per-call cost once
per tensor, which for a 50-tensor model is more than the arithmetic.  On the first such update a
:class:`FlatGroup` moves every parameter's storage into one contiguous buffer (each ``p.data``
becomes a view into it, values unchanged) and lays the optimiser's state out the same way (each
``opt.state[p]`` keeps working, as views; the members' per-parameter scalars become one list
they share, :class:`SharedScalars`).  Every later step runs the fused kernel once over
everything, reading each gradient where it lies: the gradients are never copied into a buffer
of their own.  In a training loop's steady state (the ``Grads`` of the same ``Params`` each
step, see :func:`steady_step`) a step only checks that the group is intact; the kernel itself
checks that each gradient is an array of its parameter's shape and dtype, and that each
parameter is still writable (see :mod:`minigrad.optimise._pointers`), before it writes
anything.

This applies when the whole chain fuses into one pass, every parameter is a trainable array of
one native dtype, the parameters' per-parameter scalars (Adam's ``βp``, counters) are in
lockstep, and this process's NumPy lays out its array objects as the kernel expects (see
:mod:`minigrad.optimise._layout`); otherwise ``update_`` updates parameter by parameter, with
the same results.
"""

from __future__ import annotations

import itertools
import weakref
from operator import attrgetter, is_

import numpy as np

from ..tracker import Param
from ._layout import layout_checked
from .kernels import (
    PARALLEL_THRESHOLD,
    Threads,
    as_hyper,
    finite_sum,
    numpy_pass,
    variants,
)
from .rules import FLAT_GROUPS

__all__ = ["FlatGroup", "SharedScalars", "steady_step", "update_flat"]


# The steady state checks a model's tensors with C-level loops (map over these): a training
# step right after a pass over megabytes of data finds Python's own objects out of the caches,
# where Python-level loops over the 50 tensors of the benchmark's model cost about 0.1 ms more.
_data = attrgetter("data")
_shape, _dtype, _writeable = attrgetter("shape"), attrgetter("dtype"), attrgetter("flags.writeable")


def _readable(g) -> bool:
    """Whether the kernel may read gradient array ``g`` where it lies."""
    return g.flags.c_contiguous and g.flags.aligned


#: Elements per work item of the multi-threaded kernel: small enough to share a large tensor
#: between threads, large enough that a work item's set-up cost (a few slices) is negligible.
CHUNK = 16384


def _work(sizes: list, starts: list, chunk: int) -> tuple:
    """The plan of one kernel call (see :func:`minigrad.optimise.kernels._source`, target
    ``"cpu-tensors"``): rows (tensor, start, stop, offset) covering every tensor, and the bounds
    of the work items they form, item ``k`` being rows ``items[k]:items[k + 1]``.  Every item
    holds ``chunk`` elements (the last one fewer), cutting tensors where needed: Numba gives
    each thread an equal number of items, and so equal work however small the tensors are.

    >>> rows, items = _work([3, 5], [0, 3], 4)
    >>> rows.tolist(), items.tolist()
    ([[0, 0, 3, 0], [1, 0, 1, 3], [1, 1, 5, 3]], [0, 2, 3])
    """
    rows, items, room = [], [0], chunk
    for tensor, (n, offset) in enumerate(zip(sizes, starts, strict=True)):
        a = 0
        while a < n:
            b = min(n, a + room)
            rows.append((tensor, a, b, offset))
            room -= b - a
            a = b
            if room == 0:
                items.append(len(rows))
                room = chunk
    if items[-1] != len(rows):
        items.append(len(rows))
    return np.array(rows, dtype=np.intp).reshape(-1, 4), np.array(items, dtype=np.intp)


class SharedScalars(list):
    """The per-parameter scalars (Adam's ``βp``, counters) of a flat group's members: one list
    that every member's state holds, advanced once per step.  A parameter updated on its own
    first takes a copy of its own (see :func:`minigrad.optimise.step._fused_pass`), and so
    leaves the group.

    >>> import numpy as np, minigrad as mg
    >>> ps = mg.Params([mg.param(np.ones(2)), mg.param(np.ones(3))])
    >>> gs = mg.Grads(ps); gs[ps[0]], gs[ps[1]] = np.ones(2), np.ones(3)
    >>> opt = mg.Adam(); _ = mg.update_(opt, ps, gs)
    >>> shared = opt.state[ps[0]].scalars
    >>> type(shared).__name__, shared is opt.state[ps[1]].scalars, shared == [0.81, 0.998001]
    ('SharedScalars', True, True)
    >>> _ = mg.update_(opt, ps[0], np.ones(2))     # on its own: its scalars are its own now
    >>> opt.state[ps[0]].scalars is shared, shared == opt.state[ps[1]].scalars
    (False, True)
    """


class FlatGroup:
    """Parameters of one dtype re-pointed into one buffer, with state buffers alike.

    The layout of the state, the checks and the step's bookkeeping live here, once; a group for
    another kind of memory (:class:`minigrad.optimise.cuda.DeviceFlatGroup`) overrides the four
    methods that touch the memory itself: :meth:`_gather`, :meth:`_fill`,
    :meth:`_readable_where_they_lie` and :meth:`_run`.
    """

    def __init__(self, rules: list, params: list):
        self.rules = rules
        self.types = tuple(map(type, rules))
        self.refs = [weakref.ref(p) for p in params]
        flat_x, starts = self._gather(params)
        flat_states = []    # per rule: the flat state arrays
        self.members = []   # per rule: each parameter's state (views into the flat arrays)
        self.scalars = []   # per rule: the scalars every member's state shares
        for rule in rules:
            fresh = rule.new_state(flat_x)
            first = rule.state.get(params[0])   # (in lockstep with the others': see _eligible)
            shared = SharedScalars(fresh.scalars if first is None else first.scalars)
            members = []
            for p, a, b in zip(params, starts[:-1], starts[1:], strict=True):
                old = rule.state.get(p)
                if old is not None:
                    for flat, array in zip(fresh.arrays, old.arrays, strict=True):
                        self._fill(flat[a:b], array)
                arrays = tuple(flat[a:b] for flat in fresh.arrays)
                rule.state[p] = state = type(fresh)(arrays, shared, p.shape)
                members.append(state)
            flat_states.append(fresh.arrays)
            self.members.append(members)
            self.scalars.append(shared)
        self.state_arrays = tuple(a for arrays in flat_states for a in arrays)
        self.versions = self._versions()

    def _gather(self, params: list) -> tuple:
        """Move the parameters into one new buffer (``self.x``, with ``self.x_views``) and plan
        the kernel call; return the flat buffer and the parameters' offsets in it."""
        sizes = [p.size for p in params]
        starts = [0, *itertools.accumulate(sizes)]
        dtype = params[0].dtype
        self.x = np.empty(starts[-1], dtype)
        self.x_views = []
        for p, a, b in zip(params, starts[:-1], starts[1:], strict=True):
            view = self.x[a:b].reshape(p.shape)
            view[...] = p.data
            p.data = view
            self.x_views.append(view)
        # What the kernel checks each gradient against: the array type and the dtype's scalar
        # type (objects that live as long as NumPy, so their ids stay theirs), each shape.
        self.kinds = np.array([id(np.ndarray), id(dtype.type)], dtype=np.intp)
        self.expected = np.zeros((len(params), 1 + max(p.ndim for p in params)), np.intp)
        for row, p in zip(self.expected, params, strict=True):
            row[:1 + p.ndim] = (p.ndim, *p.shape)
        threaded = starts[-1] >= PARALLEL_THRESHOLD
        self.rows, self.items = _work(sizes, starts[:-1], CHUNK if threaded else
                                      max(starts[-1], 1))
        self.threads = Threads() if threaded else None      # serial or multi-threaded, by time
        self.kernels = None         # (serial, multi-threaded), once loaded
        return self.x, starts

    @staticmethod
    def _fill(part, array) -> None:
        """Copy a parameter's existing state ``array`` into its ``part`` of a flat buffer."""
        part[...] = array

    @staticmethod
    def _readable_where_they_lie(grads: list) -> list:
        """Checked gradients as the kernel reads them, where they lie: a plain C-contiguous,
        aligned copy of each that is not one already (a view, an ``ndarray`` subclass)."""
        return [g if type(g) is np.ndarray and _readable(g) else np.array(g, order="C")
                for g in grads]

    def _versions(self) -> list:
        return [(rule.state, rule.state.version) for rule in self.rules]

    def intact(self, rules: list, params: list) -> bool:
        """Still the same rules, with ``params`` (the group's own: groups are found by their
        parameters' ids, and forgotten when one of them dies) stored in this group's buffer,
        with this group's state and its shared scalars (a parameter updated on its own since
        has scalars of its own, and breaks the group).  (Whether they are still writable, the
        step checks: see :meth:`step`.)"""
        if (len(rules) != len(self.rules) or not all(map(is_, rules, self.rules))
                or not all(map(is_, map(_data, params), self.x_views))):
            return False
        if any(d is not rule.state or v != rule.state.version
               for rule, (d, v) in zip(self.rules, self.versions, strict=True)):
            # Some state was set or deleted since (every change of a member's scalars stores
            # its state again): is each member's still this group's?
            for rule, members, shared in zip(self.rules, self.members, self.scalars,
                                             strict=True):
                for p, state in zip(params, members, strict=True):
                    if rule.state.get(p) is not state or state.scalars is not shared:
                        return False
            self.versions = self._versions()
        return True

    def fits(self, grads: list) -> bool:
        """Whether ``grads`` holds, in order, an array of each parameter's shape and the group's
        dtype, C-contiguous and aligned, and every parameter is still writable: what the
        kernel checks (see :func:`minigrad.optimise._pointers.gradient_addresses`), in
        Python."""
        n = len(self.x_views)
        return (len(grads) == n and list(map(type, grads)).count(np.ndarray) == n
                and list(map(_dtype, grads)).count(self.x.dtype) == n
                and list(map(_shape, grads)) == list(map(_shape, self.x_views))
                and all(map(_readable, grads)) and all(map(_writeable, self.x_views)))

    def step(self, grads: list) -> bool:
        """One update of every parameter from ``grads`` (a list, in order) if each is an array
        of its parameter's shape and the group's dtype, C-contiguous and aligned, and every
        parameter is still writable; returns whether it did the update (if not, nothing was
        changed)."""
        first = self.refs[0]()
        hypers = []
        for rule, shared in zip(self.rules, self.scalars, strict=True):
            hypers += rule.hypers(shared, first, None)
        if not finite_sum(hypers):
            for rule in self.rules:
                rule.check()
        if not self._run(hypers, grads):
            return False
        for rule, shared in zip(self.rules, self.scalars, strict=True):
            # Once for all members: what advancing each in turn would do (ExpDecay, whose η
            # depends on the other parameters' counters, decays it at the first member only).
            rule.advance(shared, first)
        return True

    def _run(self, hypers: list, grads: list) -> bool:
        """The kernel call of one step, reading each gradient where it lies, if every gradient
        fits and every parameter is writable (see :meth:`step`); returns whether it ran."""
        h = as_hyper(hypers, self.x.dtype)
        kernels = self.kernels or self._loaded_kernels()
        if kernels is None:         # loading in the background (see kernels.py): NumPy for now
            if not self.fits(grads):
                return False
            flat_g = np.concatenate(list(map(np.ravel, grads)))
            numpy_pass(self.types, True, self.x, flat_g, h, *self.state_arrays)
            return True
        # The kernel reads both lists through their ids: they, and the arrays in them, stay
        # alive and unchanged during the call (``grads`` is held here, the views by the group).
        grads = grads if type(grads) is list else list(grads)
        args = (self.x, id(grads), id(self.x_views), self.kinds, self.expected, self.rows,
                self.items, h, *self.state_arrays)
        if self.threads is None:
            return kernels[0](*args)
        return self.threads.call(kernels, self.x.size, *args)

    def _loaded_kernels(self) -> tuple | None:
        """The group's kernels (see :func:`minigrad.optimise.kernels.variants`), kept once
        every one it uses is loaded."""
        kernels = variants(self.types, True, self.x.size, self.x.dtype, target="cpu-tensors")
        if kernels is not None and None not in (kernels if self.threads else kernels[:1]):
            self.kernels = kernels
        return kernels


def _lockstep(rules: list, params: list) -> bool:
    """Whether every rule's per-parameter scalars agree across ``params`` (or none has state)."""
    for rule in rules:
        states = [rule.state.get(p) for p in params]
        if any(st is None for st in states):
            if any(st is not None for st in states):
                return False
            continue
        if any(st.scalars != states[0].scalars for st in states):
            return False
    return True


def _forget(owner, key) -> None:
    opt = owner()
    if opt is not None:
        opt.__dict__.get(FLAT_GROUPS, {}).pop(key, None)


def _eligible(rules: list, params: list) -> bool:
    if (len(params) < 2 or any(getattr(r, "needs_whole_step", False) for r in rules)
            or not layout_checked()):
        return False
    if len({id(p) for p in params}) != len(params):
        return False        # a plain list naming a parameter twice: update it twice, in turn
    dtype = params[0].dtype
    return (dtype.isnative and all(type(p) is Param and p.dtype == dtype for p in params)
            and _lockstep(rules, params))


def steady_step(opt, rules: list, params: dict, grads: dict) -> bool:
    """The steady state of a training loop, ``update_(opt, ps, gs)`` with the ``Grads`` of
    ``ps``: one step of ``opt``'s flat group of ``ps`` if it is intact and every gradient is an
    array of its parameter's shape and dtype, C-contiguous and aligned (the only checks a
    member's gradient needs, made by the kernel).  ``params`` and ``grads`` map ``id(p)`` to
    ``p`` and to its gradient.  Returns whether it did the step (if not, nothing was changed
    and the caller takes the general path)."""
    ids = tuple(params)
    group = opt.__dict__.get(FLAT_GROUPS, {}).get((FlatGroup, ids))
    return (group is not None and group.intact(rules, list(params.values()))
            and group.step(list(map(grads.get, ids))))


def update_flat(opt, rules: list, pairs: list, kind: type = FlatGroup) -> bool:
    """Update every ``(param, grad)`` of ``pairs`` with one kernel call if possible.

    ``rules`` is ``opt``'s single fused pass; the pairs are already checked.  ``kind`` is the
    group class for the parameters' memory.  Returns whether it did the update (if not,
    nothing was changed).
    """
    params = [p for p, _ in pairs]
    groups = opt.__dict__.setdefault(FLAT_GROUPS, {})
    key = (kind, tuple(map(id, params)))
    group = groups.get(key)
    if group is None or not group.intact(rules, params):
        if not _eligible(rules, params):
            return False
        for rule in rules:
            rule.check()    # before FlatGroup stores fresh state: a failed call changes nothing
        if group is None:
            # Forget the group (its buffers and state) as soon as one of its parameters dies.
            owner = weakref.ref(opt)
            for p in params:
                weakref.finalize(p, _forget, owner, key).atexit = False
        group = groups[key] = kind(rules, params)
    return group.step(kind._readable_where_they_lie([g for _, g in pairs]))

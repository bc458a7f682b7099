"""One kernel call for a whole model: parameters, gradients and state in flat buffers.

``update_(opt, ps, gs)`` over many small tensors would otherwise pay Python's per-call cost once
per tensor, which for a 50-tensor model is more than the arithmetic.  On the first such update a
:class:`FlatGroup` moves every parameter's storage into one contiguous buffer (each ``p.data``
becomes a view into it, values unchanged) and lays the optimiser's state out the same way (each
``opt.state[p]`` keeps working, as views).  Every later step runs the fused kernel once over
everything (once per :data:`~minigrad.optimise.kernels.TENSOR_SLOTS` tensors), reading each
gradient where it lies: the gradients are never copied into a buffer of their own.

This applies when the whole chain fuses into one pass, every parameter is a trainable array of
one dtype, and the parameters' per-parameter scalars (Adam's ``βp``, counters) are in lockstep;
otherwise ``update_`` updates parameter by parameter, with the same results.
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np

from ..tracker import Param
from .kernels import (
    PARALLEL_THRESHOLD,
    TENSOR_SLOTS,
    as_hyper,
    finite_sum,
    numpy_pass,
    ready_kernel,
)

__all__ = ["FlatGroup", "intact_group", "update_flat"]


#: Elements per work item of the multi-threaded kernel: small enough to share a large tensor
#: between threads, large enough that a work item's set-up cost (a few slices) is negligible.
CHUNK = 16384


def _chunks(sizes: list, starts: np.ndarray, chunk: int) -> np.ndarray:
    """Rows (slot, start, stop, offset) covering every tensor of one kernel call (see
    :func:`minigrad.optimise.kernels._source`, target ``"cpu-tensors"``)."""
    rows = [(slot, a, min(a + chunk, n), offset)
            for slot, (n, offset) in enumerate(zip(sizes, starts, strict=True))
            for a in range(0, n, chunk)]
    return np.array(rows, dtype=np.intp).reshape(-1, 4)


class FlatGroup:
    """Parameters of one dtype re-pointed into one buffer, with state buffers alike.

    The layout of the state, the checks and the step's bookkeeping live here, once; a group for
    another kind of memory (:class:`minigrad.optimise.cuda.DeviceFlatGroup`) overrides the four
    methods that touch the memory itself: :meth:`_gather`, :meth:`_fill`, :meth:`_writable` and
    :meth:`_run`.
    """

    #: The optimiser attribute holding its groups of this kind, keyed by the parameters' ids.
    registry = "_flat_groups"

    def __init__(self, rules: list, params: list):
        self.rules = rules
        self.types = tuple(map(type, rules))
        self.refs = [weakref.ref(p) for p in params]
        flat_x, starts = self._gather(params)
        flat_states = []    # per rule: the flat state arrays
        self.members = []   # per rule: each parameter's state (views into the flat arrays)
        for rule in rules:
            fresh = rule.new_state(flat_x)
            members = []
            for p, a, b in zip(params, starts[:-1], starts[1:], strict=True):
                old = rule.state.get(p)
                if old is not None:
                    for flat, array in zip(fresh.arrays, old.arrays, strict=True):
                        self._fill(flat[a:b], array)
                scalars = old.scalars if old is not None else list(fresh.scalars)
                arrays = tuple(flat[a:b] for flat in fresh.arrays)
                rule.state[p] = state = type(fresh)(arrays, scalars, p.shape)
                members.append(state)
            flat_states.append(fresh.arrays)
            self.members.append(members)
        self.state_arrays = tuple(a for arrays in flat_states for a in arrays)
        self.versions = self._versions()

    def _gather(self, params: list) -> tuple:
        """Move the parameters into one new buffer (``self.x``, with ``self.x_views``) and plan
        the kernel calls; return the flat buffer and the parameters' offsets in it."""
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
        # One kernel call per TENSOR_SLOTS parameters, each with its table of chunks.
        self.calls = []
        for first in range(0, len(params), TENSOR_SLOTS):
            last = min(first + TENSOR_SLOTS, len(params))
            size = starts[last] - starts[first]
            chunk = CHUNK if size >= PARALLEL_THRESHOLD else max(size, 1)
            chunks = _chunks(sizes[first:last], starts[first:last], chunk)
            self.calls.append((first, last, starts[first], starts[last], chunks))
        self.padding = np.zeros(0, dtype)    # fills a call's unused gradient slots
        return self.x, starts

    @staticmethod
    def _fill(part, array) -> None:
        """Copy a parameter's existing state ``array`` into its ``part`` of a flat buffer."""
        part[...] = array

    @staticmethod
    def _writable(view) -> bool:
        return view.flags.writeable

    def _versions(self) -> list:
        return [(rule.state, rule.state.version) for rule in self.rules]

    def intact(self, rules: list, params: list) -> bool:
        """Still the same rules and live, writable parameters stored in this group's buffer,
        with this group's state, in lockstep (a parameter updated on its own since breaks the
        group)."""
        if len(rules) != len(self.rules) or any(
                a is not b for a, b in zip(rules, self.rules, strict=True)):
            return False
        if len(params) != len(self.refs):
            return False
        for ref, p, view in zip(self.refs, params, self.x_views, strict=True):
            if ref() is not p or p.data is not view or not self._writable(view):
                return False
        for members in self.members:
            first = members[0].scalars
            for state in members:
                if state.scalars != first:
                    return False
        if any(d is not rule.state or v != rule.state.version
               for rule, (d, v) in zip(self.rules, self.versions, strict=True)):
            # Some state was set or deleted since: is each member's still this group's?
            for rule, members in zip(self.rules, self.members, strict=True):
                for p, state in zip(params, members, strict=True):
                    if rule.state.get(p) is not state:
                        return False
            self.versions = self._versions()
        return True

    def gradients(self, grads: list) -> list | None:
        """``grads`` if each is an array of its parameter's shape and the group's dtype (the
        only checks a group member's gradient needs), else ``None``: check them in full."""
        dtype = self.x.dtype
        for g, view in zip(grads, self.x_views, strict=True):
            if type(g) is not np.ndarray or g.shape != view.shape or g.dtype != dtype:
                return None
        return grads

    def step(self, grads: list) -> None:
        """One update of every parameter from ``grads`` (checked arrays, in order)."""
        first = self.refs[0]()
        hypers = []
        for rule, members in zip(self.rules, self.members, strict=True):
            hypers += rule.hypers(members[0].scalars, first, None)
        if not finite_sum(hypers):
            for rule in self.rules:
                rule.check()
        self._run(hypers, grads)
        for rule, members in zip(self.rules, self.members, strict=True):
            for ref, state in zip(self.refs, members, strict=True):
                rule.advance(state.scalars, ref())

    def _run(self, hypers: list, grads: list) -> None:
        """The kernel call(s) of one step, reading each gradient where it lies."""
        h = as_hyper(hypers, self.x.dtype)
        flat = []
        for g in grads:
            g = g.ravel()               # a view of a C-contiguous gradient, else a copy
            flat.append(g if g.flags.writeable else g.copy())   # (one array type for Numba)
        for first, last, a, b, chunks in self.calls:
            kernel = ready_kernel(self.types, True, b - a, self.x.dtype, target="cpu-tensors")
            gs = tuple(flat[first:last])
            if kernel is None:      # loading in the background (see kernels.py): NumPy for now
                numpy_pass(self.types, True, self.x[a:b], np.concatenate(gs), h,
                           *(s[a:b] for s in self.state_arrays))
            else:
                kernel(self.x, gs + (self.padding,) * (TENSOR_SLOTS - len(gs)), chunks, h,
                       *self.state_arrays)


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


def _forget(owner, registry: str, key) -> None:
    opt = owner()
    if opt is not None:
        opt.__dict__.get(registry, {}).pop(key, None)


def _eligible(rules: list, params: list) -> bool:
    if len(params) < 2 or any(getattr(r, "needs_whole_step", False) for r in rules):
        return False
    if len({id(p) for p in params}) != len(params):
        return False        # a plain list naming a parameter twice: update it twice, in turn
    dtype = params[0].dtype
    return all(type(p) is Param and p.dtype == dtype for p in params) and _lockstep(rules, params)


def intact_group(opt, rules: list, params: list) -> FlatGroup | None:
    """``opt``'s flat group of exactly ``params`` if it exists and is still valid."""
    group = opt.__dict__.get(FlatGroup.registry, {}).get(tuple(map(id, params)))
    return group if group is not None and group.intact(rules, params) else None


def update_flat(opt, rules: list, pairs: list, kind: type = FlatGroup) -> bool:
    """Update every ``(param, grad)`` of ``pairs`` with one kernel call if possible.

    ``rules`` is ``opt``'s single fused pass; the pairs are already checked.  ``kind`` is the
    group class for the parameters' memory.  Returns whether it did the update (if not,
    nothing was changed).
    """
    params = [p for p, _ in pairs]
    groups = opt.__dict__.setdefault(kind.registry, {})
    key = tuple(map(id, params))
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
                weakref.finalize(p, _forget, owner, kind.registry, key).atexit = False
        group = groups[key] = kind(rules, params)
    group.step([g for _, g in pairs])
    return True

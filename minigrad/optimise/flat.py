"""One kernel call for a whole model: parameters, gradients and state in flat buffers.

``update_(opt, ps, gs)`` over many small tensors would otherwise pay Python's per-call cost once
per tensor, which for a 50-tensor model is more than the arithmetic.  On the first such update
the parameters move into one contiguous buffer, a :class:`minigrad.tracker.FlatBuffer` (each
``p.data`` becomes a view into it, values unchanged), and a :class:`FlatGroup` lays the
optimiser's state out the same way (each ``opt.state[p]`` keeps working, as views; the members'
per-parameter scalars become one list they share, :class:`SharedScalars`).  From then on
:func:`minigrad.gradient` taken with these parameters writes their gradients into one flat
buffer laid out alike (``Grads.flat``), and each step is one kernel call over the three kinds
of buffer as they lie: no gather, nothing copied.

This applies when the whole chain fuses into one pass, every parameter is a trainable array of
one float dtype, and the parameters' per-parameter scalars (Adam's ``βp``, counters) are in
lockstep; otherwise ``update_`` updates parameter by parameter, with the same results.
Gradients that do not lie in a flat buffer (built by hand, or on the GPU) are copied into one
first.
"""

from __future__ import annotations

import itertools
import weakref
from operator import attrgetter, is_

import numpy as np

from ..tracker import FlatBuffer, Param
from .backend import backend_of
from .kernels import finite_sum

__all__ = ["FlatGroup", "SharedScalars", "FLAT_GROUPS", "steady_step", "update_flat"]

#: The optimiser attribute where this module keeps its flat groups, keyed by the id of their
#: :class:`~minigrad.tracker.FlatBuffer`.  A group describes where its parameters' memory lies,
#: so copies, pickles and checkpoints leave it out; the next ``update_`` builds a new one.
FLAT_GROUPS = "_flat_groups"

_writeable = attrgetter("flags.writeable")


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


def flat_buffer(params: list) -> FlatBuffer:
    """The :class:`~minigrad.tracker.FlatBuffer` of exactly ``params``, in order: theirs if they
    have one, else a new one, into which their storage moves (values unchanged)."""
    buffer = params[0].flat
    if buffer is not None and buffer.holds(params):
        return buffer
    be = backend_of(params[0].data)
    starts = [0, *itertools.accumulate(p.size for p in params)]
    data = be.empty(params[0].data, starts[-1])
    flat = be.flat_view(data)
    views = []
    for p, a, b in zip(params, starts[:-1], starts[1:], strict=True):
        be.assign(flat[a:b], p.data)
        p.data = data[a:b].reshape(p.shape)
        views.append(p.data)
    buffer = FlatBuffer(data, views, starts, params)
    for p in params:
        p.flat = buffer
        # Once one of them dies, the others no longer form this buffer's set: let go of the
        # views, so that the dead parameter's storage is freed with it.
        weakref.finalize(p, buffer.dissolve).atexit = False
    return buffer


class FlatGroup:
    """One optimiser's state for the parameters of a :class:`~minigrad.tracker.FlatBuffer`,
    laid out like it, and the step that updates them all with one kernel call.

    >>> import numpy as np, minigrad as mg
    >>> ps = [mg.param(np.ones(2)), mg.param(np.ones(3))]
    >>> opt = mg.Momentum(0.1); _ = mg.update_(opt, ps, {p: np.ones(p.shape) for p in ps})
    >>> [group] = opt._flat_groups.values()
    >>> group.state_arrays[0], opt.state[ps[1]][0].base is group.state_arrays[0]
    (array([-0.1, -0.1, -0.1, -0.1, -0.1]), True)
    """

    def __init__(self, rules: list, buffer: FlatBuffer, params: list):
        self.rules = rules
        self.types = tuple(map(type, rules))
        self.buffer = buffer
        self.backend = be = backend_of(buffer.data)
        self.x = be.flat_view(buffer.data)
        self.scratch = None     # a flat gradient buffer, for gradients that lie elsewhere
        self.first = weakref.ref(params[0])
        starts = buffer.starts
        self.state_arrays = []  # every rule's flat state arrays, in order
        self.members = []   # per rule: each parameter's state (views into the flat arrays)
        self.scalars = []   # per rule: the scalars every member's state shares
        for rule in rules:
            fresh = rule.new_state(self.x)
            first = rule.state.get(params[0])   # (in lockstep with the others': see _eligible)
            shared = SharedScalars(fresh.scalars if first is None else first.scalars)
            members = []
            for p, a, b in zip(params, starts[:-1], starts[1:], strict=True):
                old = rule.state.get(p)
                if old is not None:
                    for flat, array in zip(fresh.arrays, old.arrays, strict=True):
                        be.assign(flat[a:b], array)
                arrays = tuple(flat[a:b] for flat in fresh.arrays)
                rule.state[p] = state = type(fresh)(arrays, shared, p.shape)
                members.append(state)
            self.state_arrays += fresh.arrays
            self.members.append(members)
            self.scalars.append(shared)
        self.versions = self._versions()

    def _versions(self) -> list:
        return [(rule.state, rule.state.version) for rule in self.rules]

    def intact(self, rules: list, params: list) -> bool:
        """Still the same rules, with this group's state and its shared scalars for ``params``
        (the buffer's own: the caller checked that they still lie in it).  A parameter
        updated on its own since has scalars of its own, and breaks the group."""
        if len(rules) != len(self.rules) or not all(map(is_, rules, self.rules)):
            return False
        if self._versions() != self.versions:
            # Some state was set or deleted since (every change of a member's scalars stores
            # its state again): is each member's still this group's?
            for rule, members, shared in zip(self.rules, self.members, self.scalars,
                                             strict=True):
                for p, state in zip(params, members, strict=True):
                    if rule.state.get(p) is not state or state.scalars is not shared:
                        return False
            self.versions = self._versions()
        return True

    def step(self, flat_g) -> None:
        """One update of every parameter from the flat gradient ``flat_g`` (laid out like the
        parameters; on their device)."""
        first = self.first()
        hypers = []
        for rule, shared in zip(self.rules, self.scalars, strict=True):
            hypers += rule.hypers(shared, first, None)
        if not finite_sum(hypers):
            for rule in self.rules:
                rule.check()    # names the culprit; passes only if a sum overflowed
        for rule, shared in zip(self.rules, self.scalars, strict=True):
            # Once for all members: what advancing each in turn would do (ExpDecay, whose η
            # depends on the other parameters' counters, decays it at the first member only).
            # Before the kernel, whose pass over the buffers evicts this code from the CPU's
            # caches: after it, the same lines cost about 8 µs (50-tensor Adam).
            rule.advance(shared, first)
        self.backend.run(self.types, True, self.x, flat_g, hypers, self.state_arrays)

    def gathered(self, grads: list):
        """``grads`` (in the parameters' order) copied into one flat buffer of the group."""
        if self.scratch is None:
            self.scratch = self.backend.flat_view(self.backend.empty(self.buffer.data,
                                                                     self.x.size))
        return self.backend.gather(grads, self.scratch)


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
    """Whether ``params`` may form (or already form) one flat group: several parameters, each
    a trainable array of one dtype, none named twice, none in another live flat buffer (one
    whose parameters all still live), in lockstep, under rules that need no whole-array step
    (ClipNorm's norm is per array)."""
    if len(params) < 2 or any(getattr(r, "needs_whole_step", False) for r in rules):
        return False
    if len({id(p) for p in params}) != len(params):
        return False        # a plain list naming a parameter twice: update it twice, in turn
    dtype = params[0].dtype
    buffer = params[0].flat
    if not (buffer is not None and buffer.holds(params)) and any(
            p.flat is not None and p.flat.views for p in params):
        return False        # part of another live buffer: updated parameter by parameter
    return (all(type(p) is Param and p.dtype == dtype for p in params)
            and _lockstep(rules, params))


def _group(opt, rules: list, buffer: FlatBuffer, params) -> FlatGroup | None:
    """``opt``'s intact group of ``buffer`` (whose ``params``, an iterable, are checked only
    when something changed), built anew if needed; ``None`` if the parameters' scalars are no
    longer in lockstep (after a checkpoint of uneven steps, say)."""
    groups = opt.__dict__.setdefault(FLAT_GROUPS, {})
    group = groups.get(id(buffer))
    if group is None or group.buffer is not buffer or not group.intact(rules, params):
        params = list(params)
        if not _lockstep(rules, params):
            return None
        for rule in rules:
            rule.check()    # before FlatGroup stores fresh state: a failed call changes nothing
        if group is None:
            # Forget the group (its state buffers) as soon as one of its parameters dies.
            owner = weakref.ref(opt)
            for p in params:
                weakref.finalize(p, _forget, owner, id(buffer)).atexit = False
        group = groups[id(buffer)] = FlatGroup(rules, buffer, params)
    return group


def steady_step(opt, rules: list, buffer: FlatBuffer, params, flat_g) -> bool:
    """The steady state of a training loop: update ``params`` (a list or ``Params``) with one
    kernel call from the flat gradient ``flat_g``, laid out as ``buffer`` lays them out, if
    they are still exactly ``buffer``'s parameters, stored there and writable.  ``rules`` is
    ``opt``'s single fused pass.  Returns whether it did the step (if not, nothing changed).

    >>> import numpy as np, minigrad as mg
    >>> ps, opt = [mg.param(np.ones(2)), mg.param(np.ones(1))], mg.Descent(0.5)
    >>> _ = mg.update_(opt, ps, {p: np.ones(p.shape) for p in ps})    # one buffer now
    >>> steady_step(opt, [opt], ps[0].flat, ps, np.array([1.0, 1.0, 2.0])), ps[1]
    (True, param([-0.5]))
    """
    if not buffer.holds(params) or (type(buffer.data) is np.ndarray
                                    and not all(map(_writeable, buffer.views))):
        return False        # (the general path names a read-only parameter; GPU arrays have
        #                      no read-only flag)
    group = _group(opt, rules, buffer, params)
    if group is None:
        return False
    group.step(flat_g)
    return True


def update_flat(opt, rules: list, pairs: list) -> bool:
    """Update every ``(param, grad)`` of ``pairs`` with one kernel call if they may form a flat
    group (see :func:`_eligible`), moving them into a flat buffer first if needed.  ``rules``
    is ``opt``'s single fused pass; the pairs are already checked.  Returns whether it did the
    update (if not, nothing was changed).

    >>> import numpy as np, minigrad as mg
    >>> ps, opt = [mg.param(np.ones(2)), mg.param(np.ones(1))], mg.Descent(0.5)
    >>> update_flat(opt, [opt], [(p, np.ones(p.shape)) for p in ps]), ps[0].flat is ps[1].flat
    (True, True)
    >>> update_flat(opt, [opt], [(ps[0], np.ones(2))])          # one parameter: no group
    False
    """
    params = [p for p, _ in pairs]
    if not _eligible(rules, params):
        return False
    for rule in rules:
        rule.check()        # before the parameters move: a failed call changes nothing
    group = _group(opt, rules, flat_buffer(params), params)     # (in lockstep: _eligible)
    group.step(group.gathered([g for _, g in pairs]))
    return True

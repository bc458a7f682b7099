"""``apply_`` and ``update_``: running an optimiser on parameters.

An optimiser is flattened into a chain of stages (``opt.stages()``).  Runs of built-in rule
stages are executed as one fused kernel pass (:mod:`minigrad.optimise.kernels`); any other
:class:`~minigrad.AbstractOptimiser` runs its own ``apply_`` in Python between passes.  Every
touch of memory goes through the array's backend (:mod:`minigrad.optimise.cpu` or
:mod:`minigrad.optimise.cuda`), so this module is the same for host and GPU arrays.
Everything is checked before anything is written: a bad call leaves the parameter, the
gradient and the optimiser's state as they were.
"""

from __future__ import annotations

import numpy as np

from ..tracker import Grads, Node, Params, data
from . import cpu
from .backend import backend_for, backend_of
from .flat import SharedScalars, steady_step, update_flat
from .kernels import finite_sum

__all__ = ["apply_", "update_", "update_pieces", "steady_update", "fused_passes"]


def _stages(opt) -> list:
    stages = getattr(opt, "stages", None)
    if stages is None:
        raise TypeError(f"expected an optimiser (an AbstractOptimiser), got {opt!r}")
    return stages()


def _fusable(stage) -> bool:
    """A built-in rule (it has per-element ``math``) whose ``apply_`` is this module's."""
    return getattr(type(stage), "apply_", None) is apply_ and hasattr(type(stage), "math")


def _passes(stages: list) -> list:
    """Split a chain into fused passes (lists of rules) and single Python stages."""
    passes: list = []
    for stage in stages:
        if not _fusable(stage):
            passes.append(stage)
        elif passes and isinstance(passes[-1], list) and not getattr(
                stage, "needs_whole_step", False) and all(s is not stage for s in passes[-1]):
            # (A rule used twice, Optimiser(a, a), must see its own first step's state.)
            passes[-1].append(stage)
        else:
            passes.append([stage])
    return passes


def _check_optimiser(stages: list) -> None:
    for stage in stages:
        check = getattr(stage, "check", None)
        if check is not None:
            check()


def _plan(opt) -> list:
    if _fusable(opt):
        return [[opt]]
    stages = _stages(opt)
    passes = _passes(stages)
    if len(passes) > 1:
        # Check every hyperparameter before the first pass writes anything.
        _check_optimiser(stages)
    return passes


def fused_passes(opt) -> list:
    """The fused passes (lists of rules, each one kernel) that ``opt`` runs.  ClipNorm starts
    a pass: it needs the whole step's norm first.

    >>> import minigrad as mg
    >>> [[type(r).__name__ for r in p] for p in fused_passes(
    ...     mg.Optimiser(mg.WeightDecay(), mg.ClipNorm(1.0), mg.Adam()))]
    [['WeightDecay'], ['ClipNorm', 'Adam']]
    """
    return [p for p in _plan(opt) if isinstance(p, list)]


def _kernel(be, rules: list, update: bool, x, d, hypers: list, states: list) -> None:
    """One kernel call of the fused pass ``rules``, its hyperparameters checked first."""
    if not finite_sum(hypers):
        _check_optimiser(rules)     # names the culprit; passes only if a sum overflowed
    be.run(tuple(map(type, rules)), update, x, d, hypers, states)


def _fused_pass(be, rules: list, key, flat_x, flat_d, update: bool, pieces_of=None) -> None:
    """Run ``rules`` as one kernel over the flat views; commit their state afterwards.  With
    ``pieces_of`` (see :func:`update_pieces`) a pass that starts with a stage needing the whole
    step runs piece by piece, that stage's hyperparameters those of each piece."""
    states, fresh, hypers, arrays = [], [], [], []
    pieces = None
    for rule in rules:
        state = rule.state.get(key)
        fresh.append(state is None)
        if state is None:
            state = rule.new_state(flat_x)
        elif state.arrays and backend_of(state.arrays[0]) is not be:
            raise TypeError(
                f"{type(rule).__name__}: its state for this parameter is on "
                f"{backend_of(state.arrays[0]).NAME} but the parameter is on {be.NAME}; use a "
                "new optimiser for the moved parameters (minigrad.gpu(...) and "
                "minigrad.cpu(...) make new parameters, which start with fresh state)")
        states.append(state)
        if pieces_of is not None and rule is rules[0] and getattr(rule, "needs_whole_step",
                                                                 False):
            pieces = pieces_of(rule, flat_d)
        else:
            hypers += rule.hypers(state.scalars, key, flat_d)
        arrays += state.arrays
    if pieces is None:
        _kernel(be, rules, update, flat_x, flat_d, hypers, arrays)
    else:
        for a, b, first in pieces:
            _kernel(be, rules, update, flat_x[a:b], flat_d[a:b], [*first, *hypers],
                    [s[a:b] for s in arrays])
    for rule, state, new in zip(rules, states, fresh, strict=True):
        if type(state.scalars) is SharedScalars:
            # A flat group's member updated on its own: its scalars are its own from now on,
            # and storing its state again tells the group (flat.py).
            state.scalars, new = list(state.scalars), True
        if new:
            rule.state[key] = state
        rule.advance(state.scalars, key)


def _operands(name: str, x, g, update: bool) -> tuple:
    """The parameter's storage and the gradient as arrays of one device, after every check on
    them (see the backends' ``operands``)."""
    return backend_for(name, x, g).operands(name, x, g, update)


def _step(passes: list, x, target, gd, update: bool, pieces_of=None):
    """Apply the planned chain ``passes`` to parameter ``x`` (storage ``target``) with the
    checked gradient ``gd``.

    ``update=True``: ``x -= step``, ``gd`` untouched.  ``update=False``: ``gd`` (Flux's ``Δ``)
    is overwritten with the step and returned.  ``pieces_of``: see :func:`update_pieces`.
    """
    be = backend_of(target)
    key = x if isinstance(x, Node) else target
    flat_x = be.flat_view(target)
    if update and len(passes) == 1 and isinstance(passes[0], list):
        _fused_pass(be, passes[0], key, flat_x, be.flat_view(gd), True, pieces_of)
        return x
    delta = be.copy(gd) if update else gd
    flat_d = be.flat_view(delta)
    for p in passes:
        if isinstance(p, list):
            _fused_pass(be, p, key, flat_x, flat_d, False, pieces_of)
        else:
            result = p.apply_(x, delta)
            if result is not delta:
                be.store(delta, result, p)
    if update:
        be.subtract(flat_x, flat_d)
        return x
    return delta


def _run(opt, x, g, update: bool, name: str):
    """Apply ``opt`` to parameter ``x`` with gradient ``g`` (see :func:`_step`)."""
    passes = _plan(opt)
    target, gd = _operands(name, x, g, update)
    return _step(passes, x, target, gd, update)


def apply_(opt, x, Δ):
    """Flux's ``apply!``: overwrite ``Δ`` with ``opt``'s step for parameter ``x``; return it.

    The optimiser's state for ``x`` advances; ``x`` itself is not changed.

    >>> import numpy as np, minigrad as mg
    >>> mg.apply_(mg.Descent(0.1), np.zeros(2), np.array([1.0, 2.0]))
    array([0.1, 0.2])
    """
    return _run(opt, x, Δ, update=False, name=f"apply_({type(opt).__name__})")


def update_pieces(opt, x, g, pieces_of):
    """``update_(opt, x, g)`` for a parameter ``x`` whose flat storage holds pieces of several
    arrays, end to end (a rank's slice of a flat buffer in a sharded step, see
    :mod:`minigrad.distributed`): a pass that starts with a stage needing each array's whole
    step (ClipNorm) asks ``pieces_of(stage, Δ)``, ``Δ`` the flat step so far, for the pieces
    as ``(start, stop, hyperparameters of that stage)`` and runs its kernel piece by piece;
    every other pass, and the state (one for all of ``x``), are as in ``update_``.

    >>> import numpy as np, minigrad as mg
    >>> x, clip = mg.param(np.zeros(4)), mg.ClipNorm(1.0)
    >>> halves = lambda rule, d: [(0, 2, rule.hypers([], None, d[:2])),
    ...                           (2, 4, rule.hypers([], None, d[2:]))]
    >>> _ = update_pieces(mg.Optimiser(clip, mg.Descent(1.0)), x,
    ...                   np.array([3.0, 4.0, 0.3, 0.4]), halves); x
    param([-0.6, -0.8, -0.3, -0.4])
    """
    passes = _plan(opt)
    target, gd = _operands(f"update_({type(opt).__name__})", x, g, True)
    return _step(passes, x, target, gd, True, pieces_of)


def _update_all(opt, ps, gs):
    """``update_(opt, ps, gs)``: see :func:`update_`."""
    if (type(gs) is Grads and gs.buffer is not None and gs._reached_all
            and steady_update(opt, ps, gs.buffer, gs.flat)):
        return ps       # every gradient in gs.flat, as gradient() leaves them
    passes = _plan(opt)
    one_pass = len(passes) == 1 and isinstance(passes[0], list)
    name = f"update_({type(opt).__name__})"
    pairs = [(p, gs[p]) for p in ps]
    checked = [(p, *_operands(name, p, gp, True)) for p, gp in pairs if gp is not None]
    backends = {backend_of(target) for _, target, _ in checked}
    if len(backends) > 1:
        raise TypeError(f"{name}: host and GPU parameters in one call; update them in "
                        "separate calls")
    if one_pass and update_flat(opt, passes[0], [(p, gd) for p, _, gd in checked]):
        return ps
    for p, target, gd in checked:
        _step(passes, p, target, gd, update=True)
    return ps


def steady_update(opt, params, buffer, flat) -> bool:
    """``update_(opt, params, grads)`` in one kernel call (:func:`.flat.steady_step`), for
    gradients that all lie in ``flat`` laid out as ``buffer`` lays out the parameters, if
    ``opt`` runs as one fused pass (a wrapper with its own ``update_``, ``ApplyIfFinite``, is
    a Python stage: never).  Returns whether it did the step (if not, nothing changed).

    >>> import numpy as np, minigrad as mg
    >>> ps, opt = [mg.param(np.ones(2)), mg.param(np.ones(1))], mg.Descent(0.5)
    >>> _ = mg.update_(opt, ps, {p: np.ones(p.shape) for p in ps})    # one buffer now
    >>> steady_update(opt, ps, ps[0].flat, np.array([1.0, 1.0, 2.0])), ps[1]
    (True, param([-0.5]))
    """
    passes = _plan(opt)
    return (len(passes) == 1 and isinstance(passes[0], list)
            and steady_step(opt, passes[0], buffer, params, flat))


def update_(*args):
    """Flux's ``update!`` in its three forms.

    * ``update_(x, x̄)``: ``x -= x̄`` in place.
    * ``update_(opt, x, x̄)``: ``x -= apply_(opt, x, x̄)``; the caller's ``x̄`` is not modified
      (Flux v0.13), and built-in rules do it in one fused pass.
    * ``update_(opt, ps, gs)``: the same for every ``p`` in ``ps`` (``Params`` or a list) whose
      ``gs[p]`` is not ``None``.  Every pair is checked before any parameter changes.  When
      the rule fuses into one pass, all parameters are updated by one kernel call over flat
      buffers (see :mod:`minigrad.optimise.flat`: the first such call moves each ``p.data``
      into a shared buffer, so arrays taken from ``np.asarray(p)`` before it go stale).

    Returns the parameter (or ``ps``).

    >>> import numpy as np, minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> mg.update_(W, [0.5, 0.5])
    param([0.5, 1.5])
    >>> mg.update_(mg.Descent(0.1), W, np.array([1.0, 1.0]))
    param([0.4, 1.4])
    """
    if len(args) == 2:
        x, x̄ = args
        if type(data(x)) is np.ndarray and type(data(x̄)) is np.ndarray:
            return cpu.update(x, x̄)         # (the common case, without the device checks)
        return backend_for("update_", x, x̄).update(x, x̄)
    if len(args) != 3:
        raise TypeError(f"update_ takes (x, x̄), (opt, x, x̄) or (opt, ps, gs); got {len(args)} "
                        "arguments")
    opt, x, g = args
    guarded = getattr(opt, "_guarded_update", None)     # ApplyIfFinite (guard.py) checks first
    if guarded is not None:
        return guarded(x, g)
    if isinstance(x, (Params, list, tuple)):
        return _update_all(opt, x, g)
    if isinstance(g, Grads):
        raise TypeError(f"update_({type(opt).__name__}): got one parameter and a Grads; pass "
                        "the parameters the gradient was taken with, update_(opt, ps, gs), or "
                        "the parameter's own gradient, update_(opt, W, gs[W])")
    return _run(opt, x, g, update=True, name=f"update_({type(opt).__name__})")

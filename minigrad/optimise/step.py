"""``apply_`` and ``update_``: running an optimiser on parameters.

An optimiser is flattened into a chain of stages.  Runs of built-in :class:`Rule` stages are
executed as one fused kernel pass (:mod:`minigrad.optimise.kernels`); any other
:class:`AbstractOptimiser` runs its own ``apply_`` in Python between passes.  Everything is
checked before anything is written: a bad call leaves the parameter, the gradient and the
optimiser's state as they were.
"""

from __future__ import annotations

import numpy as np

from ..devices import on_device
from ..tracker import Grads, Node, Params, _describe, checked_target, data
from .flat import SharedScalars, steady_step, update_flat
from .kernels import as_hyper, finite_sum, run
from .rules import AbstractOptimiser, Descent, InvDecay, Optimiser, Rule

__all__ = ["apply_", "update_", "LegacyOptimiser", "SGD"]


def _stages(opt) -> list:
    if isinstance(opt, Optimiser):
        return [s for o in opt.os for s in _stages(o)]
    if not isinstance(opt, AbstractOptimiser):
        raise TypeError(f"expected an optimiser (an AbstractOptimiser), got {opt!r}")
    return [opt]


def _fusable(stage) -> bool:
    """A built-in rule whose ``apply_`` has not been overridden by a subclass."""
    return isinstance(stage, Rule) and type(stage).apply_ is Rule.apply_


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


def _checked_step(name: str, x, target: np.ndarray, g) -> np.ndarray:
    """``g`` as an array that may update ``target``: same shape and dtype, or a clear error."""
    gd = data(g)
    if not isinstance(gd, np.ndarray):
        gd = np.asarray(gd)
    if gd.shape != target.shape:
        raise ValueError(f"{name}: the gradient has shape {gd.shape} but the parameter "
                         f"({_describe(x)}) has shape {target.shape}")
    if gd.dtype != target.dtype:
        raise TypeError(f"{name}: the gradient has dtype {gd.dtype} but the parameter "
                        f"({_describe(x)}) has dtype {target.dtype}; convert one of them")
    return gd


def _check_optimiser(stages: list) -> None:
    for stage in stages:
        if isinstance(stage, Rule):
            stage.check()


def _on_cpu(types: tuple, update: bool, flat_x, flat_d, hypers: list, arrays: list,
            keeper) -> None:
    """One fused pass on the CPU (see :func:`minigrad.optimise.kernels.run`); ``keeper``, the
    first rule's state for the parameter, keeps the parameter's choice of threads."""
    run(types, update, flat_x, flat_d, as_hyper(hypers, flat_x.dtype), *arrays, keeper=keeper)


def _place(a) -> str:
    return "the GPU" if on_device(a) else "the host"


def _fused_pass(rules: list, key, flat_x, flat_d, update: bool, execute=_on_cpu) -> None:
    """Run ``rules`` as one kernel over the flat views; commit their state afterwards.

    ``execute(types, update, flat_x, flat_d, hypers, state_arrays, first_state)`` runs the
    kernel: the CPU's by default; :mod:`minigrad.optimise.cuda` passes the GPU's.
    """
    states, fresh, hypers, arrays = [], [], [], []
    for rule in rules:
        state = rule.state.get(key)
        fresh.append(state is None)
        if state is None:
            state = rule.new_state(flat_x)
        elif state.arrays and type(state.arrays[0]) is not type(flat_x) and (
                on_device(state.arrays[0]) != on_device(flat_x)):
            raise TypeError(
                f"{type(rule).__name__}: its state for this parameter is on "
                f"{_place(state.arrays[0])} but the parameter is on {_place(flat_x)}; use a new "
                "optimiser for the moved parameters (minigrad.gpu(...) and minigrad.cpu(...) "
                "make new parameters, which start with fresh state)")
        states.append(state)
        hypers += rule.hypers(state.scalars, key, flat_d)
        arrays += state.arrays
    if not finite_sum(hypers):
        _check_optimiser(rules)     # names the culprit; passes only if a sum overflowed
    execute(tuple(map(type, rules)), update, flat_x, flat_d, hypers, arrays, states[0])
    for rule, state, new in zip(rules, states, fresh, strict=True):
        if type(state.scalars) is SharedScalars:
            # A flat group's member updated on its own: its scalars are its own from now on,
            # and storing its state again tells the group (flat.py).
            state.scalars, new = list(state.scalars), True
        if new:
            rule.state[key] = state
        rule.advance(state.scalars, key)


def _plan(opt) -> list:
    if _fusable(opt):
        return [[opt]]
    stages = _stages(opt)
    passes = _passes(stages)
    if len(passes) > 1:
        # Check every hyperparameter before the first pass writes anything.
        _check_optimiser(stages)
    return passes


def _operands(name: str, x, g, update: bool) -> tuple:
    """The parameter's storage and the gradient as arrays, after every check on them."""
    target = x.data if isinstance(x, Node) else x
    gd = g.data if isinstance(g, Node) else g
    if (type(target) is np.ndarray and type(gd) is np.ndarray and target.dtype.kind == "f"
            and gd.shape == target.shape and gd.dtype == target.dtype
            and target.flags.writeable and target.flags.c_contiguous
            and (update or (gd.flags.writeable and gd.flags.c_contiguous))):
        return target, gd       # the common case, checked cheaply
    if on_device(target) or on_device(gd):
        from .cuda import operands
        operands(name, x, g)            # raises: host and GPU arrays mixed
        raise TypeError(f"{name}: a GPU parameter among host parameters; update host and GPU "
                        "parameters in separate calls")
    target = checked_target(name, x, g)
    gd = _checked_step(name, x, target, g)
    if not target.flags.c_contiguous:
        raise ValueError(f"{name}: the parameter ({_describe(x)}) must be C-contiguous")
    if not update and not (gd.flags.writeable and gd.flags.c_contiguous):
        raise ValueError(f"{name}: Δ must be a writable, C-contiguous array")
    return target, gd


def _run(opt, x, g, update: bool, name: str):
    """Apply ``opt`` to parameter ``x`` with gradient ``g``.

    ``update=True``: ``x -= step``, ``g`` untouched.  ``update=False``: ``g`` (Flux's ``Δ``) is
    overwritten with the step and returned.
    """
    passes = _plan(opt)
    storage = x.data if isinstance(x, Node) else x
    if type(storage) is not np.ndarray and on_device(storage):     # a GPU parameter
        from .cuda import step
        return step(passes, x, g, update, name)
    target, gd = _operands(name, x, g, update)
    return _step(passes, x, target, gd, update)


def _step(passes: list, x, target: np.ndarray, gd: np.ndarray, update: bool):
    """:func:`_run` once ``opt`` is planned and the arrays are checked."""
    key = x if isinstance(x, Node) else target
    flat_x = target.reshape(-1)
    if update and len(passes) == 1 and isinstance(passes[0], list):
        _fused_pass(passes[0], key, flat_x, np.ascontiguousarray(gd).reshape(-1), update=True)
        return x
    delta = gd if not update else gd.copy()
    for p in passes:
        if isinstance(p, list):
            _fused_pass(p, key, flat_x, delta.reshape(-1), update=False)
        else:
            result = p.apply_(x, delta)
            if result is not delta:
                delta[...] = result
    if update:
        np.subtract(target, delta, out=target)
        return x
    return delta


def apply_(opt, x, Δ):
    """Flux's ``apply!``: overwrite ``Δ`` with ``opt``'s step for parameter ``x``; return it.

    The optimiser's state for ``x`` advances; ``x`` itself is not changed.

    >>> import numpy as np, minigrad as mg
    >>> mg.apply_(mg.Descent(0.1), np.zeros(2), np.array([1.0, 2.0]))
    array([0.1, 0.2])
    """
    return _run(opt, x, Δ, update=False, name=f"apply_({type(opt).__name__})")


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
        xd, x̄d = data(x), data(x̄)
        if not (type(xd) is np.ndarray and type(x̄d) is np.ndarray) and (
                on_device(xd) or on_device(x̄d)):
            from .cuda import subtract
            return subtract("update_", x, x̄)
        target = checked_target("update_", x, x̄)
        np.subtract(target, x̄d, out=target)
        return x
    if len(args) != 3:
        raise TypeError(f"update_ takes (x, x̄), (opt, x, x̄) or (opt, ps, gs); got {len(args)} "
                        "arguments")
    opt, x, g = args
    guarded = getattr(opt, "_guarded_update", None)     # ApplyIfFinite (guard.py) checks first
    if guarded is not None:
        return guarded(x, g)
    if isinstance(x, (Params, list, tuple)):
        passes = _plan(opt)
        one_pass = len(passes) == 1 and isinstance(passes[0], list)
        if (one_pass and type(x) is Params and type(g) is Grads and g.params is x
                and steady_step(opt, passes[0], x._items, g._grads)):
            return x
        name = f"update_({type(opt).__name__})"
        pairs = [(p, g[p]) for p in x]
        if pairs and on_device(data(pairs[0][0])):                  # GPU parameters
            from .cuda import update_params
            return update_params(opt, passes, x, pairs, name)
        checked = [(p, *_operands(name, p, gp, True)) for p, gp in pairs if gp is not None]
        if one_pass and update_flat(opt, passes[0], [(p, gd) for p, _, gd in checked]):
            return x
        for p, target, gd in checked:
            _step(passes, p, target, gd, update=True)
        return x
    return _run(opt, x, g, update=True, name=f"update_({type(opt).__name__})")


class LegacyOptimiser:
    """Tracker-era Flux optimiser closure: ``opt = SGD([W, b], 0.1); ...; opt()``.

    Calling it updates every parameter from its accumulated ``.grad`` (see
    :func:`minigrad.tracker.back_`) and resets the gradient.  ``decay > 0`` adds inverse time
    decay of the step, as ``Optimiser(rule, InvDecay(decay))``.

    >>> import minigrad as mg
    >>> W = mg.param([1.0, 2.0])
    >>> opt = mg.SGD([W], 0.1)
    >>> mg.tracker.back_(lambda: mg.sum(W * W)); opt(); W
    param([0.8, 1.6])
    """

    def __init__(self, rule: AbstractOptimiser, ps, decay=0):
        self.opt = Optimiser(rule, InvDecay(decay)) if decay else rule
        self.params = ps if isinstance(ps, Params) else Params(ps)

    def __call__(self) -> None:
        for p in self.params:
            if p._grad is not None:
                _run(self.opt, p, p._grad, update=True, name="legacy optimiser")
                p._grad = None

    def __repr__(self) -> str:
        return f"LegacyOptimiser({self.opt!r}, {len(self.params)} parameters)"


def SGD(*args, **kwargs):
    """Tracker-era gradient descent: ``SGD(params, η=0.1; decay=0)`` returns a
    :class:`LegacyOptimiser`; ``SGD(η)`` without parameters is ``Descent(η)``.

    >>> import minigrad as mg
    >>> mg.SGD(0.3)
    Descent(eta=0.3)
    """
    return Descent(*args, **kwargs)


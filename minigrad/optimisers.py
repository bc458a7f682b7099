"""Explicit-state optimisers (Optimisers.jl 0.4's names in Python spelling).

The state lives in a tree that mirrors the model, not inside the optimiser::

    state = setup(Adam(0.01), model)
    grads = mg.gradient(lambda m: loss(m, x, y), model)[0]
    state, model = update_(state, model, grads)

:func:`setup` gives one :class:`Leaf` per trainable array (one for an array tied at several
places), showing its rule and state.  The state is the same engine's as the implicit style's
(:mod:`minigrad.optimise`): each :func:`setup` holds its own copy of each rule given, whose
per-parameter state (keyed by parameter, as in ``update_(opt, ps, gs)``) the leaves show as
views, so :func:`update_` of a whole model is one kernel call over flat buffers, and the two
styles give bitwise the same parameters.  A rule written in Optimisers.jl's interface
(:class:`AbstractRule`: ``init`` and ``apply_``) runs parameter by parameter.

``docs/explicit.md`` is the guide.

>>> import numpy as np, minigrad as mg
>>> from minigrad import optimisers as opt
>>> m = {"x": mg.param([1.0, 2.0])}
>>> st = opt.setup(opt.Descent(0.1), m)
>>> st, m = opt.update_(st, m, {"x": np.array([10.0, 10.0])})
>>> m["x"]
param([0., 1.])
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import warnings
from functools import partial
from itertools import repeat
from operator import attrgetter, is_

import numpy as np

from .autograd import param
from .optimise import rules as _rules
from .optimise import step as _step
from .optimise.flat import FLAT_GROUPS, SharedScalars
from .optimise.rules import (
    AbstractOptimiser,
    AdaDelta,
    AdaGrad,
    Adam,
    AdaMax,
    AMSGrad,
    Descent,
    NAdam,
    Nesterov,
    OAdam,
    RAdam,
    Rule,
)
from .optimise.rules_extra import (  # Optimisers.jl's rules (its AdamW, ClipNorm, RMSProp)
    AccumGrad,
    AdamW,
    ClipGrad,
    ClipNorm,
    Lion,
    Muon,
    RMSProp,
    Rprop,
    SignDecay,
    Signum,
)
from .tracker import Grads, Param, Params, _describe, data
from .tree import children, fmap, mirror, walk

__all__ = [
    "setup", "update_", "update", "adjust_", "freeze_", "thaw_", "trainable", "destructure",
    "init", "apply_", "Leaf", "AbstractRule", "OptimiserChain",
    "Descent", "Momentum", "Nesterov", "RMSProp", "Adam", "RAdam", "AdaMax", "OAdam",
    "AdaGrad", "AdaDelta", "AMSGrad", "NAdam", "AdaBelief", "WeightDecay",
    "AdamW", "ClipNorm", "ClipGrad", "Rprop", "Signum", "SignDecay", "AccumGrad", "Lion", "Muon",
]

_SEQUENCES = (Params,)
_rule = attrgetter("rule")
_param = attrgetter("param")


# -- rules ---------------------------------------------------------------------------------------

class AbstractRule:
    """Base of a rule written in Optimisers.jl's interface: ``init(self, x)`` returns the
    state for array ``x``, ``apply_(self, state, x, dx)`` returns ``(new_state, step)``; the
    update subtracts the step (``None``: no update this time).  Such a rule runs parameter by
    parameter (Python per array), ``x`` being the trainable array and ``dx`` its gradient
    (which ``apply_`` may overwrite).  Its attributes are its hyperparameters
    (:func:`adjust_` sets them).

    >>> import numpy as np, minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> class DecayDescent(opt.AbstractRule):       # η/√t, t counting this array's steps
    ...     def __init__(self, eta=0.1):
    ...         self.eta = eta
    ...     def init(self, x):
    ...         return 1
    ...     def apply_(self, t, x, dx):
    ...         return t + 1, dx * (self.eta / np.sqrt(t))
    >>> m = {"w": mg.param([1.0])}
    >>> st = opt.setup(DecayDescent(), m)
    >>> for _ in range(2):
    ...     st, m = opt.update_(st, m, {"w": np.array([1.0])})
    >>> float(m["w"][0]), st["w"].state                # 1 − 0.1 − 0.1/√2
    (0.8292893218813453, 3)
    """

    def init(self, x):
        """The state of this rule for array ``x`` (define it in your rule)."""
        raise NotImplementedError(f"{type(self).__name__} must define init(self, x)")

    def apply_(self, state, x, dx):
        """``(new_state, step)`` for array ``x`` with gradient ``dx`` (define it in your
        rule); a step of ``None`` skips the update."""
        raise NotImplementedError(
            f"{type(self).__name__} must define apply_(self, state, x, dx) -> (state, step)")


def _engine(rule) -> bool:
    """Whether ``rule`` runs on the fused engine (:mod:`minigrad.optimise`)."""
    if isinstance(rule, OptimiserChain):
        return all(map(_engine, rule.opts))
    return isinstance(rule, AbstractOptimiser)


class OptimiserChain(AbstractRule):
    """Apply several rules in turn, each to the previous one's step (Optimisers.jl's
    ``OptimiserChain``); a step of ``None`` stops the chain.  A chain of minigrad's own rules
    runs on the fused engine as ``Optimiser(...)`` does (one kernel pass over memory); one
    that holds an :class:`AbstractRule` runs parameter by parameter.

    >>> import numpy as np, minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> m = {"x": mg.param([1.0, 10.0, 100.0])}
    >>> st = opt.setup(opt.OptimiserChain(mg.ClipValue(2.0), opt.WeightDecay(0.1)), m)
    >>> _ = opt.update_(st, m, {"x": np.array([1.0, 2.0, 3.0])})
    >>> m["x"]                 # x − (clamp(dx, ±2) + 0.1x)
    param([-0.1,  7. , 88. ])
    """

    def __init__(self, *opts):
        for i, o in enumerate(opts):
            if not isinstance(o, (AbstractOptimiser, AbstractRule)):
                raise TypeError(f"OptimiserChain: item {i} is not a rule: {o!r}")
        self.opts = tuple(opts)

    def stages(self) -> list:
        """The engine's stages (see :meth:`minigrad.AbstractOptimiser.stages`); a chain of
        minigrad's own rules only."""
        if not _engine(self):
            raise TypeError("this OptimiserChain holds an AbstractRule: it runs parameter by "
                            "parameter (init/apply_), not on the fused engine")
        return [s for o in self.opts for s in o.stages()]

    def init(self, x):
        """The members' states for array ``x``, as a tuple."""
        return tuple(init(o, x) for o in self.opts)

    def apply_(self, state, x, dx):
        """Each member's ``apply_`` in turn on the previous one's step; ``(states, step)``."""
        state = list(state)
        for i, o in enumerate(self.opts):
            state[i], dx = apply_(o, state[i], x, dx)
            if dx is None:
                break
        return tuple(state), dx

    def __getstate__(self) -> dict:
        """What ``copy`` and ``pickle`` keep: the rules, not the engine's flat groups."""
        return {k: v for k, v in vars(self).items() if k != FLAT_GROUPS}

    def __repr__(self) -> str:
        return f"OptimiserChain({', '.join(map(repr, self.opts))})"


class Momentum(_rules.Momentum):
    """Momentum as Optimisers.jl writes it: ``v = ρv + ηg``, step ``v`` (Flux's
    :class:`minigrad.Momentum` keeps ``−v``; the steps are the same).  ``Momentum(η=0.01,
    ρ=0.9)``.

    >>> import numpy as np, minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> m = {"x": mg.param([1.0, 2.0])}
    >>> st = opt.setup(opt.Momentum(0.1), m)
    >>> st, m = opt.update_(st, m, {"x": np.array([25.0, 33.0])})
    >>> st["x"].state
    (array([2.5, 3.3]),)
    """

    @staticmethod
    def math(d, x, v, eta, rho):
        v = rho * v + eta * d
        return v, v


class AdaBelief(_rules.AdaBelief):
    """AdaBelief as Optimisers.jl writes it: ``ϵ`` (default ``1e-16``) is added to ``s`` and
    to the denominator as it is, where Flux's :class:`minigrad.AdaBelief` adds ``ϵ²``
    (default ``1e-8``, so the same ``1e-16``).  ``AdaBelief(η=0.001, β=(0.9, 0.999),
    ϵ=1e-16)``.

    >>> import numpy as np, minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> x, g = np.zeros(1), np.array([1.0])
    >>> bool(opt.apply_(opt.AdaBelief(), None, x, g)[1] == mg.apply_(mg.AdaBelief(), x, g))
    True
    """

    fields = (("eta", "η", 0.001), ("beta", "β", (0.9, 0.999)), ("epsilon", "ϵ", 1e-16))

    def hypers(self, scalars, key, delta):
        (b1, b2), (p1, p2) = self.beta, scalars
        return (b1, b2, 1 - b1, 1 - b2, self.eta / (1 - p1), 1 / (1 - p2), self.epsilon)


class WeightDecay(_rules.WeightDecay):
    """Add ``λ·x`` to the step, with Optimisers.jl's default ``λ = 5e-4`` (Flux's
    :class:`minigrad.WeightDecay` defaults to 0).  ``WeightDecay(λ=5e-4)``; the field is
    ``wd``.

    >>> from minigrad import optimisers as opt
    >>> opt.WeightDecay()
    WeightDecay(wd=0.0005)
    """

    fields = (("wd", "λ", 5e-4),)


# -- the interface: init and apply_ --------------------------------------------------------------

def _stage_view(stage, key):
    """One engine stage's state for ``key``: its arrays shaped like the parameter (live views)
    and, if it keeps any, its scalars as a tuple; ``None`` when it keeps nothing."""
    st = stage.state.get(key) if isinstance(stage, Rule) else None
    if st is None:
        return None
    view = tuple(st[i] for i in range(len(st.arrays)))
    view += (tuple(st.scalars),) if st.scalars else ()
    return view or None


def _view(rule, key):
    if isinstance(rule, Rule):
        return _stage_view(rule, key)
    return tuple(_stage_view(s, key) for s in rule.stages())


def init(rule, x):
    """Optimisers.jl's ``init``: the state of ``rule`` for array ``x``.  For minigrad's own
    rules the state lives in the rule, keyed by ``x``, and this returns views of it (see
    :class:`Leaf`); for an :class:`AbstractRule`, ``rule.init(x)``.

    >>> import numpy as np
    >>> from minigrad import optimisers as opt
    >>> init(opt.Adam(), np.zeros(2))
    (array([0., 0.]), array([0., 0.]), (0.9, 0.999))
    """
    if isinstance(rule, AbstractRule):
        return rule.init(x)
    if not isinstance(rule, AbstractOptimiser):
        raise TypeError(f"init(rule, x): expected a rule, got {_describe(rule)}")
    for stage in rule.stages():
        if isinstance(stage, Rule):
            stage.state[x] = stage.new_state(data(x))
    return _view(rule, x)


def apply_(rule, state, x, dx):
    """Optimisers.jl's ``apply!``: ``(new_state, step)`` of ``rule`` for array ``x`` with
    gradient ``dx``; the caller subtracts the step.  For minigrad's own rules the state is
    the one the rule keeps for ``x`` (``state`` is what :func:`init` or the previous call
    returned, views of it) and ``dx`` is not modified.

    >>> import numpy as np
    >>> from minigrad import optimisers as opt
    >>> x = np.array([1.0, 2.0]); rule = opt.Momentum(0.1)
    >>> state, step = apply_(rule, init(rule, x), x, np.array([25.0, 33.0]))
    >>> state, step
    ((array([2.5, 3.3]),), array([2.5, 3.3]))
    """
    if isinstance(rule, AbstractRule):
        return rule.apply_(state, x, dx)
    if not isinstance(rule, AbstractOptimiser):
        raise TypeError(f"apply_(rule, state, x, dx): expected a rule, got {_describe(rule)}")
    storage = data(x)
    fresh = np.array(dx, dtype=storage.dtype) if type(storage) is np.ndarray else dx.copy()
    step = _step.apply_(rule, x, fresh)         # (it overwrites the array it is given)
    return _view(rule, x), step


# -- the state tree ------------------------------------------------------------------------------

class Leaf:
    """The optimiser state of one trainable array (Optimisers.jl's ``Leaf``): ``rule``, the
    rule updating it (the copy its :func:`setup` holds), ``state``, and ``frozen`` (see
    :func:`freeze_`).  ``param`` is the array.

    For minigrad's own rules ``state`` shows the engine's state for the array: a tuple of
    its state arrays, shaped like it (live views: writing into them changes the state), and
    its scalars as a tuple when it keeps some (Adam's ``(β1ᵗ, β2ᵗ)``); a chain gives one
    such entry per stage, ``None`` for a stage keeping nothing.  For an
    :class:`AbstractRule`, ``state`` is what its ``init``/``apply_`` returned.

    >>> import minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> st = opt.setup(opt.Descent(), {"w": mg.param([1.0, 2.0])})
    >>> st["w"]
    Leaf(Descent(eta=0.1), None)
    """

    __slots__ = ("rule", "param", "frozen", "_state")

    def __init__(self, rule, param: Param):
        self.rule, self.param, self.frozen = rule, param, False
        state = init(rule, param)
        # (an engine rule's state lives in the rule: keep no views that would go stale)
        self._state = None if _engine(rule) else state

    @property
    def state(self):
        """The array's state (see the class documentation)."""
        return _view(self.rule, self.param) if _engine(self.rule) else self._state

    @state.setter
    def state(self, value) -> None:
        if _engine(self.rule):
            raise AttributeError("the state of minigrad's own rules lives in the engine: "
                                 "write into the arrays of leaf.state instead")
        self._state = value

    def __repr__(self) -> str:
        frozen = ", frozen = true" if self.frozen else ""
        return f"Leaf({self.rule!r}, {self.state!r}{frozen})"

    # -- checkpoints (minigrad.checkpoint): each leaf saves its own array's state ---------------
    def _stages(self) -> list:
        stages = self.rule.stages()
        for stage in stages:
            if not isinstance(stage, Rule):
                raise TypeError(
                    f"cannot save the explicit state of {stage!r}: its state is not kept per "
                    "array by the engine; give it state_dict() and save it with the implicit "
                    "style, or write it as an AbstractRule")
        return stages

    def state_dict(self) -> dict:
        """``{"frozen": bool, "rule": [...]}``: for minigrad's own rules one entry per stage,
        ``{"hyper": {field: value}, "arrays": [...], "scalars": [...]}`` (the live state
        arrays of this array, flat); for an :class:`AbstractRule`, ``{"hyper":
        vars(rule), "state": state}``.

        >>> import numpy as np, minigrad as mg
        >>> from minigrad import optimisers as opt
        >>> leaf = opt.setup(opt.Momentum(0.1), {"w": mg.param([1.0])})["w"]
        >>> leaf.state_dict()["rule"]
        [{'hyper': {'eta': 0.1, 'rho': 0.9}, 'arrays': [array([0.])], 'scalars': []}]
        """
        if not _engine(self.rule):
            return {"frozen": self.frozen,
                    "rule": {"hyper": dict(vars(self.rule)), "state": self._state}}
        out = []
        for stage in self._stages():
            st = stage.state[self.param]
            out.append({"hyper": {a: getattr(stage, a) for a, _, _ in stage.fields},
                        "arrays": list(st.arrays), "scalars": list(st.scalars)})
        return {"frozen": self.frozen, "rule": out}

    def check_state_dict(self, state, name=_describe):
        """Check ``state`` (as :meth:`state_dict` gives it) against this leaf; return the
        function that loads it (in place: views into flat buffers stay valid).  A
        ``ValueError`` names every problem.

        >>> import minigrad as mg
        >>> from minigrad import optimisers as opt
        >>> leaf = opt.setup(opt.Adam(), {"w": mg.param([1.0])})["w"]
        >>> saved = leaf.state_dict(); saved["rule"][0]["scalars"] = [1.0, 1.0]
        >>> try:
        ...     leaf.check_state_dict(saved, name=lambda p: "w")
        ... except ValueError as err:
        ...     print(str(err)[:51])
        Leaf of w: stage 0 (Adam): βp (the powers β1ᵗ, β2ᵗ)
        """
        where = f"Leaf of {name(self.param)}"
        if not isinstance(state, dict) or sorted(state) != ["frozen", "rule"] or not \
                isinstance(state["frozen"], bool):
            raise ValueError(f"{where}: a leaf's state is a dict with 'frozen' (a bool) and "
                             f"'rule', got {str(state)[:80]}")
        frozen, saved = state["frozen"], state["rule"]
        if not _engine(self.rule):
            if not isinstance(saved, dict) or sorted(saved) != ["hyper", "state"] or \
                    sorted(saved["hyper"]) != sorted(vars(self.rule)):
                raise ValueError(f"{where}: the state's rule fields do not match "
                                 f"{self.rule!r}")

            def commit_rule():
                self.frozen, self._state = frozen, saved["state"]
                vars(self.rule).update(saved["hyper"])
            return commit_rule
        stages, p = self._stages(), self.param
        if not isinstance(saved, list) or len(saved) != len(stages):
            count = len(saved) if isinstance(saved, list) else "no"
            raise ValueError(f"{where}: the state has {count} stage(s), the rule "
                             f"{self.rule!r} has {len(stages)}")
        problems = []
        for i, (stage, entry) in enumerate(zip(stages, saved, strict=True)):
            label = f"stage {i} ({type(stage).__name__})"
            fields = sorted(a for a, _, _ in stage.fields)
            if not isinstance(entry, dict) or sorted(entry) != ["arrays", "hyper", "scalars"] \
                    or sorted(entry["hyper"]) != fields:
                problems.append(f"{label}: expected 'hyper' with {fields}, 'arrays' and "
                                "'scalars'")
                continue
            try:
                trial = copy.copy(stage)
                for attr, value in entry["hyper"].items():
                    setattr(trial, attr, value)         # checks the range
            except ValueError as err:
                problems.append(f"{label}: {err}")
            arrays = entry["arrays"]
            if len(arrays) != len(stage.state_fill) or not all(
                    isinstance(a, np.ndarray) and a.shape == (p.size,) and a.dtype == p.dtype
                    and np.isfinite(a).all() for a in arrays):
                problems.append(f"{label}: expected {len(stage.state_fill)} finite state "
                                f"array(s) of shape ({p.size},) {p.dtype}")
            problem = stage._scalar_problem(entry["scalars"])
            if problem:
                problems.append(f"{label}: {problem}")
        if problems:
            raise ValueError(f"{where}: " + "; ".join(problems))

        def commit():
            self.frozen = frozen
            for stage, entry in zip(stages, saved, strict=True):
                for attr, value in entry["hyper"].items():
                    setattr(stage, attr, value)
                st = stage.state[p]
                for dst, src in zip(st.arrays, entry["arrays"], strict=True):
                    dst[...] = src
                if st.scalars != entry["scalars"]:
                    if type(st.scalars) is SharedScalars:   # a flat group's: leave it
                        st.scalars = list(entry["scalars"])
                        stage.state[p] = st                 # (tells the group)
                    else:
                        st.scalars[:] = entry["scalars"]
        return commit

    def load_state_dict(self, state) -> None:
        """Load ``state`` (see :meth:`check_state_dict`), all or nothing."""
        self.check_state_dict(state)()


def trainable(x) -> dict | None:
    """The children of ``x`` that optimisers train, ``{key: child}`` (Optimisers.jl's
    ``trainable``): every child of a container or model, or for a layer that defines a method
    ``trainable(self)`` returning field names, those fields only; ``None`` for an array or
    anything without children.

    >>> import minigrad as mg
    >>> class Scale:
    ...     def __init__(self):
    ...         self.w, self.frozen_w = mg.param([1.0]), mg.param([2.0])
    ...     def trainable(self):
    ...         return ("w",)
    >>> list(trainable(Scale())), trainable(mg.param([1.0]))
    (['w'], None)
    """
    kids = _kids(x)
    return None if kids is None else dict(kids)


def _kids(x, sequences: tuple = _SEQUENCES):
    kids = children(x, sequences)
    chosen = getattr(x, "trainable", None) if kids is not None else None
    if callable(chosen) and not isinstance(x, dict):
        keep = set(chosen())
        kids = [(k, v) for k, v in kids if k in keep]
    return kids


def _path_name(path: tuple) -> str:
    return ".".join(map(str, path))


def _chooser(rule):
    """``path -> rule or None`` from :func:`setup`'s ``rule`` argument."""
    if isinstance(rule, (AbstractOptimiser, AbstractRule)):
        return lambda path: rule
    if isinstance(rule, dict):
        def by_pattern(path):
            name = _path_name(path)
            for pattern, chosen in rule.items():
                if fnmatch.fnmatchcase(name, pattern):
                    return chosen
            raise ValueError(f"setup: no pattern of {list(rule)} matches the array "
                             f"{name!r}; add a catch-all '*': rule (or '*': None to leave "
                             "the rest untrained)")
        return by_pattern
    if callable(rule):
        return rule
    raise TypeError(f"setup(rule, model): expected a rule, a dict of path patterns to rules "
                    f"or a function of the path, got {_describe(rule)}")


def _fresh(rule):
    """A copy of ``rule`` for one setup, without the state it may hold."""
    new = copy.deepcopy(rule)
    for stage in new.stages() if _engine(new) else ():
        if isinstance(stage, Rule):
            stage.state = _rules.IdDict()
    return new


def setup(rule, model):
    """The state tree of ``rule`` for ``model`` (Optimisers.jl's ``setup``): a tree
    mirroring the model's trainable parts (an object or dict gives a dict, a list or tuple
    a tuple, see :func:`trainable`) with a :class:`Leaf` at each trainable array (the same
    leaf wherever a tied array appears) and ``None`` where there is nothing to train.

    ``rule`` is a rule (minigrad's own, ``Optimiser(...)``, :class:`OptimiserChain`, an
    :class:`AbstractRule`), or a choice per array (optax's ``masked``/``partition``): a dict
    of path patterns to rules, the first pattern (``fnmatch``) matching the array's dotted
    path winning (``"layers.0.weight"``, as checkpoints name arrays; every array must
    match), or a function of the path (a tuple of keys) returning the rule; a choice of
    ``None`` leaves the array untrained.  Each rule object given is copied once: arrays
    sharing it share one engine rule and update in one kernel call.

    >>> import minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> m = mg.Chain(mg.Dense(2, 2), mg.Dense(2, 1))
    >>> st = opt.setup({"*.bias": opt.Adam(), "*": opt.OptimiserChain(opt.WeightDecay(),
    ...                                                           opt.Adam())}, m)
    >>> st["layers"][1]["bias"].rule, st["layers"][1]["σ"]
    (Adam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08), None)
    """
    choose = _chooser(rule)
    paths = {id(p): path for path, p in walk(model, Param, _SEQUENCES, kids=_kids)}
    copies: dict = {}
    leaves: dict = {}

    def leaf(y):
        if not isinstance(y, Param):
            return NotImplemented
        if id(y) not in leaves:
            chosen = choose(paths[id(y)])
            if chosen is not None and not isinstance(chosen, (AbstractOptimiser,
                                                              AbstractRule)):
                raise TypeError(f"setup: the rule chosen for {_path_name(paths[id(y)])!r} "
                                f"is {_describe(chosen)}, not a rule")
            if chosen is not None and id(chosen) not in copies:
                copies[id(chosen)] = (chosen, _fresh(chosen))
            leaves[id(y)] = None if chosen is None else Leaf(copies[id(chosen)][1], y)
        return leaves[id(y)]

    tree = mirror(model, leaf, _SEQUENCES, kids=_kids, again=lambda t: t)
    if not any(leaves.values()):
        warnings.warn(f"setup found no trainable array to optimise in {_describe(model)}",
                      stacklevel=2)
    return tree


# -- update --------------------------------------------------------------------------------------

def _no_child(path, key) -> ValueError:
    return ValueError(f"the model has no {_path_name((*path, key))!r}, which the state has: "
                      "pass the model this state was set up for")


def _mismatch(grads, state, path) -> ValueError:
    hint = (" (gradient(...) returns a tuple with one tree per argument: pass its [0])"
            if isinstance(grads, tuple) and len(grads) == 1 else "")
    shape = "a dict" if isinstance(state, dict) else f"{len(state)} items"
    return ValueError(f"the gradient at {_path_name(path) or 'the top'!r} is "
                      f"{_describe(grads)[:60]}, where the state has {shape}{hint}")


def _gather(state, model, grads, path, leaves: list, found: list) -> None:
    """Append to ``leaves`` each unfrozen :class:`Leaf` of ``state`` whose gradient in
    ``grads`` is not ``None``, and that gradient to ``found``, in :func:`setup`'s order (a
    tied array's leaf once per place), after checking that ``model`` holds, at each such
    leaf's place, the array the leaf was set up for."""
    if isinstance(state, dict):
        if not isinstance(grads, dict):
            raise _mismatch(grads, state, path)
        pairs = zip(state.items(), map(grads.get, state), strict=True)
    else:
        if not isinstance(grads, (tuple, list)) or len(grads) != len(state):
            raise _mismatch(grads, state, path)
        pairs = zip(enumerate(state), grads, strict=True)
    child = model.__getitem__ if isinstance(model, (dict, list, tuple) + _SEQUENCES) else \
        partial(getattr, model)
    for (key, sub), g in pairs:
        if sub is None or g is None:
            continue
        try:
            m = child(key)
        except (KeyError, IndexError, AttributeError, TypeError):
            raise _no_child(path, key) from None
        if type(sub) is not Leaf:
            _gather(sub, m, g, (*path, key), leaves, found)
        elif m is not sub.param:
            raise ValueError(f"the model's array at {_path_name((*path, key))!r} is not the "
                             "one this state was set up for: pass the same model (update "
                             "returns a new model with its new state)")
        elif not sub.frozen:
            leaves.append(sub)
            found.append(g)


def _steady(leaves: list, grads: list) -> bool:
    """The steady state of a training loop, in one kernel call: every leaf under one rule of
    the engine, whose arrays lie in one flat buffer, and ``grads`` the views
    :func:`minigrad.gradient` landed them in (see
    :meth:`~minigrad.tracker.FlatBuffer.landed_flat`).  Returns whether it did the step (if
    not, nothing was changed)."""
    rule = leaves[0].rule
    if not _engine(rule) or not all(map(is_, map(_rule, leaves), repeat(rule))):
        return False
    params = list(map(_param, leaves))
    buffer = params[0].flat
    flat = None if buffer is None else buffer.landed_flat(grads)
    return flat is not None and _step.steady_update(rule, params, buffer, flat)


def _groups(leaves: list, grads: list) -> list:
    """``[(rule, leaves, params, grads), ...]``: the leaves with their gradients grouped by
    rule, in order of first appearance; a leaf met at several places (a tied array) once,
    with its gradients summed (as Optimisers.jl does)."""
    groups: dict = {}
    where: dict = {}        # id(leaf) -> (its group's gradients, its index there)
    for leaf, g in zip(leaves, grads, strict=True):
        if id(leaf) in where:
            into, i = where[id(leaf)]
            into[i] = into[i] + g
            continue
        _, members, params, gradients = groups.setdefault(id(leaf.rule),
                                                          (leaf.rule, [], [], []))
        where[id(leaf)] = (gradients, len(gradients))
        members.append(leaf)
        params.append(leaf.param)
        gradients.append(g)
    return list(groups.values())


def update_(state, model, grads):
    """One step, in place (Optimisers.jl's ``update!``): ``x -= step`` for each trainable
    array of ``model`` whose gradient is not ``None`` and whose leaf is not frozen; returns
    ``(state, model)``.  ``grads`` mirrors the model as ``gradient(lambda m: loss(m),
    model)[0]`` gives it (a ``None`` subtree is skipped; gradients of a tied array found at
    several places are summed).

    The arrays sharing one rule of :func:`setup` update together, as ``update_(rule, ps,
    gs)`` of the implicit style: one kernel call over flat buffers.  The first update moves
    them into one buffer; from then on ``gradient`` writes their gradients into one flat
    buffer laid out alike and the step reads it there; gradients from elsewhere are gathered
    into one first.  An :class:`AbstractRule` updates its arrays one by one.

    >>> import numpy as np, minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> m = mg.Dense(2, 1); m.weight[...] = [[1.0, 2.0]]
    >>> st = opt.setup(opt.Descent(0.1), m)
    >>> g = mg.gradient(lambda m: mg.sum(m([1.0, 3.0])), m)[0]
    >>> st, m = opt.update_(st, m, g)
    >>> m.weight
    param([[0.9, 1.7]], dtype=float32)
    """
    if state is None or grads is None:
        return state, model
    leaves: list = []
    found: list = []
    if isinstance(state, Leaf):     # a model that is one array: its leaf as a one-item tree
        _gather({0: state}, {0: model}, {0: grads}, (), leaves, found)
    else:
        _gather(state, model, grads, (), leaves, found)
    if not leaves or _steady(leaves, found):
        return state, model
    for rule, members, params, gradients in _groups(leaves, found):
        if not _engine(rule):
            for leaf, g in zip(members, gradients, strict=True):    # an AbstractRule: in turn
                leaf._state, step = rule.apply_(leaf._state, leaf.param, g)
                if step is not None:
                    _step.update_(leaf.param, step)
            continue
        ps = Params(params)
        gs = Grads(ps)
        gs._grads.update(zip(map(id, params), gradients, strict=True))
        buffer = params[0].flat
        flat = None if buffer is None else buffer.landed_flat(gradients)
        if flat is not None:        # (ApplyIfFinite, say, then steps its rule on it as it lies)
            gs._land(flat, buffer)
        _step.update_(rule, ps, gs)
    return state, model


def update(state, model, grads):
    """One step on copies (Optimisers.jl's ``update``): returns ``(new_state, new_model)``
    and leaves ``state`` and ``model`` as they were.

    >>> import numpy as np, minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> m = {"x": mg.param([1.0])}
    >>> st = opt.setup(opt.Descent(0.5), m)
    >>> st2, m2 = opt.update(st, m, {"x": np.array([1.0])})
    >>> m["x"], m2["x"]
    (param([1.]), param([0.5]))
    """
    state, model = copy.deepcopy((state, model))
    return update_(state, model, grads)


# -- adjusting, freezing -------------------------------------------------------------------------

def _leaves(tree, name: str) -> list:
    leaves = [leaf for _, leaf in walk(tree, Leaf)]
    if not leaves and walk(tree, Param, _SEQUENCES):
        raise TypeError(f"{name} takes the state tree from setup(rule, model) (or a part of "
                        f"it), got {_describe(tree)[:60]}, which holds the model's arrays")
    return leaves


def _stages_of(rule) -> list:
    if isinstance(rule, OptimiserChain):
        return [s for o in rule.opts for s in _stages_of(o)]
    return rule.stages() if isinstance(rule, AbstractOptimiser) else [rule]


def _set(stage, key: str, value) -> bool:
    """Set hyperparameter ``key`` (any spelling) of ``stage`` if it has it; return whether."""
    if isinstance(stage, Rule):
        field = stage._keyword(key)
        if field in ("beta1", "beta2"):
            beta = list(stage.beta)
            beta[int(field[-1]) - 1] = value
            stage.beta = tuple(beta)
            return True
        if field is None:
            return False
        setattr(stage, field, value)
        return True
    if key in vars(stage):
        setattr(stage, key, value)
        return True
    return False


def _split(rule, leaves: list):
    """A copy of ``rule`` for ``leaves`` alone, taking their state along (the leaves outside
    keep ``rule``); ``rule`` itself when it serves no other array."""
    if not _engine(rule):
        return copy.copy(rule)          # (the state lives in the leaves)
    mine = {id(leaf.param): leaf.param for leaf in leaves}
    stages = [s for s in _stages_of(rule) if isinstance(s, Rule)]
    served = {id(k): k for s in stages for k in s.state.keys() if k is not None}
    if served.keys() <= mine.keys():
        return rule
    new = copy.deepcopy(rule, dict(served))     # the arrays stay, their state is copied
    for old_stage, new_stage in zip(stages, [s for s in _stages_of(new)
                                             if isinstance(s, Rule)], strict=True):
        for key in list(new_stage.state.keys()):
            if id(key) not in mine:
                del new_stage.state[key]
        for p in mine.values():
            if p in old_stage.state:
                del old_stage.state[p]
    return new


def adjust_(tree, eta=None, **fields):
    """Change hyperparameters of every rule in ``tree`` (a state tree or part of it), keeping
    the state (Optimisers.jl's ``adjust!``): ``adjust_(tree, 0.01)`` sets the learning rate,
    ``adjust_(tree, beta=(0.8, 0.9))`` (ASCII or Greek spellings, as the constructors take
    them) any field, in every stage of a chain that has it.  Leaves outside ``tree`` that
    shared its rules keep the old values.  A keyword that no rule has is an error; values
    are checked as the constructors check them, and a refused call changes nothing.
    Returns ``tree``.

    A schedule can drive it: ``adjust_(state, schedule(epoch))`` once per epoch.

    >>> import minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> st = opt.setup(opt.Adam(), {"a": mg.param([1.0]), "b": mg.param([1.0])})
    >>> _ = opt.adjust_(st["a"], 0.1, β2=0.99)
    >>> st["a"].rule, st["b"].rule.eta
    (Adam(eta=0.1, beta=(0.9, 0.99), epsilon=1e-08), 0.001)
    """
    if eta is not None:
        fields = {"eta": eta, **fields}
    leaves = _leaves(tree, "adjust_")
    by_rule: dict = {}
    for leaf in leaves:
        by_rule.setdefault(id(leaf.rule), (leaf.rule, []))[1].append(leaf)
    used = dict.fromkeys(fields, False)
    for rule, _ in by_rule.values():            # a dry run on copies: refuse before changing
        for stage in _stages_of(copy.deepcopy(rule, {id(s): s for s in _state_dicts(rule)})):
            for key, value in fields.items():
                used[key] |= _set(stage, key, value)
    unknown = [k for k, u in used.items() if not u]
    if unknown:
        raise ValueError(f"adjust_: no rule in this tree has {unknown} (the rules are "
                         f"{[r for r, _ in by_rule.values()]})")
    for rule, group in by_rule.values():
        new = _split(rule, group)
        for stage in _stages_of(new):
            for key, value in fields.items():
                _set(stage, key, value)
        for leaf in group:
            leaf.rule = new
    return tree


def _state_dicts(rule) -> list:
    """The per-parameter state dictionaries of ``rule``'s stages (shared, not copied, by a
    dry run)."""
    return [s.state for s in _stages_of(rule) if isinstance(s, Rule)]


def freeze_(tree):
    """Stop updating every array of ``tree`` (a state tree or part of it; Optimisers.jl's
    ``freeze!``); their state is kept.  Returns ``tree``.

    >>> import numpy as np, minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> m = {"x": mg.param([1.0]), "y": mg.param([1.0])}
    >>> st = opt.setup(opt.Descent(0.1), m); _ = opt.freeze_(st["y"])
    >>> _ = opt.update_(st, m, {"x": np.ones(1), "y": np.ones(1)})
    >>> m["x"], m["y"]
    (param([0.9]), param([1.]))
    """
    for leaf in _leaves(tree, "freeze_"):
        leaf.frozen = True
    return tree


def thaw_(tree):
    """Undo :func:`freeze_` for every array of ``tree``; returns ``tree``.

    >>> import minigrad as mg
    >>> from minigrad import optimisers as opt
    >>> st = opt.freeze_(opt.setup(opt.Descent(), {"x": mg.param([1.0])}))
    >>> opt.thaw_(st)["x"].frozen
    False
    """
    for leaf in _leaves(tree, "thaw_"):
        leaf.frozen = False
    return tree


# -- destructure ---------------------------------------------------------------------------------

def destructure(model):
    """``(flat, rebuild)`` (Optimisers.jl's ``destructure``): every trainable array of
    ``model`` (a tied one once), flattened into one vector in :func:`minigrad.params`'
    order (the dtype NumPy promotes them to), and ``rebuild(v)``, which returns a copy of
    ``model`` with new trainable arrays taken from a vector ``v`` of that length (in their
    own dtypes).  ``rebuild`` is not differentiable through ``v``.

    >>> import minigrad as mg
    >>> m = {"a": mg.param([1.0, 2.0]), "b": [mg.param([[3.0]]), print]}
    >>> flat, rebuild = destructure(m)
    >>> flat
    array([1., 2., 3.])
    >>> rebuild(flat * 10)["b"][0]
    param([[30.]])
    """
    ps = [p for _, p in walk(model, Param, _SEQUENCES, kids=_kids)]
    starts = [0, *itertools.accumulate(p.size for p in ps)]
    flat = np.concatenate([np.ravel(p.data) for p in ps]) if ps else np.zeros(0)

    def rebuild(v):
        v = np.asarray(v)
        if v.shape != flat.shape:
            raise ValueError(f"rebuild expects a vector of shape {flat.shape}, got {v.shape}")
        new = {id(p): param(v[a:b].reshape(p.shape), dtype=p.dtype)
               for p, a, b in zip(ps, starts, starts[1:], strict=False)}
        return fmap(lambda y: new.get(id(y), NotImplemented), model, _SEQUENCES)

    return flat, rebuild

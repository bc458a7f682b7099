"""Checkpoints: a model's parameters and an optimiser's full state in one ``.npz`` file.

``save(path, model, opt)`` writes, and ``load(path, model, opt)`` reads back IN PLACE, every
parameter of ``model`` and everything ``opt`` needs to continue bit for bit: each rule's
per-parameter arrays and scalars (Adam's moments and ``βp``, counters), its hyperparameters
(``ExpDecay`` changes its ``η`` as it goes), composed ``Optimiser`` chains, ``Scheduler``
step counters, ``Stateful`` schedules, :class:`~minigrad.ApplyIfFinite` counters and the
state of optimisers you write yourself.

The file.  A plain ``.npz`` (a zip of ``.npy`` arrays: ``np.load(path)`` opens it) holding
``params/<name>`` for each parameter, ``state/<n>`` for each state array and
``minigrad.json``: the format, the parameters' names, shapes and dtypes, the optimiser's
structure with its scalars, and your ``extra`` data.  Nothing is pickled, on either side
(``allow_pickle=False``).  Writing is atomic: the file is written under a temporary name in
the same folder, flushed to disk (``fsync``) and renamed over ``path``, so a crash in the
middle of a save leaves the previous checkpoint whole.

Names.  Parameters are named by where :func:`minigrad.params` finds them, as a dotted path
(see :func:`named_params`): ``Chain(Dense(...), Dense(...))`` gives ``layers.0.weight``,
``layers.0.bias``, ``layers.1.weight``, ...  Loading checks that the names, shapes and dtypes
agree with the model and that the optimiser has the same structure, lists every difference,
and changes nothing when anything differs.

Your own optimisers (and any other object in ``opt``) take part in one of three ways:

1. methods ``state_dict()`` returning plain data, and ``load_state_dict(state)`` taking it
   back.  Plain data is numbers, strings, ``None``, tuples, lists, dicts with string or
   integer keys, NumPy arrays and scalars, :class:`~minigrad.IdDict` keyed by the model's
   parameters (saved under the parameters' names), and other checkpointable objects (restored
   in place into the object at the same position of the current ``state_dict()``);
2. :func:`register` for a class you cannot change;
3. nothing, for an :class:`~minigrad.AbstractOptimiser` whose attributes are all plain data
   (like the Momentum example of the optimiser docs): its attributes are saved and set back.

Anything else is refused with a ``TypeError`` naming the object and where it sits.

>>> import os, tempfile, numpy as np, minigrad as mg
>>> m = mg.Chain(mg.Dense(3, 2)); opt = mg.Adam(0.01)
>>> x = np.ones((3, 4), np.float32)
>>> _ = mg.update_(opt, mg.params(m), mg.gradient(lambda: mg.sum(m(x)), mg.params(m)))
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
>>> mg.save(path, m, opt, extra={"epoch": 1})
>>> m2, opt2 = mg.Chain(mg.Dense(3, 2)), mg.Adam()
>>> mg.load(path, m2, opt2)
{'epoch': 1}
>>> bool(np.array_equal(m2[0].weight, m[0].weight)), opt2.eta
(True, 0.01)
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile

import numpy as np

from .optimise.flat import SharedScalars
from .optimise.guard import ApplyIfFinite
from .optimise.rules import (
    FLAT_GROUPS,
    AbstractOptimiser,
    IdDict,
    LegacyOptimiser,
    Optimiser,
    Rule,
    _State,
    slot_values,
)
from .schedules import AbstractSchedule, Scheduler, Stateful
from .tracker import Param, Params, _children, _collect, _describe

__all__ = ["save", "load", "named_params", "register", "CheckpointError", "FORMAT", "VERSION"]

#: The ``format`` field of every checkpoint's ``minigrad.json``.
FORMAT = "minigrad-checkpoint"
#: The layout version written (files of this version or older can be read).
VERSION = 1
_META = "minigrad.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the model or optimiser given.

    The message names the file and every problem found.  Nothing was changed.

    >>> import minigrad as mg
    >>> issubclass(mg.CheckpointError, ValueError)
    True
    """


# -- names ---------------------------------------------------------------------------------------

def _join(prefix: str, key) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def named_params(model) -> list:
    """``[(name, parameter), ...]`` for every trainable array of ``model``, in the order of
    :func:`minigrad.params`: the names checkpoints use.

    A name is the dotted path to the parameter: attribute names, list/tuple indices and dict
    keys (strings or integers), e.g. ``layers.0.weight`` for the first ``Dense`` of a
    ``Chain`` (its ``layers`` tuple).  A parameter reachable by several paths gets the first
    one; ``model`` itself being a parameter is named ``param``.  Sets (no stable order) and
    dict keys of other types raise ``TypeError``, as do two parameters with one name.

    >>> import minigrad as mg
    >>> m = mg.Chain(mg.Dense(3, 2), mg.Dense(2, 1, bias=False))
    >>> [name for name, p in mg.checkpoint.named_params(m)]
    ['layers.0.weight', 'layers.0.bias', 'layers.1.weight']
    >>> [name for name, p in mg.checkpoint.named_params({"W": m[0].weight, "extra": [m[1].W]})]
    ['W', 'extra.0']
    """
    if isinstance(model, Param):
        return [("param", model)]
    out: list = []
    _walk(model, "", out, set(), set())
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise TypeError(f"named_params: two parameters are both named {twice[0]!r}; checkpoints "
                        "need a unique name for each")
    return out


def _walk(x, path: str, out: list, seen: set, found: set) -> None:
    # The traversal of params() (tracker._children), with names.
    if isinstance(x, Param):
        if id(x) not in found:
            found.add(id(x))
            out.append((path or "param", x))
        return
    children = _children(x)
    if children is None or id(x) in seen:
        return
    seen.add(id(x))
    if isinstance(x, (set, frozenset)):
        if _has_params(x):
            raise TypeError(f"named_params: {path or 'the model'} is a set holding parameters; "
                            "a set has no stable order, so its parameters cannot be named "
                            "(use a list or a dict)")
        return
    if isinstance(x, dict):
        for key in x:
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                if _has_params(x[key]):
                    raise TypeError(f"named_params: the dict at {path or 'the model'} has the "
                                    f"key {key!r}; parameters need string or integer keys")
    for key, child in children:
        _walk(child, _join(path, key), out, seen, found)


def _has_params(x) -> bool:
    found = Params()
    _collect(x, found, set())
    return len(found) > 0


# -- the registry --------------------------------------------------------------------------------

_REGISTRY: list = []     # (class, export, restore), most recently registered first


def register(cls: type, export, restore) -> None:
    """Teach checkpoints a class you cannot give ``state_dict``/``load_state_dict`` methods.

    ``export(obj)`` returns ``obj``'s state as plain data (see the module documentation);
    ``restore(obj, state)`` receives the same structure back (arrays fresh, ``IdDict`` keyed
    by the model's parameters) and may check it and raise; it returns a function of no
    arguments that applies the state, called once EVERYTHING in the checkpoint has been
    checked (so a failed load changes nothing), or ``None``.  Later registrations win.

    >>> import os, tempfile, minigrad as mg
    >>> class Counter:
    ...     def __init__(self): self.n = 0
    >>> mg.checkpoint.register(Counter, lambda c: {"n": c.n},
    ...                        lambda c, s: (lambda: setattr(c, "n", s["n"])))
    >>> c = Counter(); c.n = 7
    >>> path = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> mg.save(path, [], c); c2 = Counter(); _ = mg.load(path, [], c2); c2.n
    7
    """
    if not isinstance(cls, type):
        raise TypeError(f"register: expected a class, got {cls!r}")
    if not (callable(export) and callable(restore)):
        raise TypeError("register: export and restore must be functions")
    _REGISTRY.insert(0, (cls, export, restore))


def _type_name(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- built-in types ------------------------------------------------------------------------------

def _export_rule(rule: Rule) -> dict:
    states = IdDict()
    for key, st in rule.state.items():
        states[key] = {"arrays": list(st.arrays), "scalars": list(st.scalars)}
    return {"hyper": {attr: getattr(rule, attr) for attr, _, _ in rule.fields}, "state": states}


def _restore_rule(rule: Rule, saved: dict, where: str, names: dict):
    hyper, states = saved.get("hyper"), saved.get("state")
    fields = [attr for attr, _, _ in rule.fields]
    if not isinstance(hyper, dict) or sorted(hyper) != sorted(fields):
        raise _Mismatch(f"{where} ({type(rule).__name__}): the checkpoint's hyperparameters "
                        f"are {sorted(hyper) if isinstance(hyper, dict) else hyper!r}, this "
                        f"rule's are {sorted(fields)}")
    if not isinstance(states, IdDict):
        raise _Mismatch(f"{where}: the checkpoint's state is not keyed by parameters")
    n_arrays, n_scalars = len(rule.state_fill), len(rule.scalars())
    problems = []
    for p, entry in states.items():
        label = f"{where}.state[{names[id(p)]!r}]"
        arrays, scalars = entry.get("arrays"), entry.get("scalars")
        if not isinstance(arrays, list) or len(arrays) != n_arrays:
            problems.append(f"{label}: {type(rule).__name__} keeps {n_arrays} state array(s), "
                            f"the checkpoint has {len(arrays) if isinstance(arrays, list) else 0}")
            continue
        for j, a in enumerate(arrays):
            if not isinstance(a, np.ndarray) or a.shape != (p.size,) or a.dtype != p.dtype:
                problems.append(f"{label}: state array {j} has "
                                f"{_shape_dtype(a)}, the parameter needs shape ({p.size},) "
                                f"{p.dtype}")
        if not isinstance(scalars, list) or len(scalars) != n_scalars or not all(
                isinstance(s, (int, float, np.integer, np.floating))
                and not isinstance(s, bool) for s in scalars):
            problems.append(f"{label}: {type(rule).__name__} keeps {n_scalars} scalar(s), the "
                            f"checkpoint has {scalars!r}")
    if problems:
        raise _Mismatch("; ".join(problems))

    def commit():
        for attr in fields:
            setattr(rule, attr, hyper[attr])
        for key in list(rule.state.keys()):
            if key not in states:
                del rule.state[key]
        shared_written = set()
        for p, entry in states.items():
            old = rule.state.get(p)
            if old is not None and len(old.arrays) == n_arrays and all(
                    a.shape == (p.size,) and a.dtype == p.dtype and a.flags.writeable
                    for a in old.arrays):
                # In place: the arrays may be views into a flat group's buffers
                # (optimise/flat.py), which then stays valid; so may the scalars its members
                # share, unless a member's saved scalars differ from those written for the
                # group: that member gets its own, and storing its state again tells the group.
                for dst, src in zip(old.arrays, entry["arrays"], strict=True):
                    dst[...] = src
                if id(old.scalars) not in shared_written:
                    old.scalars[:] = entry["scalars"]
                    if type(old.scalars) is SharedScalars:
                        shared_written.add(id(old.scalars))
                elif old.scalars != entry["scalars"]:
                    old.scalars = list(entry["scalars"])
                    rule.state[p] = old
            else:
                rule.state[p] = _State(tuple(entry["arrays"]), list(entry["scalars"]), p.shape)
    return commit


def _int_counter(value, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise _Mismatch(f"{where}: expected an integer >= {minimum}, the checkpoint has "
                        f"{value!r}")
    return int(value)


def _restore_scheduler(sched: Scheduler, saved: dict, where: str, names: dict):
    state = saved.get("state")
    if not isinstance(state, IdDict):
        raise _Mismatch(f"{where}: the checkpoint's step counters are not keyed by parameters")
    for p, t in state.items():
        _int_counter(t, f"{where}.state[{names[id(p)]!r}]", 1)

    def commit():
        sched.state = state
    return commit


def _restore_stateful(st: Stateful, saved: dict, where: str, names: dict):
    value = _int_counter(saved.get("state"), f"{where}.state", 1)

    def commit():
        st.state = value
    return commit


def _restore_guard(guard: ApplyIfFinite, saved: dict, where: str, names: dict):
    skipped = _int_counter(saved.get("skipped"), f"{where}.skipped", 0)
    consecutive = _int_counter(saved.get("consecutive"), f"{where}.consecutive", 0)

    def commit():
        guard.skipped, guard.consecutive = skipped, consecutive
    return commit


def _nothing(obj, saved, where, names):
    return None


def _export_attributes(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if k != FLAT_GROUPS}


def _restore_attributes(obj, saved: dict, where: str = "", names: dict | None = None):
    current = _export_attributes(obj)
    if not isinstance(saved, dict) or sorted(saved) != sorted(current):
        raise _Mismatch(f"{where} ({type(obj).__name__}): the checkpoint has the attributes "
                        f"{sorted(saved) if isinstance(saved, dict) else saved!r}, the object "
                        f"has {sorted(current)}")

    def commit():
        for k, v in saved.items():
            setattr(obj, k, v)
    return commit


# Built-ins: (class, export, restore(obj, saved, where, names)).  Checked after the protocol
# methods and register(), most specific first.
_BUILTIN = [
    (ApplyIfFinite, lambda g: {"skipped": g.skipped, "consecutive": g.consecutive, "opt": g.opt},
     _restore_guard),
    (Optimiser, lambda o: {"os": list(o.os)}, _nothing),
    (Scheduler, lambda s: {"state": s.state, "opt": s.opt}, _restore_scheduler),
    (Stateful, lambda s: {"state": s.state}, _restore_stateful),
    (LegacyOptimiser, lambda o: {"opt": o.opt}, _nothing),
    (Rule, _export_rule, _restore_rule),
    (AbstractSchedule, lambda s: {}, _nothing),      # configuration only, no state
]


# -- minigrad.mx (MXNet style): registered lazily, so this module never imports it ----------------

def _fields(obj) -> dict:
    """An object's attributes: its ``__dict__`` and its ``__slots__``."""
    return {**getattr(obj, "__dict__", {}), **slot_values(obj)}


def _restore_fields(obj, saved: dict, where: str, names: dict):
    current = _fields(obj)
    if not isinstance(saved, dict) or sorted(saved, key=str) != sorted(current, key=str):
        raise _Mismatch(f"{where} ({type(obj).__name__}): the checkpoint has the attributes "
                        f"{sorted(saved, key=str) if isinstance(saved, dict) else saved!r}, "
                        f"the object has {sorted(current, key=str)}")

    def commit():
        for k, v in saved.items():
            object.__setattr__(obj, k, v)      # (mx optimizers check on setattr: values were)
    return commit


def _export_updater(u) -> dict:
    from .mx.optimizers import MxState
    states = {}
    for index, st in u.states.items():
        if isinstance(st, MxState):
            st = {"stage": st.stage.__qualname__, "arrays": list(st.arrays),
                  "scalars": list(st.scalars), "shape": tuple(st.shape),
                  "dtype": np.dtype(st.dtype).str}
        states[index] = st
    return {"optimizer": u.optimizer, "states": states}


def _restore_updater(u, saved: dict, where: str, names: dict):
    from .mx.optimizers import MxState
    states = saved.get("states")
    if not isinstance(states, dict):
        raise _Mismatch(f"{where}: the checkpoint has no states")
    made = {}
    for index, entry in states.items():
        if not (isinstance(entry, dict) and "stage" in entry):
            made[index] = entry                 # a user-defined optimizer's own state
            continue
        label = f"{where}.states[{index!r}]"
        try:
            shape, dtype = tuple(entry["shape"]), np.dtype(entry["dtype"])
            template = u.optimizer._new_state(np.empty(shape, dtype))
        except (AttributeError, TypeError, ValueError, KeyError) as err:
            raise _Mismatch(f"{label}: {type(u.optimizer).__name__} cannot take this state "
                            f"({err})") from None
        arrays, scalars = entry.get("arrays"), entry.get("scalars")
        if template.stage.__qualname__ != entry["stage"]:
            raise _Mismatch(f"{label}: the checkpoint has {entry['stage']}'s state, "
                            f"{type(u.optimizer).__name__} keeps {template.stage.__qualname__}'s")
        size = int(np.prod(shape, dtype=np.int64))
        if (not isinstance(arrays, list) or len(arrays) != len(template.arrays) or any(
                not isinstance(a, np.ndarray) or a.shape != (size,) or a.dtype != dtype
                for a in arrays) or not isinstance(scalars, list)
                or len(scalars) != len(template.scalars)):
            raise _Mismatch(f"{label}: the state's arrays or scalars do not fit "
                            f"{template.stage.__qualname__} for shape {shape} {dtype}")
        made[index] = MxState(template.stage, tuple(arrays), list(scalars), shape, dtype)

    def commit():
        old = dict(u.states)
        u.states.clear()
        for index, st in made.items():
            before = old.get(index)
            if (isinstance(st, MxState) and isinstance(before, MxState)
                    and before.stage is st.stage and before.shape == st.shape
                    and before.dtype == st.dtype and all(
                        type(a) is np.ndarray and a.flags.writeable for a in before.arrays)):
                for dst, src in zip(before.arrays, st.arrays, strict=True):
                    dst[...] = src             # in place
                before.scalars[:] = st.scalars
                st = before
            u.states[index] = st
    return commit


def _mx_handlers() -> list:
    import sys
    if "minigrad.mx" not in sys.modules:
        return []
    from . import mx
    return [
        (mx.Updater, _export_updater, _restore_updater),
        (mx.AbstractOptimizer, _fields, _restore_fields),
        (mx.AbstractLearningRateScheduler, _fields, _restore_fields),
        (mx.AbstractMomentumScheduler, _fields, _restore_fields),
        (mx.OptimizationState, _fields, _restore_fields),
    ]


_BUILTIN_RESTORES = {restore for _, _, restore in _BUILTIN} | {
    _restore_fields, _restore_updater}


def _handler(obj):
    """``(export, restore(obj, saved, where, names))`` for ``obj``, or ``None``."""
    if callable(getattr(obj, "state_dict", None)) and callable(
            getattr(obj, "load_state_dict", None)):
        return (lambda o: o.state_dict(),
                lambda o, s, where, names: (lambda: o.load_state_dict(s)))
    for cls, export, restore in _REGISTRY:
        if isinstance(obj, cls):
            return export, (lambda o, s, where, names, restore=restore: restore(o, s))
    for cls, export, restore in _BUILTIN:
        if isinstance(obj, cls):
            return export, restore
    for cls, export, restore in _mx_handlers():
        if isinstance(obj, cls):
            return export, restore
    if isinstance(obj, AbstractOptimiser):
        return _export_attributes, _restore_attributes
    return None


def _refuse(obj, where: str) -> TypeError:
    return TypeError(
        f"cannot save {where} ({_describe(obj)[:80]}): checkpoints hold "
        "numbers, strings, None, tuples, lists, dicts, NumPy arrays, IdDicts keyed by the "
        "model's parameters and checkpointable objects; give its class state_dict() and "
        "load_state_dict(state) methods, or register it with minigrad.checkpoint.register")


# -- encoding ------------------------------------------------------------------------------------

class _Mismatch(Exception):
    """A difference between the checkpoint and the objects given (collected, then raised)."""


def _shape_dtype(a) -> str:
    if isinstance(a, np.ndarray):
        return f"shape {a.shape} {a.dtype}"
    return type(a).__name__


def _child(where: str, key) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{where}.{key}"
    return f"{where}[{key!r}]"


class _Writer:
    """Turns objects into JSON, collecting their arrays."""

    def __init__(self, names: dict):
        self.names = names          # id(parameter) -> name
        self.arrays: dict = {}      # npz key -> array

    def encode(self, v, where: str):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            value = v.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = repr(value)
            return {"__numpy__": v.dtype.str, "value": value}
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject or v.dtype.kind not in "biufc":
                raise TypeError(f"cannot save {where}: a NumPy array of dtype {v.dtype} (only "
                                "numeric arrays; nothing is pickled)")
            key = f"state/{len(self.arrays)}"
            self.arrays[key] = v
            return {"__array__": key}
        if isinstance(v, tuple):
            return {"__tuple__": [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, dict):
            pairs = []
            for k, x in v.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"cannot save {where}: a dict key {k!r} (keys must be "
                                    "strings or integers)")
                pairs.append([k, self.encode(x, _child(where, k))])
            return {"__dict__": pairs}
        if isinstance(v, IdDict):
            entries = {}
            for key, x in v.items():
                name = self.names.get(id(key))
                if name is None:
                    raise TypeError(
                        f"cannot save {where}: it holds state for {_describe(key)}, which is not "
                        "a parameter of the model given to save() (checkpoints name state by "
                        "the model's parameters)")
                entries[name] = self.encode(x, f"{where}[{name!r}]")
            return {"__iddict__": entries}
        handler = _handler(v)
        if handler is None:
            raise _refuse(v, where)
        return {"__object__": _type_name(v), "state": self.encode(handler[0](v), where)}


class _Reader:
    """Turns JSON back into values, pairing each object with the one in place to restore."""

    def __init__(self, arrays: dict, params: dict, names: dict, path: str):
        self.arrays = arrays        # npz key -> array
        self.params = params        # name -> parameter of the model
        self.names = names          # id(parameter) -> name
        self.path = path
        self.commits: list = []
        self.user_commits: list = []

    def corrupt(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: corrupted checkpoint: {what}")

    def decode(self, node, current, where: str):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            if isinstance(current, list) and len(current) != len(node) and any(
                    isinstance(x, dict) and "__object__" in x for x in node):
                raise _Mismatch(f"{where}: the checkpoint has {len(node)} item(s), the object "
                                f"given has {len(current)}")
            cur = current if isinstance(current, list) and len(current) == len(node) else None
            return [self.decode(x, cur[i] if cur else None, f"{where}[{i}]")
                    for i, x in enumerate(node)]
        if not isinstance(node, dict) or len(node) not in (1, 2):
            raise self.corrupt(f"unexpected entry at {where}: {str(node)[:80]}")
        if "__array__" in node:
            a = self.arrays.get(node["__array__"])
            if a is None:
                raise self.corrupt(f"the array {node['__array__']!r} of {where} is missing")
            if isinstance(current, np.ndarray) and (current.shape, current.dtype) != (
                    a.shape, a.dtype):
                raise _Mismatch(f"{where}: the checkpoint has {_shape_dtype(a)}, the object "
                                f"given has {_shape_dtype(current)}")
            return a
        if "__float__" in node:
            return float(node["__float__"])
        if "__numpy__" in node:
            return np.dtype(node["__numpy__"]).type(node["value"])
        if "__tuple__" in node:
            items = node["__tuple__"]
            cur = current if isinstance(current, tuple) and len(current) == len(items) else None
            return tuple(self.decode(x, cur[i] if cur else None, f"{where}[{i}]")
                         for i, x in enumerate(items))
        if "__dict__" in node:
            out = {}
            cur = current if isinstance(current, dict) else {}
            for k, x in node["__dict__"]:
                out[k] = self.decode(x, cur.get(k), _child(where, k))
            return out
        if "__iddict__" in node:
            out = IdDict()
            for name, x in node["__iddict__"].items():
                p = self.params.get(name)
                if p is None:
                    raise _Mismatch(f"{where}: the checkpoint has state for the parameter "
                                    f"{name!r}, which the model does not have")
                cur = current.get(p) if isinstance(current, IdDict) else None
                out[p] = self.decode(x, cur, f"{where}[{name!r}]")
            return out
        if "__object__" in node:
            return self.restore(node, current, where)
        raise self.corrupt(f"unexpected entry at {where}: {str(node)[:80]}")

    def restore(self, node: dict, obj, where: str):
        """Check ``node`` against ``obj`` and queue the in-place restore; return ``obj``."""
        if obj is None or _type_name(obj) != node["__object__"]:
            given = "nothing" if obj is None else f"a {_type_name(obj)}"
            raise _Mismatch(f"{where}: the checkpoint has a {node['__object__']}, the object "
                            f"given has {given} there")
        handler = _handler(obj)
        if handler is None:
            raise _refuse(obj, where)
        export, restore = handler
        state = self.decode(node.get("state"), export(obj), where)
        commit = restore(obj, state, where, self.names)
        if commit is not None:
            # Your own restore functions run first: they are the only ones that may fail.
            builtin = restore in _BUILTIN_RESTORES or restore is _restore_attributes
            (self.commits if builtin else self.user_commits).append(commit)
        return obj


# -- save and load -------------------------------------------------------------------------------

def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return                      # (Windows: folders cannot be opened)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_array(zf: zipfile.ZipFile, key: str, a: np.ndarray) -> None:
    with zf.open(key + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)


def save(path, model, opt=None, *, extra=None) -> None:
    """Save ``model``'s parameters and ``opt``'s full state to ``path``, atomically.

    ``model`` is anything :func:`minigrad.params` accepts (a ``Chain``, a layer, a list or dict
    of trainable arrays); its parameters are stored under the names of :func:`named_params`.
    ``opt`` is an optimiser, a ``Stateful`` schedule, any checkpointable object, a list or dict
    of them, or ``None``.  ``extra`` is your own plain data (an epoch number, a random
    generator's state, ...), returned by :func:`load`.  The file is an uncompressed ``.npz``
    with a ``minigrad.json`` member (see the module documentation); it is written to a
    temporary file in the same folder, flushed with ``fsync`` and renamed over ``path``, so
    ``path`` always holds a whole checkpoint, the old one or the new one.

    >>> import os, tempfile, numpy as np, minigrad as mg
    >>> W = mg.param([1.0, 2.0]); path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> mg.save(path, {"W": W}, extra={"step": 3})
    >>> sorted(np.load(path).files)
    ['minigrad.json', 'params/W']
    """
    path = os.fspath(path)
    named = named_params(model)
    writer = _Writer({id(p): name for name, p in named})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "params": [{"name": name, "shape": list(p.shape), "dtype": p.dtype.str}
                   for name, p in named],
        "opt": None if opt is None else writer.encode(opt, "opt"),
        "extra": None if extra is None else writer.encode(extra, "extra"),
    }
    text = json.dumps(meta, allow_nan=False, ensure_ascii=False)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                zf.writestr(_META, text.encode("utf-8"))
                for name, p in named:
                    _write_array(zf, "params/" + name, p.data)
                for key, a in writer.arrays.items():
                    _write_array(zf, key, a)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _read(path: str) -> tuple:
    """``(meta, arrays)`` of the checkpoint at ``path``, or a :class:`CheckpointError`."""
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                meta = json.loads(zf.read(_META).decode("utf-8"))
            except KeyError:
                raise CheckpointError(f"{path}: not a minigrad checkpoint (no {_META} in the "
                                      "archive)") from None
            arrays = {}
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    continue
                with zf.open(member) as f:
                    a = np.lib.format.read_array(f, allow_pickle=False)
                    if f.read(1):
                        raise ValueError(f"{member} has trailing bytes")
                arrays[member[:-4]] = a
    except CheckpointError:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, UnicodeDecodeError,
            NotImplementedError) as err:
        raise CheckpointError(f"{path}: not a readable minigrad checkpoint (corrupted or "
                              f"truncated?): {type(err).__name__}: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a minigrad checkpoint ({_META} has no "
                              f"format {FORMAT!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version!r}; this minigrad reads "
                              f"versions up to {VERSION} (a newer minigrad wrote it?)")
    if not isinstance(meta.get("params"), list):
        raise CheckpointError(f"{path}: corrupted checkpoint: no parameter list")
    return meta, arrays


def _check_params(path: str, meta: dict, arrays: dict, named: list) -> list:
    """The ``(parameter, saved array)`` pairs, or a :class:`CheckpointError` listing every
    difference of names, shapes and dtypes."""
    saved = {}
    for entry in meta["params"]:
        try:
            name = entry["name"]
            saved[name] = arrays["params/" + name]
        except (KeyError, TypeError):
            raise CheckpointError(f"{path}: corrupted checkpoint: parameter entry "
                                  f"{str(entry)[:80]} has no array") from None
    model = dict(named)
    problems = []
    missing = [n for n in model if n not in saved]
    unexpected = [n for n in saved if n not in model]
    for n in missing:
        p = model[n]
        problems.append(f"the model's {n} (shape {p.shape} {p.dtype}) is not in the checkpoint")
    for n in unexpected:
        problems.append(f"the checkpoint's {n} ({_shape_dtype(saved[n])}) is not in the model")
    pairs = []
    for n, p in named:
        a = saved.get(n)
        if a is None:
            continue
        if a.shape != p.shape or a.dtype != p.dtype:
            problems.append(f"{n}: the checkpoint has shape {a.shape} {a.dtype}, the model "
                            f"has shape {p.shape} {p.dtype}")
        elif not p.data.flags.writeable:
            problems.append(f"{n}: the model's array is read-only")
        else:
            pairs.append((p, a))
    if problems:
        raise CheckpointError(f"{path} does not match the model ({len(problems)} "
                              "difference(s)); nothing was loaded:\n  " + "\n  ".join(problems))
    return pairs


def load(path, model, opt=None):
    """Load the checkpoint at ``path`` into ``model`` and ``opt`` in place; return its ``extra``.

    Every parameter's values are copied into its existing storage (so views, such as the
    flat buffers ``update_`` groups parameters into, stay valid), and ``opt`` (an optimiser or
    whatever was given to :func:`save`) gets the saved state: per-parameter arrays written in
    place where they exist, scalars, counters and hyperparameters (as PyTorch's
    ``load_state_dict`` restores the learning rate; set one after loading to change it).  The
    optimiser's state for parameters the checkpoint has none for is dropped.  ``opt=None``
    loads the parameters only.

    Everything is checked first: an unreadable file, a parameter name, shape or dtype that
    differs, or an optimiser of another structure raises :class:`CheckpointError` naming the
    file and listing the differences, and nothing is changed.

    >>> import os, tempfile, minigrad as mg
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> mg.save(path, {"W": mg.param([1.0, 2.0])})
    >>> W = mg.param([0.0, 0.0]); mg.load(path, {"W": W}); W
    param([1., 2.])
    >>> mg.load(path, {"W": mg.param([0.0])})
    Traceback (most recent call last):
    ...
    minigrad.checkpoint.CheckpointError: ... does not match the model (1 difference(s)); nothing
    was loaded:
      W: the checkpoint has shape (2,) float64, the model has shape (1,) float64
    """
    path = os.fspath(path)
    meta, arrays = _read(path)
    named = named_params(model)
    pairs = _check_params(path, meta, arrays, named)
    reader = _Reader(arrays, dict(named), {id(p): n for n, p in named}, path)
    try:
        if opt is not None:
            if meta.get("opt") is None:
                raise _Mismatch("the checkpoint holds no optimiser state, but an optimiser "
                                "was given")
            reader.decode(meta["opt"], opt, "opt")
        extra = None if meta.get("extra") is None else reader.decode(meta["extra"], None,
                                                                     "extra")
    except _Mismatch as err:
        raise CheckpointError(f"{path} does not match the optimiser given; nothing was "
                              f"loaded: {err}") from None
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: corrupted checkpoint: {type(err).__name__}: "
                              f"{err}") from err
    # Everything checked: now write.
    for commit in reader.user_commits:
        commit()
    for p, a in pairs:
        p.data[...] = a
    for commit in reader.commits:
        commit()
    return extra

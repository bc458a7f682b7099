"""Checkpoints: a model's parameters and an optimiser's full state in one ``.npz`` file.

``save(path, model, opt)`` writes, and ``load(path, model, opt)`` reads back IN PLACE, every
parameter of ``model``, the state its layers keep besides their parameters (a ``BatchNorm``'s
running statistics, see :func:`model_state`) and everything ``opt`` needs to continue bit for
bit: each rule's per-parameter arrays and scalars (Adam's moments and ``βp``, counters), its
hyperparameters (``ExpDecay`` changes its ``η`` as it goes), composed ``Optimiser`` chains,
``Scheduler`` step counters, ``Stateful`` schedules, :class:`~minigrad.ApplyIfFinite` counters
and the state of optimisers you write yourself.

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

Objects save themselves.  Every stateful minigrad object (rules, ``Optimiser``,
``ApplyIfFinite``, ``Scheduler``, ``Stateful``, schedules, the ``minigrad.mx`` updaters,
optimizers and schedulers) has ``state_dict()`` (its state as plain data, nested objects as
themselves), ``check_state_dict(state, name=...)`` (checks structure AND values, changes
nothing, returns the function that applies the state) and ``load_state_dict(state)`` (both).
``load`` calls ``check_state_dict`` on every object of ``opt`` first and applies the states only
when all of them passed, so a refused file changes nothing; this module only encodes, decodes
and checks the file itself.

Your own optimisers (and any other object in ``opt``) take part in one of three ways:

1. methods ``state_dict()`` returning plain data, and ``load_state_dict(state)`` taking it
   back (called after the checks of minigrad's own objects, before their states are
   applied; define ``check_state_dict`` too, in the same class, for the two phases).  Plain
   data is numbers, strings, ``None``, tuples, lists, dicts with string or integer keys,
   NumPy arrays and scalars, :class:`~minigrad.IdDict` keyed by the model's parameters
   (saved under the parameters' names), and other checkpointable objects (restored in place
   into the object at the same position of the current ``state_dict()``);
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
import zlib

import numpy as np

from .optimise.rules import FLAT_GROUPS, AbstractOptimiser, IdDict
from .tracker import Param, Params, _describe
from .tree import children, containers, walk

__all__ = ["save", "load", "named_params", "model_state", "register", "CheckpointError", "FORMAT",
           "VERSION"]

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
    out = []
    for path, p in walk(model, Param, (Params,)):
        # A key that is not a string or an int comes from a set (None) or an odd dict key:
        # only then look at the containers along the path, to name the problem.
        plain = all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in path)
        for depth, parent in enumerate([] if plain else containers(model, path, (Params,))):
            where = ".".join(map(str, path[:depth])) or "the model"
            key = path[depth]
            if isinstance(parent, (set, frozenset)):
                raise TypeError(f"named_params: {where} is a set holding parameters; a set has "
                                "no stable order, so its parameters cannot be named (use a list "
                                "or a dict)")
            if isinstance(parent, dict) and (isinstance(key, bool)
                                             or not isinstance(key, (str, int))):
                raise TypeError(f"named_params: the dict at {where} has the key {key!r}; "
                                "parameters need string or integer keys")
        out.append((".".join(map(str, path)), p))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise TypeError(f"named_params: two parameters are both named {twice[0]!r}; checkpoints "
                        "need a unique name for each")
    return out


# -- the registry --------------------------------------------------------------------------------

_REGISTRY: list = []     # (class, export, restore), most recently registered first


def register(cls: type, export, restore) -> None:
    """Teach checkpoints a class you cannot give ``state_dict``/``load_state_dict`` methods.

    ``export(obj)`` returns ``obj``'s state as plain data (see the module documentation);
    ``restore(obj, state)`` receives the same structure back (arrays fresh, ``IdDict`` keyed
    by the model's parameters) and may check it and raise; it returns a function of no
    arguments that applies the state, called once EVERYTHING in the checkpoint has been
    checked (so a failed load changes nothing), or ``None``.  Later registrations win, and a
    registered class is handled by its registration even if it has ``state_dict`` methods.

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


#: Modules renamed since files were written: old name -> new name (the classes are the same).
_MOVED = {"minigrad.mx.LearningRate": "minigrad.mx.learning_rate",
          "minigrad.mx.Momentum": "minigrad.mx.momentum"}


def _type_name(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- how each object takes part -------------------------------------------------------------------

def _export_attributes(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if k != FLAT_GROUPS}


def _restore_attributes(obj, saved: dict, names: dict):
    current = _export_attributes(obj)
    if not isinstance(saved, dict) or sorted(saved) != sorted(current):
        raise ValueError(f"{type(obj).__name__}: the checkpoint has the attributes "
                         f"{sorted(saved) if isinstance(saved, dict) else saved!r}, the object "
                         f"has {sorted(current)}")

    def commit():
        for k, v in saved.items():
            setattr(obj, k, v)
    return commit


def _defined_by(cls: type, attr: str):
    """The class of ``cls``'s MRO that defines ``attr``, or ``None``."""
    return next((c for c in cls.__mro__ if attr in c.__dict__), None)


def _two_phase(obj) -> bool:
    """Whether ``obj`` loads in two phases: ``check_state_dict(state, name=...)`` checks and
    returns the commit, from the same class as its ``state_dict`` and ``load_state_dict`` (a
    subclass overriding only those loads through its own ``load_state_dict``)."""
    owners = {_defined_by(type(obj), m)
              for m in ("state_dict", "check_state_dict", "load_state_dict")}
    return len(owners) == 1 and None not in owners


def _handler(obj):
    """``(export(obj), prepare(obj, state, names), checked)`` for ``obj``, or ``None``.

    ``prepare`` checks ``state`` (raising ``ValueError``/``TypeError``) and returns a function
    that applies it, or ``None``; ``checked`` says that this function cannot fail (everything
    was checked first), so it runs after every other check passed.  A function that may fail
    (``register``'s restores, a user-defined ``load_state_dict``) runs before the others."""
    for cls, export, restore in _REGISTRY:
        if isinstance(obj, cls):
            return export, (lambda o, s, names, restore=restore: restore(o, s)), False
    if _two_phase(obj):
        return (lambda o: o.state_dict(),
                lambda o, s, names: o.check_state_dict(s, name=lambda p: repr(names[id(p)])),
                True)
    if callable(getattr(obj, "state_dict", None)) and callable(
            getattr(obj, "load_state_dict", None)):
        return (lambda o: o.state_dict(),
                lambda o, s, names: (lambda: o.load_state_dict(s)), False)
    if isinstance(obj, AbstractOptimiser):
        return _export_attributes, _restore_attributes, True
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

    def __init__(self, arrays: _Members, params: dict, names: dict, path: str):
        self.arrays = arrays        # the checkpoint's arrays, read when asked for
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
            key = node["__array__"]
            if not isinstance(key, str) or not key.startswith("state/") \
                    or not self.arrays.has(key):
                raise self.corrupt(f"the array {key!r} of {where} is missing")
            shape, dtype = self.arrays.header(key)
            if isinstance(current, np.ndarray) and (current.shape, current.dtype) != (
                    shape, dtype):
                raise _Mismatch(f"{where}: the checkpoint has shape {shape} {dtype}, the "
                                f"object given has {_shape_dtype(current)}")
            # An array the object has already bounds the read; any other, the model's size.
            return self.arrays.read(key, (shape, dtype) if isinstance(current, np.ndarray)
                                    else None)
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
        saved = node["__object__"]
        module, _, name = str(saved).rpartition(".")
        if module in _MOVED:
            saved = f"{_MOVED[module]}.{name}"
        if obj is None or _type_name(obj) != saved:
            given = "nothing" if obj is None else f"a {_type_name(obj)}"
            raise _Mismatch(f"{where}: the checkpoint has a {node['__object__']}, the object "
                            f"given has {given} there")
        handler = _handler(obj)
        if handler is None:
            raise _refuse(obj, where)
        export, prepare, checked = handler
        state = self.decode(node.get("state"), export(obj), where)
        try:
            commit = prepare(obj, state, self.names)
        except (ValueError, TypeError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise _Mismatch(f"{where}: {err}") from None
        if commit is not None:
            (self.commits if checked else self.user_commits).append(commit)
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
    # (np.ascontiguousarray would turn a 0-d array into shape (1,).)
    a = a if a.flags.c_contiguous else a.copy(order="C")
    with zf.open(key + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, a, allow_pickle=False)


def model_state(model) -> list:
    """The objects inside ``model`` that keep state besides their parameters (a
    :class:`~minigrad.BatchNorm`'s running statistics): those with a ``state_dict`` method,
    in the order the model walk meets them.  :func:`save` stores their state with the
    parameters, and :func:`load` puts it back.

    >>> import minigrad as mg
    >>> m = mg.Chain(mg.Dense(2, 3), mg.BatchNorm(3), mg.Dense(3, 1))
    >>> model_state(m) == [m[1]]
    True
    """
    found, seen, stack = [], set(), [model]
    while stack:
        x = stack.pop()
        if id(x) in seen or isinstance(x, (Param, AbstractOptimiser)):
            continue
        seen.add(id(x))
        if callable(getattr(x, "state_dict", None)) and not isinstance(x, type):
            found.append(x)
            continue
        stack.extend(reversed([child for _, child in children(x, (Params,)) or ()]))
    return found


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
    layers = model_state(model)
    if layers:
        meta["layers"] = writer.encode(layers, "layers")
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


#: Errors a damaged or hostile file can raise while it is read (zlib.error from a deflated
#: member, RuntimeError for "File ... is encrypted", RecursionError from deep nesting, ...).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, ValueError, OSError,
                EOFError, UnicodeDecodeError, NotImplementedError, RuntimeError,
                RecursionError, OverflowError, MemoryError, KeyError, TypeError, AttributeError)
#: The most bytes ``minigrad.json`` may inflate to.
_META_LIMIT = 64 << 20
#: What an array that no array of the model or optimiser sizes (one in ``extra``, or the
#: state of a parameter the optimiser has none for yet) may hold: at most the larger of this
#: and the model's largest parameter each, and all of them together at most this plus
#: ``_STATE_ARRAYS`` times the model's parameters (Adam keeps 2 arrays per parameter, OAdam 3).
_ARRAY_FLOOR = 1 << 20
_STATE_ARRAYS = 8


class _Members:
    """The arrays of an open checkpoint, read only when asked for, each checked against what
    it may be before its data is read (so nothing unreferenced is inflated and no declared
    shape allocates more than the model needs)."""

    def __init__(self, zf: zipfile.ZipFile, path: str, params: list):
        self.zf, self.path = zf, path
        self.limit = max([_ARRAY_FLOOR] + [p.data.nbytes for p in params])
        self.budget = _ARRAY_FLOOR + _STATE_ARRAYS * sum(p.data.nbytes for p in params)
        self.names = set(zf.namelist())
        self.cache: dict = {}

    def corrupt(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: corrupted checkpoint: {what}")

    def has(self, key: str) -> bool:
        return key + ".npy" in self.names

    def header(self, key: str) -> tuple:
        """``(shape, dtype)`` of member ``key``, reading only its header."""
        with self._open(key) as f:
            return self._header(key, f)[:2]

    def read(self, key: str, expect: tuple | None = None) -> np.ndarray:
        """Member ``key``'s array; ``expect`` is the ``(shape, dtype)`` it must have (else a
        size limit applies), checked before its data is read."""
        if key in self.cache:
            return self.cache[key]
        with self._open(key) as f:
            shape, dtype, fortran = self._header(key, f)
            if expect is not None and (shape, dtype) != expect:
                raise _Mismatch(f"the array {key!r} has shape {shape} {dtype}, where "
                                f"shape {expect[0]} {expect[1]} is needed")
            size = math.prod(shape) * dtype.itemsize
            if expect is None:
                if size > min(self.limit, self.budget):
                    raise self.corrupt(
                        f"the array {key!r} declares shape {shape} {dtype} ({size} bytes), "
                        f"more than this model's arrays need ({min(self.limit, self.budget)} "
                        "bytes left); refused before reading it")
                self.budget -= size
            try:
                data = bytearray(size)
                if f.readinto(data) != size or f.read(1):
                    raise ValueError("its data is truncated or has trailing bytes")
            except _READ_ERRORS as err:
                raise self.corrupt(f"the array {key!r} cannot be read: "
                                   f"{type(err).__name__}: {err}") from None
        a = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
        self.cache[key] = a
        return a

    def _open(self, key: str):
        if not self.has(key):
            raise self.corrupt(f"the array {key!r} is missing")
        try:
            return self.zf.open(key + ".npy")
        except _READ_ERRORS as err:
            raise self.corrupt(f"the array {key!r} cannot be opened: "
                               f"{type(err).__name__}: {err}") from None

    def _header(self, key: str, f) -> tuple:
        try:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):         # (what np.save writes for numbers)
                raise ValueError(f".npy version {version}")
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(f)
        except _READ_ERRORS as err:
            raise self.corrupt(f"the array {key!r} has no readable header: "
                               f"{type(err).__name__}: {err}") from None
        if dtype.hasobject or dtype.kind not in "biufc":
            raise self.corrupt(f"the array {key!r} has dtype {dtype} (only numbers are read)")
        return tuple(shape), dtype, fortran


def _read_meta(zf: zipfile.ZipFile, path: str) -> dict:
    """The checked ``minigrad.json`` of the open checkpoint, or a :class:`CheckpointError`."""
    try:
        try:
            with zf.open(_META) as f:
                text = f.read(_META_LIMIT + 1)
        except KeyError:
            raise CheckpointError(f"{path}: not a minigrad checkpoint (no {_META} in the "
                                  "archive)") from None
        if len(text) > _META_LIMIT:
            raise CheckpointError(f"{path}: corrupted checkpoint: {_META} is larger than "
                                  f"{_META_LIMIT} bytes")
        meta = json.loads(text.decode("utf-8"))
    except CheckpointError:
        raise
    except _READ_ERRORS as err:
        raise CheckpointError(f"{path}: not a readable minigrad checkpoint (corrupted or "
                              f"truncated?): {type(err).__name__}: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a minigrad checkpoint ({_META} has no "
                              f"format {FORMAT!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version!r}; this minigrad reads "
                              f"versions up to {VERSION} (a newer minigrad wrote it?)")
    if not isinstance(meta.get("params"), list):
        raise CheckpointError(f"{path}: corrupted checkpoint: no parameter list")
    return meta


def _check_params(path: str, meta: dict, members: _Members, named: list) -> list:
    """The ``(parameter, member key)`` pairs, or a :class:`CheckpointError` listing every
    difference of names, shapes and dtypes (read from the members' headers only)."""
    saved = {}
    for entry in meta["params"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not members.has("params/" + name):
            raise CheckpointError(f"{path}: corrupted checkpoint: parameter entry "
                                  f"{str(entry)[:80]} has no array")
        saved[name] = members.header("params/" + name)         # (shape, dtype)
    model = dict(named)
    problems = []
    missing = [n for n in model if n not in saved]
    unexpected = [n for n in saved if n not in model]
    for n in missing:
        p = model[n]
        problems.append(f"the model's {n} (shape {p.shape} {p.dtype}) is not in the checkpoint")
    for n in unexpected:
        problems.append(f"the checkpoint's {n} (shape {saved[n][0]} {saved[n][1]}) is not in "
                        "the model")
    pairs = []
    for n, p in named:
        if n not in saved:
            continue
        shape, dtype = saved[n]
        if shape != p.shape or dtype != p.dtype:
            problems.append(f"{n}: the checkpoint has shape {shape} {dtype}, the model "
                            f"has shape {p.shape} {p.dtype}")
        elif not p.data.flags.writeable:
            problems.append(f"{n}: the model's array is read-only")
        else:
            pairs.append((p, "params/" + n))
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
    named = named_params(model)
    try:
        zf = zipfile.ZipFile(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except _READ_ERRORS as err:
        raise CheckpointError(f"{path}: not a readable minigrad checkpoint (corrupted or "
                              f"truncated?): {type(err).__name__}: {err}") from None
    with zf:
        meta = _read_meta(zf, path)
        members = _Members(zf, path, [p for _, p in named])
        pairs = _check_params(path, meta, members, named)
        reader = _Reader(members, dict(named), {id(p): n for n, p in named}, path)
        try:
            if opt is not None:
                if meta.get("opt") is None:
                    raise _Mismatch("the checkpoint holds no optimiser state, but an "
                                    "optimiser was given")
                reader.decode(meta["opt"], opt, "opt")
            if meta.get("layers") is not None:      # (files from before layers had state)
                reader.decode(meta["layers"], model_state(model), "layers")
            extra = None if meta.get("extra") is None else reader.decode(meta["extra"], None,
                                                                         "extra")
            values = [(p, members.read(key, (p.shape, p.dtype))) for p, key in pairs]
        except _Mismatch as err:
            raise CheckpointError(f"{path}: its saved state does not fit the optimiser or the "
                                  f"model's layers given (structure or values); nothing was "
                                  f"loaded: {err}") from None
        except CheckpointError:
            raise
        except _READ_ERRORS as err:
            raise CheckpointError(f"{path}: corrupted checkpoint: {type(err).__name__}: "
                                  f"{str(err)[:200]}") from None
    # Everything checked: now write.
    for commit in reader.user_commits:
        commit()
    for p, a in values:
        p.data[...] = a
    for commit in reader.commits:
        commit()
    return extra

"""Fused optimiser kernels, generated from each rule's per-element math.

Every built-in rule writes its math once, as a scalar function
``math(d, x, *state, *hyper) -> d`` (or ``(d, *new_state)``): ``d`` is the incoming step, ``x``
the parameter's value, ``state`` the rule's per-element state and ``hyper`` its scalar
hyperparameters for this step.  A chain of such stages (one rule, or an ``Optimiser`` of several)
becomes ONE loop over memory here: this module writes the loop's source, which calls each stage's
math in turn, into a small module in a cache folder and compiles it with Numba, for the CPU
(``@njit``) or the GPU (``@cuda.jit``) from the same text.

Why generated source files: Numba caches compiled code on disk only for functions defined in
files, keyed by the file's contents.  Each generated file embeds the source of every math
function it calls, so editing a rule produces a new file and never loads stale machine code.

Nothing read from the cache is trusted (it is a speed device, never a source of results):

* a generated source whose text differs from the source in memory is rewritten before it is
  imported;
* each file of Numba's cache of a kernel (its index ``.nbi`` and code ``.nbc``) is checked
  against the SHA-256 this module recorded after it compiled (or loaded) the kernel; an
  unrecorded or altered file is deleted, so Numba compiles afresh;
* if loading a kernel still fails (a damaged index, say), its cache entry is deleted and the
  kernel recompiled, with one warning.

Kernels load synchronously at the first step that needs them (about 0.15 s for the first one
in a process with a warm cache, a few ms for each further one; compiling costs 0.1 to 0.5 s
each).  :func:`minigrad.precompile` (or ``python -m minigrad precompile``) fills the cache
ahead of time.

Threads: a CPU kernel over at least :data:`PARALLEL_THRESHOLD` elements runs multi-threaded
(Numba's ``parallel=True``, on as many threads as ``numba.set_num_threads`` allows), a smaller
one serially.  Results are bitwise the same either way: each element is computed alone.  The
threshold is set from ``$MINIGRAD_PARALLEL_THRESHOLD`` at import, or by assigning the module
attribute; ``docs/performance.md`` says how it was measured.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import sys
import tempfile
import threading
import types
import warnings

import numpy as np

__all__ = ["fused_kernel", "run", "ready", "helper", "PARALLEL_THRESHOLD", "cache_dir",
           "as_hyper", "finite_sum", "n_hypers"]

#: CPU kernels over at least this many elements run multi-threaded, smaller ones serially.
#: Between the sizes where the multi-threaded Adam kernel wins in a loop of optimiser steps
#: (from about 64k elements on two cores) and in a training loop whose NumPy matrix products
#: keep OpenBLAS's threads spinning (from about 1M): see docs/performance.md.
PARALLEL_THRESHOLD = int(os.environ.get("MINIGRAD_PARALLEL_THRESHOLD", 1 << 19))

_kernels: dict = {}     # (rules, update, parallel, target) -> compiled dispatcher
_ready: dict = {}       # (rules, update, parallel, dtype) -> CPU kernel checked on that dtype
_helpers: dict = {}     # source -> a backend's helper kernel, checked (see helper)
_lock = threading.Lock()


def cache_dir() -> str:
    """The folder for generated kernel sources (and Numba's cache of them, in its
    ``__pycache__``).

    The first usable one of: ``$MINIGRAD_CACHE_DIR``; ``~/.cache/minigrad``; the shared
    ``minigrad-<uid>`` folder in the system's temporary directory, used only if this user owns
    it and no one else can write to it (others could plant code there); else a fresh private
    temporary folder, kept for the rest of the process.  Usable means a file can really be
    created in it and in its ``__pycache__`` (a probe, not ``os.access``, which root always
    passes), so a read-only home or install never stops training.  Import never calls this:
    kernels are compiled at the first step.  Two processes compiling into one folder at once
    are safe (every file is written under a temporary name and renamed).

    >>> import os
    >>> os.path.isdir(cache_dir())
    True
    """
    user = os.getuid() if hasattr(os, "getuid") else 0
    shared = os.path.join(tempfile.gettempdir(), f"minigrad-{user}")
    candidates = [
        os.environ.get("MINIGRAD_CACHE_DIR"),
        os.path.join(os.path.expanduser("~"), ".cache", "minigrad"),
        shared,
    ]

    def writable(folder: str) -> bool:
        try:
            os.makedirs(folder, mode=0o700 if folder == shared else 0o777, exist_ok=True)
            if folder == shared and hasattr(os, "getuid"):
                info = os.lstat(folder)
                if (not os.path.isdir(folder) or os.path.islink(folder)
                        or info.st_uid != user or info.st_mode & 0o022):
                    return False
            for where in (folder, os.path.join(folder, "__pycache__")):
                if os.path.lexists(where):      # (Numba creates __pycache__ when missing)
                    fd, probe = tempfile.mkstemp(dir=where, suffix=".probe")
                    os.close(fd)
                    os.unlink(probe)
            return True
        except OSError:
            return False

    for folder in candidates:
        if folder and writable(folder):
            return folder
    private = cache_dir.__dict__.get("private")
    if private is None or not os.path.isdir(private):
        try:
            private = tempfile.mkdtemp(prefix=f"minigrad-{user}-")
        except OSError as err:
            raise OSError("no writable folder for minigrad's kernel cache among "
                          f"{[c for c in candidates if c]} nor in the temporary directory; set "
                          "MINIGRAD_CACHE_DIR to a writable folder") from err
        cache_dir.private = private
    return private


def n_hypers(rule) -> int:
    """How many hyperparameters ``rule.math`` takes: ``math(d, x, *state, *hyper)``.

    >>> import minigrad as mg
    >>> n_hypers(mg.Momentum)
    2
    """
    return rule.math.__code__.co_argcount - 2 - len(rule.state_fill)


def _source(rules: tuple, update: bool, parallel: bool, target: str, dtype=None) -> str:
    """The text of a module defining ``kernel`` for this chain of stages (for arrays of
    ``dtype`` only, when given: its own module, so that Numba's cache of it holds one
    signature, written once, whose files then never change).

    ``target="cpu"``: ``kernel(x, g, h, *states)``, a Numba loop (``prange`` when
    ``parallel``), ``h`` one array of hyperparameters.  ``target="cuda"``:
    ``kernel(x, g, h0, h1, ..., *states)``, a ``@cuda.jit`` grid-stride kernel taking the
    hyperparameters as scalars of the parameter's dtype.  Both call the same math functions
    with the same per-element body; only the loop around it differs.
    """
    cuda = target == "cuda"
    lines = [
        "# Generated by minigrad.optimise.kernels; safe to delete.",
        *([f"# For arrays of {np.dtype(dtype).name}."] if dtype is not None else []),
        "import numpy as np",
        "from numba import cuda" if cuda else "from numba import njit, prange",
        "",
    ]
    compile_stage = "cuda.jit(device=True)" if cuda else "njit(error_model='numpy')"
    for k, rule in enumerate(rules):
        stage = rule.math
        lines.append(f"# stage {k}: {stage.__module__}.{stage.__qualname__}")
        lines.extend("# | " + line for line in inspect.getsource(stage).splitlines())
        lines.append(f"import {stage.__module__} as _module{k}")
        lines.append(f"m{k} = {compile_stage}(_module{k}.{stage.__qualname__})")
        lines.append("")
    states = [f"s{k}_{j}" for k, rule in enumerate(rules) for j in range(len(rule.state_fill))]
    if cuda:
        hyper = "h{}".format
        arguments = ["x", "g", *map(hyper, range(sum(map(n_hypers, rules)))), *states]
        lines += [
            "@cuda.jit(cache=True)",
            f"def kernel({', '.join(arguments)}):",
            "    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):",
        ]
    else:
        hyper = "h[{}]".format
        lines += [
            f"@njit(cache=True, error_model='numpy', parallel={parallel})",
            f"def kernel(x, g, h{''.join(', ' + s for s in states)}):",
            f"    for i in {'prange' if parallel else 'range'}(x.size):",
        ]
    lines += ["        xi = x[i]", "        d = g[i]"]
    offset = 0
    for k, rule in enumerate(rules):
        mine = [f"s{k}_{j}[i]" for j in range(len(rule.state_fill))]
        hypers = [hyper(offset + j) for j in range(n_hypers(rule))]
        offset += len(hypers)
        call = f"m{k}(d, xi{''.join(', ' + a for a in mine + hypers)})"
        lines.append(f"        {', '.join(['d'] + mine)} = {call}")
    lines.append("        x[i] = xi - d" if update else "        g[i] = d")
    return "\n".join(lines) + "\n"


# -- the cache: written atomically, read with suspicion --------------------------------------

#: The modification time given to every generated source.  Numba's cache index records its
#: source's (mtime, size) and is stale once they change; a source's text is fixed by its name
#: (a hash of it), so a fixed mtime lets two processes that both write it keep each other's
#: cache valid.
SOURCE_MTIME = 1_000_000_000


def _write(path: str, text: str, mtime: float | None = None) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file, flushed to disk (with
    modification time ``mtime`` if given), renamed."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _numba_files(folder: str, name: str) -> list:
    """The files of Numba's cache of module ``name`` (its index and code files)."""
    pycache = os.path.join(folder, "__pycache__")
    try:
        listing = os.listdir(pycache)
    except OSError:
        return []
    return [os.path.join(pycache, f) for f in sorted(listing)
            if f.startswith(name + ".") and f.endswith((".nbi", ".nbc"))]


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _sums_path(folder: str, name: str) -> str:
    return os.path.join(folder, name + ".sha256.json")


def _recorded_sums(folder: str, name: str) -> dict:
    try:
        with open(_sums_path(folder, name)) as f:
            sums = json.load(f)
        return sums if isinstance(sums, dict) else {}
    except (OSError, ValueError):
        return {}


def _record_sums(folder: str, name: str) -> None:
    """Note the SHA-256 of each of Numba's cache files of ``name`` as they are now (after this
    process compiled or loaded them), unless that is what is recorded already."""
    sums = {os.path.basename(p): _digest(p) for p in _numba_files(folder, name)}
    if sums != _recorded_sums(folder, name):
        try:
            _write(_sums_path(folder, name), json.dumps(sums))
        except OSError:     # a read-only cache: the files are checked against nothing new
            pass


def _damaged(what: str, why: str) -> None:
    warnings.warn(f"minigrad: {what} in the kernel cache {cache_dir()} was damaged ({why}); "
                  "it was deleted and the kernel recompiled", RuntimeWarning, stacklevel=4)


def _discard_unverified(folder: str, name: str) -> None:
    """Delete each of Numba's cache files of ``name`` that is not byte for byte what was
    recorded, so that Numba compiles afresh instead of loading it."""
    sums = _recorded_sums(folder, name)
    for path in _numba_files(folder, name):
        recorded = sums.get(os.path.basename(path))
        if recorded != _digest(path):
            if recorded is not None:
                _damaged(os.path.basename(path), "its contents changed")
            _remove(path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:         # gone already (another process), or a read-only cache
        pass


def _load(source: str, fresh: bool = False, verified: bool = False):
    """Import the generated module of ``source`` (writing or repairing its file first) and
    return its ``kernel``.  ``fresh``: delete its Numba cache first and import it anew.
    ``verified``: delete each of its Numba cache files not recorded by :func:`_record_sums`
    (the CPU kernels; the CUDA kernels' cache, written at their first launch, is Numba's
    alone)."""
    name = "minigrad_kernel_" + hashlib.sha256(source.encode()).hexdigest()[:20]
    if name in sys.modules and not fresh:
        return sys.modules[name].kernel
    folder = cache_dir()
    path = os.path.join(folder, name + ".py")
    try:
        with open(path) as f:
            intact = f.read() == source
    except (OSError, UnicodeDecodeError):
        intact = False
    if not intact:
        if os.path.exists(path):
            _damaged(os.path.basename(path), "its text is not the kernel's source")
        _write(path, source, SOURCE_MTIME)
    if fresh or not intact:
        for stale in _numba_files(folder, name):
            _remove(stale)
    elif verified:
        _discard_unverified(folder, name)
    module = types.ModuleType(name)
    module.__file__ = path
    # Compile the text just checked, not the file: Python would take its own bytecode cache
    # of the file on the recorded mtime and size alone (the same fixed mtime for every
    # source), so a damaged or planted one would run instead.
    exec(compile(source, path, "exec"), module.__dict__)
    sys.modules[name] = module
    return module.kernel


def fused_kernel(rules: tuple, update: bool, size: int, target: str = "cpu", dtype=None,
                 fresh: bool = False):
    """The compiled kernel for a chain of rule types (each with ``math`` and ``state_fill``).

    Call it as ``kernel(x, g, h, *states)`` on 1-D contiguous arrays of one dtype, ``h``
    holding every stage's hyperparameters in order and ``states`` every stage's state arrays
    in order.  It runs each stage's math on every element and then either subtracts the final
    step from ``x`` (``update=True``; ``g`` is left untouched) or writes the step into ``g``
    (``update=False``).  ``size`` picks the serial or the multi-threaded variant (see
    :data:`PARALLEL_THRESHOLD`).

    ``target="cuda"`` gives the ``@cuda.jit`` kernel compiled from the same math (launch it
    through :mod:`minigrad.optimise.cuda`; it takes the hyperparameters as scalars, in the
    place of ``h``); ``size`` is then ignored.  Any type with ``math`` and ``state_fill``
    works, so new rules need nothing here.  ``dtype`` gives the kernel for that dtype alone (a
    module of its own; :func:`run` uses those).  ``fresh`` recompiles, replacing the cache
    entry.

    >>> import numpy as np, minigrad as mg
    >>> kernel = fused_kernel((mg.Descent,), True, 2)
    >>> x = np.ones(2); kernel(x, np.array([1.0, 2.0]), np.array([0.5])); x
    array([0.5, 0. ])
    """
    parallel = target == "cpu" and size >= PARALLEL_THRESHOLD
    key = (rules, update, parallel, target, dtype)
    kernel = None if fresh else _kernels.get(key)
    if kernel is None:
        with _lock:
            kernel = None if fresh else _kernels.get(key)
            if kernel is None:
                kernel = _load(_source(rules, update, parallel, target, dtype), fresh,
                               verified=target == "cpu")
                _kernels[key] = kernel
    return kernel


def _probed(load, probe, what: str):
    """``load(False)``'s kernel once ``probe(kernel)`` has run (so that Numba has loaded or
    compiled its machine code), with the SHA-256 of its cache files recorded.  A probe that
    fails means a damaged cache entry: it is deleted and compiled afresh (``load(True)``),
    with one warning naming ``what``, and probed again."""
    kernel = load(False)
    try:
        probe(kernel)
    except Exception as err:
        if type(err).__module__.startswith("numba") and "Typing" in type(err).__name__:
            raise           # the code itself does not compile: a bug, not a damaged cache
        _damaged(what, f"{type(err).__name__}: {err}")
        kernel = load(True)
        probe(kernel)
    _record_sums(cache_dir(), kernel.py_func.__module__)
    return kernel


def _checked(key: tuple):
    """The CPU kernel of ``key`` = (rules, update, parallel, dtype), run once on one-element
    arrays of its dtype so that Numba has loaded (or compiled) the machine code the real
    calls use; a load that fails is repaired once (see the module's docstring)."""
    rules, update, parallel, dtype = key
    size = PARALLEL_THRESHOLD if parallel else 0
    one = [np.zeros(1, dtype) for _ in range(2 + sum(len(r.state_fill) for r in rules))]
    h = np.zeros(sum(map(n_hypers, rules)), dtype)
    kernel = _probed(
        lambda fresh: fused_kernel(rules, update, size, dtype=dtype, fresh=fresh),
        lambda kernel: kernel(one[0], one[1], h, *one[2:]),
        f"the compiled code of {'+'.join(r.__name__ for r in rules)}")
    _ready[key] = kernel
    return kernel


def helper(source: str, probe, what: str):
    """The ``kernel`` that the module text ``source`` defines, for the backends' helpers (the
    CPU norm's block sums): written, cached and checked like the fused kernels, and run once
    as ``probe(kernel)`` at its first use in the process (see :func:`_probed`; ``what`` names
    it in the warning about a damaged cache).  Give each dtype a source of its own, so that
    Numba's cache of it holds one signature.

    >>> import numpy as np
    >>> text = "from numba import njit\\n@njit(cache=True)\\ndef kernel(a):\\n    a[0] = 7\\n"
    >>> a = np.zeros(1); helper(text, lambda k: k(np.zeros(1)), "an example")(a); a
    array([7.])
    """
    kernel = _helpers.get(source)
    if kernel is None:
        with _lock:
            kernel = _helpers.get(source)
            if kernel is None:
                kernel = _helpers[source] = _probed(
                    lambda fresh: _load(source, fresh, verified=True), probe, what)
    return kernel


def run(rules: tuple, update: bool, x: np.ndarray, g: np.ndarray, h: np.ndarray,
        *states: np.ndarray) -> None:
    """``fused_kernel(rules, update, x.size)(x, g, h, *states)`` on NumPy arrays of one float
    dtype, loading the kernel (checked, see :func:`_checked`) at its first use.

    >>> import numpy as np, minigrad as mg
    >>> x = np.ones(2); run((mg.Descent,), True, x, np.array([1.0, 2.0]), np.array([0.5])); x
    array([0.5, 0. ])
    """
    key = (rules, update, x.size >= PARALLEL_THRESHOLD, x.dtype)
    kernel = _ready.get(key) or _checked(key)
    kernel(x, g, h, *states)


def ready(rules: tuple, update: bool, parallel: bool, dtype) -> None:
    """Load (or compile) and check the CPU kernel that :func:`run` would use for ``rules`` on
    arrays of ``dtype``, serial or multi-threaded (see :func:`minigrad.precompile`).

    >>> import minigrad as mg
    >>> ready((mg.Descent,), True, False, "float64")
    """
    key = (rules, update, parallel, np.dtype(dtype))
    _ready.get(key) or _checked(key)


def finite_sum(values) -> bool:
    """Cheap test that every hyperparameter is a finite number (NaN and ±inf survive a sum).

    >>> finite_sum([0.1, 0.9]), finite_sum([0.1, float("nan")])
    (True, False)
    """
    try:
        return math.isfinite(sum(values))
    except TypeError:           # None, a string...: let the rule's check() name it
        return False


def as_hyper(values, dtype) -> np.ndarray:
    """Hyperparameters as an array of the parameter's dtype (keeps float32 math in float32).

    >>> as_hyper([0.5, 2], "float32")
    array([0.5, 2. ], dtype=float32)
    """
    return np.array(values, dtype=dtype)

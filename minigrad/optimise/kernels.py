"""Fused optimiser kernels, generated from each rule's per-element math.

Every built-in rule writes its math once, as a scalar function
``math(d, x, *state, *hyper) -> d`` (or ``(d, *new_state)``): ``d`` is the incoming step, ``x``
the parameter's value, ``state`` the rule's per-element state and ``hyper`` its scalar
hyperparameters for this step.  A chain of such stages (one rule, or an ``Optimiser`` of several)
becomes ONE loop over memory here: this module writes the loop's source, which calls each stage's
math in turn, into a small module in a cache folder and compiles it with Numba.  The same math
functions can be compiled for other targets (the CUDA kernels reuse them).

Why generated source files: Numba caches compiled code on disk only for functions defined in
files, keyed by the file's contents.  Each generated file embeds the source of every math
function it calls, so editing a rule produces a new file and never loads stale machine code.

Start-up: loading even a cached kernel costs a fresh process about half a second, mostly
Numba setting itself up.  So the first time a process needs a CPU kernel, :func:`run` starts
loading it in a background thread and meanwhile evaluates the same math functions with NumPy
on whole arrays: the same floating-point operations in the same order, so the results are
bitwise those of the kernel (the tests check this for every rule).  Steps switch to the kernel
once it is ready.  ``MINIGRAD_BACKGROUND_KERNELS=0`` (or :data:`BACKGROUND` ``= False``) loads
kernels before the step instead; the benchmarks do that, to time only kernels.

Facts behind the choices (see ``shared/reference/numba.md``): ``error_model='numpy'`` lets
LLVM vectorise divisions and square roots; hyperparameters are passed as one array of the
parameter's dtype, so float32 math stays float32; the ``parallel=True`` variant pays off from
about 64k elements on two cores, *in a loop that runs nothing else*.  In a training loop it
often does not: NumPy's matrix products between two updates run on OpenBLAS's own threads,
which keep spinning after each call, and the two thread pools then fight for the cores.  So
from that size on each call picks the serial or the multi-threaded kernel by which has lately
been faster (:class:`Threads`).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import inspect
import math
import os
import sys
import tempfile
import threading
import time

import numpy as np

__all__ = ["fused_kernel", "ready_kernel", "run", "numpy_pass", "wait", "PARALLEL_THRESHOLD",
           "BACKGROUND", "cache_dir", "as_hyper", "finite_sum", "Threads", "variants"]

#: Arrays with at least this many elements may use the multi-threaded kernel (see
#: :class:`Threads`); smaller ones always use the serial one.
PARALLEL_THRESHOLD = 65536

#: Load CPU kernels in a background thread while NumPy runs the first steps (see above).
BACKGROUND = os.environ.get("MINIGRAD_BACKGROUND_KERNELS", "1") != "0"

_kernels: dict = {}
_lock = threading.Lock()
_ready: dict = {}           # (rules, update, parallel, target, dtype) -> a kernel warmed for it
_loading: dict = {}         # the same keys -> the thread loading that kernel
_failed: set = set()        # keys whose background loading raised


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
    are safe (sources and Numba's cache files are written under temporary names and renamed).

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


def _source(maths: tuple, n_states: tuple, n_hypers: tuple, update: bool, parallel: bool,
            target: str = "cpu") -> str:
    """The text of a module defining ``kernel`` for this chain of stages.

    ``target="cpu"``: ``kernel(x, g, h, *states)``, a Numba loop (``prange`` when
    ``parallel``), ``h`` one array of hyperparameters.  ``target="cpu-tensors"``: the same over
    a model's flat buffers, reading the gradients where they lie instead of from one flat
    buffer: ``kernel(x, grads, views, kinds, shapes, rows, items, h, *states)`` with
    ``grads`` the ``id`` of a list of the gradient arrays, checked against ``kinds`` and
    ``shapes``, and ``views`` that of the list of the parameters' views into ``x``, checked
    writable (see :func:`minigrad.optimise._pointers.gradient_addresses`; it returns
    ``False``, writing nothing, if one does not fit, else ``True``), each row of ``rows``
    (tensor, start, stop, offset) naming elements ``start:stop`` of that gradient, which
    belong at ``offset + start`` of the flat buffers, and work item ``k`` (one iteration of
    the ``prange``) being rows ``items[k]:items[k + 1]``.
    ``target="cuda"``: ``kernel(x, g, h0, h1, ..., *states)``, a ``@cuda.jit`` grid-stride
    kernel taking the hyperparameters as scalars of the parameter's dtype.  All three call the
    same math functions with the same per-element body; only the loop around it differs.
    """
    cuda = target == "cuda"
    tensors = target == "cpu-tensors"
    lines = [
        "# Generated by minigrad.optimise.kernels; safe to delete.",
        "import numpy as np",
        "from numba import cuda" if cuda else
        "from numba import carray, njit, prange" if tensors else "from numba import njit, prange",
        "",
    ]
    compile_stage = "cuda.jit(device=True)" if cuda else "njit(error_model='numpy')"
    helpers = []
    if tensors:
        # (This imports Numba, so it happens when a kernel is made, never at import minigrad.)
        from . import _layout, _pointers
        helpers = [_layout, _pointers]
    for k, stage in enumerate(maths):
        lines.append(f"# stage {k}: {stage.__module__}.{stage.__qualname__}")
        lines.extend("# | " + line for line in inspect.getsource(stage).splitlines())
        lines.append(f"import {stage.__module__} as _module{k}")
        lines.append(f"m{k} = {compile_stage}(_module{k}.{stage.__qualname__})")
        lines.append("")
    for helper in helpers:          # (their source too, so that editing them renames the file)
        lines.extend("# | " + line for line in inspect.getsource(helper).splitlines())
    if tensors:
        lines += ["from minigrad.optimise._pointers import gradient_addresses, pointer_like",
                  "addresses_of = njit(gradient_addresses)", ""]
    states = [f"s{k}_{j}" for k, n in enumerate(n_states) for j in range(n)]
    loop = "prange" if parallel else "range"
    if cuda:
        hyper = "h{}".format
        arguments = ["x", "g", *map(hyper, range(sum(n_hypers))), *states]
        lines += [
            "@cuda.jit(cache=True)",
            f"def kernel({', '.join(arguments)}):",
            "    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):",
        ]
    elif tensors:
        # A serial function checks every gradient and finds its address (see _pointers.py),
        # then calls the parallel loop.  Each row then rebinds x, g and the states to its own
        # 1-D pieces, so the body below is the one of the flat kernel (and the pieces'
        # indices, known >= 0, vectorise).
        hyper = "h[{}]".format
        state_args = "".join(", " + s.upper() for s in states)     # the whole flat buffers
        lines += [
            "@njit(cache=True)",
            f"def kernel(X, grads, views, kinds, shapes, rows, items, h{state_args}):",
            "    addresses = np.empty(shapes.shape[0], np.intp)",
            "    if not addresses_of(grads, views, kinds, shapes, addresses):",
            "        return False",
            f"    loop(X, addresses, rows, items, h{state_args})",
            "    return True",
            "",
            f"@njit(cache=True, error_model='numpy', parallel={parallel})",
            f"def loop(X, addresses, rows, items, h{state_args}):",
            f"    for item in {loop}(items.size - 1):",
            "        for r in range(items[item], items[item + 1]):",
            "            tensor, start, stop = rows[r, 0], rows[r, 1], rows[r, 2]",
            "            offset = rows[r, 3]",
            "            a, b = offset + start, offset + stop",
            "            x = X[a:b]",
            "            g = carray(pointer_like(addresses[tensor] + start * X.itemsize, X),",
            "                       stop - start)",
            *(f"            {s} = {s.upper()}[a:b]" for s in states),
            "            for i in range(x.size):",
        ]
    else:
        hyper = "h[{}]".format
        lines += [
            f"@njit(cache=True, error_model='numpy', parallel={parallel})",
            f"def kernel(x, g, h{''.join(', ' + s for s in states)}):",
            f"    for i in {loop}(x.size):",
        ]
    indent = " " * (16 if tensors else 8)
    lines += [f"{indent}xi = x[i]", f"{indent}d = g[i]"]
    offset = 0
    for k, n in enumerate(n_states):
        mine = [f"s{k}_{j}[i]" for j in range(n)]
        hypers = [hyper(offset + j) for j in range(n_hypers[k])]
        offset += n_hypers[k]
        call = f"m{k}(d, xi{''.join(', ' + a for a in mine + hypers)})"
        targets = ", ".join(["d"] + mine)
        lines.append(f"{indent}{targets} = {call}")
    lines.append(f"{indent}x[i] = xi - d" if update else f"{indent}g[i] = d")
    return "\n".join(lines) + "\n"


def _load(source: str):
    name = "minigrad_kernel_" + hashlib.sha256(source.encode()).hexdigest()[:20]
    if name in sys.modules:
        return sys.modules[name].kernel
    path = os.path.join(cache_dir(), name + ".py")
    if not os.path.exists(path):
        # Write then rename, so a process never imports a half-written file.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.kernel


def fused_kernel(rules: tuple, update: bool, size: int, target: str = "cpu"):
    """The compiled kernel for a chain of rule types (each with ``math`` and ``state_fill``).

    Call it as ``kernel(x, g, h, *states)`` on 1-D contiguous arrays of one dtype, ``h``
    holding every stage's hyperparameters in order and ``states`` every stage's state arrays
    in order.  It runs each stage's math on every element and then either subtracts the final
    step from ``x`` (``update=True``; ``g`` is left untouched) or writes the step into ``g``
    (``update=False``).  ``size`` picks the serial or the multi-threaded variant.

    ``target="cuda"`` gives the ``@cuda.jit`` kernel compiled from the same math (launch it
    through :mod:`minigrad.optimise.cuda`; it takes the hyperparameters as scalars, in the
    place of ``h``); ``size`` is then ignored.  Any type with ``math`` and ``state_fill``
    works, so new rules need nothing here.

    >>> import numpy as np, minigrad as mg
    >>> kernel = fused_kernel((mg.Descent,), True, 2)
    >>> x = np.ones(2); kernel(x, np.array([1.0, 2.0]), np.array([0.5])); x
    array([0.5, 0. ])
    """
    parallel = size >= PARALLEL_THRESHOLD and target != "cuda"
    key = (rules, update, parallel, target)
    kernel = _kernels.get(key)
    if kernel is None:
        with _lock:
            kernel = _kernels.get(key)
            if kernel is None:
                maths = tuple(rule.math for rule in rules)
                n_states = tuple(len(rule.state_fill) for rule in rules)
                n_hypers = tuple(map(_n_hypers, rules))
                kernel = _load(_source(maths, n_states, n_hypers, update, parallel, target))
                _kernels[key] = kernel
    return kernel


def _n_hypers(rule) -> int:
    # math(d, x, *state, *hyper): the rest of its arguments are hyperparameters.
    return rule.math.__code__.co_argcount - 2 - len(rule.state_fill)


def _warm(key: tuple):
    """Load the kernel of ``key`` and run it once on tiny arrays of its dtype, so that Numba has
    loaded (or compiled) the machine code that the real calls will use."""
    rules, update, parallel, target, dtype = key
    kernel = fused_kernel(rules, update, PARALLEL_THRESHOLD if parallel else 0, target)
    one = [np.zeros(1, dtype) for _ in range(2 + sum(len(r.state_fill) for r in rules))]
    h = np.zeros(sum(map(_n_hypers, rules)), dtype)
    if target == "cpu-tensors":
        nothing, kinds, rows = [], np.zeros(2, np.intp), np.zeros((0, 4), np.intp)
        kernel(one[0], id(nothing), id(nothing), kinds, rows, rows, np.zeros(1, np.intp), h,
               *one[2:])
    else:
        kernel(one[0], one[1], h, *one[2:])
    _ready[key] = kernel
    return kernel


def _load_in_background(key: tuple) -> None:
    try:
        _warm(key)
    except Exception:
        _failed.add(key)        # the next step loads it in the foreground, raising the error
    finally:
        _loading.pop(key, None)


def _plain_numba_errors() -> None:
    """Keep Numba's error messages off ``sys.stdout`` and ``sys.stderr`` before a loader thread
    starts.

    With colorama installed (mkdocs-material, among others, brings it), Numba builds each
    error message inside colorama's ``init()`` and ``deinit()`` (its ``ColorShell``), which
    set ``sys.stdout`` and ``sys.stderr`` for the whole process and then put back the streams
    they found; compiling one kernel builds thousands of messages that Numba catches itself.
    In a loader thread that undoes what the main thread redirects meanwhile: a ``print`` under
    ``contextlib.redirect_stdout``, or under pytest's ``capsys``, went to the stream from
    before (seen as a seed script's output missing from ``capsys`` in two full test runs),
    and a redirection could outlive its ``with``.  If Numba is not imported yet (the loader
    thread will), ``NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING`` keeps it from colorama
    altogether (its messages then lose the bold of its default scheme; child processes
    inherit the variable).  If it is, its ``ColorShell`` becomes a no-op: it only builds
    strings, so the messages stay the same.
    """
    errors = sys.modules.get("numba.core.errors")
    if errors is None:
        os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")
    elif hasattr(errors, "ColorShell"):      # imported already, marking up through colorama
        errors.ColorShell = contextlib.nullcontext


def ready_kernel(rules: tuple, update: bool, size: int, dtype, target: str = "cpu"):
    """The CPU kernel of :func:`fused_kernel`, ready to run on arrays of ``dtype``, or ``None``
    while it is being loaded in a background thread (which the first such call starts).

    With :data:`BACKGROUND` false, it loads the kernel now and never returns ``None``.

    >>> import numpy as np, minigrad as mg
    >>> first = ready_kernel((mg.Descent,), True, 2, np.float64)    # None while it loads
    >>> wait() and ready_kernel((mg.Descent,), True, 2, np.float64) is not None
    True
    """
    key = (rules, update, size >= PARALLEL_THRESHOLD, target, np.dtype(dtype))
    kernel = _ready.get(key)
    if kernel is not None:
        return kernel
    if not BACKGROUND or key in _failed:
        return _warm(key)
    with _lock:
        if key not in _loading and key not in _ready:
            _plain_numba_errors()
            thread = threading.Thread(target=_load_in_background, args=(key,), daemon=True,
                                      name="minigrad kernel loader")
            _loading[key] = thread
            thread.start()
    return _ready.get(key)


def wait() -> bool:
    """Wait until every kernel being loaded in the background is ready; ``True``.

    >>> wait()
    True
    """
    for thread in list(_loading.values()):
        thread.join()
    return True


# A process that ends right after its first steps still finishes loading (and caching) its
# kernels, instead of stopping a thread in the middle of writing Numba's cache; and a fork
# (multiprocessing's default on Linux) waits too, so that no child starts with Numba's compiler
# lock held by a thread that does not exist in it.
atexit.register(wait)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=wait)


def numpy_pass(rules: tuple, update: bool, x: np.ndarray, g: np.ndarray, h: np.ndarray,
               *states: np.ndarray) -> None:
    """What ``fused_kernel(rules, update, ...)(x, g, h, *states)`` does, evaluated by NumPy on
    whole arrays with the same math functions (so bitwise the same result).

    >>> import numpy as np, minigrad as mg
    >>> x = np.ones(2); numpy_pass((mg.Descent,), True, x, np.array([1.0, 2.0]), np.array([0.5]))
    >>> x
    array([0.5, 0. ])
    """
    d, s, k = g, 0, 0
    hyper = list(h)             # NumPy scalars of the parameters' dtype: float32 stays float32
    for rule in rules:
        n_states, n_hypers = len(rule.state_fill), _n_hypers(rule)
        mine = states[s:s + n_states]
        out = rule.math(d, x, *mine, *hyper[k:k + n_hypers])
        out = out if isinstance(out, tuple) else (out,)
        d = out[0]
        for state, new in zip(mine, out[1:], strict=True):
            state[...] = new
        s, k = s + n_states, k + n_hypers
    if update:
        np.subtract(x, d, out=x)
    else:
        g[...] = d


class Threads:
    """Which of a kernel's two variants, serial (0) or multi-threaded (1), a call should run:
    the one whose recent calls took less time per element.

    Measured rather than assumed, because it depends on the rest of the program.  On the
    project's 2-core machine the multi-threaded Adam kernel takes about half the serial one's
    time in a loop of optimiser steps alone, but in a training loop of a 784-256-256-10 MLP
    (270k parameters, batch 64), whose NumPy matrix products run on OpenBLAS's threads, the
    whole step took 8.0 ms with it and 1.9 ms with the serial kernel: after each call either
    pool's threads keep spinning, so each steals the other's second core.  Both variants
    compute every element alone, so the results are bitwise the same whichever runs.

    Calls run the chosen variant (serial at first), and from time to time a *probe* runs the
    other for :attr:`KEEP` timed calls in a row: in a row, because the first multi-threaded
    calls after a while of serial ones are slow, which the next calls of a loop that switched
    would not be.  So a probe of the multi-threaded variant first runs it untimed for
    :attr:`WAKE` seconds (at least one call): on the project's machine, after serial calls of a
    1e6-element Adam step, the multi-threaded calls took 1.3 to 6 times their steady time for 2
    to 4 ms, at every size from 1e5 to 1e7 elements, and as much after a busy loop or a sleep on
    the main thread: the idle core wakes up slowly.  Timed from their first call, a probe found
    them no faster than the serial ones and kept the serial kernel at twice the time.  For the
    same reason a probe waits while the other variant is still loading in the background: begun
    then, it would run the chosen one and let WAKE pass.  The other variant takes over if the
    median of its probe is at most :attr:`MARGIN` times the median of the chosen one's last
    :attr:`KEEP` calls.  The first probe comes after :attr:`KEEP` calls.  While the choice
    stands, the gap to the next probe at least doubles (up to :attr:`LONGEST` calls), and is
    long enough for the probe's extra time, ``calls * (ratio - 1)`` calls' worth where ``calls``
    counts the probe's calls and ``ratio`` is how much slower the probed variant was, to be at
    most :attr:`BUDGET` of the gap's: a variant 1.5 times slower is probed again after 250 calls
    or more, not 10.  The budget is 1% because a probe costs about twice what its own calls
    show: after five serial calls of a 1e6-element Adam step the multi-threaded calls ran 0.15
    to 0.35 ms slower (on 0.67) for about ten more calls, for the same reason.  But the gap
    grows at most :attr:`GROWTH` times from one probe to the next, so that one probe slowed by
    something else (another program, another virtual machine) cannot keep the slower variant for
    hundreds of calls: only a choice confirmed again is kept that long.  Once the choice
    changes, the next probe comes after :attr:`KEEP` calls again, to confirm it.  So what probes
    cost fades fast, and a program that changes is still followed.
    ``clock`` is for tests.

    >>> now = [0.0]                       # a clock, and kernels that "take" 1 and 3 units
    >>> serial, parallel = (lambda: now.__setitem__(0, now[0] + 1.0),
    ...                     lambda: now.__setitem__(0, now[0] + 3.0))
    >>> choice = Threads(clock=lambda: now[0])
    >>> for _ in range(70):
    ...     choice.call((serial, parallel), 1)
    >>> choice.estimate, choice.chosen, now[0]     # 58 serial calls, two probes of 1 + 5 others
    ([1.0, 3.0], 0, 94.0)
    >>> choice.interval                            # 5 * 8, then 40 * 8 (short of 6 * 2 / 0.01)
    320
    """

    KEEP = 5
    WAKE = 0.005
    MARGIN = 0.9
    BUDGET = 0.01
    GROWTH = 8
    LONGEST = 1024

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.recent: tuple = ([], [])           # seconds per element of recent calls
        self.chosen = 0
        self.calls = 0
        self.interval = self.KEEP               # calls from one probe to the next
        self.next_probe = self.KEEP
        self.probing = 0                        # timed calls left in the current probe
        self.probe_calls = 0                    # calls of the current (or last) probe so far
        self.untimed_until = -math.inf          # probe calls starting before this: not timed
        self.last = None                        # (variant, start, elements) of the last call

    @property
    def estimate(self) -> list:
        """The median of each variant's recent times (``inf`` before its first)."""
        return [sorted(t)[len(t) // 2] if t else math.inf for t in self.recent]

    def pick(self, now: float) -> int:
        """The variant the next call, starting at time ``now``, should run."""
        if not self.probing and self.calls >= self.next_probe:
            self.probing, self.probe_calls = self.KEEP, 0
            if self.chosen == 0:    # probing the multi-threaded variant: wake it up first
                self.untimed_until = now + self.WAKE
        self.calls += 1
        if self.probing:
            self.probe_calls += 1
            return 1 - self.chosen
        return self.chosen

    def record(self, variant: int, seconds_per_element: float) -> None:
        """Note a call of ``variant`` and its time."""
        recent = self.recent[variant]
        recent.append(seconds_per_element)
        if len(recent) > self.KEEP:
            del recent[0]
        if variant == self.chosen or not self.probing:
            return
        self.probing -= 1
        if not self.probing:
            estimate = self.estimate
            chosen = estimate[self.chosen]
            ratio = estimate[variant] / chosen if chosen else math.inf
            if ratio <= self.MARGIN:
                self.chosen, self.interval = variant, self.KEEP
            else:
                paid_for = min(self.probe_calls * (ratio - 1) / self.BUDGET, self.LONGEST)
                self.interval = min(max(2 * self.interval, math.ceil(paid_for)),
                                    self.GROWTH * self.interval, self.LONGEST)
            self.next_probe = self.calls + self.interval

    def call(self, kernels: tuple, size: int, *args):
        """Run ``kernels[v](*args)`` for the picked variant ``v`` (``None`` where a variant is
        not loaded yet: the other runs), over ``size`` elements; return what it returns.

        A call's time runs from its start to the next call's start: in a training loop, what
        the rest of the step costs after each variant counts too (NumPy's next matrix product
        waits while the kernel's threads spin).  A call returning ``False`` did no work (see
        the many-tensor kernel) and is not timed."""
        start = self.clock()
        if self.last is not None:
            variant, began, elements = self.last
            if variant == self.chosen or began >= self.untimed_until:
                self.record(variant, (start - began) / elements)
        if kernels[1 - self.chosen] is None and not self.probing:
            self.next_probe = max(self.next_probe, self.calls + 1)     # no probe while it loads
        variant = self.pick(start)
        if kernels[variant] is None:
            variant = 1 - variant
        out = kernels[variant](*args)
        self.last = None if out is False else (variant, start, max(size, 1))
        return out


_threads: dict = {}     # (rules, update, dtype, size class) -> Threads of calls without a keeper


def variants(rules: tuple, update: bool, size: int, dtype, target: str = "cpu") -> tuple | None:
    """``(serial, multi-threaded)`` kernels for a call over ``size`` elements (see
    :func:`ready_kernel`; either may be ``None`` while it loads), the multi-threaded one only
    from :data:`PARALLEL_THRESHOLD` elements (``None`` below); ``None`` if neither is ready.

    >>> import numpy as np, minigrad as mg
    >>> _ = variants((mg.Descent,), True, 10, np.float64); wait()
    True
    >>> serial, parallel = variants((mg.Descent,), True, 10, np.float64); parallel is None
    True
    """
    serial = ready_kernel(rules, update, 0, dtype, target)
    parallel = (ready_kernel(rules, update, size, dtype, target)
                if size >= PARALLEL_THRESHOLD else None)
    return None if serial is None and parallel is None else (serial, parallel)


def run(rules: tuple, update: bool, x: np.ndarray, g: np.ndarray, h: np.ndarray,
        *states: np.ndarray, keeper=None) -> None:
    """``fused_kernel(rules, update, ...)(x, g, h, *states)`` once a kernel is ready (see
    :func:`ready_kernel`; from :data:`PARALLEL_THRESHOLD` elements, the serial or the
    multi-threaded one as :class:`Threads` picks), the same by :func:`numpy_pass` until then.

    ``keeper``, the parameter's optimiser state, keeps that parameter's :class:`Threads` in its
    ``threads`` attribute (``None`` at first): each parameter's calls are timed apart, since a
    call's time runs to the next call, which in a loop over parameters is another parameter's.
    Calls without one share a :class:`Threads` per kernel and size class.

    >>> import numpy as np, minigrad as mg
    >>> x = np.ones(2); run((mg.Descent,), True, x, np.array([1.0, 2.0]), np.array([0.5])); x
    array([0.5, 0. ])
    """
    kernels = variants(rules, update, x.size, x.dtype)
    if kernels is None:
        numpy_pass(rules, update, x, g, h, *states)
    elif kernels[1] is None:
        kernels[0](x, g, h, *states)
    else:
        if keeper is None:
            key = (rules, update, x.dtype, x.size.bit_length())
            choice = _threads.get(key) or _threads.setdefault(key, Threads())
        else:
            choice = keeper.threads = keeper.threads or Threads()
        choice.call(kernels, x.size, x, g, h, *states)


def finite_sum(values) -> bool:
    """Cheap test that every hyperparameter is a finite number (NaN and ±inf survive a sum)."""
    try:
        return math.isfinite(sum(values))
    except TypeError:           # None, a string...: let the rule's check() name it
        return False


def as_hyper(values, dtype) -> np.ndarray:
    """Hyperparameters as an array of the parameter's dtype (keeps float32 math in float32)."""
    return np.array(values, dtype=dtype)

"""Optimiser throughput against the memory-traffic bound measured in the same run.

An optimiser step is memory-bound: Adam in float32 reads ``x``, ``g``, ``m``, ``v`` and writes
``x``, ``m``, ``v``, 28 bytes per parameter, and does a few flops per byte.  So the honest
yardstick for a rule's kernel is not a peak-flops figure but a *bound kernel*: a Numba loop with
exactly the rule's memory traffic and no maths (load ``x``, ``g`` and each state array; store
``x`` and each state array, each store depending on the loads so nothing is optimised away),
compiled serial and with ``prange``; the faster of the two is the bound.  Measured in the same
process, in interleaved rounds whose order rotates, the ratio ``minigrad / bound`` says how
close a rule gets to what the machine's memory allows, whatever the machine.

Used by ``python -m minigrad bench`` and by ``benchmarks/optimisers.py`` (which adds PyTorch,
NumPy, multi-tensor and start-up comparisons).

>>> import numpy as np, minigrad as mg
>>> from minigrad.bench import Bound, state_arrays, traffic
>>> state_arrays(mg.Adam()), traffic(2), traffic(state_arrays(mg.Descent()))
(2, 28, 12)
>>> b = Bound(1, False, np.ones(4, np.float32), np.full(4, 3.0, np.float32))
>>> b.step(); b.args[0], b.args[2]          # x = g − x, a = x_old − a
(array([2., 2., 2., 2.], dtype=float32), array([1., 1., 1., 1.], dtype=float32))
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

__all__ = ["cpu_model", "usable_cores", "load_average", "cpu_seconds", "traffic", "state_arrays",
           "bound_kernel", "Bound", "bounds", "SETTLE", "WARM",
           "Timings", "interleaved", "Row", "throughput", "format_rows"]


# -- the machine ---------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one).

    >>> from minigrad.bench import cpu_model
    >>> isinstance(cpu_model(), str)
    True
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on.

    >>> from minigrad.bench import usable_cores
    >>> usable_cores() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> float:
    """The 1-minute load average (NaN where the system has none).

    >>> from minigrad.bench import load_average
    >>> isinstance(load_average(), float)
    True
    """
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def cpu_seconds() -> tuple[float, float, float] | None:
    """Seconds of CPU time the whole machine has spent so far, as ``(busy, stolen, total)``
    from ``/proc/stat`` (Linux; ``None`` elsewhere).  ``busy`` counts every process's time and
    what the hypervisor took; ``stolen`` is what the hypervisor gave to other virtual machines
    while this one wanted to run, the noise no load average shows.

    >>> from minigrad.bench import cpu_seconds
    >>> t = cpu_seconds()
    >>> t is None or t[0] <= t[2] and t[1] <= t[0]
    True
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq + steal
    return busy / tick, steal / tick, (busy + idle + iowait) / tick


# -- traffic -------------------------------------------------------------------------------------

def traffic(k: int, itemsize: int = 4) -> int:
    """Bytes per parameter of a rule with ``k`` state arrays: load x, g and k states; store x
    and k states, ``(3 + 2k)·itemsize``.

    >>> from minigrad.bench import traffic
    >>> traffic(0), traffic(2), traffic(2, itemsize=8)
    (12, 28, 56)
    """
    return (3 + 2 * k) * itemsize


def state_arrays(opt) -> int:
    """How many per-element state arrays a built-in rule (or a chain of them) keeps.

    >>> import minigrad as mg
    >>> from minigrad.bench import state_arrays
    >>> [state_arrays(o) for o in (mg.Descent(), mg.Momentum(), mg.OAdam(), mg.AdamW())]
    [0, 1, 3, 2]
    """
    stages = getattr(opt, "os", None)
    if stages is not None:
        return sum(state_arrays(o) for o in stages)
    return len(getattr(type(opt), "state_fill", ()))


# -- the bound: the rule's memory traffic, no maths ----------------------------------------------
# Each kernel loads x, g and k state arrays and stores x and the k state arrays.  The stores
# depend on the loads (one subtraction each) so nothing can be optimised away, and the values
# stay bounded however often it runs.

def _rmw0(x, g):
    for i in prange(x.size):
        x[i] = g[i] - x[i]


def _rmw1(x, g, a):
    for i in prange(x.size):
        xi = x[i]
        gi = g[i]
        x[i] = gi - xi
        a[i] = xi - a[i]


def _rmw2(x, g, a, b):
    for i in prange(x.size):
        xi = x[i]
        gi = g[i]
        x[i] = gi - xi
        a[i] = xi - a[i]
        b[i] = gi - b[i]


def _rmw3(x, g, a, b, c):
    for i in prange(x.size):
        xi = x[i]
        gi = g[i]
        x[i] = gi - xi
        a[i] = xi - a[i]
        b[i] = gi - b[i]
        c[i] = xi - c[i]


_RMW = (_rmw0, _rmw1, _rmw2, _rmw3)
_bound_kernels: dict = {}


def bound_kernel(k: int, parallel: bool):
    """The bound kernel for ``k`` state arrays (0 to 3), serial or with ``prange`` on all
    threads; compiled once per process (not cached on disk).

    >>> import numpy as np
    >>> from minigrad.bench import bound_kernel
    >>> x, g = np.zeros(3), np.ones(3)
    >>> bound_kernel(0, False)(x, g); x
    array([1., 1., 1.])
    """
    key = (k, parallel)
    if key not in _bound_kernels:
        _bound_kernels[key] = njit(error_model="numpy", parallel=parallel)(_RMW[k])
    return _bound_kernels[key]


class Bound:
    """A bound kernel with its own arrays: a copy of ``x0`` and ``k`` zeroed states (``g`` is
    shared, read only).  ``step()`` runs it once.

    >>> import numpy as np
    >>> from minigrad.bench import Bound
    >>> b = Bound(0, False, np.zeros(2), np.ones(2)); b.step(); b.args[0]
    array([1., 1.])
    """

    def __init__(self, k: int, parallel: bool, x0: np.ndarray, g: np.ndarray):
        self.kernel = bound_kernel(k, parallel)
        self.args = (x0.copy(), g) + tuple(np.zeros_like(x0) for _ in range(k))

    def step(self) -> None:
        self.kernel(*self.args)


def bounds(k: int, x0: np.ndarray, g: np.ndarray) -> dict:
    """The bound with ``k`` state arrays, serial and multi-threaded, as two methods to time,
    named as :meth:`Timings.paired` expects them (``"bound"`` is the faster in each round).

    >>> import numpy as np
    >>> from minigrad.bench import bounds
    >>> sorted(bounds(1, np.zeros(2), np.ones(2)))
    ['bound_p', 'bound_s']
    """
    return {"bound_s": Bound(k, False, x0, g).step, "bound_p": Bound(k, True, x0, g).step}


# -- timing --------------------------------------------------------------------------------------

#: Seconds to sleep after each timed block.  PyTorch and Numba each bring their own OpenMP
#: runtime (two libgomp copies in one process); after a parallel region each one's worker
#: threads spin for several milliseconds, and on 2 cores a spinning pool makes the other
#: library's next parallel call up to 100x slower.  The pause lets them go idle.
SETTLE = 0.015

#: Seconds of untimed calls of a method right before each of its timed blocks.  After the pause
#: above, the first milliseconds of work run slowly (measured here: a 1e6-element Adam kernel
#: takes 2-3x its steady time for about 10 ms, serial or parallel, on cores and caches that
#: went cold); a training loop never pauses, so the timed calls start warm.
WARM = 0.01

class Timings(dict):
    """Seconds per call for each method: the median over rounds (``stat = "min"``: the best
    round); ``.other`` holds the other statistic, ``.raw`` every round, and :meth:`paired`
    gives the median of per-round ratios, which cancels load drifting between rounds.
    ``.each`` holds every timed call's own time, where :func:`interleaved` recorded them:
    their median (:meth:`typical`) leaves out the calls during which the machine stalled.

    >>> from minigrad.bench import Timings
    >>> t = Timings({"a": [2.0, 1.0, 3.0], "b": [1.0, 1.0, 1.0]}, {"a": [1.0, 9.0, 1.5]})
    >>> t["a"], t.other["a"], t.rounds, t.paired("a", "b"), t.typical("a")
    (2.0, 1.0, 3, 2.0, 1.5)
    """

    stat = "median"
    settle = SETTLE
    warm = WARM
    budget = 4.0                # seconds per comparison; rounds stop early past it (>= 3 run)

    def __init__(self, rounds: dict[str, list[float]], each: dict[str, list[float]] = None):
        med = {n: statistics.median(v) for n, v in rounds.items()}
        best = {n: min(v) for n, v in rounds.items()}
        main, other = (best, med) if self.stat == "min" else (med, best)
        super().__init__(main)
        self.other = other
        self.raw = rounds
        self.each = each or {}
        self.rounds = min(len(v) for v in rounds.values())

    def typical(self, name: str) -> float:
        """The median time of one call of ``name`` over every timed call of every round."""
        return statistics.median(self.each[name])

    def paired(self, num: str, den: str) -> float:
        """Median over rounds of num's time / den's time in the same round ("bound": the faster
        of ``bound_s`` and ``bound_p`` in that round)."""
        def column(name):
            if name == "bound" and name not in self.raw:
                return [min(a, b) for a, b in zip(self.raw["bound_s"], self.raw["bound_p"],
                                                  strict=True)]
            return self.raw[name]
        return statistics.median(a / b for a, b in zip(column(num), column(den), strict=True))


def interleaved(methods: dict, rounds: int, calls: int) -> Timings:
    """Time zero-argument functions: each runs ``calls`` times per round, in an order that
    rotates from round to round; each timed block follows ``Timings.warm`` seconds of untimed
    calls and is followed by a pause (``Timings.settle``).  After 3 rounds no new round starts
    once ``Timings.budget`` seconds have passed.  Two untimed calls each first (first touch,
    state creation, compilation).  Seconds per call; every timed call is also kept on its own
    (``Timings.each``).

    >>> from minigrad.bench import interleaved
    >>> t = interleaved({"nothing": lambda: None}, rounds=3, calls=2)
    >>> t.rounds, t["nothing"] < 0.01, len(t.each["nothing"]), t.typical("nothing") < 0.01
    (3, True, 6, True)
    """
    names = list(methods)
    for f in methods.values():
        f()
        f()
    time.sleep(Timings.settle)
    times: dict[str, list] = {n: [] for n in names}
    each: dict[str, list] = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(rounds):
        if r >= 3 and time.perf_counter() - start > Timings.budget:
            break
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            f = methods[name]
            t0 = time.perf_counter()
            while True:                 # untimed: see WARM
                f()
                if time.perf_counter() - t0 > Timings.warm:
                    break
            block = each[name]
            t0 = t = time.perf_counter()
            for _ in range(calls):
                f()
                t, before = time.perf_counter(), t
                block.append(t - before)
            times[name].append((t - t0) / calls)
            time.sleep(Timings.settle)
    return Timings(times, each)


# -- minigrad against the bound ------------------------------------------------------------------

@dataclass
class Row:
    """One rule's result: seconds per step for minigrad and for the bound (the faster of
    serial and parallel, ``which`` = ``"s"`` or ``"p"``), ``paired`` = the median per-round
    ratio, ``nbytes`` the traffic of one step."""

    rule: str
    k: int
    n: int
    minigrad: float
    bound: float
    which: str
    paired: float
    nbytes: int
    rounds: int

    @property
    def ratio(self) -> float:
        """minigrad's time over the bound's (1.0 = as fast as memory allows)."""
        return self.minigrad / self.bound


def throughput(rules: dict, n: int, rounds: int = 9, calls: int = 1,
               dtype=np.float32) -> list[Row]:
    """Time ``mg.update_(opt, p, g)`` on one array of ``n`` parameters against the bound with
    the same traffic, for each ``name: make_opt`` of ``rules``.

    >>> import minigrad as mg
    >>> from minigrad.bench import throughput
    >>> [row] = throughput({"Descent": lambda: mg.Descent(0.1)}, n=1000, rounds=3, calls=2)
    >>> row.rule, row.k, row.nbytes, row.minigrad > 0 and row.bound > 0
    ('Descent', 0, 12000, True)
    """
    from .autograd import param
    from .optimise import update_

    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(n).astype(dtype)
    g = (0.1 * rng.standard_normal(n)).astype(dtype)
    rows = []
    for name, make in rules.items():
        opt, p = make(), param(x0)
        k = state_arrays(opt)

        def step(opt=opt, p=p):
            update_(opt, p, g)

        step()      # (loads the kernel: the start-up benchmark times that)
        t = interleaved({"minigrad": step, **bounds(k, x0, g)}, rounds, calls)
        which = "p" if t["bound_p"] <= t["bound_s"] else "s"
        rows.append(Row(name, k, n, t["minigrad"], min(t["bound_s"], t["bound_p"]), which,
                        t.paired("minigrad", "bound"), traffic(k, x0.itemsize) * n, t.rounds))
    return rows


def format_rows(rows: list[Row]) -> str:
    """The rows as a text table: ms per step, GB/s of the rule's traffic, and the ratio.

    >>> from minigrad.bench import Row, format_rows
    >>> print(format_rows([Row("Adam", 2, 10**7, 0.013, 0.011, "p", 1.17, 28 * 10**7, 9)]))
    rule       B/param  minigrad ms   GB/s   bound ms   GB/s   minigrad/bound  (paired)  rounds
    Adam            28           13     22         11     25 p           1.18      1.17       9
    """
    lines = [f"{'rule':<10}{'B/param':>8}{'minigrad ms':>13}{'GB/s':>7}{'bound ms':>11}"
             f"{'GB/s':>7}   minigrad/bound  (paired)  rounds"]
    for r in rows:
        lines.append(f"{r.rule:<10}{r.nbytes // r.n:>8}{r.minigrad * 1e3:>13.4g}"
                     f"{r.nbytes / r.minigrad / 1e9:>7.0f}{r.bound * 1e3:>11.4g}"
                     f"{r.nbytes / r.bound / 1e9:>7.0f} {r.which}{r.ratio:>15.2f}"
                     f"{r.paired:>10.2f}{r.rounds:>8}")
    return "\n".join(lines)

"""Optimiser step throughput: minigrad's fused kernels vs a memory bound, PyTorch and NumPy.

What it measures (float32 throughout, all methods of one comparison timed in one process, in
interleaved rounds whose order rotates; every figure is the median over rounds of the mean time
per call within a round; ``--stat min`` shows the best round instead, and the summary gives
both).  Each minigrad step runs once untimed first, which loads its kernel (part 3 times that
load); the timed calls are then the first calls of a fresh process's training loop:

1. Every built-in rule on one tensor of 1e5, 1e6 and 1e7 parameters: ``mg.update_(opt, p, g)``
   against
   (a) the *bound*: a Numba kernel with the rule's memory traffic and no maths (load x, g and
       each state array; store x and each state array), compiled with ``error_model='numpy'``
       both serial and with ``prange`` on all threads; the faster of the two at each size;
   (b) ``torch.optim`` with ``fused=True`` and with ``foreach=True`` where PyTorch has the rule
       (``p.grad`` set once; only ``opt.step()`` is timed);
   (c) the rule written with in-place NumPy ufuncs and one or two scratch buffers.
   The traffic of a rule with k state arrays is (3 + 2k)·4 bytes per parameter (Adam: 28); GB/s
   columns count that traffic for every method.
   The two targets set for Adam at 1e7 are then timed again on their own (minigrad, the
   bound and torch fused only, 45 rounds of 5 calls); the summary reads them from there.
2. A 50-tensor model with 1e6 parameters in total (log-uniform sizes between 70 and ~126k,
   fixed seed): ``mg.update_(opt, ps, gs)`` (the flat-buffer, one-kernel path) with Adam against
   PyTorch's fused and foreach Adam over the same tensors, the bound over 1e6 elements, and
   minigrad's per-tensor path (``for p in ps: mg.update_(opt, p, gs[p])``).
3. Start-up: a fresh ``python -c`` that imports minigrad and runs its first Adam step, with a
   warm kernel cache (median of 5 processes) and cold (MINIGRAD_CACHE_DIR and NUMBA_CACHE_DIR
   pointing at an empty folder; median of 3).
4. Per-call overhead: ``update_`` on a 4096-element parameter and on the 50-tensor model,
   against the bare compiled kernel on the same arrays (``--profile`` adds cProfile tables).

Before timing it checks that minigrad's Adam after 3 steps matches PyTorch's fused Adam (same
data; PyTorch puts ϵ where Flux does: m̂/(√v̂ + ϵ)), that the NumPy versions match minigrad,
and how minigrad compares with PyTorch on the other rules whose maths is the same.

Run it::

    pip install -e ".[bench]"              # minigrad plus the CPU build of PyTorch
    python benchmarks/optimisers.py        # about 2-3 minutes on 2 cores
    python benchmarks/optimisers.py --quick                     # a smoke run, ~30 s
    python benchmarks/optimisers.py --sizes 1e7 --rules Adam,AdamW --rounds 2 --skip startup

Noise: DRAM bandwidth on shared machines drifts by tens of percent between runs, so read the
ratios against the bound and the peers of the same run, not the absolute GB/s.  On 2 cores any
other busy process hurts the 2-thread methods (minigrad's parallel kernels, PyTorch) far more than
the serial ones, up to 100x for one call: the header warns when the load average is high, each
row says how many rounds ran (``--budget`` caps the seconds per comparison), and the summary gives
the best round next to the median.  PyTorch and Numba each load their own OpenMP runtime; a pause
after each timed block (``--settle``) keeps one's spinning threads from slowing the other.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np
from machine import cpu_model, cpu_seconds, usable_cores  # this folder's shared helpers

try:
    import minigrad as mg
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import minigrad as mg

from minigrad.bench import (  # noqa: E402  (after the checkout fallback above)
    SETTLE,
    Bound,
    Timings,
    bounds,
    interleaved,
    load_average,
    traffic,
)

try:
    import torch
except ImportError:  # the comparison with PyTorch is optional
    torch = None

F32 = np.float32
WD = 1e-4           # AdamW's decay in Flux's convention (added to the step, not scaled by η)


# -- the machine, (a) the bound, and the timing loop: minigrad.bench ---------------------------
# The bound kernels (a rule's memory traffic, no maths: load x, g and k states, store x and the
# k states), ``traffic(k)``, ``Timings``/``interleaved`` and the machine helpers live in the
# package, shared with ``python -m minigrad bench``.

# -- (c) the rules in plain NumPy (in-place ufuncs, Flux's maths) --------------------------------

class NumpyRule:
    scratch = 1

    def __init__(self, x0: np.ndarray, g: np.ndarray):
        self.x, self.g = x0.copy(), g
        self.t = np.empty_like(x0)
        self.u = np.empty_like(x0) if self.scratch > 1 else None
        self.p1, self.p2 = 0.9, 0.999           # βᵗ for the bias-corrected rules
        self.setup()

    def setup(self) -> None:
        pass

    def zeros(self, fill=0.0) -> np.ndarray:
        return np.full_like(self.x, fill)


class NpDescent(NumpyRule):
    eta = 0.1

    def step(self):
        np.multiply(self.g, self.eta, out=self.t)
        self.x -= self.t


class NpMomentum(NumpyRule):
    eta, rho = 0.01, 0.9

    def setup(self):
        self.v = self.zeros()

    def step(self):
        v, t = self.v, self.t
        v *= self.rho                           # v = ρv − ηg; x -= −v
        np.multiply(self.g, self.eta, out=t)
        v -= t
        self.x += v


class NpNesterov(NumpyRule):
    eta, rho = 0.001, 0.9

    def setup(self):
        self.v = self.zeros()

    def step(self):
        v, t, g, x = self.v, self.t, self.g, self.x
        np.multiply(v, self.rho ** 2, out=t)    # x -= −(ρ²v − (1+ρ)ηg), old v
        x += t
        np.multiply(g, (1 + self.rho) * self.eta, out=t)
        x -= t
        v *= self.rho                           # v = ρv − ηg
        np.multiply(g, self.eta, out=t)
        v -= t


class NpRMSProp(NumpyRule):
    eta, rho, eps = 0.001, 0.9, 1e-8

    def setup(self):
        self.acc = self.zeros()

    def step(self):
        acc, t, g = self.acc, self.t, self.g
        acc *= self.rho
        np.multiply(g, g, out=t)
        t *= 1 - self.rho
        acc += t
        np.sqrt(acc, out=t)
        t += self.eps
        np.divide(g, t, out=t)
        t *= self.eta
        self.x -= t


class NpAdam(NumpyRule):
    eta, b1, b2, eps, wd = 0.001, 0.9, 0.999, 1e-8, 0.0

    def setup(self):
        self.m, self.v = self.zeros(), self.zeros()

    def step(self):
        m, v, t, g = self.m, self.v, self.t, self.g
        m *= self.b1
        np.multiply(g, 1 - self.b1, out=t)
        m += t
        v *= self.b2
        np.multiply(g, g, out=t)
        t *= 1 - self.b2
        v += t
        np.divide(v, 1 - self.p2, out=t)        # m/(1−β1ᵗ) / (√(v/(1−β2ᵗ)) + ϵ) · η
        np.sqrt(t, out=t)
        t += self.eps
        np.divide(m, t, out=t)
        t *= self.eta / (1 - self.p1)
        if self.wd:
            self.x *= 1 - self.wd               # AdamW: x − step − wd·x
        self.x -= t
        self.p1 *= self.b1
        self.p2 *= self.b2


class NpAdamW(NpAdam):
    wd = WD


class NpAdaMax(NumpyRule):
    eta, b1, b2, eps = 0.001, 0.9, 0.999, 1e-8

    def setup(self):
        self.m, self.u = self.zeros(), self.zeros()

    def step(self):
        m, u, t, g = self.m, self.u, self.t, self.g
        m *= self.b1
        np.multiply(g, 1 - self.b1, out=t)
        m += t
        u *= self.b2                            # u = max(β2u, |g|)
        np.abs(g, out=t)
        np.maximum(u, t, out=u)
        np.add(u, self.eps, out=t)
        np.divide(m, t, out=t)
        t *= self.eta / (1 - self.p1)
        self.x -= t
        self.p1 *= self.b1


class NpAdaGrad(NumpyRule):
    eta, eps = 0.1, 1e-8

    def setup(self):
        self.acc = self.zeros(self.eps)

    def step(self):
        acc, t, g = self.acc, self.t, self.g
        np.multiply(g, g, out=t)
        acc += t
        np.sqrt(acc, out=t)
        t += self.eps
        np.divide(g, t, out=t)
        t *= self.eta
        self.x -= t


class NpAdaDelta(NumpyRule):
    rho, eps = 0.9, 1e-8
    scratch = 2

    def setup(self):
        self.acc, self.dacc = self.zeros(), self.zeros()

    def step(self):
        acc, dacc, t, u, g = self.acc, self.dacc, self.t, self.u, self.g
        acc *= self.rho
        np.multiply(g, g, out=t)
        t *= 1 - self.rho
        acc += t
        np.add(dacc, self.eps, out=t)           # d = g·√(Δacc + ϵ)/√(acc + ϵ)
        np.sqrt(t, out=t)
        np.add(acc, self.eps, out=u)
        np.sqrt(u, out=u)
        t /= u
        t *= g
        self.x -= t
        dacc *= self.rho
        np.multiply(t, t, out=u)
        u *= 1 - self.rho
        dacc += u


class NpAMSGrad(NumpyRule):
    eta, b1, b2, eps = 0.001, 0.9, 0.999, 1e-8

    def setup(self):
        self.m, self.v, self.vhat = (self.zeros(self.eps) for _ in range(3))

    def step(self):
        m, v, vhat, t, g = self.m, self.v, self.vhat, self.t, self.g
        m *= self.b1
        np.multiply(g, 1 - self.b1, out=t)
        m += t
        v *= self.b2
        np.multiply(g, g, out=t)
        t *= 1 - self.b2
        v += t
        np.maximum(vhat, v, out=vhat)
        np.sqrt(vhat, out=t)
        t += self.eps
        np.divide(m, t, out=t)
        t *= self.eta
        self.x -= t


# -- the rules: minigrad, its state count, PyTorch's counterpart and the NumPy version -----------

def _torch(cls_name: str, **hyper):
    def make(params, **mode):
        return getattr(torch.optim, cls_name)(params, **hyper, **mode)
    return make


# name: (minigrad constructor, state arrays k, torch factory or None, NumPy class or None,
#        whether PyTorch's maths is Flux's (checked), a note on the PyTorch counterpart)
RULES = {
    "Descent": (lambda: mg.Descent(0.1), 0, _torch("SGD", lr=0.1), NpDescent, True,
                "SGD"),
    "Momentum": (lambda: mg.Momentum(0.01, 0.9), 1, _torch("SGD", lr=0.01, momentum=0.9),
                 NpMomentum, True,
                 "SGD(momentum=0.9): same in exact arithmetic for a constant η, but Flux keeps "
                 "v = −η·buf and PyTorch keeps buf, scaling by η at use; rounding differs"),
    "Nesterov": (lambda: mg.Nesterov(0.001, 0.9), 1,
                 _torch("SGD", lr=0.001, momentum=0.9, nesterov=True), NpNesterov, True,
                 "SGD(momentum=0.9, nesterov=True): as Momentum"),
    "RMSProp": (lambda: mg.RMSProp(0.001, 0.9), 1,
                _torch("RMSprop", lr=0.001, alpha=0.9, eps=1e-8), NpRMSProp, True,
                "RMSprop(alpha=0.9)"),
    "Adam": (lambda: mg.Adam(0.001), 2, _torch("Adam", lr=0.001, eps=1e-8), NpAdam, True,
             "Adam"),
    "RAdam": (lambda: mg.RAdam(0.001), 2, _torch("RAdam", lr=0.001, eps=1e-8), None, False,
              "RAdam: PyTorch rectifies from ρₜ > 5 (Flux > 4) and adds ϵ to √v, not √v̂"),
    "AdaMax": (lambda: mg.AdaMax(0.001), 2, _torch("Adamax", lr=0.001, eps=1e-8), NpAdaMax,
               False, "Adamax: PyTorch adds ϵ inside the max (max(β2u, |g|+ϵ))"),
    "OAdam": (lambda: mg.OAdam(0.001), 3, None, None, False, "no PyTorch counterpart"),
    "AdaGrad": (lambda: mg.AdaGrad(0.1), 1,
                _torch("Adagrad", lr=0.1, eps=1e-8, initial_accumulator_value=1e-8),
                NpAdaGrad, True, "Adagrad(initial_accumulator_value=ϵ)"),
    "AdaDelta": (lambda: mg.AdaDelta(0.9), 2, _torch("Adadelta", lr=1.0, rho=0.9, eps=1e-8),
                 NpAdaDelta, True, "Adadelta(lr=1)"),
    "AMSGrad": (lambda: mg.AMSGrad(0.001), 3, _torch("Adam", lr=0.001, eps=1e-8, amsgrad=True),
                NpAMSGrad, False,
                "Adam(amsgrad=True): PyTorch bias-corrects and starts the state at 0; Flux "
                "does not bias-correct and starts at ϵ (same traffic)"),
    "NAdam": (lambda: mg.NAdam(0.001), 2, _torch("NAdam", lr=0.001, eps=1e-8), None, False,
              "NAdam: PyTorch uses the momentum-decay schedule μₜ = β1(1 − ½·0.96^(0.004t))"),
    "AdaBelief": (lambda: mg.AdaBelief(0.001), 2, None, None, False, "no PyTorch counterpart"),
    "AdamW": (lambda: mg.AdamW(0.001, (0.9, 0.999), WD), 2,
              _torch("AdamW", lr=0.001, eps=1e-8, weight_decay=WD / 0.001), NpAdamW, True,
              f"AdamW(weight_decay={WD / 0.001:g}): PyTorch scales the decay by η, Flux does "
              f"not (decay {WD:g})"),
}


# -- the contenders as zero-argument step functions ----------------------------------------------

class MgStep:
    def __init__(self, make_opt, x0: np.ndarray, g: np.ndarray):
        self.opt, self.p, self.g = make_opt(), mg.param(x0), g
        self.step()     # (loads the kernel)

    def step(self) -> None:
        mg.update_(self.opt, self.p, self.g)


class TorchStep:
    def __init__(self, make_opt, x0: np.ndarray, g: np.ndarray, mode: str):
        self.p = torch.nn.Parameter(torch.from_numpy(x0.copy()))
        # Its own copy: PyTorch's foreach Nesterov SGD adds the momentum into p.grad in place.
        self.p.grad = torch.from_numpy(g.copy())
        self.opt = make_opt([self.p], **{mode: True})

    def step(self) -> None:
        self.opt.step()


def torch_step(make_opt, x0, g, mode: str):
    """A TorchStep, or None where PyTorch lacks this mode for the rule on the CPU."""
    if torch is None or make_opt is None:
        return None
    try:
        s = TorchStep(make_opt, x0, g, mode)
        s.step()
        return s
    except (TypeError, RuntimeError, ValueError, NotImplementedError):
        return None


def merge_bounds(t: Timings) -> None:
    """Replace the two bounds' entries of ``t`` (both statistics) by the faster one's."""
    for d in (t, t.other):
        d["bound"] = min(d.pop("bound_s"), d.pop("bound_p"))


# -- checks --------------------------------------------------------------------------------------

def rel(a, b, ref) -> float:
    a, b, ref = (np.asarray(v, dtype=np.float64) for v in (a, b, ref))
    return float(np.max(np.abs(a - b)) / np.max(np.abs(ref)))


def run_steps(make_opt, x0, gs) -> np.ndarray:
    p, opt = mg.param(x0), make_opt()
    for g in gs:
        mg.update_(opt, p, g)
    return np.array(p.data)


def run_torch(make_opt, x0, gs, mode: str) -> np.ndarray:
    p = torch.nn.Parameter(torch.from_numpy(x0.copy()))
    opt = make_opt([p], **{mode: True})
    for g in gs:
        p.grad = torch.from_numpy(g.copy())
        opt.step()
    return p.detach().numpy().copy()


def run_numpy(cls, x0, gs) -> np.ndarray:
    r = cls(x0, gs[0].copy())
    for g in gs:
        r.g[...] = g
        r.step()
    return r.x


def checks(rule_names: list) -> bool:
    rng = np.random.default_rng(1)
    n = 100_000
    x0 = rng.standard_normal(n).astype(F32)
    gs = [rng.standard_normal(n).astype(F32) for _ in range(3)]
    ok = True
    print("correctness (3 steps on the same data, float32):")
    mg_p = run_steps(RULES["Adam"][0], x0, gs)
    ref64 = run_numpy(NpAdam, x0.astype(np.float64), [g.astype(np.float64) for g in gs])
    err_ref = rel(mg_p, ref64, ref64)
    print(f"  Adam, 1e5 params ~N(0,1): minigrad vs float64 Flux maths: {err_ref:.1e} of max|p|")
    if torch is not None:
        for mode in ("fused", "foreach"):
            try:
                t_p = run_torch(RULES["Adam"][2], x0, gs, mode)
            except (TypeError, RuntimeError, ValueError) as e:
                print(f"  torch Adam {mode}: unavailable ({e})")
                continue
            e = rel(mg_p, t_p, t_p)
            good = e <= 1e-6
            ok &= good or mode != "fused"
            print(f"  Adam: minigrad vs torch {mode:<8} max|Δp|/max|p| = {e:.1e} "
                  f"(torch vs float64: {rel(t_p, ref64, ref64):.1e}) "
                  f"{'OK (<= 1e-6)' if good else 'MISMATCH'}")
    # Every rule, with small parameters so that the error is measured against the movement.
    small = (0.01 * x0[:10_000]).astype(F32)
    gss = [g[:10_000] for g in gs]
    print("  per rule, 1e4 params, error relative to the 3-step movement max|p3 − p0|:")
    for name in rule_names:
        make, _, make_t, np_cls, same, note = RULES[name]
        p = run_steps(make, small, gss)
        move = p - small
        parts = []
        if np_cls is not None:
            e = rel(p, run_numpy(np_cls, small, gss), move)
            good = e <= 1e-5
            ok &= good
            parts.append(f"numpy {e:.1e} {'OK' if good else 'MISMATCH'}")
        else:
            parts.append("numpy not written")
        if torch is not None and make_t is not None:
            t_p = run_torch(make_t, small, gss, "foreach")
            e = rel(p, t_p, move)
            if same:
                good = e <= 1e-5
                ok &= good
                parts.append(f"torch {e:.1e} {'OK' if good else 'MISMATCH'}")
            else:
                parts.append(f"torch {e:.1e} (different maths, expected)")
        else:
            parts.append("no torch counterpart")
        print(f"    {name:<10}" + "; ".join(parts))
    print(f"  => {'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    return ok


# -- 1. one tensor per rule ----------------------------------------------------------------------

def schedule(n: int, scale: float) -> tuple[int, int]:
    """(rounds, calls per round) for n parameters."""
    if n <= 200_000:
        rounds, calls = 15, 40
    elif n <= 2_000_000:
        rounds, calls = 11, 5
    else:
        rounds, calls = 9, 1
    return max(3, round(rounds * scale)), calls


def fmt(t: float | None, nbytes: float) -> str:
    if t is None:
        return f"{'n/a':>14}"
    return f"{t * 1e3:>8.3f} ({nbytes / t / 1e9:>3.0f})"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:>7.2f}" if a is not None and b is not None else f"{'-':>7}"


def single_tensor(sizes: list[int], rule_names: list, scale: float) -> None:
    for n in sizes:
        rounds, calls = schedule(n, scale)
        print(f"\n== one tensor of {n:.0e} float32 parameters (up to {rounds} rounds x {calls} "
              "calls; ms per step (GB/s of the rule's traffic)) ==")
        print(f"{'rule':<10}{'B/p':>4}{'minigrad':>15}{'bound':>15}{'':>3}{'torch fused':>15}"
              f"{'torch foreach':>15}{'numpy':>15} |{'/bound':>7}{'/fused':>7}{'/foreach':>8}"
              f"{'/numpy':>7}{'rounds':>7}")
        rng = np.random.default_rng(0)
        x0 = rng.standard_normal(n).astype(F32)
        g = (0.1 * rng.standard_normal(n)).astype(F32)
        g_saved = g.copy()
        for name in rule_names:
            make, k, make_t, np_cls, _, _ = RULES[name]
            methods = {"minigrad": MgStep(make, x0, g).step, **bounds(k, x0, g)}
            for mode in ("fused", "foreach"):
                s = torch_step(make_t, x0, g, mode)
                if s is not None:
                    methods[mode] = s.step
            if np_cls is not None:
                methods["numpy"] = np_cls(x0, g).step
            t = interleaved(methods, rounds, calls)
            del methods
            gc.collect()
            if not np.array_equal(g, g_saved):
                print(f"  WARNING: a method wrote into the shared gradient during {name}; "
                      "restoring it")
                g[...] = g_saved
            nbytes = traffic(k) * n
            bound = min(t["bound_s"], t["bound_p"])
            which = "p" if t["bound_p"] <= t["bound_s"] else "s"
            m = t["minigrad"]
            print(f"{name:<10}{traffic(k):>4}{fmt(m, nbytes)}{fmt(bound, nbytes)} {which} "
                  f"{fmt(t.get('fused'), nbytes)}{fmt(t.get('foreach'), nbytes)}"
                  f"{fmt(t.get('numpy'), nbytes)} |{ratio(m, bound)}{ratio(m, t.get('fused'))}"
                  f" {ratio(m, t.get('foreach'))}{ratio(m, t.get('numpy'))}{t.rounds:>7}",
                  flush=True)
    print("\nbound: s = serial, p = prange on all threads (the faster is shown).  n/a: PyTorch "
          "has no such mode for the rule on the CPU, or no NumPy version was written.")
    print("PyTorch counterparts and how their maths differs from Flux's:")
    for name in rule_names:
        print(f"  {name:<10}{RULES[name][5]}")
    skipped = [n for n in rule_names if RULES[n][3] is None]
    if skipped:
        print(f"NumPy versions not written for {', '.join(skipped)} (same ufunc pattern as Adam).")


# -- 1b. the Adam targets at 1e7, timed again on their own ---------------------------------------

TARGET_N = 10_000_000


def adam_targets(scale: float) -> dict:
    """Adam at 1e7 against the bound and torch fused only, with more samples than part 1.

    Part 1 bounds each of its comparisons to a few seconds, so at 1e7 a row rests on nine
    single calls, and the VM's drifting memory bandwidth moved those rows' ratios by up to
    ±25% between consecutive runs.  The two targets set at this size are therefore timed again
    here: 45 rounds of 5 calls each of the four methods they compare, without part 1's slow
    NumPy and foreach columns, whose long blocks let the bandwidth drift further between the
    blocks of one round.  (With 15 rounds, consecutive runs on a quiet machine still read
    1.01 to 1.23 of the bound.)  The summary reads its Adam lines from this part.
    """
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(TARGET_N).astype(F32)
    g = (0.1 * rng.standard_normal(TARGET_N)).astype(F32)
    methods = {"minigrad": MgStep(RULES["Adam"][0], x0, g).step, **bounds(2, x0, g)}
    fused = torch_step(RULES["Adam"][2], x0, g, "fused")
    if fused is not None:
        methods["fused"] = fused.step
    rounds = max(3, round(45 * scale))
    budget, Timings.budget = Timings.budget, float("inf")     # every round runs (about 15 s)
    try:
        t = interleaved(methods, rounds, 5)
    finally:
        Timings.budget = budget
    paired = {d: t.paired("minigrad", d) for d in ("bound", "fused") if d in t or d == "bound"}
    merge_bounds(t)
    print(f"\n== the Adam targets: {TARGET_N:.0e} float32 parameters, timed again on their own "
          f"({t.rounds} rounds x 5 calls; ms per step) ==")
    print("  " + "; ".join(f"{name} {t[name] * 1e3:.3f}" for name in ("minigrad", "bound", "fused")
                           if name in t))
    return dict(t, paired=paired, other=t.other)


# -- 2. a 50-tensor model ------------------------------------------------------------------------

def model_sizes(n_tensors=50, total=1_000_000, lo=70, hi=126_462, seed=0) -> list[int]:
    """Log-uniform sizes in [lo, hi], rescaled (and clipped) to sum to ``total``."""
    rng = np.random.default_rng(seed)
    s = np.exp(rng.uniform(np.log(lo), np.log(hi), n_tensors))
    for _ in range(50):
        s = np.clip(s * total / s.sum(), lo, hi)
    sizes = np.round(s).astype(np.int64)
    sizes[np.argmax(sizes)] += total - int(sizes.sum())
    return [int(v) for v in sizes]


class MgModel:
    def __init__(self, arrays, grads, flat: bool):
        self.ps = mg.Params([mg.param(a) for a in arrays])
        self.gs = mg.Grads(self.ps)
        for p, g in zip(self.ps, grads, strict=True):
            self.gs[p] = g
        self.opt = mg.Adam(0.001)
        self.flat = flat
        self.step()     # (loads the kernel; the flat path moves the parameters into one buffer)
        if flat:        # gradients as mg.gradient leaves them in a training loop: in one buffer
            terms = list(zip(self.ps, grads, strict=True))
            self.gs = mg.gradient(lambda: sum(mg.sum(p * g) for p, g in terms), self.ps)
            assert self.gs.flat is not None

    def step(self) -> None:
        if self.flat:
            mg.update_(self.opt, self.ps, self.gs)
        else:
            opt, gs = self.opt, self.gs
            for p in self.ps:
                mg.update_(opt, p, gs[p])


class TorchModel:
    def __init__(self, arrays, grads, mode: str):
        self.ps = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
        for p, g in zip(self.ps, grads, strict=True):
            p.grad = torch.from_numpy(g.copy())
        self.opt = RULES["Adam"][2](self.ps, **{mode: True})

    def step(self) -> None:
        self.opt.step()


def multi_tensor(scale: float) -> dict:
    sizes = model_sizes()
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(s).astype(F32) for s in sizes]
    grads = [(0.1 * rng.standard_normal(s)).astype(F32) for s in sizes]
    total = sum(sizes)
    print(f"\n== Adam on a 50-tensor model: {total:,} float32 parameters; sizes {min(sizes)} to "
          f"{max(sizes):,}, median {int(np.median(sizes)):,}, {sum(s < 10_000 for s in sizes)} "
          "under 10k (seed 0) ==")
    flat = MgModel(arrays, grads, flat=True)
    flat.step()
    took_flat = "_flat_groups" in flat.opt.__dict__
    print(f"  minigrad took the flat-buffer path: {took_flat} ('_flat_groups' in opt.__dict__)")
    x0 = np.concatenate(arrays)
    g_flat = np.concatenate(grads)
    methods = {"minigrad flat": flat.step,
               "minigrad per-tensor": MgModel(arrays, grads, flat=False).step,
               **bounds(2, x0, g_flat)}
    if torch is not None:
        for mode in ("fused", "foreach"):
            try:
                methods[f"torch {mode}"] = TorchModel(arrays, grads, mode).step
            except (TypeError, RuntimeError, ValueError):
                pass
    rounds = max(3, round(21 * scale))
    t = interleaved(methods, rounds, 10)
    paired = {"torch fused": t.paired("minigrad flat", "torch fused")} if "torch fused" in t \
        else {}
    merge_bounds(t)
    nbytes = traffic(2) * total
    m = t["minigrad flat"]
    print(f"  ({t.rounds} rounds x 10 calls; ms per step, GB/s of Adam's 28 B/param)")
    for name in ("minigrad flat", "minigrad per-tensor", "torch fused", "torch foreach", "bound"):
        if name in t:
            print(f"  {name:<22}{t[name] * 1e3:>8.3f} ms ({nbytes / t[name] / 1e9:>4.0f} GB/s)"
                  f"   minigrad flat / this = {m / t[name]:.2f}")
    typical_ratio = None
    if "torch fused" in t:
        # A stalled call (another virtual machine's turn on a core) stretches its block's mean;
        # the median of single calls shows the step as a training loop mostly sees it.
        mine, theirs = t.typical("minigrad flat"), t.typical("torch fused")
        typical_ratio = mine / theirs
        print(f"  median of single calls: minigrad flat {mine * 1e3:.3f} ms, "
              f"torch fused {theirs * 1e3:.3f} ms, ratio {typical_ratio:.2f}")
    return dict(t, other=t.other, paired=paired, typical=typical_ratio, took_flat=took_flat)


# -- 3. start-up ---------------------------------------------------------------------------------

STARTUP = (
    "import time; t0 = time.perf_counter()\n"
    "import numpy as np, minigrad as mg\n"
    "t1 = time.perf_counter()\n"
    "p = mg.param(np.ones(256, np.float32))\n"
    "mg.update_(mg.Adam(), p, np.full(256, 0.5, np.float32))\n"
    "t2 = time.perf_counter()\n"
    "print(t1 - t0, t2 - t1)\n"
)

#: The same program in PyTorch: import it, and one Adam step on 256 parameters.
STARTUP_TORCH = STARTUP.replace("import numpy as np, minigrad as mg", "import torch").replace(
    "p = mg.param(np.ones(256, np.float32))\n"
    "mg.update_(mg.Adam(), p, np.full(256, 0.5, np.float32))\n",
    "p = torch.nn.Parameter(torch.ones(256))\n"
    "p.grad = torch.full((256,), 0.5)\n"
    "torch.optim.Adam([p]).step()\n")


def fresh_process(env: dict, cwd: str, program: str = STARTUP) -> tuple[float, float, float]:
    """(process wall, import, first Adam step) in seconds."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", program], env=env, cwd=cwd, check=True,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    imp, first = map(float, out.stdout.split())
    return wall, imp, first


def startup(n_warm: int, n_cold: int) -> dict:
    env = dict(os.environ)
    # The minigrad this process imported, not whichever one the child would find.
    root = os.path.dirname(os.path.dirname(os.path.abspath(mg.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    # A user's second run finds Python's bytecode of minigrad's modules (written by the first,
    # or by pip at install, as PyTorch's was): some sandboxes set this and would time
    # minigrad's modules compiled from source in every process instead.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    print("\n== start-up: a fresh `python -c` running `import minigrad` + the first Adam step "
          "(256 params) ==")
    fresh_process(env, root)                    # warms the kernel cache (and writes the bytecode)
    warm = [fresh_process(env, root) for _ in range(n_warm)]
    cold = []
    for _ in range(n_cold):
        with tempfile.TemporaryDirectory() as d:
            cold.append(fresh_process(dict(env, MINIGRAD_CACHE_DIR=d, NUMBA_CACHE_DIR=d), root))
    res = {}
    for label, runs in (("warm cache", warm), ("cold cache", cold)):
        if not runs:
            continue
        wall, imp, first = (statistics.median(col) for col in zip(*runs, strict=True))
        res[label] = (wall, imp, first)
        fastest = min(i + f for _, i, f in runs)
        print(f"  {label} (median of {len(runs)}): import + first step {imp + first:.3f} s "
              f"(import {imp:.3f}, first step {first:.3f}; fastest process {fastest:.3f}); "
              f"whole process {wall:.3f} s")
    if torch is not None and warm:
        # The same program in PyTorch, processes interleaved with minigrad's warm ones.
        pairs = [(fresh_process(env, root)[0], fresh_process(env, root, STARTUP_TORCH)[0])
                 for _ in range(n_warm)]
        mine, theirs = (statistics.median(col) for col in zip(*pairs, strict=True))
        res["torch"] = theirs
        res["ratio"] = mine / theirs
        print(f"  whole process, warm cache, interleaved (median of {n_warm}): minigrad "
              f"{mine:.3f} s, PyTorch {theirs:.3f} s, ratio {mine / theirs:.2f} "
              "(target <= 0.25)")
    return res


# -- 4. per-call overhead ------------------------------------------------------------------------

def overhead(profile: bool, scale: float) -> None:
    """update_ against the bare fused kernel it calls, on the same arrays."""
    from minigrad.optimise.kernels import as_hyper, fused_kernel  # internal, for reference

    print("\n== per-call overhead of update_ (Adam) ==")
    n = 4096
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(n).astype(F32)
    g = (0.1 * rng.standard_normal(n)).astype(F32)
    single = MgStep(RULES["Adam"][0], x0, g)
    kernel = fused_kernel((mg.Adam,), True, n)
    kx, km, kv = x0.copy(), np.zeros_like(x0), np.zeros_like(x0)
    h = as_hyper(mg.Adam().hypers([0.9, 0.999], None, None), F32)     # Adam's first step

    def bare():
        kernel(kx, g, h, km, kv)

    methods = {"update_(opt, p, g)": single.step, "bare kernel": bare,
               "bound (serial)": Bound(2, False, x0, g).step}
    ts = torch_step(RULES["Adam"][2], x0, g, "fused")
    if ts is not None:
        methods["torch fused step"] = ts.step
    rounds = max(5, round(15 * scale))
    t = interleaved(methods, rounds, 300)
    print("  4096 params: " + "; ".join(f"{k} {v * 1e6:.2f} µs" for k, v in t.items()))
    print(f"  => Python overhead of update_ per call: "
          f"{(t['update_(opt, p, g)'] - t['bare kernel']) * 1e6:.2f} µs")

    sizes = model_sizes()
    arrays = [rng.standard_normal(s).astype(F32) for s in sizes]
    grads = [(0.1 * rng.standard_normal(s)).astype(F32) for s in sizes]
    model = MgModel(arrays, grads, flat=True)
    model.step()
    total = sum(sizes)
    kernel_p = fused_kernel((mg.Adam,), True, total)
    fx, fg = np.concatenate(arrays), np.concatenate(grads)
    fm, fv = np.zeros_like(fx), np.zeros_like(fx)

    def bare_flat():
        kernel_p(fx, fg, h, fm, fv)

    t = interleaved({"update_(opt, ps, gs)": model.step,
                     "bare kernel on 1e6 flat buffers": bare_flat}, rounds, 20)
    print("  50 tensors: " + "; ".join(f"{k} {v * 1e3:.3f} ms" for k, v in t.items()))
    print(f"  => update_'s Python around the one kernel call: "
          f"{(t['update_(opt, ps, gs)'] - t['bare kernel on 1e6 flat buffers']) * 1e3:.3f} ms "
          "per step")

    if profile:
        for label, f, reps in (("update_(opt, p, g), 4096 params", single.step, 20000),
                               ("update_(opt, ps, gs), 50 tensors", model.step, 2000)):
            pr = cProfile.Profile()
            pr.enable()
            for _ in range(reps):
                f()
            pr.disable()
            print(f"\n  cProfile of {reps} x {label} (tottime, top 15):")
            pstats.Stats(pr, stream=sys.stdout).sort_stats("tottime").print_stats(15)


# -- main ----------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1e5,1e6,1e7",
                    help="parameter counts for part 1, comma-separated (default 1e5,1e6,1e7)")
    ap.add_argument("--rules", default=",".join(RULES),
                    help="rules for part 1, comma-separated (default: all 14)")
    ap.add_argument("--rounds", type=float, default=1.0,
                    help="scale the number of interleaved rounds (default 1.0)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for PyTorch and Numba (default: Numba's, i.e. the cores)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1e5 only, Descent/Momentum/Adam, few rounds, fewer processes")
    ap.add_argument("--skip", default="",
                    help="parts to skip, comma-separated: single, targets, multi, startup, "
                         "overhead")
    ap.add_argument("--profile", action="store_true", help="add cProfile tables to part 4")
    ap.add_argument("--settle", type=float, default=SETTLE,
                    help=f"seconds of pause after each timed block (default {SETTLE}; see SETTLE)")
    ap.add_argument("--budget", type=float, default=Timings.budget,
                    help="seconds per comparison after which no further round starts (at least "
                         f"3 rounds run; default {Timings.budget:g}); bounds the run time on a "
                         "busy machine")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="statistic over rounds for the tables (default median)")
    args = ap.parse_args(argv)

    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    rule_names = [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = [r for r in rule_names if r not in RULES]
    if unknown:
        ap.error(f"unknown rules {unknown}; choose from {', '.join(RULES)}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    Timings.stat, Timings.settle, Timings.budget = args.stat, args.settle, args.budget
    scale, n_warm, n_cold = args.rounds, 5, 3
    if args.quick:
        if args.sizes == ap.get_default("sizes"):
            sizes = [100_000]
        if args.rules == ap.get_default("rules"):
            rule_names = ["Descent", "Momentum", "Adam"]
        scale, n_warm, n_cold = 0.3 * args.rounds, 2, 1

    threads = args.threads or numba.get_num_threads()
    numba.set_num_threads(threads)
    t_start, cpu_start = time.perf_counter(), cpu_seconds()
    print("machine:")
    print(f"  CPU        {cpu_model()}")
    print(f"  cores      {usable_cores()} usable ({os.cpu_count()} online)")
    load = load_average()
    print(f"  load       {load:.2f} (1-min average before the run)")
    if load > 0.5 * usable_cores():
        print("  WARNING    other work is running on this machine: timings will be noisy and "
              "multi-threaded methods suffer most")
    print(f"  python     {platform.python_version()} ({sys.executable})")
    print(f"  numpy      {np.__version__}")
    Bound(0, True, np.zeros(8, F32), np.zeros(8, F32)).step()   # starts Numba's thread pool
    print(f"  numba      {numba.__version__}; {numba.get_num_threads()} threads, "
          f"threading layer {numba.threading_layer()}")
    if torch is not None:
        torch.set_num_threads(threads)
        print(f"  torch      {torch.__version__}; set_num_threads({threads}) -> "
              f"{torch.get_num_threads()} threads")
    else:
        print("  torch      NOT INSTALLED: no PyTorch columns (pip install -e \".[bench]\")")
    print(f"  minigrad   {mg.__version__} ({os.path.dirname(mg.__file__)}); parallel kernels "
          f"from {mg.optimise.kernels.PARALLEL_THRESHOLD} elements")
    print()

    ok = checks(rule_names if "single" not in skip else ["Adam"])

    adam = multi = start = {}
    if "single" not in skip:
        single_tensor(sizes, rule_names, scale)
    if "targets" not in skip:
        adam = adam_targets(scale)
    if "multi" not in skip:
        multi = multi_tensor(scale)
    if "startup" not in skip:
        start = startup(n_warm, n_cold)
    if "overhead" not in skip:
        overhead(args.profile, scale)

    print("\n== summary against the targets ==")
    other = "best round" if Timings.stat == "median" else "median"

    def both(d: dict, num: str, den: str) -> tuple[float, str]:
        """The ratio of the table's statistic, and a note with the paired and other ones."""
        return d[num] / d[den], (f"per-round paired median {d['paired'][den]:.2f}, "
                                 f"{other} {d['other'][num] / d['other'][den]:.2f}")

    if adam:
        r, r2 = both(adam, "minigrad", "bound")
        print(f"  Adam at {TARGET_N:.0e}: minigrad / bound = {r:.2f} ({r2}); target "
              f"<= 1.15: {'met' if r <= 1.15 else 'NOT met'}")
        if "fused" in adam:
            r, r2 = both(adam, "minigrad", "fused")
            print(f"  Adam at {TARGET_N:.0e}: minigrad / torch fused = {r:.2f} ({r2}); "
                  f"target < 1: {'met' if r < 1 else 'NOT met'}")
    if multi and "torch fused" in multi:
        r, r2 = both(multi, "minigrad flat", "torch fused")
        print(f"  50-tensor Adam step: minigrad / torch fused = {r:.2f} ({r2}; median of single "
              f"calls {multi['typical']:.2f}); target <= 0.5: "
              f"{'met' if r <= 0.5 else 'NOT met'}; flat path taken: {multi['took_flat']}")
    if "warm cache" in start:
        wall, imp, first = start["warm cache"]
        verdict = ""
        if "ratio" in start:
            verdict = (f"; whole process / PyTorch's (interleaved) = {start['ratio']:.2f}, "
                       f"target <= 0.25: {'met' if start['ratio'] <= 0.25 else 'NOT met'}")
        print(f"  fresh process, warm cache: whole process {wall:.3f} s (import + first Adam "
              f"step {imp + first:.3f} s){verdict}")
    if "cold cache" in start:
        wall, imp, first = start["cold cache"]
        print(f"  fresh process, cold cache: import + first Adam step {imp + first:.3f} s "
              f"(whole process {wall:.3f} s)")
    print(f"  correctness checks: {'passed' if ok else 'FAILED'}")
    print(f"  load {load_average():.2f} at the end; total run time "
          f"{time.perf_counter() - t_start:.0f} s", end="")
    cpu_end = cpu_seconds()
    if cpu_start is not None and cpu_end is not None and cpu_end[2] > cpu_start[2]:
        # The hypervisor's steal: on a shared virtual machine, the noise no load average shows.
        stolen = (cpu_end[1] - cpu_start[1]) / (cpu_end[2] - cpu_start[2])
        print(f"; the hypervisor took {stolen:.0%} of the CPUs' time")
        if stolen > 0.02:
            print("  WARNING    other virtual machines took CPU time from this one during the "
                  "run: timings are noisy, two-thread methods most")
    else:
        print()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""One SGD training step of a small MLP: minigrad vs PyTorch (CPU) vs hand-written NumPy.

What it measures: the wall time of ONE full training step (forward, gradient, plain SGD update
with lr 0.1) of a 64-64-10 MLP, ``Dense(64, 64, relu) -> Dense(64, 10)``, with
``logitcrossentropy`` on one-hot targets, float32, batch 32, Flux's features-first layout
(``x`` of shape (64, 32), ``y`` of shape (10, 32)).  Three implementations run in one process,
in interleaved rounds (the order rotates every round), and the table reports the median over
rounds of the mean µs per step within a round; each ratio is given both as a ratio of those
medians and as the median of the per-round ratios (steadier on a noisy machine):

1. minigrad: ``gs = mg.gradient(lambda: logitcrossentropy(m(x), y), ps)`` then
   ``mg.optimise.update_(p, lr * gs[p])`` for every parameter;
2. PyTorch: the same model with ``nn.Linear`` (batch first), ``F.cross_entropy``,
   ``torch.optim.SGD``, ``zero_grad / backward / step``, with as many threads as NumPy's BLAS;
3. NumPy: forward, backward and update written out by hand (what minigrad's tape should cost
   no more than twice of).

Before timing, all three start from the same weights and must agree on the loss and the updated
weights of the first step to 1e-5; the check is printed.  At this size the step is dominated by
per-op overhead, not arithmetic (see DESIGN.md, "Limits to measure against").  The targets are
minigrad ≤ 0.5x PyTorch's time and ≤ 2x the NumPy time.  The script reports how much CPU other
processes took during the timing and warns when the figures are not to be trusted.

Run it::

    pip install -e ".[bench]"          # minigrad plus the CPU build of PyTorch
    python benchmarks/mlp_step.py      # ~20 s; --help for --rounds, --breakdown, ...

Without PyTorch installed it says so and compares minigrad with NumPy only.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import platform
import statistics
import sys
import time

import numpy as np
from machine import cpu_model, cpu_seconds, usable_cores  # this folder's shared helpers

try:
    import minigrad as mg
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import minigrad as mg

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the comparison with PyTorch is optional
    torch = None

N_IN, N_HIDDEN, N_OUT, BATCH = 64, 64, 10, 32
LR = 0.1
DTYPE = np.float32


# -- the machine ---------------------------------------------------------------------------------

def _numpy_openblas():
    """NumPy's bundled OpenBLAS as a ctypes library with (get, set) thread functions, or None."""
    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(libdir, "*openblas*.so*")):
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: this returns the same handle
        except OSError:
            continue
        for get, put in (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                         ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                         ("openblas_get_num_threads", "openblas_set_num_threads")):
            if hasattr(lib, get) and hasattr(lib, put):
                getter, setter = getattr(lib, get), getattr(lib, put)
                getter.restype = ctypes.c_int
                setter.argtypes = [ctypes.c_int]
                return getter, setter
    return None


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# -- the data and the shared initial weights -----------------------------------------------------

def make_data(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_IN, BATCH)).astype(DTYPE)
    labels = rng.integers(0, N_OUT, BATCH)
    y = np.zeros((N_OUT, BATCH), DTYPE)
    y[labels, np.arange(BATCH)] = 1
    return x, y, labels


def initial_weights(seed: int) -> list[np.ndarray]:
    """W1, b1, W2, b2 as minigrad's Dense makes them (glorot weight; the bias made non-zero so
    that the check also covers it)."""
    np.random.seed(seed)
    m = mg.Chain(mg.Dense(N_IN, N_HIDDEN, mg.relu), mg.Dense(N_HIDDEN, N_OUT))
    ws = [np.array(p.data) for p in mg.params(m)]
    rng = np.random.default_rng(seed + 1)
    ws[1] += rng.uniform(-0.1, 0.1, ws[1].shape).astype(DTYPE)
    ws[3] += rng.uniform(-0.1, 0.1, ws[3].shape).astype(DTYPE)
    return ws


# -- 1. minigrad ---------------------------------------------------------------------------------

class MinigradStep:
    name = "minigrad"

    def __init__(self, ws, x, y):
        self.m = mg.Chain(mg.Dense(N_IN, N_HIDDEN, mg.relu), mg.Dense(N_HIDDEN, N_OUT))
        self.ps = mg.params(self.m)
        for p, w in zip(self.ps, ws, strict=True):
            p.data[...] = w
        self.x, self.y = x, y

    def step(self):
        m, x, y, ps = self.m, self.x, self.y, self.ps
        gs = mg.gradient(lambda: mg.losses.logitcrossentropy(m(x), y), ps)
        for p in ps:
            mg.optimise.update_(p, LR * gs[p])

    def checked_step(self) -> float:
        loss = float(mg.losses.logitcrossentropy(self.m(self.x), self.y))  # before the step
        self.step()                                                         # the timed code
        return loss

    def weights(self) -> list[np.ndarray]:
        return [np.array(p.data) for p in self.ps]


# -- 2. PyTorch ----------------------------------------------------------------------------------

class TorchStep:
    name = "torch"

    def __init__(self, ws, x, y, labels):
        self.model = torch.nn.Sequential(
            torch.nn.Linear(N_IN, N_HIDDEN), torch.nn.ReLU(), torch.nn.Linear(N_HIDDEN, N_OUT))
        with torch.no_grad():
            for p, w in zip(self.model.parameters(), ws, strict=True):
                p.copy_(torch.from_numpy(w))      # nn.Linear's weight is (out, in), as Flux's
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.x = torch.from_numpy(np.ascontiguousarray(x.T))    # batch first: (32, 64)
        self.t = torch.from_numpy(labels.astype(np.int64))      # class indices = the one-hot y

    def step(self):
        self.opt.zero_grad()
        loss = F.cross_entropy(self.model(self.x), self.t)
        loss.backward()
        self.opt.step()
        return loss

    def checked_step(self) -> float:
        return float(self.step().detach())

    def weights(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.model.parameters()]


# -- 3. hand-written NumPy -----------------------------------------------------------------------

class NumpyStep:
    """The step written out by hand, features first.  Straightforward code only: fresh arrays
    where minigrad also needs them, in-place where a fresh result can be reused (which minigrad
    could also do), and the general logitcrossentropy gradient ``(softmax·Σy - y)/n`` that
    minigrad must compute (not ``softmax - y``, which assumes one-hot targets)."""

    name = "numpy"

    def __init__(self, ws, x, y):
        self.W1, self.b1, self.W2, self.b2 = (w.copy() for w in ws)
        self.x, self.y = x, y

    def forward(self):
        """The loss, and what the backward pass needs: ``(loss, h, e, total)``."""
        W1, b1, W2, b2, x, y = self.W1, self.b1, self.W2, self.b2, self.x, self.y
        h = W1 @ x
        h += b1[:, None]
        np.maximum(h, 0, out=h)
        z = W2 @ h
        z += b2[:, None]
        # loss = mean over samples of -Σ y·logsoftmax(z)
        z -= z.max(axis=0, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=0, keepdims=True)
        return -(y * (z - np.log(total))).sum() / x.shape[1], h, e, total

    def step(self) -> np.floating:
        W1, b1, W2, b2, x, y = self.W1, self.b1, self.W2, self.b2, self.x, self.y
        n = x.shape[1]
        loss, h, e, total = self.forward()
        # backward
        gz = (e / total * y.sum(axis=0, keepdims=True) - y) / n
        gW2 = gz @ h.T
        gb2 = gz.sum(axis=1)
        gh = W2.T @ gz
        gh *= h > 0
        gW1 = gh @ x.T
        gb1 = gh.sum(axis=1)
        # SGD
        W1 -= LR * gW1
        b1 -= LR * gb1
        W2 -= LR * gW2
        b2 -= LR * gb2
        return loss

    def checked_step(self) -> float:
        return float(self.step())

    def weights(self) -> list[np.ndarray]:
        return [self.W1.copy(), self.b1.copy(), self.W2.copy(), self.b2.copy()]


# -- check and timing ----------------------------------------------------------------------------

def check(impls, tol: float) -> bool:
    """One step of each from the same weights: losses and updated weights must agree."""
    ref = impls[-1]                                    # numpy, the hand-written reference
    ref_loss = ref.checked_step()
    ref_ws = ref.weights()
    names = ("W1", "b1", "W2", "b2")
    ok = True
    print(f"correctness (first step from shared weights, tolerance {tol:g}, against numpy):")
    print(f"  numpy     loss {ref_loss:.7f}")
    for impl in impls[:-1]:
        loss = impl.checked_step()
        diffs = [float(np.max(np.abs(w - r))) for w, r in zip(impl.weights(), ref_ws, strict=True)]
        good = abs(loss - ref_loss) <= tol * max(1.0, abs(ref_loss)) and max(diffs) <= tol
        ok &= good
        detail = ", ".join(f"{k} {d:.1e}" for k, d in zip(names, diffs, strict=True))
        print(f"  {impl.name:<9} loss {loss:.7f} (|Δ| {abs(loss - ref_loss):.1e}); "
              f"max |Δ| of updated {detail}: {'OK' if good else 'MISMATCH'}")
    return ok


def time_rounds(impls, rounds: int, steps: int, budget: float,
                clock=time.perf_counter) -> dict[str, list[float]]:
    """µs per step, one figure per impl per round; the order of impls rotates every round.

    Stops early (after at least 5 rounds) once ``budget`` seconds have gone by, so that a slow
    or busy machine does not run for minutes."""
    per_step = {impl.name: [] for impl in impls}
    start = time.perf_counter()
    for impl in impls:                                 # warm-up: caches, allocator, first calls
        for _ in range(max(20, steps // 10)):
            impl.step()
    for r in range(rounds):
        order = impls[r % len(impls):] + impls[:r % len(impls)]
        for impl in order:
            step = impl.step
            t0 = clock()
            for _ in range(steps):
                step()
            per_step[impl.name].append((clock() - t0) / steps * 1e6)
        if r + 1 >= 5 and time.perf_counter() - start > budget:
            break
    return per_step


def breakdown(mg_impl: MinigradStep, np_impl: NumpyStep, rounds: int, steps: int) -> None:
    """Where minigrad's step goes: its pieces timed alone, next to the NumPy step's."""
    m, x, y, ps = mg_impl.m, mg_impl.x, mg_impl.y, mg_impl.ps
    loss = mg.losses.logitcrossentropy
    gs = mg.gradient(lambda: loss(m(x), y), ps)
    W1, b1, W2, b2 = np_impl.W1, np_impl.b1, np_impl.W2, np_impl.b2

    def forward_plain():
        loss(m(x), y)

    def forward_taped():
        with mg.tracker.recording() as tape:
            loss(m(x), y)
        tape.clear()    # as gradient() does: else each step leaves a cycle for the GC to find

    def gradient_call():
        mg.gradient(lambda: loss(m(x), y), ps)

    def update_loop():                  # lr 0: same work, the weights stay put
        for p in ps:
            mg.optimise.update_(p, 0.0 * gs[p])

    numpy_forward = np_impl.forward

    def numpy_update():                 # lr 0, as above
        for w, p in zip((W1, b1, W2, b2), ps, strict=True):
            w -= 0.0 * gs[p]

    pieces = [("minigrad forward + loss, no tape", forward_plain),
              ("minigrad forward + loss, recorded", forward_taped),
              ("minigrad gradient()", gradient_call),
              ("minigrad update loop (4 params)", update_loop),
              ("minigrad full step", mg_impl.step),
              ("numpy forward + loss", numpy_forward),
              ("numpy update (4 params)", numpy_update),
              ("numpy full step", np_impl.step)]
    times = {name: [] for name, _ in pieces}
    for _, f in pieces:
        for _ in range(50):
            f()
    for _ in range(rounds):
        for name, f in pieces:
            t0 = time.perf_counter()
            for _ in range(steps):
                f()
            times[name].append((time.perf_counter() - t0) / steps * 1e6)
    t = {k: statistics.median(v) for k, v in times.items()}
    np_backward = t["numpy full step"] - t["numpy forward + loss"] - t["numpy update (4 params)"]
    rows = [  # (what, minigrad, numpy)
        ("forward + loss", t["minigrad forward + loss, recorded"], t["numpy forward + loss"]),
        ("  of which recording the tape",
         t["minigrad forward + loss, recorded"] - t["minigrad forward + loss, no tape"], 0.0),
        ("backward + Grads",
         t["minigrad gradient()"] - t["minigrad forward + loss, recorded"], np_backward),
        ("update loop (4 params)", t["minigrad update loop (4 params)"],
         t["numpy update (4 params)"]),
        ("full step", t["minigrad full step"], t["numpy full step"]),
    ]
    print(f"breakdown ({rounds} rounds x {steps} calls of each piece, median µs per call; "
          "rows by difference of pieces):")
    print(f"  {'piece':<32}{'minigrad':>10}{'numpy':>10}{'extra':>10}")
    for what, a, b in rows:
        print(f"  {what:<32}{a:>10.1f}{b:>10.1f}{a - b:>10.1f}")
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=41, help="interleaved rounds (default 41)")
    ap.add_argument("--steps-per-round", type=int, default=500,
                    help="steps of each implementation per round (default 500)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for NumPy's BLAS and for PyTorch (default: NumPy's BLAS count)")
    ap.add_argument("--budget", type=float, default=45.0,
                    help="stop adding rounds (after 5) past this many seconds (default 45)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time (default); cpu: this thread's CPU time (leaves out "
                         "time other processes hold the CPU); implies --threads 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the pieces of minigrad's step (forward, tape, backward...)")
    args = ap.parse_args(argv)

    if args.clock == "cpu":
        args.threads = 1        # other threads' work would not be counted
    blas = _numpy_openblas()
    if args.threads is not None and blas is not None:
        blas[1](args.threads)
    blas_threads = blas[0]() if blas is not None else None
    threads = args.threads or blas_threads or usable_cores()

    print("machine:")
    print(f"  CPU        {cpu_model()}")
    print(f"  cores      {usable_cores()} usable ({os.cpu_count()} online)")
    if hasattr(os, "getloadavg"):
        print(f"  load       {os.getloadavg()[0]:.2f} (1-min average before the run)")
    print(f"  python     {platform.python_version()} ({sys.executable})")
    print(f"  numpy      {np.__version__}; BLAS threads "
          f"{blas_threads if blas_threads is not None else 'unknown (not OpenBLAS)'}")
    if torch is not None:
        torch.set_num_threads(threads)
        print(f"  torch      {torch.__version__}; torch.set_num_threads({threads}) -> "
              f"get_num_threads() = {torch.get_num_threads()}")
    else:
        print("  torch      NOT INSTALLED: comparing minigrad with numpy only "
              "(pip install -e \".[bench]\" to add PyTorch)")
    print(f"  minigrad   {mg.__version__} ({os.path.dirname(mg.__file__)})")
    print(f"model: Dense({N_IN}, {N_HIDDEN}, relu) -> Dense({N_HIDDEN}, {N_OUT}), "
          f"logitcrossentropy, one-hot targets, float32, batch {BATCH}, SGD lr {LR}")
    print()

    x, y, labels = make_data(args.seed)
    ws = initial_weights(args.seed)
    impls = [MinigradStep(ws, x, y)]
    if torch is not None:
        impls.append(TorchStep(ws, x, y, labels))
    impls.append(NumpyStep(ws, x, y))
    ok = check(impls, tol=1e-5)
    print()

    if args.breakdown:
        breakdown(impls[0], impls[-1], args.rounds, args.steps_per_round)

    print(f"timing: {args.rounds} interleaved rounds x {args.steps_per_round} steps each, "
          f"{'elapsed time' if args.clock == 'wall' else 'thread CPU time'} ...")
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    t0, cpu0, own0 = time.perf_counter(), cpu_seconds(), own_cpu_seconds()
    per_step = time_rounds(impls, args.rounds, args.steps_per_round, args.budget, clock)
    done = len(per_step["minigrad"])
    if done < args.rounds:
        print(f"  (stopped after {done} rounds: the --budget of {args.budget:g} s ran out)")
    elapsed = time.perf_counter() - t0
    cpu1, own1 = cpu_seconds(), own_cpu_seconds()
    others = None
    if cpu0 is not None and cpu1 is not None:   # (busy time includes the hypervisor's steal)
        others = max(0.0, (cpu1[0] - cpu0[0]) - (own1 - own0)) / (elapsed * usable_cores())
    med = {k: statistics.median(v) for k, v in per_step.items()}

    print()
    print(f"{'implementation':<16}{'µs/step (median)':>18}{'min':>10}{'max':>10}{'vs numpy':>10}")
    for impl in impls:
        v = per_step[impl.name]
        print(f"{impl.name:<16}{med[impl.name]:>18.1f}{min(v):>10.1f}{max(v):>10.1f}"
              f"{med[impl.name] / med['numpy']:>9.2f}x")
    print()
    # Each ratio is also taken round by round (the two timings of a round lie seconds apart,
    # so they share the machine's state); the median of those is the steadier figure.
    print(f"{'ratio':<18}{'of medians':>11}{'per round: median':>19}{'quartiles':>14}  target")
    for peer, target in (("torch", 0.5), ("numpy", 2.0)):
        if peer not in med:
            print(f"minigrad / {peer:<7}{'n/a (torch not installed)':>30}")
            continue
        paired = [a / b for a, b in zip(per_step["minigrad"], per_step[peer], strict=True)]
        q1, q2, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
        r = med["minigrad"] / med[peer]
        print(f"minigrad / {peer:<7}{r:>11.2f}{q2:>19.2f}{f'{q1:.2f}-{q3:.2f}':>14}"
              f"  <= {target:.2f}: {'met' if max(r, q2) <= target else 'NOT met'}")
    print(f"(timing took {elapsed:.1f} s", end="")
    if others is None:
        print(")")
    else:
        print(f"; other processes used {others:.0%} of the machine's CPU meanwhile)")
        if others > 0.10:
            print("WARNING: other work ran on this machine during the timing, so these figures "
                  "are noisy (PyTorch's thread pool suffers most); rerun on a quiet machine")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""A training loop with multi-threaded optimiser kernels, with serial ones, and with minigrad's
choice between the two (``minigrad.optimise.kernels.Threads``), in interleaved rounds.

Each step is a whole training step of an MLP on random data (``gradient`` with NumPy's matrix
products, which run on OpenBLAS's threads, then ``update_`` with Adam over a flat group of
all the parameters), so the two thread pools meet as they do in real training.  Run it::

    python benchmarks/threads.py                    # 784-256-256-10 and 784-700-700-10
    python benchmarks/threads.py --hidden 256 --rounds 3
    python benchmarks/threads.py --optimiser-only   # update_ alone

It prints the median step time of each setting and the ratios against the serial one.
``--optimiser-only`` times ``update_`` alone, with one fixed set of gradients: the loop in which
the multi-threaded kernels pay off, and which the choice should follow there.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from machine import cpu_model, usable_cores  # this folder's shared helpers

import minigrad as mg
from minigrad.optimise import kernels

SETTINGS = {"choice (default)": None, "multi-threaded": 1, "serial": 0}


def training_step(hidden: int, batch: int, optimiser_only: bool, seed: int = 0):
    """A fresh MLP, optimiser and data; returns a function running one training step (only
    its ``update_``, with the gradients of the first batch, if ``optimiser_only``)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((784, batch)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[:, rng.integers(0, 10, batch)]
    model = mg.Chain(mg.Dense(784, hidden, mg.relu), mg.Dense(hidden, hidden, mg.relu),
                     mg.Dense(hidden, 10))
    θ, opt = mg.params(model), mg.Adam(1e-3)

    def gradients():
        return mg.gradient(lambda: mg.losses.logitcrossentropy(model(x), y), θ)

    if optimiser_only:
        fixed = gradients()

        def step():
            mg.update_(opt, θ, fixed)
    else:
        def step():
            mg.update_(opt, θ, gradients())
    return step, sum(p.size for p in θ)


def compare(hidden: int, batch: int, rounds: int, steps: int, optimiser_only: bool) -> dict:
    times = {name: [] for name in SETTINGS}
    loops, size = {}, 0
    for name in SETTINGS:
        loops[name], size = training_step(hidden, batch, optimiser_only)
    kernels.BACKGROUND = False
    pick = kernels.Threads.pick
    try:
        for r in range(rounds):
            order = list(SETTINGS)[r % len(SETTINGS):] + list(SETTINGS)[:r % len(SETTINGS)]
            for name in order:
                forced = SETTINGS[name]
                kernels.Threads.pick = pick if forced is None else (lambda self, now, v=forced: v)
                step = loops[name]
                for _ in range(10):                 # untimed: caches, thread pools
                    step()
                for _ in range(steps):
                    t = time.perf_counter()
                    step()
                    times[name].append(time.perf_counter() - t)
    finally:
        kernels.Threads.pick = pick
    medians = {name: statistics.median(t) for name, t in times.items()}
    what = "update_ alone" if optimiser_only else "training step"
    print(f"\n784-{hidden}-{hidden}-10 MLP, batch {batch}, {size:,} parameters, Adam "
          f"({rounds} rounds x {steps} steps; median ms per {what})")
    for name, m in medians.items():
        print(f"  {name:<18}{m * 1e3:8.3f} ms   / serial {m / medians['serial']:5.2f}")
    return medians


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", default="256,700", help="hidden widths, comma-separated")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100, help="timed steps per round and setting")
    ap.add_argument("--optimiser-only", action="store_true",
                    help="time update_ alone, with fixed gradients (no matrix products)")
    args = ap.parse_args(argv)
    print(f"{cpu_model()}, {usable_cores()} cores; numpy {np.__version__}")
    for hidden in (int(h) for h in args.hidden.split(",")):
        compare(hidden, args.batch, args.rounds, args.steps, args.optimiser_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

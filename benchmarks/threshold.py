"""minigrad's threading policy (``minigrad.optimise.kernels.PARALLEL_THRESHOLD``: serial
kernels below it, multi-threaded from it) against each variant forced, in interleaved rounds.

Two loops, each timed from its first calls (one untimed call loads the kernels):

* a training step of a 784-256-256-10 MLP at batch 64 with Adam (269k parameters, under the
  threshold: serial), whose NumPy matrix products run on OpenBLAS's threads, so that the two
  thread pools meet as they do in real training;
* Adam's ``update_`` on one float32 tensor of 1e7 parameters (over the threshold:
  multi-threaded).

For each it prints the median time of the policy and of each forced variant, and the policy
over the faster forced one (the target: at most 1.05).  Run it::

    python benchmarks/threshold.py                  # about 40 s on 2 cores
    python benchmarks/threshold.py --rounds 3 --steps 20
    python benchmarks/threshold.py --hidden 256,512,700,1024    # where threads start to pay
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from machine import cpu_model, usable_cores  # this folder's shared helpers

import minigrad as mg
from minigrad.optimise import kernels

#: The threshold each setting runs under (``None``: the policy's own).
SETTINGS = {"policy": None, "multi-threaded": 0, "serial": 1 << 62}


def training_step(hidden: int, batch: int, seed: int = 0):
    """A fresh MLP, optimiser and data; returns a function running one training step."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((784, batch)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[:, rng.integers(0, 10, batch)]
    model = mg.Chain(mg.Dense(784, hidden, mg.relu), mg.Dense(hidden, hidden, mg.relu),
                     mg.Dense(hidden, 10))
    θ, opt = mg.params(model), mg.Adam(1e-3)

    def step():
        mg.update_(opt, θ, mg.gradient(lambda: mg.losses.logitcrossentropy(model(x), y), θ))
    return step


def adam_step(n: int, seed: int = 0):
    """Adam's ``update_`` on one float32 tensor of ``n`` parameters, with a fixed gradient."""
    rng = np.random.default_rng(seed)
    p, g, opt = mg.param(rng.standard_normal(n, np.float32)), rng.standard_normal(n, np.float32), \
        mg.Adam(1e-3)

    def step():
        mg.update_(opt, p, g)
    return step


def compare(what: str, make, rounds: int, steps: int) -> float:
    """Time ``make()``'s step under each setting in interleaved rounds; print the medians and
    return the policy's time over the faster forced variant's."""
    policy = kernels.PARALLEL_THRESHOLD
    loops = {name: make() for name in SETTINGS}
    times = {name: [] for name in SETTINGS}
    try:
        for name in SETTINGS:               # one untimed call each: loads the kernels
            kernels.PARALLEL_THRESHOLD = SETTINGS[name] if SETTINGS[name] is not None else policy
            loops[name]()
        for r in range(rounds):
            order = list(SETTINGS)[r % len(SETTINGS):] + list(SETTINGS)[:r % len(SETTINGS)]
            for name in order:
                kernels.PARALLEL_THRESHOLD = SETTINGS[name] if SETTINGS[name] is not None \
                    else policy
                for _ in range(steps):
                    t = time.perf_counter()
                    loops[name]()
                    times[name].append(time.perf_counter() - t)
    finally:
        kernels.PARALLEL_THRESHOLD = policy
    medians = {name: statistics.median(t) for name, t in times.items()}
    best = min(medians["serial"], medians["multi-threaded"])
    print(f"\n{what} ({rounds} rounds x {steps} steps; median ms per step)")
    for name, m in medians.items():
        print(f"  {name:<16}{m * 1e3:9.3f} ms")
    ratio = medians["policy"] / best
    print(f"  policy / faster forced variant: {ratio:.3f}  (target <= 1.05)")
    return ratio


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", default="256",
                    help="hidden widths of the MLP, comma-separated (default 256: the target's)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per round and setting")
    args = ap.parse_args(argv)
    print(f"{cpu_model()}, {usable_cores()} cores; numpy {np.__version__}; "
          f"PARALLEL_THRESHOLD = {kernels.PARALLEL_THRESHOLD:,}")
    for hidden in (int(h) for h in args.hidden.split(",")):
        size = 784 * hidden + hidden + hidden * hidden + hidden + hidden * 10 + 10
        compare(f"784-{hidden}-{hidden}-10 MLP training step ({size:,} parameters), batch 64, "
                "Adam", lambda hidden=hidden: training_step(hidden, 64), args.rounds, args.steps)
    compare("Adam update_, 1e7 float32 parameters", lambda: adam_step(10**7),
            args.rounds, max(args.steps // 3, 5))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

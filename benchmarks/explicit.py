"""The explicit-state ``update_`` (minigrad.optimisers) against the implicit one and PyTorch.

The 50-tensor model of ``benchmarks/optimisers.py`` (1e6 float32 parameters, log-uniform
sizes, seed 0) held in a dict, Adam(0.001): ``optimisers.update_(state, model, grads)`` with
the gradient tree as ``mg.gradient(f, model)[0]`` leaves it (landed in one flat buffer),
``mg.update_(opt, ps, gs)`` (the implicit flat path), PyTorch's fused Adam over the same
tensors, and the memory bound over 1e6 elements, all timed in one process in interleaved
rounds (see ``minigrad.bench.interleaved``).  The target: explicit ≤ 0.5 × torch fused.

Run it::

    python benchmarks/explicit.py            # about a minute on 2 cores
    python benchmarks/explicit.py --rounds 5
"""

from __future__ import annotations

import argparse

import numpy as np
from optimisers import F32, MgModel, TorchModel, model_sizes, torch  # this folder's benchmark

import minigrad as mg
from minigrad import optimisers as opt
from minigrad.bench import Timings, bounds, interleaved


class Explicit:
    def __init__(self, arrays, grads):
        self.model = {f"w{i}": mg.param(a) for i, a in enumerate(arrays)}
        self.state = opt.setup(mg.Adam(0.001), self.model)
        given = {f"w{i}": g for i, g in enumerate(grads)}
        opt.update_(self.state, self.model, given)      # moves the arrays into one buffer
        terms = [(self.model[k], g) for k, g in given.items()]
        # The gradient tree as a training loop has it: landed in one flat buffer.
        self.grads = mg.gradient(lambda m: sum(mg.sum(p * g) for p, g in terms), self.model)[0]
        first = self.grads["w0"]
        assert first.base is not None and all(g.base is first.base
                                              for g in self.grads.values())

    def step(self) -> None:
        opt.update_(self.state, self.model, self.grads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--budget", type=float, default=60.0,
                        help="no new round after this many seconds (at least 3 rounds)")
    args = parser.parse_args()
    Timings.budget = args.budget
    sizes = model_sizes()
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(s).astype(F32) for s in sizes]
    grads = [(0.1 * rng.standard_normal(s)).astype(F32) for s in sizes]
    explicit = Explicit(arrays, grads)
    methods = {"explicit update_": explicit.step,
               "implicit update_": MgModel(arrays, grads, flat=True).step,
               **bounds(2, np.concatenate(arrays), np.concatenate(grads))}
    if torch is not None:
        methods["torch fused"] = TorchModel(arrays, grads, "fused").step
    t = interleaved(methods, args.rounds, 10)
    print(f"Adam on the 50-tensor model ({sum(sizes):,} float32 parameters), {t.rounds} rounds "
          "x 10 calls, median ms per step:")
    mine = t["explicit update_"]
    for name in methods:
        print(f"  {name:<20}{t[name] * 1e3:>8.3f} ms   explicit / this = {mine / t[name]:.2f}")
    if "torch fused" in t:
        ratio = t.typical("explicit update_") / t.typical("torch fused")
        print(f"  median of single calls: explicit {t.typical('explicit update_') * 1e3:.3f} ms, "
              f"torch fused {t.typical('torch fused') * 1e3:.3f} ms, ratio {ratio:.2f} "
              "(target <= 0.5)")


if __name__ == "__main__":
    main()

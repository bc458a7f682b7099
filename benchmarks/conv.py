"""One SGD training step of a LeNet-style CNN on 8×8 digits: minigrad vs PyTorch (CPU).

What it measures: the wall time of ONE full training step (forward, gradient, SGD update with
lr 0.1) at batch 64, float32, on a fixed batch of the handwritten digits bundled with
scikit-learn, of::

    Conv((3, 3), (1, 6), relu, pad=1)  -> MaxPool((2, 2))     8×8×1  -> 4×4×6
    Conv((3, 3), (6, 16), relu, pad=1) -> MaxPool((2, 2))     4×4×6  -> 2×2×16
    flatten -> Dense(64, 32, relu) -> Dense(32, 10), logitcrossentropy on one-hot targets

minigrad (Flux's layout, images width × height × channels × batch, ``mg.gradient`` then
``mg.update_(Descent(0.1), ps, gs)``) against the same network in PyTorch (``nn.Conv2d``,
``F.max_pool2d``, ``nn.Linear``, ``F.cross_entropy``, ``torch.optim.SGD``; batch first, its
default threads).  Both run in the same process in interleaved rounds (the order alternates);
the table gives the median over rounds of the mean µs per step, and the ratio minigrad/PyTorch
both as the ratio of the medians and as the median of per-round ratios.  Target: ≤ 1.0.

Before timing, both start from the same weights (PyTorch's kernels are minigrad's flipped, as
Flux's Conv is a true convolution; the first dense layer's columns follow PyTorch's flatten
order) and must agree on the loss and on every updated weight after one step; the check is
printed.

Run it::

    pip install -e ".[bench,examples]"     # PyTorch CPU and scikit-learn
    python benchmarks/conv.py              # 5-20 s; --rounds, --steps, --torch-threads
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
from machine import cpu_model, usable_cores  # this folder's shared helpers

try:
    import minigrad as mg
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import minigrad as mg

BATCH, LR = 64, 0.1


def digits_batch():
    """64 digits as images (8, 8, 1, 64) in [0, 1], their labels and one-hot targets."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images[:BATCH] / 16).astype(np.float32)      # (n, row, column)
    x = np.ascontiguousarray(images.transpose(2, 1, 0)[:, :, None, :])  # (column, row, 1, n)
    labels = digits.target[:BATCH]
    return x, labels, mg.onehotbatch(labels, range(10))


def lenet(rng: int):
    return mg.Chain(mg.Conv((3, 3), (1, 6), mg.relu, pad=1, rng=rng), mg.MaxPool((2, 2)),
                    mg.Conv((3, 3), (6, 16), mg.relu, pad=1, rng=rng + 1), mg.MaxPool((2, 2)),
                    mg.flatten, mg.Dense(64, 32, mg.relu, rng=rng + 2),
                    mg.Dense(32, 10, rng=rng + 3))


class MinigradStep:
    name = "minigrad"

    def __init__(self, x, y):
        self.m, self.x, self.y = lenet(0), x, y
        self.ps, self.opt = mg.params(self.m), mg.Descent(LR)
        for layer in (self.m[0], self.m[2], self.m[5], self.m[6]):     # non-zero biases
            layer.bias[...] = np.random.default_rng(9).uniform(-0.1, 0.1, layer.bias.shape)

    def step(self):
        m, x, y, ps = self.m, self.x, self.y, self.ps
        value, gs = mg.withgradient(lambda: mg.losses.logitcrossentropy(m(x), y), ps)
        mg.update_(self.opt, ps, gs)
        return float(value)

    def weights(self) -> list[np.ndarray]:
        return [np.array(p) for p in self.ps]


def _flatten_order() -> np.ndarray:
    """Column k of PyTorch's first dense layer is minigrad's column order[k]: PyTorch flattens
    (channel, row, column), minigrad's row-major flatten (column, row, channel)."""
    return np.arange(64).reshape(2, 2, 16).transpose(2, 1, 0).ravel()


def to_torch(ws: list[np.ndarray]) -> list[np.ndarray]:
    """minigrad's [w1, b1, w2, b2, W3, b3, W4, b4] as PyTorch's parameters."""
    w1, b1, w2, b2, W3, b3, W4, b4 = ws
    kernel = lambda w: np.ascontiguousarray(np.transpose(w[::-1, ::-1]))  # noqa: E731
    return [kernel(w1), b1, kernel(w2), b2, np.ascontiguousarray(W3[:, _flatten_order()]), b3,
            W4, b4]


class TorchStep:
    name = "torch"

    def __init__(self, torch, ws, x, labels):
        nn = torch.nn
        self.torch, self.F = torch, torch.nn.functional
        self.layers = [nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 16, 3, padding=1),
                       nn.Linear(64, 32), nn.Linear(32, 10)]
        self.params = [p for layer in self.layers for p in layer.parameters()]
        with torch.no_grad():
            for p, w in zip(self.params, to_torch(ws), strict=True):
                p.copy_(torch.from_numpy(np.array(w)))
        self.opt = torch.optim.SGD(self.params, lr=LR)
        self.x = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 1, 0)))  # (n, 1, 8, 8)
        self.t = torch.from_numpy(labels.astype(np.int64))

    def step(self):
        F, (c1, c2, d1, d2) = self.F, self.layers
        self.opt.zero_grad()
        h = F.max_pool2d(F.relu(c1(self.x)), 2)
        h = F.max_pool2d(F.relu(c2(h)), 2)
        loss = F.cross_entropy(d2(F.relu(d1(h.flatten(1)))), self.t)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def weights(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.params]


def check(mine: MinigradStep, theirs: TorchStep, tol: float = 1e-5) -> bool:
    loss_mine, loss_theirs = mine.step(), theirs.step()
    diffs = [float(np.max(np.abs(a - b)))
             for a, b in zip(to_torch(mine.weights()), theirs.weights(), strict=True)]
    ok = abs(loss_mine - loss_theirs) <= tol and max(diffs) <= tol
    print(f"correctness (one step from the same weights): loss minigrad {loss_mine:.7f}, torch "
          f"{loss_theirs:.7f}; max |Δ| of the 8 updated parameters {max(diffs):.1e}: "
          f"{'OK' if ok else 'MISMATCH'}")
    return ok


def time_rounds(impls, rounds: int, steps: int) -> dict[str, list[float]]:
    per_step = {impl.name: [] for impl in impls}
    for impl in impls:                                  # warm-up
        for _ in range(20):
            impl.step()
    for r in range(rounds):
        for impl in (impls if r % 2 == 0 else impls[::-1]):
            t0 = time.perf_counter()
            for _ in range(steps):
                impl.step()
            per_step[impl.name].append((time.perf_counter() - t0) / steps * 1e6)
    return per_step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--steps", type=int, default=50, help="steps per round (default 50)")
    parser.add_argument("--torch-threads", type=int,
                        help="PyTorch's intra-op threads (default: its own choice, one per "
                             "core); 1 is steadier on a busy machine")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed (pip install -e '.[bench]'): nothing to compare with")
        return 1
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    x, labels, y = digits_batch()
    mine = MinigradStep(x, y)
    theirs = TorchStep(torch, mine.weights(), x, labels)
    print(f"machine: {cpu_model()}; {usable_cores()} usable cores; load "
          f"{os.getloadavg()[0]:.2f}; python {platform.python_version()}, numpy "
          f"{np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    if not check(mine, theirs):
        return 1
    times = time_rounds([mine, theirs], args.rounds, args.steps)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    paired = statistics.median(a / b for a, b in zip(times["minigrad"], times["torch"],
                                                     strict=True))
    print(f"LeNet-style step, batch {BATCH}, float32: median of {args.rounds} rounds x "
          f"{args.steps} steps")
    for name, t in med.items():
        print(f"  {name:<9} {t:8.0f} µs/step")
    ratio = med["minigrad"] / med["torch"]
    print(f"  minigrad/torch = {ratio:.2f} (paired: {paired:.2f}); target ≤ 1.00: "
          f"{'met' if paired <= 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train a small MLP to tell apart the three arms of a 2-D spiral: minigrad end to end.

Run it from the repository root::

    python examples/train_mlp.py                 # 60 epochs, a progress line per epoch
    python examples/train_mlp.py --seed 3        # another data set, split and initialisation
    python examples/train_mlp.py --quiet         # only the summary

What it does:

* **Data.**  Three interleaved spiral arms in the plane (1000 points per arm, two full turns,
  angular noise 0.2 rad), which no straight line (or pair of lines) separates.  The points
  are shuffled and split 70/30 into a training set and a held-out test set.  Everything random
  (data, shuffling, weight initialisation) derives from ``--seed``, so a run is reproducible.
* **Model.**  ``Chain(Dense(2, 32, relu), Dense(32, 32, relu), Dense(32, 3))``: features first,
  batch last, as in Flux, so a minibatch is a ``(2, 32)`` array and the output ``(3, 32)``
  logits.  Its loss is ``minigrad.losses.logitcrossentropy`` against one-hot targets.
* **Training.**  Minibatches of 32, each step ``value, gs = mg.withgradient(lambda: loss(x, y),
  ps)`` followed by ``mg.update_(opt, ps, gs)`` with ``opt = mg.Momentum(0.05, 0.9)`` (plain
  SGD needs several times more epochs on this data).  The learning rate ``opt.eta`` follows a
  cosine from 0.05 down to 0 over the run, so the last epochs settle instead of bouncing
  around.
* **Progress.**  After each epoch, one line: mean training loss over the epoch's steps,
  accuracy on the whole training set, elapsed time and optimiser steps per second.  At the end,
  the accuracy on the held-out points (``held-out accuracy: ...``).

It reaches 98-100% held-out accuracy (seeds 0-9) in a few seconds on a 2-core machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

try:
    import minigrad as mg
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import minigrad as mg

CLASSES = 3
POINTS_PER_CLASS = 1000
TURNS = 2.0
ANGLE_NOISE = 0.2
TEST_FRACTION = 0.3
HIDDEN = 32
BATCH = 32
LR = 0.05
MOMENTUM = 0.9


def make_spirals(rng: np.random.Generator, classes: int = CLASSES,
                 per_class: int = POINTS_PER_CLASS, turns: float = TURNS,
                 noise: float = ANGLE_NOISE) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` spiral arms: features ``(2, n)`` float32 and integer labels ``(n,)``.

    Arm ``c`` is the curve ``r·(cos t, sin t)`` with radius ``r`` from 0.05 to 1 and angle
    ``t = 2πc/classes + 2π·turns·r``, plus Gaussian noise of ``noise`` radians on ``t``.
    """
    xs, labels = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, per_class)
        t = 2 * np.pi * c / classes + 2 * np.pi * turns * r + rng.normal(0.0, noise, per_class)
        xs.append(np.stack([r * np.cos(t), r * np.sin(t)]))
        labels.append(np.full(per_class, c))
    return np.concatenate(xs, axis=1).astype(np.float32), np.concatenate(labels)


def split(rng: np.random.Generator, x: np.ndarray, labels: np.ndarray,
          test_fraction: float = TEST_FRACTION):
    """Shuffle the columns and cut them into ``(x_train, y_train, x_test, y_test)``."""
    order = rng.permutation(labels.size)
    n_test = int(round(test_fraction * labels.size))
    test, train = order[:n_test], order[n_test:]
    return x[:, train], labels[train], x[:, test], labels[test]


def onehot(labels: np.ndarray, classes: int) -> np.ndarray:
    """One-hot targets, ``(classes, n)`` float32 (features first, as the model's output)."""
    return np.eye(classes, dtype=np.float32)[:, labels]


def accuracy(model, x: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of columns of ``x`` whose largest logit is the true class."""
    logits = np.asarray(model(x))
    return float(np.mean(logits.argmax(axis=0) == labels))


def cosine_lr(epoch: int, epochs: int, lr: float = LR) -> float:
    """Learning rate for 0-based ``epoch``: a half cosine from ``lr`` towards 0."""
    return lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def train(epochs: int, seed: int, quiet: bool = False, out=sys.stdout) -> dict:
    """Build the data and model, train for ``epochs`` epochs, return the final figures."""
    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test = split(rng, *make_spirals(rng))
    t_train = onehot(y_train, CLASSES)

    np.random.seed(seed)  # Dense's glorot_uniform draws from NumPy's global generator
    model = mg.Chain(mg.Dense(2, HIDDEN, mg.relu),
                     mg.Dense(HIDDEN, HIDDEN, mg.relu),
                     mg.Dense(HIDDEN, CLASSES))
    ps = mg.params(model)
    opt = mg.Momentum(LR, MOMENTUM)
    loss = lambda x, y: mg.losses.logitcrossentropy(model(x), y)  # noqa: E731

    n = y_train.size
    steps_per_epoch = math.ceil(n / BATCH)
    say = (lambda *a: None) if quiet else (lambda text: print(text, file=out, flush=True))
    say(f"spirals: {CLASSES} classes, {n} training and {y_test.size} held-out points; "
        f"model {model} with {sum(p.size for p in ps)} parameters")
    say(f"training {epochs} epochs x {steps_per_epoch} steps (batch {BATCH}), "
        f"SGD + momentum {MOMENTUM}, cosine learning rate from {LR}")

    start = time.perf_counter()
    steps = 0
    epoch_loss = float("nan")
    for epoch in range(epochs):
        lr = opt.eta = cosine_lr(epoch, epochs)
        epoch_start = time.perf_counter()
        total = 0.0
        order = rng.permutation(n)
        for first in range(0, n, BATCH):
            cols = order[first:first + BATCH]
            x, y = x_train[:, cols], t_train[:, cols]
            value, gs = mg.withgradient(lambda: loss(x, y), ps)  # noqa: B023
            mg.update_(opt, ps, gs)
            total += float(value)
            steps += 1
        epoch_time = time.perf_counter() - epoch_start
        epoch_loss = total / steps_per_epoch
        if not math.isfinite(epoch_loss):
            raise FloatingPointError(f"training diverged: loss {epoch_loss} at epoch {epoch + 1}")
        train_acc = accuracy(model, x_train, y_train)
        say(f"epoch {epoch + 1:3d}/{epochs}  loss {epoch_loss:.4f}  "
            f"train acc {100 * train_acc:5.1f}%  lr {lr:.4f}  "
            f"elapsed {time.perf_counter() - start:6.2f}s  "
            f"{steps_per_epoch / epoch_time:6.0f} steps/s")
    elapsed = time.perf_counter() - start

    test_acc = accuracy(model, x_test, y_test)
    print(f"held-out accuracy: {100 * test_acc:.2f}% ({y_test.size} points) after {epochs} "
          f"epochs, {steps} steps in {elapsed:.2f}s", file=out, flush=True)
    return {"test_accuracy": test_acc, "train_loss": epoch_loss, "steps": steps,
            "seconds": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train a 2-32-32-3 MLP on 2-D spirals with minigrad.")
    parser.add_argument("--epochs", type=int, default=60, help="passes over the training set "
                        "(default: 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the data, the shuffling "
                        "and the initial weights (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    train(args.epochs, args.seed, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())

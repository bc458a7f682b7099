"""The main job: an MLP learns to read handwritten digits, trained end to end with minigrad.

Run it from the repository root (see the README for a fresh machine)::

    python examples/classify_digits.py               # 30 epochs with a progress line
    python examples/classify_digits.py --epochs 5 --plot loss.png

* **Data.**  The 1797 8×8 handwritten digits that ship inside scikit-learn (UCI "optdigits"
  test set; nothing is downloaded).  Pixels are scaled to [0, 1]; a fixed 25% of the images,
  drawn with ``--seed``, are held out and never trained on.
* **Model.**  ``Chain(Dense(64, 64, relu), Dense(64, 10))`` on features-first batches
  ``(64, batch)``, with ``minigrad.losses.logitcrossentropy`` against one-hot targets.
* **Training.**  ``train_(loss, ps, batches, Adam(3e-3))`` once per epoch over shuffled
  minibatches of 32, with ``progress=True`` showing step, loss and rate.  Each epoch ends with
  a line of loss and accuracies; the run ends with the held-out accuracy.  With ``--plot`` (and
  matplotlib installed) the loss curve is saved as a picture.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    import minigrad as mg
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import minigrad as mg

BATCH = 32
LEARNING_RATE = 3e-3
HELD_OUT = 0.25


def load(seed: int):
    """``(x_train, y_train, x_test, y_test)``: features ``(64, n)`` float32 in [0, 1] and labels.
    """
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        sys.exit("this example reads the digits that ship with scikit-learn: "
                 "pip install -e '.[examples]'")
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).T
    labels = digits.target
    order = np.random.default_rng(seed).permutation(labels.size)
    n_test = int(HELD_OUT * labels.size)
    test, train = order[:n_test], order[n_test:]
    return x[:, train], labels[train], x[:, test], labels[test]


def accuracy(model, x, labels) -> float:
    """Fraction of columns whose largest logit is the true digit."""
    return float(np.mean(np.asarray(model(x)).argmax(axis=0) == labels))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training set")
    parser.add_argument("--seed", type=int, default=0, help="seed for the split and the weights")
    parser.add_argument("--plot", metavar="PNG", help="save the loss curve (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")

    x_train, y_train, x_test, y_test = load(args.seed)
    t_train = np.eye(10, dtype=np.float32)[:, y_train]
    np.random.seed(args.seed)           # Dense draws its initial weights from NumPy
    model = mg.Chain(mg.Dense(64, 64, mg.relu), mg.Dense(64, 10))
    ps, opt = mg.params(model), mg.Adam(LEARNING_RATE)
    loss = lambda x, y: mg.losses.logitcrossentropy(model(x), y)  # noqa: E731
    losses: list[float] = []
    say = (lambda text: None) if args.quiet else print
    say(f"digits: {y_train.size} training and {y_test.size} held-out images; {model}")

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(y_train.size)
        batches = [(x_train[:, order[i:i + BATCH]], t_train[:, order[i:i + BATCH]])
                   for i in range(0, order.size, BATCH)]
        mg.train_(loss, ps, batches, opt, progress=not args.quiet)
        losses.append(float(loss(x_train, t_train)))
        say(f"epoch {epoch:3d}/{args.epochs}  loss {losses[-1]:.4f}  "
            f"train acc {accuracy(model, x_train, y_train):.1%}  "
            f"held-out acc {accuracy(model, x_test, y_test):.1%}  "
            f"{time.perf_counter() - start:5.1f}s")
    seconds = time.perf_counter() - start
    held_out = accuracy(model, x_test, y_test)
    print(f"held-out accuracy: {held_out:.2%} on {y_test.size} images after {args.epochs} "
          f"epochs in {seconds:.1f}s")
    if args.plot:
        save_plot(losses, args.plot)
    return {"accuracy": held_out, "seconds": seconds, "losses": losses}


def save_plot(losses: list, path: str) -> None:
    """Save the per-epoch training loss as a picture, when matplotlib is installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        print("matplotlib is not installed: no picture (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set(xlabel="epoch", ylabel="training loss (logit cross-entropy)", yscale="log",
           title="minigrad: MLP on scikit-learn's digits")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"loss curve saved to {path}")


if __name__ == "__main__":
    main()

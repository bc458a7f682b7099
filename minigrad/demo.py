"""The main job: an MLP learns to read handwritten digits, trained end to end with minigrad.

Run it with ``python -m minigrad demo`` (or ``minigrad demo``, or the example script
``python examples/classify_digits.py``; all three are this module)::

    python -m minigrad demo                     # 30 epochs with a progress line
    python -m minigrad demo --epochs 5 --plot loss.png

* **Data.**  The 1797 8×8 handwritten digits that ship inside scikit-learn (UCI "optdigits"
  test set; nothing is downloaded).  Pixels are scaled to [0, 1]; a fixed 25% of the images,
  drawn with ``--seed``, are held out and never trained on.
* **Model.**  ``Chain(Dense(64, 64, relu), Dense(64, 10))`` on features-first batches
  ``(64, batch)``, with ``minigrad.losses.logitcrossentropy`` against one-hot targets.
* **Training.**  ``train_(loss, ps, batches, Adam(3e-3))`` once per epoch over shuffled
  minibatches of 32, with ``progress=True`` showing step, loss and rate.  Each epoch ends with
  a line of loss and accuracies; the run ends with the held-out accuracy.  With ``--plot`` (and
  matplotlib installed) the loss curve is saved as a picture.

scikit-learn (for the data) and matplotlib (for ``--plot``) are imported only when needed:
``pip install -e ".[examples]"``.
"""


import argparse
import time

import numpy as np

from .layers import Chain, Dense
from .losses import logitcrossentropy
from .ops import relu
from .optimise import Adam, train_
from .tracker import params

__all__ = ["BATCH", "LEARNING_RATE", "HELD_OUT", "load", "accuracy", "add_arguments", "train",
           "main", "save_plot"]

BATCH = 32
LEARNING_RATE = 3e-3
HELD_OUT = 0.25


def load(seed: int):
    """``(x_train, y_train, x_test, y_test)``: features ``(64, n)`` float32 in [0, 1] and labels.

    A fixed fraction ``HELD_OUT`` of the images, drawn with ``seed``, is the test set.  Needs
    scikit-learn (a clear ``ModuleNotFoundError`` otherwise).

    >>> from minigrad.demo import load
    >>> x_train, y_train, x_test, y_test = load(seed=0)
    >>> x_train.shape, x_test.shape
    ((64, 1348), (64, 449))
    """
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the demo reads the digits that ship with scikit-learn: "
                                  "pip install scikit-learn (or pip install -e '.[examples]')"
                                  ) from None
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).T
    labels = digits.target
    order = np.random.default_rng(seed).permutation(labels.size)
    n_test = int(HELD_OUT * labels.size)
    test, train = order[:n_test], order[n_test:]
    return x[:, train], labels[train], x[:, test], labels[test]


def accuracy(model, x, labels) -> float:
    """Fraction of columns of ``x`` whose largest logit is the true label.

    >>> import numpy as np
    >>> from minigrad.demo import accuracy
    >>> accuracy(lambda x: x, np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0]))
    0.5
    """
    return float(np.mean(np.asarray(model(x)).argmax(axis=0) == labels))


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the demo's options (``--epochs --seed --plot --quiet``) to ``parser``.

    >>> import argparse
    >>> from minigrad.demo import add_arguments
    >>> add_arguments(argparse.ArgumentParser()).parse_args(["--epochs", "2"]).epochs
    2
    """
    parser.add_argument("--epochs", type=int, default=30,
                        help="passes over the training set (default 30)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the split, the shuffling and the weights (default 0)")
    parser.add_argument("--plot", metavar="PNG", help="save the loss curve (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    return parser


def train(epochs: int = 30, seed: int = 0, plot: str | None = None, quiet: bool = False) -> dict:
    """Run the job; return ``{"accuracy": held-out accuracy, "seconds": ..., "losses": [...]}``
    (the training loss after each epoch).

    >>> from minigrad.demo import train
    >>> r = train(epochs=1, quiet=True)                       # doctest: +SKIP
    held-out accuracy: ...
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    x_train, y_train, x_test, y_test = load(seed)
    t_train = np.eye(10, dtype=np.float32)[:, y_train]
    np.random.seed(seed)                # Dense draws its initial weights from NumPy
    model = Chain(Dense(64, 64, relu), Dense(64, 10))
    ps, opt = params(model), Adam(LEARNING_RATE)
    loss = lambda x, y: logitcrossentropy(model(x), y)  # noqa: E731
    losses: list[float] = []
    say = (lambda text: None) if quiet else print
    say(f"digits: {y_train.size} training and {y_test.size} held-out images; {model}")

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(y_train.size)
        batches = [(x_train[:, order[i:i + BATCH]], t_train[:, order[i:i + BATCH]])
                   for i in range(0, order.size, BATCH)]
        train_(loss, ps, batches, opt, progress=not quiet)
        losses.append(float(loss(x_train, t_train)))
        say(f"epoch {epoch:3d}/{epochs}  loss {losses[-1]:.4f}  "
            f"train acc {accuracy(model, x_train, y_train):.1%}  "
            f"held-out acc {accuracy(model, x_test, y_test):.1%}  "
            f"{time.perf_counter() - start:5.1f}s")
    seconds = time.perf_counter() - start
    held_out = accuracy(model, x_test, y_test)
    print(f"held-out accuracy: {held_out:.2%} on {y_test.size} images after {epochs} "
          f"epochs in {seconds:.1f}s")
    if plot:
        save_plot(losses, plot)
    return {"accuracy": held_out, "seconds": seconds, "losses": losses}


def main(argv=None) -> dict:
    """Parse ``argv`` (the options of :func:`add_arguments`) and :func:`train`.

    >>> from minigrad.demo import main
    >>> main(["--epochs", "0"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    parser = add_arguments(argparse.ArgumentParser(
        prog="classify_digits.py", description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return train(args.epochs, args.seed, args.plot, args.quiet)


def save_plot(losses: list, path: str) -> None:
    """Save the per-epoch training loss as a picture, when matplotlib is installed (otherwise
    say so and save nothing).  Uses no GUI backend.

    >>> import os, tempfile
    >>> from minigrad.demo import save_plot
    >>> out = os.path.join(tempfile.mkdtemp(), "loss.png")
    >>> save_plot([2.0, 1.0, 0.5], out)
    loss curve saved to ...loss.png
    """
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        print("matplotlib is not installed: no picture (pip install matplotlib)")
        return
    fig = Figure(figsize=(6, 4), layout="tight")
    ax = fig.subplots()
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set(xlabel="epoch", ylabel="training loss (logit cross-entropy)", yscale="log",
           title="minigrad: MLP on scikit-learn's digits")
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=100)
    print(f"loss curve saved to {path}")

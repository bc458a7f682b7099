"""The main job: a small CNN learns to read handwritten digits, trained end to end with minigrad.

Run it with ``python -m minigrad demo`` (or ``minigrad demo``, or the example script
``python examples/classify_digits.py``; all three are this module)::

    python -m minigrad demo                          # the CNN, 20 epochs, with a progress line
    python -m minigrad demo --epochs 5 --plot loss.png
    python -m minigrad demo --model mlp              # the multilayer perceptron instead

* **Data.**  The 1797 8×8 handwritten digits that ship inside scikit-learn (UCI "optdigits"
  test set; nothing is downloaded).  Pixels are scaled to [0, 1]; a fixed 25% of the images,
  drawn with ``--seed``, are held out and never trained on.  The CNN sees images in Flux's
  layout, width × height × channels × batch ``(8, 8, 1, n)``; the MLP sees ``(64, n)``.
* **Models.**  ``cnn`` (the default)::

      Conv((3, 3), (1, 16), pad=1) -> BatchNorm(16, relu) -> MaxPool((2, 2))    # 4×4×16
      Conv((3, 3), (16, 32), pad=1) -> BatchNorm(32, relu) -> MaxPool((2, 2))   # 2×2×32
      flatten -> Dropout(0.25) -> Dense(128, 10)

  and ``mlp``: ``Chain(Dense(64, 64, relu), Dense(64, 10))``.  Both end in logits for
  ``minigrad.losses.logitcrossentropy`` against ``onehotbatch`` targets.  BatchNorm and Dropout
  use their training behaviour only inside ``train_``'s gradient (Flux's automatic mode).
* **Training.**  ``train_(loss, ps, loader, Adam(3e-3))`` once per epoch, ``loader`` a
  ``DataLoader`` of shuffled minibatches of 32, with ``progress=True`` showing step, loss and
  rate.  Each epoch ends with a line of loss and accuracies; the run ends with the held-out
  accuracy (about 99% for the CNN, 97% for the MLP).  With ``--plot`` (and matplotlib) the
  training loss and the held-out accuracy per epoch are saved as a picture.

scikit-learn (for the data) and matplotlib (for ``--plot``) are imported only when needed:
``pip install -e ".[examples]"``.
"""


import argparse
import time

import numpy as np

from . import distributed as dist
from .dataloader import DataLoader, onecold, onehotbatch
from .layers import BatchNorm, Chain, Conv, Dense, Dropout, MaxPool
from .losses import logitcrossentropy
from .ops import flatten, relu
from .optimise import Adam, train_
from .tracker import params

__all__ = ["BATCH", "LEARNING_RATE", "HELD_OUT", "EPOCHS", "MODELS", "load", "images",
           "build", "accuracy", "add_arguments", "train", "main", "save_plot"]

BATCH = 32
LEARNING_RATE = 3e-3
HELD_OUT = 0.25
EPOCHS = {"cnn": 20, "mlp": 30}         # the default number of epochs of each model
MODELS = tuple(EPOCHS)


def load(seed: int):
    """``(x_train, y_train, x_test, y_test)``: features ``(64, n)`` float32 in [0, 1] and labels.

    Feature ``8·r + c`` is the pixel in row ``r``, column ``c``.  A fixed fraction
    ``HELD_OUT`` of the images, drawn with ``seed``, is the test set.  Needs scikit-learn (a
    clear ``ModuleNotFoundError`` otherwise).

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


def images(x: np.ndarray) -> np.ndarray:
    """Features ``(64, n)`` (row-major 8×8 pixels) as images ``(8, 8, 1, n)`` in Flux's layout:
    ``images(x)[c, r, 0, i]`` is the pixel in column ``c`` (the width) and row ``r``.

    >>> import numpy as np
    >>> from minigrad.demo import images
    >>> x = np.arange(64.0)[:, None]
    >>> images(x)[1, 0, 0, 0], images(x)[0, 1, 0, 0]       # row 0 column 1; row 1 column 0
    (np.float64(1.0), np.float64(8.0))
    """
    return np.ascontiguousarray(x.reshape(8, 8, 1, -1).transpose(1, 0, 2, 3))


def build(model: str, rng) -> Chain:
    """The ``"cnn"`` or ``"mlp"`` of the module documentation, with weights drawn from ``rng``.

    >>> from minigrad.demo import build
    >>> build("mlp", rng=0)
    Chain(Dense(64, 64, relu), Dense(64, 10))
    """
    if model == "mlp":
        return Chain(Dense(64, 64, relu, rng=rng), Dense(64, 10, rng=rng))
    if model != "cnn":
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    return Chain(Conv((3, 3), (1, 16), pad=1, rng=rng), BatchNorm(16, relu), MaxPool((2, 2)),
                 Conv((3, 3), (16, 32), pad=1, rng=rng), BatchNorm(32, relu), MaxPool((2, 2)),
                 flatten, Dropout(0.25, rng=rng), Dense(128, 10, rng=rng))


def accuracy(model, x, labels) -> float:
    """Fraction of the samples of ``x`` (on its last axis) whose largest logit is the true label.

    >>> import numpy as np
    >>> from minigrad.demo import accuracy
    >>> accuracy(lambda x: x, np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0]))
    0.5
    """
    return float(np.mean(onecold(model(x)) == labels))


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the demo's options (``--model --epochs --seed --plot --quiet --distributed``) to
    ``parser``.

    >>> import argparse
    >>> from minigrad.demo import add_arguments
    >>> add_arguments(argparse.ArgumentParser()).parse_args(["--epochs", "2"]).epochs
    2
    """
    parser.add_argument("--model", choices=MODELS, default="cnn",
                        help="the small CNN (default) or the multilayer perceptron")
    parser.add_argument("--epochs", type=int,
                        help="passes over the training set (default: 20 for the CNN, 30 for "
                             "the MLP)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the split, the shuffling and the weights (default 0)")
    parser.add_argument("--plot", metavar="PNG",
                        help="save the training loss and held-out accuracy per epoch as a "
                             "picture (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over MPI ranks (run it as mpiexec -n 2 python -m "
                             "mpi4py examples/classify_digits.py --distributed; needs the mpi "
                             "extra): each step averages the gradients of one batch per rank")
    return parser


def train(epochs: int | None = None, seed: int = 0, plot: str | None = None,
          quiet: bool = False, model: str = "cnn", distributed: bool = False) -> dict:
    """Run the job; return ``{"accuracy": held-out accuracy, "seconds": ..., "losses": [...],
    "accuracies": [...]}`` (the training loss and the held-out accuracy after each epoch).

    ``distributed``: data-parallel over the ranks of an ``mpiexec`` job
    (:mod:`minigrad.distributed`): every rank shuffles the batches alike and takes its own
    share of them (``DistributedDataContainer``), each step averages the ranks' gradients
    (``DistributedOptimiser``), and only rank 0 prints and draws.

    >>> from minigrad.demo import train
    >>> r = train(epochs=1, quiet=True)                       # doctest: +SKIP
    held-out accuracy: ...
    """
    rng = np.random.default_rng(seed)
    net = build(model, rng)
    epochs = EPOCHS[model] if epochs is None else epochs
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    x_train, y_train, x_test, y_test = load(seed)
    if model == "cnn":
        x_train, x_test = images(x_train), images(x_test)
    ps, opt = params(net), Adam(LEARNING_RATE)
    if distributed:
        dist.initialize()
        opt = dist.DistributedOptimiser(opt)
        dist.synchronize_(net, opt)
        quiet, plot = (quiet, plot) if dist.local_rank() == 0 else (True, None)
    t_train = onehotbatch(y_train, range(10))
    loader = DataLoader((x_train, t_train), batchsize=BATCH, shuffle=True, rng=rng)
    loss = lambda x, y: logitcrossentropy(net(x), y)  # noqa: E731
    losses: list[float] = []
    accuracies: list[float] = []
    say = (lambda text: None) if quiet else print
    say(f"digits: {y_train.size} training and {y_test.size} held-out images; {net}")

    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        batches = dist.DistributedDataContainer(list(loader)) if distributed else loader
        train_(loss, ps, batches, opt, progress=not quiet)
        losses.append(float(loss(x_train, t_train)))
        accuracies.append(accuracy(net, x_test, y_test))
        say(f"epoch {epoch:3d}/{epochs}  loss {losses[-1]:.4f}  "
            f"train acc {accuracy(net, x_train, y_train):.1%}  "
            f"held-out acc {accuracies[-1]:.1%}  {time.perf_counter() - start:5.1f}s")
    seconds = time.perf_counter() - start
    if not distributed or dist.local_rank() == 0:
        print(f"held-out accuracy: {accuracies[-1]:.2%} on {y_test.size} images after "
              f"{epochs} epochs in {seconds:.1f}s")
    if plot:
        save_plot(losses, plot, accuracies, title=f"minigrad: {model.upper()} on scikit-learn's "
                                                  "digits")
    return {"accuracy": accuracies[-1], "seconds": seconds, "losses": losses,
            "accuracies": accuracies}


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
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return train(args.epochs, args.seed, args.plot, args.quiet, args.model, args.distributed)


def save_plot(losses: list, path: str, accuracies: list | None = None,
              title: str = "minigrad on scikit-learn's digits") -> None:
    """Save the per-epoch training loss (log scale) and, when given, the held-out accuracy
    (linear, in %) side by side, epochs as integers on the x axes, when matplotlib is installed
    (otherwise say so and save nothing).  Uses no GUI backend.

    >>> import os, tempfile
    >>> from minigrad.demo import save_plot
    >>> out = os.path.join(tempfile.mkdtemp(), "loss.png")
    >>> save_plot([2.0, 1.0, 0.5], out, [0.5, 0.8, 0.9])
    loss curve saved to ...loss.png
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter
    except ModuleNotFoundError:
        print("matplotlib is not installed: no picture (pip install matplotlib)")
        return
    epochs = range(1, len(losses) + 1)
    fig = Figure(figsize=(10 if accuracies else 6, 4), layout="constrained")
    axes = fig.subplots(1, 2 if accuracies else 1, squeeze=False)[0]
    axes[0].plot(epochs, losses, marker="o")
    axes[0].set(ylabel="training loss (logit cross-entropy, log scale)", yscale="log")
    # Plain numbers (0.01 rather than 10⁻²) at the powers of ten, and at 2× and 5× them.
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes[0].yaxis.set_minor_formatter(FuncFormatter(
        lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25" else ""))
    if accuracies:
        axes[1].plot(epochs, [100 * a for a in accuracies], marker="o", color="tab:green")
        axes[1].set(ylabel="held-out accuracy")
        axes[1].yaxis.set_major_formatter(PercentFormatter(decimals=0))
    for ax in axes:
        ax.set(xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    print(f"loss curve saved to {path}")

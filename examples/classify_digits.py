"""The main job: a small CNN learns to read handwritten digits, trained end to end with minigrad.

Run it from the repository root (see the README for a fresh machine)::

    python examples/classify_digits.py               # the CNN, 20 epochs, with a progress line
    python examples/classify_digits.py --epochs 5 --plot loss.png
    python examples/classify_digits.py --model mlp   # the multilayer perceptron instead

The job itself lives in the package, :mod:`minigrad.demo` (so that ``python -m minigrad demo``
runs the very same code); read it there.  In short: the 8×8 digits bundled with scikit-learn,
25% held out, as 8×8×1 images; two ``Conv -> BatchNorm(relu) -> MaxPool`` blocks, ``flatten``,
``Dropout(0.25)`` and ``Dense(128, 10)`` with ``logitcrossentropy``; ``train_`` with
``Adam(3e-3)`` over a shuffling ``DataLoader`` of minibatches of 32 with a progress line; the
held-out accuracy at the end (about 99%) and, with ``--plot``, the training loss and held-out
accuracy per epoch as a picture.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import minigrad  # noqa: F401
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minigrad.demo import (
    BATCH,
    HELD_OUT,
    LEARNING_RATE,
    accuracy,
    build,
    images,
    load,
    main,
    save_plot,
    train,
)

__all__ = ["BATCH", "HELD_OUT", "LEARNING_RATE", "accuracy", "build", "images", "load", "main",
           "save_plot", "train"]

if __name__ == "__main__":
    main()

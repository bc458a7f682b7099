"""Seed 003 (Flux v0.8 "Optimisers" page, Tracker era), every example line for line in Python.

The Julia original::

    using Flux, Flux.Tracker

    W = param(rand(2, 5))
    b = param(rand(2))

    predict(x) = W*x .+ b
    loss(x, y) = sum((predict(x) .- y).^2)

    x, y = rand(5), rand(2) # Dummy data
    l = loss(x, y) # ~ 3

    θ = Params([W, b])
    grads = Tracker.gradient(() -> loss(x, y), θ)

    using Flux.Tracker: grad, update!

    η = 0.1 # Learning Rate
    for p in (W, b)
      update!(p, -η * grads[p])

    opt = Descent(0.1) # Gradient descent with learning rate 0.1

    for p in (W, b)
      update!(opt, p, grads[p])

Tracker's ``update!(p, Δ)`` ADDS ``Δ`` (hence ``-η``); its optimiser form ``update!(opt, p, g)``
(added to Tracker's ``update!`` by Flux v0.8) takes the optimiser's step away.
``minigrad.tracker.update_`` has both.  The script prints the loss at the start, after the
plain loop and after the ``Descent`` loop (which reuses the same gradients, as the seed does),
then the same problem trained for 20 steps with ``ADAM``, "a more advanced optimiser".

The data are random, as in the seed; ``--seed N`` makes a run reproducible::

    python examples/seed_003_tracker_optimisers.py --seed 18
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import minigrad as mg
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import minigrad as mg

from minigrad import tracker as Tracker


def main(argv: list[str] | None = None) -> dict:
    """Run the seed's example; return the losses ``{"start", "plain", "descent", "adam"}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None,
                        help="seed NumPy's global random generator (default: unseeded)")
    args = parser.parse_args(argv)
    if args.seed is not None:
        np.random.seed(args.seed)

    # -- the seed, as written ----------------------------------------------------------------
    W = mg.param(np.random.rand(2, 5))
    b = mg.param(np.random.rand(2))

    predict = lambda x: W @ x + b  # noqa: E731  (the seed's one-line function definitions)
    loss = lambda x, y: mg.sum((predict(x) - y) ** 2)  # noqa: E731

    x, y = np.random.rand(5), np.random.rand(2)  # Dummy data
    l = loss(x, y)  # ~ 3

    θ = mg.Params([W, b])
    grads = Tracker.gradient(lambda: loss(x, y), θ)

    from minigrad.tracker import grad, update_  # noqa: F401  (the seed imports grad too)

    η = 0.1  # Learning Rate
    for p in (W, b):
        update_(p, -η * grads[p])
    plain = loss(x, y)

    opt = mg.Descent(0.1)  # Gradient descent with learning rate 0.1

    for p in (W, b):
        update_(opt, p, grads[p])
    # -----------------------------------------------------------------------------------------
    descent = loss(x, y)

    opt = mg.ADAM(0.01)     # "we can now easily replace Descent with ... ADAM"
    for _ in range(20):
        update_(opt, θ, Tracker.gradient(lambda: loss(x, y), θ))
    adam = loss(x, y)

    print(f"loss at the start:                 {float(l):.6f}")
    print(f"after update!(p, -η * grads[p]):   {float(plain):.6f}")
    print(f"after update!(Descent(0.1), p, g): {float(descent):.6f}")
    print(f"after 20 steps of ADAM(0.01):      {float(adam):.6f}")
    return {"start": float(l), "plain": float(plain), "descent": float(descent),
            "adam": float(adam)}


if __name__ == "__main__":
    main()

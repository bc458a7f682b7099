"""Seed 001 (Flux "Optimisers" page), opening example, line for line in Python.

The Julia original::

    W = rand(2, 5)
    b = rand(2)
    predict(x) = (W * x) .+ b
    loss(x, y) = sum((predict(x) .- y).^2)
    x, y = rand(5), rand(2) # Dummy data
    l = loss(x, y) # ~ 3
    θ = params(W, b)
    grads = gradient(() -> loss(x, y), θ)

    using Flux.Optimise: update!
    η = 0.1 # Learning Rate
    for p in (W, b)
      update!(p, η * grads[p])
    end

``Flux.Optimise.update!(x, x̄)`` SUBTRACTS (``x .-= x̄``), and so does
``minigrad.optimise.update_``.  The script prints the loss before and after the update; the
loss always goes down here (one step of size 0.1 multiplies the residual by
``1 - 0.2·(1 + x·x)``, which lies in ``(-0.2, 0.8)`` for ``x`` in ``[0, 1)⁵``).

The data are random, as in the seed.  ``--seed N`` seeds NumPy's global generator (which
``mg.rand`` and ``np.random.rand`` share) to make a run reproducible::

    python examples/seed_001_optimisers.py --seed 0
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None,
                        help="seed NumPy's global random generator (default: unseeded)")
    args = parser.parse_args(argv)
    if args.seed is not None:
        np.random.seed(args.seed)

    # -- the seed, as written ----------------------------------------------------------------
    W = mg.rand(2, 5)
    b = mg.rand(2)
    predict = lambda x: W @ x + b  # noqa: E731  (the seed's one-line function definitions)
    loss = lambda x, y: mg.sum((predict(x) - y) ** 2)  # noqa: E731
    x, y = np.random.rand(5), np.random.rand(2)  # Dummy data
    l = loss(x, y)  # ~ 3  (its expectation is 71/18 ≈ 3.94; see tests/test_seeds.py)
    θ = mg.params(W, b)
    grads = mg.gradient(lambda: loss(x, y), θ)

    η = 0.1  # Learning Rate
    for p in (W, b):
        mg.optimise.update_(p, η * grads[p])
    # -----------------------------------------------------------------------------------------

    print(f"loss before update: {float(l):.10f}")
    print(f"loss after update:  {float(loss(x, y)):.10f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

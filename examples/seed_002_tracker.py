"""Seed 002 (Flux.Tracker "Optimisers" page), opening example, line for line in Python.

The Julia original::

    using Flux.Tracker
    W = param(rand(2, 5))
    b = param(rand(2))
    predict(x) = W*x .+ b
    loss(x, y) = sum((predict(x) .- y).^2)
    x, y = rand(5), rand(2) # Dummy data
    l = loss(x, y) # ~ 3
    params = Params([W, b])
    grads = Tracker.gradient(() -> loss(x, y), params)

    using Flux.Tracker: grad, update!
    function sgd()
      η = 0.1 # Learning Rate
      for p in (W, b)
        update!(p, -η * grads[p])
      end
    end

    m = Chain(
      Dense(10, 5, σ),
      Dense(5, 2), softmax)

``Tracker.update!(x, Δ)`` ADDS ``Δ`` (hence the ``-η``), and so does
``minigrad.tracker.update_``; ``minigrad.optimise.update_`` subtracts instead.  The script
prints the loss before and after calling ``sgd()``, then the parameter shapes that
``params(m)`` finds in the seed's ``Chain``.  (The seed's variable ``params`` is called
``ps`` here so as not to shadow the function ``params``.)

The data are random, as in the seed; ``--seed N`` makes a run reproducible::

    python examples/seed_002_tracker.py --seed 0
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
    W = mg.tracker.param(np.random.rand(2, 5))
    b = mg.tracker.param(np.random.rand(2))
    predict = lambda x: W @ x + b  # noqa: E731  (the seed's one-line function definitions)
    loss = lambda x, y: mg.sum((predict(x) - y) ** 2)  # noqa: E731
    x, y = np.random.rand(5), np.random.rand(2)  # Dummy data
    l = loss(x, y)  # ~ 3  (its expectation is 71/18 ≈ 3.94; see tests/test_seeds.py)
    ps = mg.Params([W, b])
    grads = mg.tracker.gradient(lambda: loss(x, y), ps)

    def sgd():
        η = 0.1  # Learning Rate
        for p in (W, b):
            mg.tracker.update_(p, -η * grads[p])

    sgd()
    # -----------------------------------------------------------------------------------------

    print(f"loss before update: {float(l):.10f}")
    print(f"loss after update:  {float(loss(x, y)):.10f}")

    m = mg.Chain(
        mg.Dense(10, 5, mg.σ),
        mg.Dense(5, 2), mg.softmax)
    shapes = ", ".join(str(p.shape) for p in mg.params(m))
    print(f"params(m): {len(mg.params(m))} arrays with shapes {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

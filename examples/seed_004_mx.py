"""Seed 004 (MXNet.jl "Optimizers" page), opening example, line for line in Python.

The Julia original::

    julia> using MXNet
    julia> opt = SGD(η = 10)
    SGD(10, 0.0, 0, 0, 0.0001, MXNet.mx.LearningRate.Fixed(10.0), MXNet.mx.Momentum.Null())
    julia> decend! = getupdater(opt)
    julia> W = NDArray(Float32[1, 2, 3, 4]);
    julia> ∇ = NDArray(Float32[.1, .2, .3, .4]);
    julia> decend!(1, ∇, W)
    4-element NDArray{Float32,1} @ cpu0:
    -0.0010000467f0
    -0.0020000935f0
    -0.003000021f0
    -0.004000187f0

``decend!`` (the seed's spelling) becomes ``decend_``.  The script prints the optimizer, then
the updated weights as NumPy prints a float32 array, which gives MXNet's digits::

    [-0.00100005 -0.00200009 -0.00300002 -0.00400019]

Why not zero: η·∇ = W exactly, but SGD's default weight decay λ = 1e-4 adds λ·W to the
gradient, leaving −η·λ·W = −0.001·W behind; the trailing digits are float32 rounding.

    python examples/seed_004_mx.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

try:
    from minigrad import mx
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from minigrad import mx


def main() -> int:
    # -- the seed, as written ----------------------------------------------------------------
    opt = mx.SGD(η=10)
    print(opt)
    decend_ = mx.getupdater(opt)
    W = mx.NDArray([1, 2, 3, 4])
    grad = mx.NDArray([.1, .2, .3, .4])
    decend_(1, grad, W)
    # -----------------------------------------------------------------------------------------
    print(W)
    print(f"{W.size}-element float32 array, as MXNet printed it: "
          + " ".join(np.format_float_positional(w) + "f0" for w in W))
    return 0


if __name__ == "__main__":
    sys.exit(main())

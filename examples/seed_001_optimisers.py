"""Seed 001 (Flux "Optimisers" page), every example, section by section, in Python.

The page's sections, and what this script runs for each (the Python follows the docs pages
that reproduce them: docs/optimisers.md, optimiser_interface.md, composing.md,
scheduling.md, decays.md and clipping.md):

* **Opening**: the linear regression ``W = rand(2, 5); b = rand(2); ...; l = loss(x, y) # ~ 3``,
  the plain ``update!(p, η * grads[p])`` loop, the same step with ``Descent(0.1)``, then
  ``ADAM`` swapped in for ``Descent``.
* **Optimiser Reference**: ``update!(x, x̄)`` and ``update!(opt, ps, gs)``, every rule built
  with the page's default and example arguments, and the ``Descent`` example on a model.
* **Optimiser Interface**: the hand-written ``Momentum`` with its ``apply!``, trained next to
  the built-in one.
* **Composing Optimisers**: ``Optimiser(ExpDecay(1, 0.1, 1000, 1e-4), Descent())`` trained for
  ``10^5`` steps (``--steps``), the loss going from "around 9" to "around 0.9".
* **Scheduling Optimisers**: a ``Cos`` schedule driving ``Momentum``'s ``eta``, then the same
  through ``Stateful`` and ``next!``.
* **Decays**: ``ExpDecay``, ``InvDecay`` and ``WeightDecay`` in the page's compositions.
* **Gradient Clipping**: ``Optimiser(ClipValue(1e-3), ADAM(1e-3))``, ``ClipValue``, ``ClipNorm``.

Each claim is printed as ``  the page's claim: what minigrad got``.

``Flux.Optimise.update!(x, x̄)`` SUBTRACTS (``x .-= x̄``), and so does
``minigrad.optimise.update_``.  In the opening the loss always goes down (one step of size 0.1
multiplies the residual by ``1 - 0.2·(1 + x·x)``, which lies in ``(-0.2, 0.8)`` for ``x`` in
``[0, 1)⁵``).  The composing example's "around 0.9" is not what Flux's math gives: the loss
ends near 1e-3 (docs/composing.md explains why).

The data are random, as in the seed; every section draws from NumPy's global generator (which
``mg.rand`` and ``np.random.rand`` share) in page order.  ``--seed N`` seeds it to make a run
reproducible; ``--steps N`` shortens the composing example (the page's 10^5 steps take about
20 s)::

    python examples/seed_001_optimisers.py --seed 18
    python examples/seed_001_optimisers.py --seed 18 --steps 5000
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

from minigrad.schedules import Cos, Stateful, next_

PAGE_STEPS = 10**5  # "for t = 1:10^5" in the composing example


def section(title: str) -> None:
    print(f"\n== {title} ==")


def show(claim: str, got: object) -> None:
    """One line: what the page claims, then what minigrad got."""
    print(f"  {claim}: {got}")


def opening() -> None:
    """The page's opening example, then its two update loops and the swap to ADAM."""
    section("Opening")
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
    l1 = float(loss(x, y))
    print(f"loss before update: {float(l):.10f}")
    print(f"loss after update:  {l1:.10f}")
    show("l = loss(x, y) # ~ 3", f"{float(l):.2f}")
    show("update!(p, η * grads[p]): our loss should go down",
         f"{float(l):.4f} -> {l1:.4f} ({'down' if l1 < l else 'NOT down'})")

    # "Flux provides a more general way": the same step with an optimiser (and, as on the
    # page, the gradients computed before the first loop)
    expected = {id(p): p.data - 0.1 * grads[p] for p in (W, b)}
    opt = mg.Descent(0.1)  # Gradient descent with learning rate 0.1
    for p in (W, b):
        mg.optimise.update_(opt, p, grads[p])
    l2 = float(loss(x, y))
    same = all(np.allclose(p, expected[id(p)]) for p in (W, b))
    show("update!(Descent(0.1), p, grads[p]): the same step as the plain loop",
         f"{'yes' if same else 'NO'}, loss {l1:.4f} -> {l2:.4f}")

    # "we can now easily replace Descent with a more advanced optimiser such as ADAM"
    opt = mg.ADAM(0.01)
    for _ in range(20):
        grads = mg.gradient(lambda: loss(x, y), θ)
        mg.optimise.update_(opt, θ, grads)
    show("ADAM(0.01) in Descent's place, 20 steps with fresh gradients",
         f"loss {l2:.4f} -> {float(loss(x, y)):.4f}")


def optimiser_reference() -> None:
    """``update!``'s forms, every rule's defaults and examples, and the Descent example."""
    section("Optimiser Reference")
    x = mg.param([1.0, 2.0])
    mg.optimise.update_(x, np.array([0.5, 0.5]))
    show("update!(x, x̄) updates x .-= x̄ ([1, 2] .- 0.5)", x.data.tolist())

    rules = [  # the page's signature, minigrad's defaults, the page's example(s)
        ("Descent(η = 0.1)", mg.Descent(), mg.Descent(0.3)),
        ("Momentum(η = 0.01, ρ = 0.9)", mg.Momentum(), mg.Momentum(0.01, 0.99)),
        ("Nesterov(η = 0.001, ρ = 0.9)", mg.Nesterov(), mg.Nesterov(0.003, 0.95)),
        ("RMSProp(η = 0.001, ρ = 0.9)", mg.RMSProp(), mg.RMSProp(0.002, 0.95)),
        ("ADAM(η = 0.001, β = (0.9, 0.999))", mg.ADAM(), mg.ADAM(0.001, (0.9, 0.8))),
        ("RADAM(η = 0.001, β = (0.9, 0.999))", mg.RADAM(), mg.RADAM(0.001, (0.9, 0.8))),
        ("AdaMax(η = 0.001, β = (0.9, 0.999))", mg.AdaMax(), mg.AdaMax(0.001, (0.9, 0.995))),
        ("ADAGrad(η = 0.1)", mg.ADAGrad(), mg.ADAGrad(0.001)),
        ("ADADelta(ρ = 0.9)", mg.ADADelta(), mg.ADADelta(0.89)),
        ("AMSGrad(η = 0.001, β = (0.9, 0.999))", mg.AMSGrad(),
         mg.AMSGrad(0.001, (0.89, 0.995))),
        ("NADAM(η = 0.001, β = (0.9, 0.999))", mg.NADAM(), mg.NADAM(0.002, (0.89, 0.995))),
        ("ADAMW(η = 0.001, β = (0.9, 0.999), decay = 0)", mg.ADAMW(),
         mg.ADAMW(0.001, (0.89, 0.995), 0.1)),
        ("OADAM(η = 0.0001, β = (0.5, 0.9)) [Flux's code, and minigrad: η = 0.001]",
         mg.OADAM(), mg.OADAM(0.001, (0.9, 0.995))),
        ("AdaBelief(η = 0.001, β = (0.9, 0.999))", mg.AdaBelief(),
         mg.AdaBelief(0.001, (0.9, 0.8))),
    ]
    for signature, default, example in rules:
        show(signature, f"{default!r}; the page's example: {example!r}")

    # Descent's docstring example: update!(opt, ps, gs) on a model's parameters
    opt = mg.Descent(0.3)
    model = mg.Dense(5, 2)
    x, y = np.random.rand(5).astype(np.float32), np.random.rand(2).astype(np.float32)
    loss = lambda x, y: mg.losses.mse(model(x), y)  # noqa: E731
    ps = mg.params(model)
    gs = mg.gradient(lambda: loss(x, y), ps)  # gradient(ps) do loss(x, y) end
    expected = {id(p): p.data - 0.3 * gs[p] for p in ps}
    g_copies = {id(p): gs[p].copy() for p in ps}
    mg.optimise.update_(opt, ps, gs)  # Flux.Optimise.update!(opt, ps, gs)
    moved = all(np.allclose(p, expected[id(p)]) for p in ps)
    untouched = all(np.array_equal(gs[p], g_copies[id(p)]) for p in ps)
    show(f"update!(Descent(0.3), ps, gs) runs p -= η*δp for each of the {len(ps)} params",
         "yes" if moved else "NO")
    show("the gradient could be mutated as well", "it was not" if untouched else "it was")

    # "an object that, when passed to train!, will update the parameters passed to it"
    before = float(loss(x, y))
    mg.train_(loss, ps, [(x, y)] * 10, mg.Descent(0.01))
    show("train!(loss, ps, data, Descent(0.01)) updates ps (10 samples)",
         f"loss {before:.4f} -> {float(loss(x, y)):.4f}")


def optimiser_interface() -> None:
    """The page's hand-written Momentum, trained next to the built-in one."""
    section("Optimiser Interface")

    class Momentum(mg.AbstractOptimiser):  # mutable struct Momentum
        def __init__(self, eta, rho):  # Momentum(eta::Real, rho::Real) =
            self.eta = eta
            self.rho = rho
            self.velocity = mg.IdDict()  # velocity = IdDict()

        def apply_(self, x, Δ):  # function Flux.Optimise.apply!(o::Momentum, x, Δ)
            η, ρ = self.eta, self.rho
            v = self.velocity.get_(x, np.zeros_like(x))  # get!(o.velocity, x, zero(x))
            v[...] = ρ * v - η * Δ  # @. v = ρ * v - η * Δ
            Δ[...] = -v  # @. Δ = -v
            return Δ

    X, Y = np.random.rand(5, 20), np.random.rand(2, 20)  # 20 samples, features first
    start = (np.random.rand(2, 5), np.random.rand(2))

    def train(opt, steps=50):
        W, b = mg.param(start[0]), mg.param(start[1])
        θ = mg.params(W, b)
        loss = lambda: mg.losses.mse(W @ X + b[:, None], Y)  # noqa: E731
        first = float(loss())
        for _ in range(steps):
            mg.update_(opt, θ, mg.gradient(loss, θ))
        return first, float(loss()), W, b

    first, last, W1, b1 = train(Momentum(0.1, 0.9))
    _, _, W2, b2 = train(mg.Momentum(0.1, 0.9))
    show("custom optimisers used seamlessly (update! with ours, 50 steps)",
         f"loss {first:.4f} -> {last:.4f}")
    gap = max(np.abs(W1 - W2).max(), np.abs(b1 - b2).max())
    show("v = ρ * v - η * Δ; w = w - v: same parameters as the built-in Momentum(0.1, 0.9)",
         f"max difference {gap:.1e}")
    _, _, W3, _ = train(mg.Optimiser(mg.WeightDecay(0.01), Momentum(0.1, 0.9)))
    _, _, W4, _ = train(mg.Optimiser(mg.WeightDecay(0.01), mg.Momentum(0.1, 0.9)))
    show("inside Optimiser(WeightDecay(0.01), ·) as well",
         f"max difference {np.abs(W3 - W4).max():.1e}")


def composing(steps: int) -> None:
    """``Optimiser(ExpDecay(1, 0.1, 1000, 1e-4), Descent())`` on the page's w, w1 problem."""
    section("Composing Optimisers")
    opt = mg.Optimiser(mg.ExpDecay(1, 0.1, 1000, 1e-4), mg.Descent())
    w = mg.randn(10, 10)
    w1 = mg.randn(10, 10)
    ps = mg.Params([w, w1])  # noqa: F841  (the page builds it, then a fresh θ every step)
    loss = lambda x: mg.losses.mse(w @ x, w1 @ x)  # noqa: E731
    before = float(loss(np.random.rand(10)))  # around 9
    for _ in range(1, steps + 1):
        θ = mg.Params([w, w1])
        θ̄ = mg.gradient(lambda: loss(np.random.rand(10)), θ)
        mg.optimise.update_(opt, θ, θ̄)
    after = float(loss(np.random.rand(10)))  # around 0.9

    show("loss(rand(10)) # around 9", f"{before:.2f}")
    done = "10^5" if steps == PAGE_STEPS else f"{steps} (the page: 10^5)"
    show(f"loss(rand(10)) # around 0.9, after {done} steps", f"{after:.2g}")
    show("ExpDecay's factor, decayed every 1000 steps down to 1e-4", f"{opt[0].eta:.1g}")

    # Optimiser(a, b, c...): each optimiser's modified gradient is fed into the next
    chain = mg.Optimiser(mg.WeightDecay(0.1), mg.Descent(0.5))
    step = mg.apply_(chain, np.array([2.0]), np.array([1.0]))[0]
    show("Optimiser(WeightDecay(0.1), Descent(0.5)), x = 2, Δ = 1: (1 + 0.1*2) * 0.5 = 0.6",
         f"{step:.6g}")


def scheduling() -> None:
    """A cosine annealing schedule driving Momentum's learning rate, plain and Stateful."""
    section("Scheduling Optimisers")
    opt = mg.Momentum()
    schedule = Cos(λ0=1e-4, λ1=1e-2, period=10)
    etas = []
    for eta, _epoch in zip(schedule, range(1, 101), strict=False):
        opt.eta = eta
        etas.append(opt.eta)  # your training code here

    show("Cos(λ0 = 1e-4, λ1 = 1e-2, period = 10): opt.eta, epochs 1 to 10",
         ", ".join(f"{e:.2g}" for e in etas[:10]))
    periodic = np.allclose(etas[:90], etas[10:])
    show("varying between 1e-4 and 1e-2 every 10 steps",
         f"min {min(etas):.2g}, max {max(etas):.2g}, period 10: {'yes' if periodic else 'NO'}")
    show("schedule can be indexed: schedule(100)",
         f"{schedule(100):.6g} (the loop's last opt.eta: {opt.eta:.6g})")

    schedule = Stateful(Cos(λ0=1e-4, λ1=1e-2, period=10))
    stateful = []
    for _epoch in range(1, 101):
        opt.eta = next_(schedule)
        stateful.append(opt.eta)  # your training code here
    plain = Cos(λ0=1e-4, λ1=1e-2, period=10)
    show("Stateful + next!: the same 100 values",
         "yes" if stateful == [plain(t) for t in range(1, 101)] else "NO")
    show("... and it remembers where it is: next! = schedule(101)",
         f"{next_(schedule):.6g} = {plain(101):.6g}")


def decays() -> None:
    """ExpDecay, InvDecay and WeightDecay, in the page's compositions."""
    section("Decays")
    o, x, changes = mg.ExpDecay(0.1, 0.1, 1000, 1e-4), np.zeros(1), []
    for n in range(1, 5001):
        eta = o.eta
        mg.apply_(o, x, np.ones(1))
        if o.eta != eta:
            changes.append(n)
    show("ExpDecay(0.1, 0.1, 1000, 1e-4): η discounted by 0.1 every 1000 steps, till 1e-4",
         f"changed at steps {changes}, ends at {o.eta:.1g}")

    opt = mg.Optimiser(mg.ADAM(), mg.ExpDecay())
    step = mg.apply_(opt, np.zeros(1), np.array([5.0]))[0]
    show("Optimiser(ADAM(), ExpDecay()): first step ≈ ADAM's η times ExpDecay's η = 1e-6",
         f"{step:.6g}")

    # Inverse decay of the learning rate
    # with starting value 0.001 and decay coefficient 0.01.
    opt = mg.Optimiser(mg.Adam(1e-3), mg.InvDecay(1e-2))
    p = mg.param([0.0])
    mg.update_(opt, p, np.array([1.0]))
    show("Optimiser(Adam(1f-3), InvDecay(1f-2)): step 1 is eta / (1 + γ * 1) = 0.000990099",
         f"{-p[0]:.6g}, Adam's own η still {opt[0].eta:g}")

    opt = mg.Optimiser(mg.WeightDecay(1e-4), mg.ADAM())  # the page: WeigthDecay (a typo)
    show("Optimiser(WeightDecay(1f-4), ADAM())", repr(opt))
    X, Y, start = np.random.rand(3, 8), np.random.rand(2, 8), np.random.rand(2, 3)
    λ = 0.1
    Wa, Wb = mg.param(start), mg.param(start)
    with_decay = mg.Optimiser(mg.WeightDecay(λ), mg.ADAM(0.01))
    with_l2_loss = mg.ADAM(0.01)
    for _ in range(20):
        mg.update_(with_decay, Wa,
                   mg.gradient(lambda: mg.losses.mse(Wa @ X, Y), mg.params(Wa))[Wa])
        l2 = lambda: mg.losses.mse(Wb @ X, Y) + λ / 2 * mg.sum(Wb * Wb)  # noqa: E731
        mg.update_(with_l2_loss, Wb, mg.gradient(l2, mg.params(Wb))[Wb])
    show("WeightDecay(λ) first = L2 regularisation (λ = 0.1, 20 ADAM steps)",
         f"max difference {np.abs(Wa - Wb).max():.1e}")


def gradient_clipping() -> None:
    """``Optimiser(ClipValue(1e-3), ADAM(1e-3))``, then ClipValue and ClipNorm on their own."""
    section("Gradient Clipping")
    opt = mg.Optimiser(mg.ClipValue(1e-3), mg.ADAM(1e-3))
    g = np.array([5.0, -1e-4, 2e-3, -30.0])
    p, q = mg.param(np.ones(4)), mg.param(np.ones(4))
    mg.update_(opt, p, g)  # clip, then Adam ...
    mg.update_(mg.ADAM(1e-3), q, np.clip(g, -1e-3, 1e-3))  # ... is Adam on the clipped gradient
    show("Optimiser(ClipValue(1e-3), ADAM(1e-3)) = ADAM on the clipped gradient",
         f"max difference {np.abs(p - q).max():.1e}")

    w = mg.randn(10, 10)
    x = 1000 * np.random.randn(10)
    w̄ = mg.gradient(lambda: mg.sum(w @ x), mg.params(w))[w]  # huge: every row is x
    clipped = mg.apply_(mg.ClipValue(1.0), w, w̄.copy())
    show("ClipValue(1.0): clip gradients when their absolute value exceeds 1",
         f"max |g| {np.abs(w̄).max():.4g} -> {np.abs(clipped).max():.4g}")
    scaled = mg.apply_(mg.ClipNorm(1.0), w, w̄.copy())
    show("ClipNorm(1.0): clip gradients when their L2 norm exceeds 1",
         f"norm {np.linalg.norm(w̄):.4g} -> {np.linalg.norm(scaled):.4g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None,
                        help="seed NumPy's global random generator (default: unseeded)")
    parser.add_argument("--steps", type=int, default=PAGE_STEPS,
                        help="steps of the composing example (default: the page's 10^5)")
    args = parser.parse_args(argv)
    if args.steps < 0:
        parser.error("--steps must be at least 0")
    if args.seed is not None:
        np.random.seed(args.seed)

    opening()
    optimiser_reference()
    optimiser_interface()
    composing(args.steps)
    scheduling()
    decays()
    gradient_clipping()
    return 0


if __name__ == "__main__":
    sys.exit(main())

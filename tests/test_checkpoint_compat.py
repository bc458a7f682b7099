"""Checkpoints written by an earlier minigrad still load and resume bit for bit.

``tests/fixtures/checkpoint_v1_*.npz`` were written once by ``tests/fixtures/make_fixtures.py``
from the training runs in :data:`CASES` (3 steps each).  Each test rebuilds its run with today's
code: a fresh model and optimiser loaded from the file must hold exactly the parameters of the
uninterrupted run after 3 steps, and one more step must give exactly its 4th step.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import minigrad as mg
from minigrad import mx
from minigrad.schedules import Exp, Scheduler, Stateful, next_

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
STEPS = 3                      # steps taken before each fixture was saved


@pytest.fixture(autouse=True)
def _keep_global_rng():
    # The layers draw their initial weights from NumPy's global generator (then overwritten
    # by _fill): leave its state as it was, so later tests see the stream they would without
    # this file.
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def _rng(case: str, k: int) -> np.random.Generator:
    return np.random.default_rng([sum(map(ord, case)), k])


def _fill(case: str, model) -> None:
    """Deterministic parameter values (not the layers' random initialisation)."""
    for j, p in enumerate(mg.params(model)):
        p.data[...] = _rng(case, 1000 + j).standard_normal(p.shape).astype(p.dtype)


def _random_grads(case: str, k: int, ps) -> mg.IdDict:
    rng, gs = _rng(case, k), mg.IdDict()
    for p in ps:
        gs[p] = rng.standard_normal(p.shape).astype(p.dtype)
    return gs


def _mlp(case):
    m = mg.Chain(mg.Dense(3, 4, mg.relu), mg.Dense(4, 2))
    _fill(case, m)
    return m


def _mlp_step(case, m, opt, k):
    rng = _rng(case, k)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    y = rng.standard_normal((2, 5)).astype(np.float32)
    ps = mg.params(m)
    gs = mg.gradient(lambda: mg.mean((m(x) - y) ** 2), ps)
    mg.update_(opt, ps, gs)


def _build_mlp_adam():
    case = "mlp_adam"
    return _mlp(case), mg.Adam(0.01), lambda m, o, k: _mlp_step(case, m, o, k)


def _build_chain():
    case = "chain"
    opt = mg.Optimiser(mg.ClipNorm(1.0), mg.WeightDecay(1e-3), mg.Momentum())
    return _mlp(case), opt, lambda m, o, k: _mlp_step(case, m, o, k)


def _build_scheduler():
    # The optimiser argument is a dict: a v0.4 Scheduler, a v0.3 Scheduler and a Stateful.
    case = "scheduler"
    m = {"W": mg.param(np.zeros((2, 3))), "b": mg.param(np.zeros(2))}
    _fill(case, m)
    opt = {"v04": Scheduler(mg.Momentum, eta=Exp(0.1, 0.5), rho=0.9),
           "v03": Scheduler(Exp(0.05, 0.9), mg.Adam()),
           "stateful": Stateful(Exp(1.0, 0.5))}

    def step(m, o, k):
        ps = mg.params(m)
        mg.update_(o["v04"], ps, _random_grads(case, k, ps))
        mg.update_(o["v03"], ps, _random_grads(case, 100 + k, ps))
        for p in ps:        # the Stateful scales a plain step
            p.data[...] -= next_(o["stateful"]) * _random_grads(case, 200 + k, ps)[p]
    return m, opt, step


def _build_guard():
    case = "guard"
    m = _mlp(case)
    opt = mg.ApplyIfFinite(mg.Optimiser(mg.WeightDecay(0.01), mg.Adam(0.01)))

    def step(m, o, k):
        ps = mg.params(m)
        gs = _random_grads(case, k, ps)
        if k == 1:                          # one skipped step: the counters move
            gs[ps[0]][0, 0] = np.nan
        mg.update_(o, ps, gs)
    return m, opt, step


def _build_mx():
    case = "mx"
    m = {"W": mg.param(np.zeros((4, 3), np.float32)), "b": mg.param(np.zeros(4, np.float32))}
    _fill(case, m)
    opt = {"adam": mx.getupdater(mx.ADAM(η=0.01)),
           "sgd": mx.getupdater(mx.SGD(η=0.1, μ=0.9, η_sched=mx.LearningRate.Exp(0.1)))}

    def step(m, o, k):
        ps = mg.params(m)
        for name, upd in o.items():
            gs = _random_grads(case + name, k, ps)
            for i, p in enumerate(ps):
                upd(i, gs[p], p.data)
        mx.update_(o["sgd"].optimizer.eta_sched)
    return m, opt, step


def _build_shapes():
    # Shapes other than matrices (no 0-d: this file format version could not restore 0-d),
    # float64 and float32 together, an empty parameter, and a rule with a step counter.
    case = "shapes"
    m = {"a": mg.param(np.zeros(1)), "b": mg.param(np.zeros((2, 3, 1), np.float32)),
         "c": [mg.param(np.zeros((1, 5))), mg.param(np.zeros(0))]}
    _fill(case, m)
    opt = mg.Optimiser(mg.RAdam(0.01), mg.ClipValue(0.5))

    def step(m, o, k):
        ps = mg.params(m)
        mg.update_(o, ps, _random_grads(case, k, ps))
    return m, opt, step


#: name -> builder of ``(model, optimiser, step(model, optimiser, k))``.
CASES = {
    "mlp_adam": _build_mlp_adam,
    "chain": _build_chain,
    "scheduler": _build_scheduler,
    "guard": _build_guard,
    "mx": _build_mx,
    "shapes": _build_shapes,
}
#: The ``extra`` saved with each fixture.
EXTRA = {"epoch": STEPS, "note": "fixture", "array": np.arange(3.0), "pair": (1, 2.5)}


def fixture_path(name: str) -> str:
    return os.path.join(FIXTURES, f"checkpoint_v1_{name}.npz")


def _snapshot(model) -> list:
    return [np.array(p.data, copy=True) for p in mg.params(model)]


def _bitwise_equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", sorted(CASES))
def test_old_checkpoint_resumes_bitwise(name):
    model, opt, step = CASES[name]()
    for k in range(STEPS):
        step(model, opt, k)
    after_steps = _snapshot(model)
    step(model, opt, STEPS)
    after_next = _snapshot(model)

    model2, opt2, step2 = CASES[name]()
    assert not _bitwise_equal(_snapshot(model2), after_steps)      # the load has work to do
    extra = mg.load(fixture_path(name), model2, opt2)
    assert _bitwise_equal(_snapshot(model2), after_steps)
    step2(model2, opt2, STEPS)
    assert _bitwise_equal(_snapshot(model2), after_next)
    assert extra["epoch"] == STEPS and extra["note"] == "fixture"
    assert extra["pair"] == (1, 2.5)
    np.testing.assert_array_equal(extra["array"], EXTRA["array"])


def test_old_guard_checkpoint_restores_counters():
    model, opt, _ = CASES["guard"]()
    mg.load(fixture_path("guard"), model, opt)
    assert (opt.skipped, opt.consecutive) == (1, 0)


def test_old_scheduler_checkpoint_restores_counters():
    model, opt, _ = CASES["scheduler"]()
    mg.load(fixture_path("scheduler"), model, opt)
    assert [opt["v04"].state[p] for p in mg.params(model)] == [STEPS + 1] * 2
    assert opt["stateful"].state == 2 * STEPS + 1          # two parameters per step

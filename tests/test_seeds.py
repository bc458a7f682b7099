"""The opening examples of seeds 001 (Flux.Optimise) and 002 (Flux.Tracker), run as written.

Every expected value here is computed independently of minigrad, with plain NumPy from the
same random draws (``np.random.seed(s)`` followed by ``rand`` calls gives the same stream as
``np.random.RandomState(s).random_sample``), or derived by hand below.

The seeds' model: ``W`` (2×5), ``b`` (2), ``x`` (5), ``y`` (2), all uniform on [0, 1), and

    loss = Σᵢ rᵢ²,   r = W x + b - y.

Expectation of the loss ("l = loss(x, y) # ~ 3" in the seeds).  For each output i,
rᵢ = Σⱼ Wᵢⱼ xⱼ + bᵢ - yᵢ is a sum of independent terms (within one output no variable repeats):

    E[Wᵢⱼ xⱼ]   = E[W] E[x] = 1/2 · 1/2 = 1/4
    Var(Wᵢⱼ xⱼ) = E[W²] E[x²] - (1/4)² = 1/3 · 1/3 - 1/16 = 7/144
    Var(bᵢ) = Var(yᵢ) = 1/12 = 12/144
    E[rᵢ]   = 5/4 + 1/2 - 1/2 = 5/4
    Var(rᵢ) = 5 · 7/144 + 12/144 + 12/144 = 59/144
    E[rᵢ²]  = Var(rᵢ) + E[rᵢ]² = 59/144 + 225/144 = 284/144 = 71/36

and by linearity (the two outputs share ``x``, which does not matter for the mean)
E[loss] = 2 · 71/36 = 71/18 ≈ 3.944.  The distribution is wide and skewed: its standard
deviation is about 2.8, its median about 3.36, and its central 90% lies in about
[0.57, 9.33] (Monte Carlo with 4·10⁶ samples), so "~ 3" is a fair summary of one draw.

Gradient: ∂loss/∂W = 2 r xᵀ and ∂loss/∂b = 2 r.  One step of size η changes the residual to
r' = r - η (2 r x·x + 2 r) = r (1 - 2η (1 + x·x)), so the new loss is exactly
loss · (1 - 2η (1 + x·x))².  With η = 0.1 and x·x in [0, 5) the factor lies in (-0.2, 0.8):
the loss goes down for every draw, which the tests check for 2000 seeds.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import minigrad as mg

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
η = 0.1
EXPECTED_LOSS = 71 / 18
N_SEEDS = 2000


# -- the seeds, as written -----------------------------------------------------------------------

def seed_001(seed: int) -> SimpleNamespace:
    """Seed 001's opening example (Flux.Optimise), then its ``update!`` loop."""
    np.random.seed(seed)
    W = mg.rand(2, 5)
    b = mg.rand(2)
    predict = lambda x: W @ x + b  # noqa: E731
    loss = lambda x, y: mg.sum((predict(x) - y) ** 2)  # noqa: E731
    x, y = np.random.rand(5), np.random.rand(2)  # Dummy data
    l = loss(x, y)  # ~ 3
    θ = mg.params(W, b)
    grads = mg.gradient(lambda: loss(x, y), θ)
    W0, b0 = mg.data(W).copy(), mg.data(b).copy()

    η = 0.1  # Learning Rate
    for p in (W, b):
        mg.optimise.update_(p, η * grads[p])
    return SimpleNamespace(W=W, b=b, x=x, y=y, l=l, θ=θ, grads=grads, W0=W0, b0=b0,
                           l_after=loss(x, y))


def seed_002(seed: int) -> SimpleNamespace:
    """Seed 002's opening example (Flux.Tracker), then its ``sgd()``."""
    np.random.seed(seed)
    W = mg.param(np.random.rand(2, 5))
    b = mg.param(np.random.rand(2))
    predict = lambda x: W @ x + b  # noqa: E731
    loss = lambda x, y: mg.sum((predict(x) - y) ** 2)  # noqa: E731
    x, y = np.random.rand(5), np.random.rand(2)  # Dummy data
    l = loss(x, y)  # ~ 3
    θ = mg.Params([W, b])
    grads = mg.tracker.gradient(lambda: loss(x, y), θ)
    W0, b0 = mg.data(W).copy(), mg.data(b).copy()

    def sgd():
        η = 0.1  # Learning Rate
        for p in (W, b):
            mg.tracker.update_(p, -η * grads[p])

    sgd()
    return SimpleNamespace(W=W, b=b, x=x, y=y, l=l, θ=θ, grads=grads, W0=W0, b0=b0,
                           l_after=loss(x, y))


def reference(seed: int) -> SimpleNamespace:
    """The same computation in plain NumPy, with the formulas of the module docstring."""
    rng = np.random.RandomState(seed)
    W, b = rng.random_sample((2, 5)), rng.random_sample(2)
    x, y = rng.random_sample(5), rng.random_sample(2)
    r = W @ x + b - y
    gW, gb = 2 * np.outer(r, x), 2 * r
    factor = 1 - 2 * η * (1 + x @ x)
    return SimpleNamespace(W=W, b=b, x=x, y=y, r=r, l=r @ r, gW=gW, gb=gb,
                           W1=W - η * gW, b1=b - η * gb, l_after=(r @ r) * factor ** 2)


@pytest.fixture(scope="module")
def many_runs():
    """Losses before and after the update of seed 001, for seeds 0 .. N_SEEDS-1."""
    before, after = [], []
    for s in range(N_SEEDS):
        run = seed_001(s)
        before.append(float(run.l))
        after.append(float(run.l_after))
    return np.array(before), np.array(after)


# -- seed 001: Flux.Optimise form ----------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 7, 1234])
def test_seed001_loss_and_gradient_match_numpy(seed):
    run, ref = seed_001(seed), reference(seed)
    np.testing.assert_array_equal(run.W0, ref.W)  # mg.rand draws from NumPy's global stream
    np.testing.assert_array_equal(run.b0, ref.b)
    np.testing.assert_array_equal(run.x, ref.x)
    assert isinstance(run.l, (float, np.floating)) or np.ndim(run.l) == 0
    assert float(run.l) == pytest.approx(ref.l, rel=1e-12)

    assert len(run.θ) == 2 and run.θ[0] is run.W and run.θ[1] is run.b
    gW, gb = run.grads[run.W], run.grads[run.b]
    assert type(gW) is np.ndarray and type(gb) is np.ndarray
    assert gW.shape == (2, 5) and gb.shape == (2,)
    assert gW.dtype == gb.dtype == np.float64
    np.testing.assert_allclose(gW, ref.gW, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gb, ref.gb, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 7, 1234])
def test_seed001_update_subtracts_and_lowers_the_loss(seed):
    run, ref = seed_001(seed), reference(seed)
    # update_ works in place: W and b are still the same trainable arrays, now moved.
    assert run.θ[0] is run.W and run.θ[1] is run.b
    np.testing.assert_allclose(mg.data(run.W), ref.W1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mg.data(run.b), ref.b1, rtol=1e-12, atol=1e-14)
    assert float(run.l_after) == pytest.approx(ref.l_after, rel=1e-10)
    assert float(run.l_after) < float(run.l)


def test_seed001_fixed_seed_loss_in_band():
    # Seed 0 gives l = 1.5237...; the band is the central 90% of the loss's distribution,
    # recomputed here by Monte Carlo (about [0.57, 9.33]).
    rng = np.random.default_rng(20240601)
    n = 200_000
    W, b = rng.random((n, 2, 5)), rng.random((n, 2))
    x, y = rng.random((n, 5)), rng.random((n, 2))
    r = np.einsum("nij,nj->ni", W, x) + b - y
    losses = (r * r).sum(axis=1)
    lo, hi = np.quantile(losses, [0.05, 0.95])
    assert 0.5 < lo < 0.65 and 9.0 < hi < 9.7

    l = float(seed_001(0).l)
    assert l == pytest.approx(reference(0).l, rel=1e-12)
    assert l == pytest.approx(1.5237023712, abs=1e-9)
    assert lo < l < hi


def test_seed001_mean_loss_is_its_expectation(many_runs):
    before, _ = many_runs
    # The derivation of 71/18 (module docstring), checked against a NumPy Monte Carlo ...
    rng = np.random.default_rng(7)
    n = 200_000
    r = (np.einsum("nij,nj->ni", rng.random((n, 2, 5)), rng.random((n, 5)))
         + rng.random((n, 2)) - rng.random((n, 2)))
    mc = (r * r).sum(axis=1)
    assert mc.mean() == pytest.approx(EXPECTED_LOSS, abs=4 * mc.std() / math.sqrt(n))
    # ... and minigrad's losses over N_SEEDS seeds agree with it within 4 standard errors.
    stderr = before.std(ddof=1) / math.sqrt(N_SEEDS)
    assert abs(before.mean() - EXPECTED_LOSS) < 4 * stderr
    assert 2.5 < before.std(ddof=1) < 3.1  # the spread is about 2.8 (Monte Carlo)
    assert before.min() >= 0


def test_seed001_band_holds_90_percent_of_seeds(many_runs):
    before, _ = many_runs
    lo, hi = 0.569, 9.332  # central 90% (Monte Carlo, 4·10⁶ samples; see the docstring)
    inside = np.mean((before > lo) & (before < hi))
    assert abs(inside - 0.90) < 4 * math.sqrt(0.9 * 0.1 / N_SEEDS)


def test_seed001_update_lowers_the_loss_for_every_seed(many_runs):
    before, after = many_runs
    assert np.all(after < before)
    # Exactly by the factor (1 - 2η(1 + x·x))², recomputed with NumPy for a subset of seeds.
    for s in range(0, N_SEEDS, 97):
        assert after[s] == pytest.approx(reference(s).l_after, rel=1e-10)


# -- seed 002: Flux.Tracker form -----------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 3, 99])
def test_seed002_tracker_form_matches_numpy(seed):
    run, ref = seed_002(seed), reference(seed)
    np.testing.assert_array_equal(run.W0, ref.W)
    assert isinstance(run.θ, mg.Params) and list(run.θ) == [run.W, run.b]
    assert float(run.l) == pytest.approx(ref.l, rel=1e-12)
    np.testing.assert_allclose(run.grads[run.W], ref.gW, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run.grads[run.b], ref.gb, rtol=1e-12, atol=1e-14)
    # Tracker's update_ ADDS: W + (-η gW) = W - η gW.
    np.testing.assert_allclose(mg.data(run.W), ref.W1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mg.data(run.b), ref.b1, rtol=1e-12, atol=1e-14)
    assert float(run.l_after) == pytest.approx(ref.l_after, rel=1e-10)
    assert float(run.l_after) < float(run.l)


@pytest.mark.parametrize("seed", [0, 5, 42, 2023])
def test_both_forms_give_identical_gradients_and_updates(seed):
    a, b = seed_001(seed), seed_002(seed)
    np.testing.assert_array_equal(a.W0, b.W0)
    np.testing.assert_array_equal(a.x, b.x)
    assert float(a.l) == float(b.l)
    np.testing.assert_array_equal(a.grads[a.W], b.grads[b.W])
    np.testing.assert_array_equal(a.grads[a.b], b.grads[b.b])
    # optimise.update_(p, η g) subtracts, tracker.update_(p, -η g) adds: the same new values.
    np.testing.assert_array_equal(mg.data(a.W), mg.data(b.W))
    np.testing.assert_array_equal(mg.data(a.b), mg.data(b.b))
    assert float(a.l_after) == float(b.l_after)


def test_update_sign_conventions():
    p = mg.param([1.0, 2.0, 4.0])
    storage = mg.data(p)
    assert mg.optimise.update_(p, np.array([0.5, 0.5, 1.0])) is p
    np.testing.assert_array_equal(mg.data(p), [0.5, 1.5, 3.0])
    assert mg.tracker.update_(p, np.array([0.5, 0.5, 1.0])) is p
    np.testing.assert_array_equal(mg.data(p), [1.0, 2.0, 4.0])
    assert mg.data(p) is storage  # both update in place
    assert mg.update_ is mg.optimise.update_  # the top-level name is Flux.Optimise's


def test_tracker_gradient_rejects_nan_loss_flux_gradient_does_not():
    # Seed 002 uses Tracker.gradient, which raises on a NaN loss (SPEC §2); seed 001's
    # gradient (Zygote semantics) returns NaN gradients instead.
    W = mg.param(np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        mg.tracker.gradient(lambda: mg.sum(W * np.nan), mg.Params([W]))
    gs = mg.gradient(lambda: mg.sum(W * np.nan), mg.params(W))
    assert np.isnan(gs[W]).all() and gs[W].shape == (2,)
    np.testing.assert_array_equal(mg.data(W), [1.0, 1.0])


def _chain_reference(m, x):
    """Forward and backward of the seed's Chain in NumPy, for the loss sum(m(x)[0, ...])."""
    W1, b1 = (mg.data(p).astype(np.float64) for p in (m[0].weight, m[0].bias))
    W2, b2 = (mg.data(p).astype(np.float64) for p in (m[1].weight, m[1].bias))
    X = x.reshape(10, -1)
    h = 1 / (1 + np.exp(-(W1 @ X + b1[:, None])))
    z = W2 @ h + b2[:, None]
    e = np.exp(z - z.max(axis=0))
    s = e / e.sum(axis=0)
    # d s₀ / d z_k = s₀ (δ_k0 - s_k)
    dz = -s[0] * s
    dz[0] += s[0]
    dh = W2.T @ dz
    dz1 = dh * h * (1 - h)
    grads = [dz1 @ X.T, dz1.sum(axis=1), dz @ h.T, dz.sum(axis=1)]
    return s.reshape((2,) + x.shape[1:]), grads


def test_seed002_chain_and_params():
    np.random.seed(11)
    m = mg.Chain(
        mg.Dense(10, 5, mg.σ),
        mg.Dense(5, 2), mg.softmax)
    ps = mg.params(m)
    assert len(ps) == 4
    assert [p.shape for p in ps] == [(5, 10), (5,), (2, 5), (2,)]
    assert [p for p in ps] == [m[0].weight, m[0].bias, m[1].weight, m[1].bias]
    assert m[0].W is m[0].weight and m[1].b is m[1].bias  # Flux ≤0.11 field names
    assert all(p.dtype == np.float32 for p in ps)
    assert len(m) == 3 and m[2] is mg.softmax

    for x in (np.random.rand(10), np.random.rand(10, 7)):
        out = np.asarray(m(x))
        expected, grads = _chain_reference(m, x)
        assert out.shape == (2,) + x.shape[1:]
        np.testing.assert_allclose(out.sum(axis=0), 1.0, rtol=1e-6)
        np.testing.assert_allclose(out, expected, rtol=1e-5)

        gs = mg.gradient(lambda x=x: mg.sum(m(x)[0]), ps)
        for p, g in zip(ps, grads, strict=True):
            assert gs[p].shape == p.shape and gs[p].dtype == np.float32
            np.testing.assert_allclose(gs[p], g, rtol=1e-4, atol=1e-6)


# -- the example scripts -------------------------------------------------------------------------

#: The opening lines checked here do not depend on the length of seed 001's composing loop
#: (10^5 steps by default, about 15 s; tests/test_seed_scripts.py checks the later sections).
SHORT = {"seed_001_optimisers.py": ("--steps", "200")}


def run_script(name: str, *args: str, timeout: float = 120) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    args = (*args, *SHORT.get(name, ()))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


LOSS_LINES = re.compile(r"^loss before update: (\S+)\nloss after update:\s+(\S+)$", re.M)


@pytest.mark.parametrize("script", ["seed_001_optimisers.py", "seed_002_tracker.py"])
@pytest.mark.parametrize("seed", [0, 17])
def test_seed_scripts_print_the_losses(script, seed):
    out = run_script(script, "--seed", str(seed))
    match = LOSS_LINES.search(out)
    assert match, out
    before, after = float(match[1]), float(match[2])
    ref = reference(seed)
    assert before == pytest.approx(ref.l, abs=2e-10)
    assert after == pytest.approx(ref.l_after, abs=2e-10)
    assert after < before


@pytest.mark.parametrize("script", ["seed_001_optimisers.py", "seed_002_tracker.py"])
def test_seed_scripts_unseeded(script):
    match = LOSS_LINES.search(run_script(script))
    assert match
    assert 0 <= float(match[2]) < float(match[1])


def test_seed_002_script_prints_chain_params():
    out = run_script("seed_002_tracker.py", "--seed", "1")
    assert "params(m): 4 arrays with shapes (5, 10), (5,), (2, 5), (2,)" in out


EPOCH_LINE = re.compile(r"^epoch +(\d+)/(\d+)  loss (\S+)  train acc +(\S+)%  lr (\S+)  "
                        r"elapsed +(\S+)s +(\S+) steps/s$", re.M)
HELD_OUT = re.compile(r"^held-out accuracy: (\S+)% \((\d+) points\) after (\d+) epochs, "
                      r"(\d+) steps in (\S+)s$", re.M)


def test_train_mlp_short_run():
    epochs = 3
    out = run_script("train_mlp.py", "--epochs", str(epochs), "--seed", "1")
    assert "2100 training and 900 held-out points" in out
    lines = EPOCH_LINE.findall(out)
    assert [int(e) for e, *_ in lines] == list(range(1, epochs + 1))
    assert all(int(total) == epochs for _, total, *_ in lines)
    elapsed = [float(line[5]) for line in lines]
    assert elapsed == sorted(elapsed)
    for i, (_, _, loss, acc, lr, _, rate) in enumerate(lines):
        assert math.isfinite(float(loss)) and 0 < float(loss) < 2
        assert 0 <= float(acc) <= 100
        assert float(lr) == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * i / epochs)),
                                          abs=5e-5)
        assert float(rate) > 0
    # Small initial logits: the first epoch's mean loss is close to log(3) = 1.0986.
    assert abs(float(lines[0][2]) - math.log(3)) < 0.2

    held = HELD_OUT.search(out)
    assert held, out
    assert 0 <= float(held[1]) <= 100
    assert int(held[2]) == 900 and int(held[3]) == epochs
    assert int(held[4]) == epochs * math.ceil(2100 / 32)


def test_train_mlp_quiet_is_reproducible():
    args = ("--epochs", "3", "--seed", "1")
    loud = HELD_OUT.search(run_script("train_mlp.py", *args))
    outs = [run_script("train_mlp.py", *args, "--quiet") for _ in range(2)]
    for out in outs:
        assert not EPOCH_LINE.search(out)
        assert out.count("\n") == 1
    quiet = [HELD_OUT.search(out) for out in outs]
    assert loud[1] == quiet[0][1] == quiet[1][1]


def test_train_mlp_rejects_zero_epochs():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(EXAMPLES / "train_mlp.py"), "--epochs", "0"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--epochs must be at least 1" in proc.stderr


@pytest.mark.slow
def test_train_mlp_default_run_learns_the_spirals():
    # The default 60 epochs take a few seconds on a 2-core machine; seeds 0-9 all reach
    # 98-100% held-out accuracy, so 95% leaves room for platform differences in rounding.
    held = HELD_OUT.search(run_script("train_mlp.py", "--quiet"))
    assert held
    assert float(held[1]) >= 95.0
    assert int(held[3]) == 60

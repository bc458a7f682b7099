"""minigrad.mx: MXNet.jl's optimizer API, checked against values computed independently.

Expected values come from (1) the reference trajectories and scheduler tables of
``shared/reference/mxnet.md`` (§5-§7), (2) the digits MXNet printed for seed 004's example, and
(3) a float64 NumPy transcription of each formula written here, from the reference's text
(never from minigrad's code).  MXNet.jl's own scheduler tests (its ``test/unittest/optimizer.jl``)
are ported at the end of the scheduler section.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import mx

ROOT = Path(__file__).resolve().parents[1]
W0 = [1.0, 2.0, 3.0, 4.0]
G0 = [0.1, 0.2, 0.3, 0.4]


# -- an independent float64 transcription of reference/mxnet.md §3 and §7 ------------------------

def ref_normgrad(W, g, scale=0.0, clip=0.0, lam=0.0):
    g = np.array(g, dtype=np.float64)
    if scale != 0:
        g = g * scale
    if clip > 0:
        g = np.minimum(np.maximum(g, -clip), clip)
    if lam > 0:
        g = g + lam * W
    return g


def ref_trajectory(name, W, grads, *, eta=None, lam=None, clip=0.0, scale=0.0, mu=0.0,
                   beta1=None, beta2=0.999, eps=None, rho=None, etas=None):
    """W after each step of MXNet.jl's optimizer ``name`` (defaults of the §7 table).

    ``etas``: the learning rate of each step (a schedule), else ``eta`` at every step.
    """
    defaults = {  # name: (η, λ, β1, ϵ, ρ)
        "SGD": (0.01, 1e-4, None, None, None), "ADAM": (0.001, 1e-5, 0.9, 1e-8, None),
        "AdaGrad": (0.1, 1e-5, None, 1e-6, None), "AdaDelta": (1.0, 1e-5, None, 1e-6, 0.95),
        "AdaMax": (0.002, 1e-5, 0.9, 1e-8, None), "RMSProp": (0.001, 1e-5, None, 1e-8, 0.9),
        "Nadam": (0.001, 1e-5, 0.99, 1e-8, None),
    }[name]
    eta = defaults[0] if eta is None else eta
    lam = defaults[1] if lam is None else lam
    b1 = defaults[2] if beta1 is None else beta1
    eps = defaults[3] if eps is None else eps
    rho = defaults[4] if rho is None else rho
    b2 = beta2
    W = np.array(W, dtype=np.float64)
    z = np.zeros_like(W)
    s = {"nu": z.copy(), "m": z.copy(), "v": z.copy(), "x": z.copy(), "dx": z.copy(),
         "u": z.copy(), "n": z.copy(), "b1t": b1, "b2t": b2, "pimu": 1.0, "t": 1}
    out = []
    for k, grad in enumerate(grads):
        η = etas[k] if etas is not None else eta
        g = ref_normgrad(W, grad, scale, clip, lam)
        if name == "SGD" and mu == 0:
            W = W - η * g
        elif name == "SGD":
            s["nu"] = mu * s["nu"] - η * g
            W = W + s["nu"]
        elif name == "ADAM":
            s["m"] = b1 * s["m"] + (1 - b1) * g
            s["v"] = b2 * s["v"] + (1 - b2) * g ** 2
            a = math.sqrt(1 - s["b2t"]) / (1 - s["b1t"])
            s["b1t"] *= b1
            s["b2t"] *= b2
            W = W - η * a * s["m"] / (np.sqrt(s["v"]) + eps)
        elif name == "AdaGrad":
            s["x"] = s["x"] + g ** 2
            W = W - η * g / np.sqrt(s["x"] + eps)
        elif name == "AdaDelta":
            s["x"] = rho * s["x"] + (1 - rho) * g ** 2
            d = g * np.sqrt(s["dx"] + eps) / np.sqrt(s["x"] + eps)
            W = W - η * d
            s["dx"] = rho * s["dx"] + (1 - rho) * d ** 2
        elif name == "AdaMax":
            s["m"] = b1 * s["m"] + (1 - b1) * g
            s["u"] = np.maximum(b2 * s["u"], np.abs(g))
            W = W - (η / (1 - s["b1t"])) * s["m"] / (s["u"] + eps)
            s["b1t"] *= b1
        elif name == "RMSProp":
            s["x"] = rho * s["x"] + (1 - rho) * g ** 2
            W = W - η * g / np.sqrt(s["x"] + eps)
        elif name == "Nadam":
            t = s["t"]
            mu_t = b1 * (1 - 0.5 * 0.96 ** (t * 0.004))
            mu_t1 = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * 0.004))
            s["t"] += 1
            s["pimu"] *= mu_t
            pimu_next = s["pimu"] * mu_t1
            gp = g / (1 - s["pimu"])
            s["m"] = b1 * s["m"] + (1 - b1) * g
            mhat = s["m"] / (1 - pimu_next)
            s["n"] = b2 * s["n"] + (1 - b2) * g ** 2
            nhat = s["n"] / (1 - s["b2t"])
            s["b2t"] *= b2
            mbar = (1 - mu_t) * gp + mu_t1 * mhat
            W = W - η * mbar / (np.sqrt(nhat) + eps)
        out.append(W.copy())
    return out


def run(opt, W, grads, index=1):
    """W (a float64 copy) after each step of ``getupdater(opt)`` on a fresh copy of ``W``."""
    descend_ = mx.getupdater(opt)
    W = np.array(W, dtype=np.float64)
    out = []
    for g in grads:
        descend_(index, np.array(g, dtype=W.dtype), W)
        out.append(W.astype(np.float64))
    return out


# -- seed 004 --------------------------------------------------------------------------------------

SEED_DIGITS = "[-0.00100005 -0.00200009 -0.00300002 -0.00400019]"


def test_seed_004_prints_mxnet_digits():
    opt = mx.SGD(η=10)
    assert repr(opt) == ("SGD(eta=10, mu=0.0, clip=0, scale=0, lambda_=0.0001, "
                         "eta_sched=LearningRate.Fixed(10.0), mu_sched=Momentum.Null())")
    decend_ = mx.getupdater(opt)
    W = mx.NDArray([1, 2, 3, 4])
    grad = mx.NDArray([.1, .2, .3, .4])
    out = decend_(1, grad, W)
    assert out is W and W.dtype == np.float32
    assert str(W) == SEED_DIGITS
    # MXNet's Float32 output, as the seed shows it (-0.0010000467f0 ...), to the last bit:
    expected = np.array([-0.0010000467, -0.0020000935, -0.003000021, -0.004000187], np.float32)
    assert np.array_equal(W, expected)
    # ... which is float32 arithmetic of g = ∇ + f32(1e-4)·W, W + (-10)·g (reference §8)
    W0f, gf = np.float32([1, 2, 3, 4]), np.float32([.1, .2, .3, .4])
    g = gf + np.float32(1e-4) * W0f
    assert np.array_equal(W, W0f + np.float32(-10) * g)
    assert np.array_equal(grad, gf)   # descend_ leaves the gradient as it was (decided quirk)


def test_seed_004_example_script_prints_the_digits():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "seed_004_mx.py")],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert SEED_DIGITS in out.splitlines()
    assert "-0.0010000467f0 -0.0020000935f0 -0.003000021f0 -0.004000187f0" in out


def test_kvstore_doctest_example():
    # src/kvstore.jl: W = zeros(2,3), SGD(η=.2), ∇ = ones gives W = -0.2 (λW = 0 as W = 0)
    W = np.zeros((2, 3))
    mx.getupdater(mx.SGD(η=.2))(1, np.ones((2, 3)), W)
    assert np.allclose(W, -0.2, rtol=0, atol=1e-15)


# -- reference trajectories (§7) ------------------------------------------------------------------

TABLE = [  # (name, optimizer, W[0] after step 1, after step 2), reference/mxnet.md §7
    ("SGD", lambda: mx.SGD(), 0.998999, 0.997998001),
    ("SGDm", lambda: mx.SGD(η=.1, μ=.9), 0.98999, 0.9709711001),
    ("ADAM", lambda: mx.ADAM(), 0.9990000032, 0.9980000054),
    ("AdaGrad", lambda: mx.AdaGrad(), 0.9000049986, 0.8292964414),
    ("AdaDelta", lambda: mx.AdaDelta(), 0.9955323286, 0.9910078008),
    ("AdaMax", lambda: mx.AdaMax(), 0.9980000002, 0.9960000002),
    ("RMSProp", lambda: mx.RMSProp(), 0.9968377381, 0.9945435872),
    ("Nadam", lambda: mx.Nadam(), 0.9989934404, 0.9983134348),
]


@pytest.mark.parametrize("name, make, step1, step2", TABLE, ids=[t[0] for t in TABLE])
def test_reference_two_steps(name, make, step1, step2):
    out = run(make(), W0, [G0, G0])
    assert out[0][0] == pytest.approx(step1, rel=1e-7, abs=0)
    assert out[1][0] == pytest.approx(step2, rel=1e-7, abs=0)
    # every element, five steps, against the transcription
    kw = {"eta": .1, "mu": .9} if name == "SGDm" else {}
    ref = ref_trajectory(name.rstrip("m") if name == "SGDm" else name, W0, [G0] * 5, **kw)
    got = run(make(), W0, [G0] * 5)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=0)


OPTS = ["SGD", "ADAM", "AdaGrad", "AdaDelta", "AdaMax", "RMSProp", "Nadam"]


@pytest.mark.parametrize("name", OPTS)
def test_random_trajectories_with_scale_clip_and_decay(name):
    rng = np.random.default_rng(OPTS.index(name))
    W = rng.normal(size=(3, 5))
    grads = [rng.normal(scale=3, size=(3, 5)) for _ in range(6)]
    kw = dict(scale=0.5, clip=1.0, lam=0.01)
    opt = getattr(mx, name)(scale=0.5, clip=1.0, λ=0.01)
    if name == "SGD":
        opt = mx.SGD(scale=0.5, clip=1.0, λ=0.01, μ=0.8, η=0.05)
        kw.update(mu=0.8, eta=0.05)
    ref = ref_trajectory(name, W, grads, **kw)
    got = run(opt, W, grads)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", OPTS)
def test_float32_stays_float32_and_tracks_float64(name):
    rng = np.random.default_rng(7)
    W = rng.normal(size=40).astype(np.float32)
    grads = [rng.normal(size=40).astype(np.float32) for _ in range(4)]
    descend_ = mx.getupdater(getattr(mx, name)())
    W32 = W.copy()
    for g in grads:
        descend_(0, g, W32)
    assert W32.dtype == np.float32
    state = descend_.states[0]
    assert all(a.dtype == np.float32 for a in state.arrays)
    ref = ref_trajectory(name, W.astype(np.float64), [g.astype(np.float64) for g in grads])[-1]
    np.testing.assert_allclose(W32, ref, rtol=2e-5, atol=2e-6)


def test_sgd_float32_is_mxnets_float32_arithmetic_bit_for_bit():
    # NDArray ops: ν .*= μ; ν .+= -η .* ∇; W .+= ν, with every scalar rounded to float32.
    rng = np.random.default_rng(3)
    W = rng.normal(size=64).astype(np.float32)
    grads = [rng.normal(size=64).astype(np.float32) for _ in range(3)]
    f = np.float32
    Wr, nu = W.copy(), np.zeros(64, np.float32)
    for g in grads:
        g = np.minimum(np.maximum(g * f(0.5), -f(1.5)), f(1.5)) + f(1e-4) * Wr
        nu = f(0.9) * nu
        nu = nu + (-f(0.1)) * g
        Wr = Wr + nu
    got = W.copy()
    descend_ = mx.getupdater(mx.SGD(η=0.1, μ=0.9, scale=0.5, clip=1.5))
    for g in grads:
        descend_(0, g, got)
    assert np.array_equal(got, Wr)


def test_large_arrays_use_the_parallel_kernel_with_the_same_result():
    n = 70_000   # above minigrad.optimise.kernels.PARALLEL_THRESHOLD
    rng = np.random.default_rng(11)
    W = rng.normal(size=n)
    grads = [rng.normal(size=n) for _ in range(2)]
    ref = ref_trajectory("ADAM", W, grads)
    got = run(mx.ADAM(), W, grads)
    np.testing.assert_allclose(got[-1], ref[-1], rtol=1e-12, atol=0)


# -- normgrad_ -------------------------------------------------------------------------------------

def test_normgrad_order_scale_clip_decay_in_place():
    W = np.array([1.0, -2.0, 3.0, 0.5])
    grad = np.array([10.0, -10.0, 1.0, -0.2])
    opt = mx.SGD(scale=0.5, clip=2, λ=0.1)
    out = mx.normgrad_(opt, W, grad)
    assert out is grad
    # scale: [5, -5, .5, -.1]; clip: [2, -2, .5, -.1]; + .1·W: [2.1, -2.2, .8, -.05]
    np.testing.assert_allclose(grad, [2.1, -2.2, 0.8, -0.05], rtol=1e-15)
    assert np.array_equal(W, [1.0, -2.0, 3.0, 0.5])


def test_normgrad_switches_off_at_zero():
    W, grad = np.array([3.0, 4.0]), np.array([100.0, -7.0])
    mx.normgrad_(mx.ADAM(scale=0, clip=0, λ=0), W, grad)
    assert np.array_equal(grad, [100.0, -7.0])      # scale 0 means "do not rescale"
    mx.normgrad_(mx.ADAM(scale=-2, clip=0, λ=0), W, grad)
    assert np.array_equal(grad, [-200.0, 14.0])     # negative scale is allowed, as in MXNet.jl
    grad = np.array([np.nan, np.inf, -np.inf])
    mx.normgrad_(mx.ADAM(clip=1, λ=0), np.zeros(3), grad)
    assert np.isnan(grad[0]) and list(grad[1:]) == [1.0, -1.0]


@settings(max_examples=40)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=1,
                max_size=30),
       st.sampled_from([0.0, 0.25, -3.0, 1.0]), st.sampled_from([0.0, 0.5, 7.0]),
       st.sampled_from([0.0, 1e-4, 0.3]), st.sampled_from([np.float32, np.float64]))
def test_normgrad_matches_the_formula(pairs, scale, clip, lam, dtype):
    W = np.array([p[0] for p in pairs], dtype=dtype)
    grad = np.array([p[1] for p in pairs], dtype=dtype)
    ref = ref_normgrad(W.astype(np.float64), grad.astype(np.float64), scale, clip, lam)
    mx.normgrad_(mx.SGD(scale=scale, clip=clip, λ=lam), W, grad)
    assert grad.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(grad, ref, rtol=tol, atol=tol)


def test_normgrad_errors():
    with pytest.raises(ValueError, match=r"normgrad_: grad has shape \(3,\) but W has shape"):
        mx.normgrad_(mx.SGD(), np.zeros(2), np.zeros(3))
    with pytest.raises(TypeError, match="grad has dtype float32 but W has dtype float64"):
        mx.normgrad_(mx.SGD(), np.zeros(2), np.zeros(2, np.float32))
    frozen = np.ones(2)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="grad is read-only"):
        mx.normgrad_(mx.SGD(), np.zeros(2), frozen)
    with pytest.raises(TypeError, match="has no scale, clip, lambda_"):
        mx.normgrad_(object(), np.zeros(2), np.zeros(2))


# -- descend_: state by index, checks, nothing changed on error ------------------------------------

def test_state_is_keyed_by_integer_index():
    descend_ = mx.getupdater(mx.ADAM(λ=0))
    A, B = np.ones(3), np.ones((2, 2))
    descend_(0, np.full(3, 0.5), A)
    descend_(7, np.full((2, 2), -1.0), B)
    descend_(0, np.full(3, 0.5), A)
    assert sorted(descend_.states) == [0, 7]
    assert descend_.states[0].beta1_t == pytest.approx(0.9 ** 3)
    assert descend_.states[7].beta1_t == pytest.approx(0.9 ** 2)
    ref_a = ref_trajectory("ADAM", np.ones(3), [np.full(3, 0.5)] * 2, lam=0)[-1]
    ref_b = ref_trajectory("ADAM", np.ones((2, 2)), [np.full((2, 2), -1.0)], lam=0)[-1]
    np.testing.assert_allclose(A, ref_a, rtol=1e-14)
    np.testing.assert_allclose(B, ref_b, rtol=1e-14)
    np.testing.assert_allclose(descend_.states[0].m, 0.1 * 0.5 * (1 + 0.9), rtol=1e-14)
    # numpy integers are indices too; bools and other types are not
    descend_(np.int64(7), np.zeros((2, 2)), B)
    for bad in (True, 1.0, "0", None):
        with pytest.raises(TypeError, match="index must be an int"):
            descend_(bad, np.zeros(3), A)


def _snapshot(descend_, W):
    return (np.array(W, copy=True),
            {k: ([a.copy() for a in s.arrays], list(s.scalars)) for k, s in
             descend_.states.items()})


def _same(before, descend_, W):
    W0_, states = before
    assert np.array_equal(np.asarray(W), W0_)
    assert set(states) == set(descend_.states)
    for k, (arrays, scalars) in states.items():
        s = descend_.states[k]
        assert all(np.array_equal(a, b) for a, b in zip(arrays, s.arrays, strict=True))
        assert scalars == s.scalars


@pytest.mark.parametrize("name", OPTS)
def test_bad_calls_raise_and_change_nothing(name):
    descend_ = mx.getupdater(getattr(mx, name)())
    W = np.linspace(1, 2, 6).reshape(2, 3)
    descend_(0, np.ones((2, 3)), W)
    before = _snapshot(descend_, W)
    with pytest.raises(ValueError, match=r"descend_: grad has shape \(3, 2\) but W has shape "
                                         r"\(2, 3\)"):
        descend_(0, np.ones((3, 2)), W)
    with pytest.raises(TypeError, match="descend_: grad has dtype float32 but W has dtype "
                                        "float64; convert one of them"):
        descend_(0, np.ones((2, 3), np.float32), W)
    with pytest.raises(TypeError, match="descend_: grad must be a NumPy array"):
        descend_(0, [[1.0] * 3] * 2, W)
    with pytest.raises(ValueError, match="the state of index 0 was made for shape"):
        descend_(0, np.ones(4), np.ones(4))
    with pytest.raises(TypeError, match="W has dtype int64"):
        descend_(1, np.ones(2, np.int64), np.ones(2, np.int64))
    with pytest.raises(TypeError, match="W must be a NumPy array or a trainable array"):
        descend_(1, np.ones(2), [1.0, 2.0])
    frozen = np.ones(2)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="W .* is read-only"):
        descend_(2, np.ones(2), frozen)
    _same(before, descend_, W)


def test_a_failing_first_step_makes_no_state():
    descend_ = mx.getupdater(mx.SGD(μ=0.9))
    with pytest.raises(ValueError):
        descend_(3, np.ones(2), np.ones(3))
    assert descend_.states == {}


def test_non_finite_schedule_value_raises_before_any_change():
    class Broken(mx.AbstractLearningRateScheduler):
        def get(self):
            return math.nan
    opt = mx.RMSProp()
    descend_ = mx.getupdater(opt)
    W = np.ones(3)
    descend_(0, np.ones(3), W)
    before = _snapshot(descend_, W)
    opt.eta_sched = Broken()
    with pytest.raises(ValueError, match="not all finite"):
        descend_(0, np.ones(3), W)
    _same(before, descend_, W)


def test_grad_is_left_alone_and_params_and_views_work():
    descend_ = mx.getupdater(mx.SGD(η=0.5, λ=0.1))
    grad = np.array([1.0, 2.0])
    p = mg.param([1.0, 1.0])
    assert descend_(0, grad, p) is p
    np.testing.assert_allclose(np.asarray(p), [1 - 0.5 * 1.1, 1 - 0.5 * 2.1], rtol=1e-15)
    assert np.array_equal(grad, [1.0, 2.0])
    # a non-contiguous W (a column of a matrix) is updated in place
    M = np.ones((3, 2))
    descend_(1, np.ones(3), M[:, 0])
    np.testing.assert_allclose(M, [[1 - 0.5 * 1.1, 1]] * 3, rtol=1e-15)


def test_update_and_create_state_protocol():
    opt = mx.AdaGrad()
    W = np.array([1.0, 2.0, 3.0, 4.0])
    state = opt.create_state(1, W)
    assert isinstance(state, mx.MxState) and np.array_equal(state.x, np.zeros(4))
    assert mx.update_(opt, 1, W, np.array(G0), state) is W      # weight before gradient
    assert W[0] == pytest.approx(0.9000049986, rel=1e-7)
    np.testing.assert_allclose(state.x, (np.array(G0) + 1e-5 * np.array(W0)) ** 2, rtol=1e-14)
    with pytest.raises(AttributeError, match="has x"):
        state.m    # noqa: B018


def test_user_defined_optimizer_works_with_getupdater():
    class Sign(mx.AbstractOptimizer):
        def __init__(self):
            self.scale, self.clip, self.lambda_ = 0, 0, 0.0
            self.created = []

        def create_state(self, index, W):
            self.created.append(index)
            return {"steps": 0}

        def update_(self, index, W, grad, state):
            state["steps"] += 1
            W -= 0.1 * np.sign(grad)
            return state["steps"]

    opt = Sign()
    descend_ = mx.getupdater(opt)
    W = np.zeros(2)
    assert descend_(4, np.array([1.0, -1.0]), W) == 1
    assert descend_(4, np.array([1.0, -1.0]), W) == 2
    assert opt.created == [4]
    np.testing.assert_allclose(W, [-0.2, 0.2])
    g = np.array([2.0, 3.0])
    mx.normgrad_(opt, W, g)         # normgrad_ works on any object with scale, clip, λ
    assert np.array_equal(g, [2.0, 3.0])
    with pytest.raises(TypeError, match="expected an mx optimizer"):
        mx.getupdater(mg.Descent())
    # ... and fit runs it (it has no η_sched to tick; its scale 0 becomes 1/batch_size)
    p = mg.param([0.0, 0.0])
    mx.fit(lambda x: mg.sum(p * x), [p], [np.array([1.0, -1.0])], opt, n_epoch=3)
    assert opt.scale == 1.0 and list(np.asarray(p)) == pytest.approx([-0.3, 0.3])


# -- quirks ----------------------------------------------------------------------------------------

def test_adam_freezes_eta_at_state_creation_unless_told_not_to():
    grads = [G0] * 3
    etas = [0.1 * 0.5 ** k for k in range(3)]

    def with_schedule(**kw):
        opt = mx.ADAM(η_sched=mx.LearningRate.Exp(0.1, γ=0.5), **kw)
        descend_, W, out = mx.getupdater(opt), np.array(W0), []
        for g in grads:
            descend_(0, np.array(g), W)
            mx.update_(opt.eta_sched)           # what fit does at the end of each epoch
            out.append(W.copy())
        return out, descend_

    frozen, descend_ = with_schedule()
    assert descend_.states[0].eta == 0.1
    for r, g in zip(ref_trajectory("ADAM", W0, grads, eta=0.1), frozen, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12)
    following, _ = with_schedule(freeze_eta=False)
    for r, g in zip(ref_trajectory("ADAM", W0, grads, etas=etas), following, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12)
    assert not np.allclose(frozen[-1], following[-1])


def test_other_optimizers_follow_the_schedule_at_every_step():
    opt = mx.RMSProp(η_sched=mx.LearningRate.Inv(0.01))
    descend_, W, out = mx.getupdater(opt), np.array(W0), []
    for _ in range(3):
        descend_(0, np.array(G0), W)
        mx.update_(opt.eta_sched)
        out.append(W.copy())
    etas = [0.01 * (1 + 0.9 * t) ** -0.5 for t in range(3)]
    ref = ref_trajectory("RMSProp", W0, [G0] * 3, etas=etas)
    np.testing.assert_allclose(out[-1], ref[-1], rtol=1e-12)


def test_sgd_momentum_is_decided_by_the_scheduler_type():
    assert isinstance(mx.SGD().mu_sched, mx.Momentum.Null)
    assert isinstance(mx.SGD(μ=0.9).mu_sched, mx.Momentum.Fixed)
    # an explicit μ_sched overrides μ
    opt = mx.SGD(η=0.1, μ=0.5, μ_sched=mx.Momentum.Fixed(0.9))
    np.testing.assert_allclose(run(opt, W0, [G0, G0])[1][0], 0.9709711001, rtol=1e-9)
    descend_ = mx.getupdater(mx.SGD(μ_sched=mx.Momentum.Null(), μ=0.9))
    descend_(0, np.ones(2), np.ones(2))
    assert descend_.states[0].arrays == ()          # MXNet.jl's state `nothing`
    descend_ = mx.getupdater(mx.SGD(μ=0.9))
    descend_(0, np.ones(2), np.ones(2))
    assert descend_.states[0].nu.shape == (2,)


def test_nadam_keeps_its_counters_per_index():
    descend_ = mx.getupdater(mx.Nadam())
    A, B = np.array(W0), np.array(W0)
    for _ in range(3):
        descend_(0, np.array(G0), A)
    descend_(1, np.array(G0), B)
    assert descend_.states[0].t == 4 and descend_.states[1].t == 2
    mu = mx.Momentum.NadamScheduler(μ=0.99)
    assert descend_.states[0].pi_mu == pytest.approx(
        mu.get(1)[0] * mu.get(2)[0] * mu.get(3)[0], rel=1e-15)
    np.testing.assert_allclose(A, ref_trajectory("Nadam", W0, [G0] * 3)[-1], rtol=1e-12)
    np.testing.assert_allclose(B, ref_trajectory("Nadam", W0, [G0])[-1], rtol=1e-12)


def test_setting_eta_or_mu_takes_effect_at_the_next_step():
    opt = mx.SGD(η=0.1, λ=0)
    opt.eta = 0.5
    assert opt.eta_sched.get() == 0.5 and opt.η == 0.5
    W = np.ones(1)
    mx.getupdater(opt)(0, np.ones(1), W)
    assert W[0] == pytest.approx(0.5)
    opt.μ = 0.9
    assert isinstance(opt.mu_sched, mx.Momentum.Fixed) and opt.mu_sched.mu == 0.9
    sched = mx.LearningRate.Exp(0.3)
    opt.eta_sched = sched
    opt.eta = 0.2                       # a decaying schedule is left alone
    assert opt.eta_sched is sched
    with pytest.raises(ValueError, match=r"SGD: η \(eta\) must be > 0, got -1"):
        opt.eta = -1
    assert opt.eta == 0.2


# -- construction: keywords, defaults, errors -----------------------------------------------------

def test_defaults_and_keyword_spellings():
    o = mx.SGD()
    assert (o.eta, o.mu, o.clip, o.scale, o.lambda_) == (0.01, 0.0, 0, 0, 0.0001)
    a = mx.ADAM()
    assert (a.eta, a.beta1, a.beta2, a.epsilon, a.lambda_, a.freeze_eta) == (
        0.001, 0.9, 0.999, 1e-8, 1e-5, True)
    assert (mx.AdaGrad().eta, mx.AdaGrad().epsilon) == (0.1, 1e-6)
    d = mx.AdaDelta()
    assert (d.eta, d.rho, d.epsilon) == (1.0, 0.95, 1e-6)
    assert (mx.AdaMax().eta, mx.RMSProp().eta, mx.RMSProp().rho) == (0.002, 0.001, 0.9)
    n = mx.Nadam()
    assert (n.eta, n.beta1, n.beta2, n.lambda_) == (0.001, 0.99, 0.999, 1e-5)
    assert n.mu_sched.mu == 0.99 and n.eta_sched.get() == 0.001
    assert mx.Nadam(β1=0.9).mu_sched.mu == 0.9
    # Greek and ASCII
    assert mx.ADAM(η=0.1, β1=0.5, β2=0.6, ϵ=1e-3, λ=0.2).beta2 == 0.6
    assert mx.ADAM(eta=0.1, beta1=0.5, epsilon=1e-3, lambda_=0.2).epsilon == 1e-3
    assert mx.ADAM(**{"ε": 1e-4}).epsilon == 1e-4        # ϵ as Python normalises it
    assert mx.RMSProp(ρ=0.5).rho == mx.RMSProp(rho=0.5).rho == 0.5
    assert mx.SGD(μ=0.9).mu == mx.SGD(mu=0.9).mu
    assert mx.SGD(η_sched=mx.LearningRate.Exp(1.0)).eta_sched.gamma == 0.9
    assert mx.SGD(eta_sched=mx.LearningRate.Exp(1.0)).eta_sched.gamma == 0.9


@pytest.mark.parametrize("make,message", [
    (lambda: mx.LearningRate.Fixed(0.1, η=0.2), r"LearningRate.Fixed got η twice"),
    (lambda: mx.LearningRate.Fixed(), r"LearningRate.Fixed needs the learning rate η, e.g. "
                                      r"Fixed\(0.01\)"),
    (lambda: mx.LearningRate.Exp(0.1, η0=0.2), r"LearningRate.Exp got η₀ twice"),
    (lambda: mx.LearningRate.Inv(), r"LearningRate.Inv needs the initial learning rate η₀, "
                                    r"e.g. LearningRate.Inv\(0.1\)"),
    (lambda: mx.Momentum.Fixed(0.5, μ=0.2), r"Momentum.Fixed got μ twice"),
    (lambda: mx.Momentum.Fixed(), r"Momentum.Fixed needs the momentum μ, e.g. Fixed\(0.9\)"),
])
def test_scheduler_value_given_twice_or_not_at_all(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_construction_errors_name_the_parameter():
    with pytest.raises(TypeError, match="SGD takes keyword arguments only"):
        mx.SGD(0.1)
    with pytest.raises(TypeError, match="SGD got an unexpected keyword 'beta1'; it takes eta"):
        mx.SGD(beta1=0.9)
    with pytest.raises(TypeError, match="got eta twice"):
        mx.SGD(eta=0.1, η=0.2)
    with pytest.raises(TypeError, match=r"η_sched \(eta_sched\) must be a learning rate"):
        mx.SGD(η_sched=0.1)
    with pytest.raises(TypeError, match=r"μ_sched \(mu_sched\) must be a Momentum.Nadam"):
        mx.Nadam(μ_sched=mx.Momentum.Fixed(0.9))
    with pytest.raises(TypeError, match="freeze_eta must be True or False"):
        mx.ADAM(freeze_eta=1)
    with pytest.raises(TypeError, match=r"η \(eta\) must be a real number, got '0.1'"):
        mx.SGD(η="0.1")


BAD = [  # (optimizer, keyword, bad value, message)
    *[(n, "η", v, r"η \(eta\) must be > 0") for n in OPTS for v in (0, -0.1)],
    *[(n, "clip", -1, "clip must be >= 0") for n in OPTS],
    *[(n, "λ", -1e-4, r"λ \(lambda_\) must be >= 0") for n in OPTS],
    *[(n, b, v, rf"{b} \(beta{b[-1]}\) must be in \[0, 1\)")
      for n in ("ADAM", "AdaMax", "Nadam") for b in ("β1", "β2") for v in (1.0, -0.1, 1.5)],
    *[(n, "ρ", v, r"ρ \(rho\) must be in \(0, 1\)")
      for n in ("AdaDelta", "RMSProp") for v in (0.0, 1.0, -0.5)],
    *[(n, "ϵ", v, r"ϵ \(epsilon\) must be > 0")
      for n in ("ADAM", "AdaGrad", "AdaDelta", "AdaMax", "RMSProp", "Nadam") for v in (0, -1)],
    ("SGD", "μ", -0.5, r"μ \(mu\) must be >= 0"),
    ("SGD", "η", math.nan, r"η \(eta\) must be a finite number, got nan"),
    ("ADAM", "scale", math.inf, "scale must be a finite number"),
]


@pytest.mark.parametrize("name, key, value, message", BAD,
                         ids=[f"{n}-{k}={v}" for n, k, v, _ in BAD])
def test_invalid_hyperparameters_raise_at_construction(name, key, value, message):
    with pytest.raises(ValueError, match=f"{name}: {message}"):
        getattr(mx, name)(**{key: value})


# -- schedulers (§5, §6) ---------------------------------------------------------------------------

def test_learning_rate_exp_and_inv_values():
    exp, inv = mx.LearningRate.Exp(1), mx.LearningRate.Inv(1)
    exp_values, inv_values = [], []
    for _ in range(6):
        exp_values.append(mx.get(exp))
        inv_values.append(mx.get(inv))
        mx.update_(exp)
        mx.update_(inv)
    assert exp_values == pytest.approx([1, .9, .81, .729, .6561, .59049], rel=1e-12)
    assert inv_values == pytest.approx(
        [1, 0.725476, 0.597614, 0.519875, 0.466252, 0.426401], rel=0, abs=5e-7)  # 6 decimals
    # the independent formulas, to 1e-7 relative
    for t in range(6):
        assert exp_values[t] == pytest.approx(0.9 ** t, rel=1e-7)
        assert inv_values[t] == pytest.approx((1 + 0.9 * t) ** -0.5, rel=1e-7)
    assert mx.LearningRate.Inv(2.0, γ=0.5, p=2, t=3).get() == pytest.approx(2 * 2.5 ** -2)
    assert mx.LearningRate.Exp(2.0, gamma=0.5, t=3).get() == 0.25


def test_news_exp_example():
    sched = mx.LearningRate.Exp(.1)
    assert mx.get(sched) == 0.1
    mx.update_(sched)
    assert mx.get(sched) == 0.09000000000000001
    assert sched.t == 1
    mx.update_(sched)
    mx.update_(sched)
    assert sched.t == 3


def test_nadam_scheduler_values():
    n = mx.Momentum.NadamScheduler(μ=0.99)
    mu1, mu2 = mx.get(n, 1)
    mu2b, mu3 = mx.Momentum.get(n, 2)
    assert mu2 == mu2b
    assert [mu1, mu2, mu3] == pytest.approx([0.4950808, 0.4951616, 0.4952424], abs=5e-8)
    for t, value in ((1, mu1), (2, mu2), (3, mu3)):
        assert value == pytest.approx(0.99 * (1 - 0.5 * 0.96 ** (t * 0.004)), rel=1e-7)
    other = mx.Momentum.NadamScheduler(mu=0.9, delta=0.1, gamma=1.0, alpha=0.5)
    assert other.get(2)[1] == pytest.approx(0.9 * (1 - 0.5 ** 0.3), rel=1e-12)
    with pytest.raises(TypeError, match="needs the iteration count"):
        mx.get(n)


def test_scheduler_validation():
    for make, message in [
        (lambda: mx.LearningRate.Exp(1, γ=1), r"LearningRate.Exp: γ \(gamma\) must be in \(0, 1\)"),
        (lambda: mx.LearningRate.Exp(1, γ=0), r"γ \(gamma\) must be in \(0, 1\), got 0"),
        (lambda: mx.LearningRate.Inv(1, p=-1), "LearningRate.Inv: p must be >= 0, got -1"),
        (lambda: mx.LearningRate.Fixed(0), r"LearningRate.Fixed: η \(eta\) must be > 0"),
        (lambda: mx.LearningRate.Exp(-1), r"η₀ \(eta0\) must be > 0"),
        (lambda: mx.Momentum.NadamScheduler(μ=1), r"NadamScheduler: μ \(mu\) must be in \[0, 1\)"),
        (lambda: mx.Momentum.NadamScheduler(δ=-1), r"δ \(delta\) must be >= 0"),
        (lambda: mx.Momentum.NadamScheduler(γ=1.5), r"γ \(gamma\) must be in \[0, 1\]"),
        (lambda: mx.Momentum.NadamScheduler(α=-0.1), r"α \(alpha\) must be in \[0, 1\]"),
        (lambda: mx.Momentum.Fixed(-0.1), r"Momentum.Fixed: μ \(mu\) must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(TypeError, match="t must be an int"):
        mx.LearningRate.Exp(1, t=0.5)
    with pytest.raises(TypeError, match="unexpected keyword 'p'"):
        mx.LearningRate.Exp(1, p=2)
    with pytest.raises(TypeError, match="update_: expected a scheduler"):
        mx.update_(mx.SGD())


# MXNet.jl's test/unittest/optimizer.jl, ported.

def test_mxnet_jl_learning_rate_fixed():
    sched = mx.LearningRate.Fixed(.42)
    assert mx.get(sched) == .42
    mx.update_(sched)
    assert mx.get(sched) == .42


@pytest.mark.parametrize("make", [lambda: mx.LearningRate.Exp(1),
                                  lambda: mx.LearningRate.Inv(1)], ids=["Exp", "Inv"])
def test_mxnet_jl_check_eta_decay(make):
    sched = make()
    η = mx.get(sched)
    assert η == 1
    for _ in range(5):
        mx.update_(sched)
        η_new = mx.get(sched)
        assert η_new < η
        η = η_new


def test_mxnet_jl_momentum():
    assert mx.get(mx.Momentum.Null()) == 0
    assert mx.get(mx.Momentum.Fixed(42)) == 42


# -- OptimizationState and fit ---------------------------------------------------------------------

def test_optimization_state():
    s = mx.OptimizationState(32)
    assert (s.batch_size, s.curr_epoch, s.curr_batch, s.curr_iter) == (32, 0, 0, 0)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        mx.OptimizationState(0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        mx.OptimizationState(2.0)


def _linear_problem():
    rng = np.random.default_rng(5)
    batches = [(rng.normal(size=(3, 4)), rng.normal(size=(1, 4))) for _ in range(3)]
    return batches


def _numpy_fit(batches, n_epoch, etas_for, lam=1e-4):
    """SGD with scale 1/batch on the summed squared error, in plain NumPy."""
    W = np.zeros((1, 3))
    k = 0
    for epoch in range(n_epoch):
        for x, y in batches:
            grad = 2 * (W @ x - y) @ x.T
            g = grad / x.shape[1] + lam * W
            W = W - etas_for(epoch, k) * g
            k += 1
    return W


@pytest.mark.parametrize("decay", ["epoch", "batch"])
def test_fit_follows_mxnet_bookkeeping(decay):
    batches = _linear_problem()
    W = mg.param(np.zeros((1, 3)))
    opt = mx.SGD(η_sched=mx.LearningRate.Exp(0.1, γ=0.5))
    seen, epochs = [], []
    state = mx.fit(lambda x, y: mg.sum((W @ x - y) ** 2), [W], batches, opt, n_epoch=3,
                   η_decay=decay,
                   batch_callback=lambda s: seen.append((s.curr_epoch, s.curr_batch, s.curr_iter,
                                                        opt.eta_sched.t)),
                   epoch_callback=[lambda s, loss: epochs.append((s.curr_epoch, loss))])
    assert opt.scale == 0.25                    # set to 1/batch_size (4 columns)
    assert (state.batch_size, state.curr_epoch, state.curr_batch, state.curr_iter) == (4, 3, 3, 9)
    # batch callbacks: at the start of each epoch (batch 0), then after each batch
    expected = []
    for e in range(1, 4):
        ticks_before = (e - 1) * 3 if decay == "batch" else e - 1
        expected.append((e, 0, (e - 1) * 3, ticks_before))
        for b in range(1, 4):
            ticks = ticks_before + b if decay == "batch" else ticks_before
            expected.append((e, b, (e - 1) * 3 + b, ticks))
    assert seen == expected
    assert [e for e, _ in epochs] == [0, 1, 2, 3] and epochs[0][1] is None
    assert all(loss > 0 for _, loss in epochs[1:])
    assert opt.eta_sched.t == (9 if decay == "batch" else 3)
    if decay == "epoch":
        ref = _numpy_fit(batches, 3, lambda e, k: 0.1 * 0.5 ** e)
    else:
        ref = _numpy_fit(batches, 3, lambda e, k: 0.1 * 0.5 ** k)
    np.testing.assert_allclose(np.asarray(W), ref, rtol=1e-12)


def test_fit_keeps_an_explicit_scale_and_checks_its_input():
    batches = _linear_problem()
    W = mg.param(np.zeros((1, 3)))
    opt = mx.SGD(scale=1.0, λ=0)
    mx.fit(lambda x, y: mg.sum((W @ x - y) ** 2), [W], batches, opt, n_epoch=1,
           batch_size=10)
    assert opt.scale == 1.0
    with pytest.raises(ValueError, match="η_decay must be 'epoch' or 'batch'"):
        mx.fit(lambda x, y: 0, [W], batches, opt, η_decay="step")
    with pytest.raises(TypeError, match="expected an mx optimizer"):
        mx.fit(lambda x, y: 0, [W], batches, mg.Descent())
    with pytest.raises(mg.optimise.DomainError, match="the loss is nan at epoch 1, batch 1"):
        mx.fit(lambda x, y: mg.sum(W * np.nan), [W], batches, mx.SGD())


def test_fit_trains_a_small_classifier_with_every_optimizer():
    # In the spirit of MXNet.jl's examples/mnist/mlp-test.jl: every optimizer learns a task.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 200))
    y = (x[0] + x[1] > 0).astype(float)[None, :]
    batches = [(x[:, i:i + 20], y[:, i:i + 20]) for i in range(0, 200, 20)]
    for make in (lambda: mx.SGD(η=.5), lambda: mx.SGD(η_sched=mx.LearningRate.Inv(.5)),
                 lambda: mx.SGD(η=.2, μ=.9), lambda: mx.ADAM(η=0.05),
                 lambda: mx.AdaGrad(), lambda: mx.AdaDelta(), lambda: mx.AdaMax(η=0.05),
                 lambda: mx.RMSProp(η=0.01), lambda: mx.Nadam(η=0.02)):
        W, b = mg.param(np.zeros((1, 2))), mg.param(np.zeros(1))

        def loss(x, y, W=W, b=b):
            return mg.losses.logitbinarycrossentropy(W @ x + b[:, None], y, agg=mg.sum)

        opt = make()
        mx.fit(loss, mg.params(W, b), batches, opt, n_epoch=5)
        accuracy = np.mean(((np.asarray(W) @ x + np.asarray(b)[:, None]) > 0) == (y > 0.5))
        assert accuracy > 0.9, (opt, accuracy)


def test_mx_is_a_submodule_of_minigrad():
    import minigrad
    assert minigrad.mx is mx and "mx" in minigrad.__all__
    assert mg.SGD is not mx.SGD            # Flux's SGD stays mg.SGD
    assert issubclass(mx.SGD, mx.AbstractOptimizer)
    assert mx.NDArray([1, 2]).dtype == np.float32


# -- GPU arrays, in Numba's CUDA simulator ---------------------------------------------------------

_SIM_SCRIPT = r"""
import json, sys
import numpy as np
try:
    from numba import cuda
except ImportError:
    sys.exit(77)
from minigrad import mx
from minigrad.devices import on_device

out = {}
rng = np.random.default_rng(0)
W = rng.normal(size=(2, 4)).astype(np.float32)
grads = [rng.normal(size=(2, 4)).astype(np.float32) for _ in range(3)]
for name in ("SGD", "ADAM", "Nadam", "AdaDelta"):
    kw = {"μ": 0.9} if name == "SGD" else {}
    host, dev = mx.getupdater(getattr(mx, name)(clip=1.0, **kw)), \
        mx.getupdater(getattr(mx, name)(clip=1.0, **kw))
    Wh, Wd = W.copy(), cuda.to_device(W)
    for g in grads:
        host(0, g, Wh)
        assert dev(0, cuda.to_device(g), Wd) is Wd
    state = dev.states[0]
    out[name] = {"error": float(np.abs(Wd.copy_to_host() - Wh).max()),
                 "state_on_gpu": all(on_device(a) for a in state.arrays),
                 "scalars": state.scalars == host.states[0].scalars}
g = cuda.to_device(np.array([10.0, -10.0, 1.0], np.float32))
mx.normgrad_(mx.SGD(scale=0.5, clip=2, λ=0.1), cuda.to_device(np.float32([1, -2, 3])), g)
out["normgrad"] = g.copy_to_host().tolist()
try:
    mx.getupdater(mx.SGD())(0, np.ones(3, np.float32), cuda.to_device(np.ones(3, np.float32)))
except TypeError as err:
    out["mixed"] = str(err)
print(json.dumps(out))
"""


def test_gpu_arrays_run_the_cuda_kernels_in_the_simulator():
    import json
    import os
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", _SIM_SCRIPT], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    if result.returncode == 77:
        pytest.skip("numba-cuda is not installed")
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    for name in ("SGD", "ADAM", "Nadam", "AdaDelta"):
        assert out[name]["error"] < 1e-6, (name, out[name])
        assert out[name]["state_on_gpu"] and out[name]["scalars"], (name, out[name])
    np.testing.assert_allclose(out["normgrad"], [2.1, -2.2, 0.8], rtol=1e-6)
    assert "on the GPU" in out["mixed"] and "on the host" in out["mixed"]

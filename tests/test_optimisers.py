"""Optimiser rules checked against values computed independently of ``minigrad.optimise``.

* The three-step table of ``shared/reference/flux.md`` §2 (scalar ``x = 1``, gradients
  ``1, -0.5, 2``, default hyperparameters), through ``apply_`` and through ``update_``.
* An independent float64 NumPy transcription of every formula of ``reference/flux.md`` §2
  (the ``Ref*`` classes below, written from that page, not from ``rules.py``), against which
  the float32 and float64 kernels are compared over 100 random steps, single rules and
  composed optimisers alike, and the multi-threaded kernel against the serial one.
* Bad input (shapes, dtypes, integer or read-only parameters, non-finite hyperparameters,
  unknown keywords) raises a clear error and changes nothing.
* State: mutable hyperparameters, per-parameter state that neither leaks nor collides,
  Greek/ASCII keywords and old names, the Tracker-era closure form.
* The seed's custom ``Momentum`` (seed 001, "Optimiser Interface") and its
  ``Optimiser(ExpDecay(1, 0.1, 1000, 1e-4), Descent())`` example ("Composing Optimisers").

Upstream Flux's own tests are ported in ``test_optimisers_upstream.py``.
"""

from __future__ import annotations

import copy
import gc
import pickle
import weakref

import numpy as np
import pytest

import minigrad as mg
from minigrad.optimise import kernels

EPS = 1e-8  # Flux's EPS


# ================================================================================================
# An independent float64 transcription of reference/flux.md §2.
#
# Every reference optimiser has ``step(key, x, g) -> Δ`` (the step that update_ subtracts), keeps
# its per-parameter state in a plain dict keyed by ``key`` and computes in float64 whatever the
# dtype of its inputs.  Names follow the reference page: g is the incoming gradient, x the
# parameter, βp = [β1ᵗ, β2ᵗ] multiplied by β after each step.
# ================================================================================================

class Ref:
    """Base: per-parameter state created by ``init(x)`` on first sight of ``key``."""

    def __init__(self):
        self.st = {}

    def step(self, key, x, g):
        x = np.asarray(x, dtype=np.float64)
        g = np.array(g, dtype=np.float64)
        if key not in self.st:
            self.st[key] = self.init(x)
        return self.rule(self.st[key], x, g)

    def init(self, x):
        return {}


class RefDescent(Ref):
    def __init__(self, eta=0.1):
        super().__init__()
        self.eta = eta

    def rule(self, s, x, g):
        return self.eta * g


class RefMomentum(Ref):
    def __init__(self, eta=0.01, rho=0.9):
        super().__init__()
        self.eta, self.rho = eta, rho

    def init(self, x):
        return {"v": np.zeros_like(x)}

    def rule(self, s, x, g):
        s["v"] = self.rho * s["v"] - self.eta * g
        return -s["v"]


class RefNesterov(Ref):
    def __init__(self, eta=0.001, rho=0.9):
        super().__init__()
        self.eta, self.rho = eta, rho

    def init(self, x):
        return {"v": np.zeros_like(x)}

    def rule(self, s, x, g):
        ρ, η, v = self.rho, self.eta, s["v"]
        d = ρ**2 * v - (1 + ρ) * η * g          # with the OLD v
        s["v"] = ρ * v - η * g
        return -d


class RefRMSProp(Ref):
    def __init__(self, eta=0.001, rho=0.9, epsilon=EPS):
        super().__init__()
        self.eta, self.rho, self.epsilon = eta, rho, epsilon

    def init(self, x):
        return {"acc": np.zeros_like(x)}

    def rule(self, s, x, g):
        s["acc"] = self.rho * s["acc"] + (1 - self.rho) * np.abs(g) ** 2
        return g * self.eta / (np.sqrt(s["acc"]) + self.epsilon)


class RefAdam(Ref):
    def __init__(self, eta=0.001, beta=(0.9, 0.999), epsilon=EPS):
        super().__init__()
        self.eta, self.beta, self.epsilon = eta, beta, epsilon

    def init(self, x):
        return {"m": np.zeros_like(x), "v": np.zeros_like(x), "βp": list(self.beta)}

    def moments(self, s, g):
        β1, β2 = self.beta
        s["m"] = β1 * s["m"] + (1 - β1) * g
        s["v"] = β2 * s["v"] + (1 - β2) * np.abs(g) ** 2

    def adam_step(self, s):
        βp = s["βp"]
        return s["m"] / (1 - βp[0]) / (np.sqrt(s["v"] / (1 - βp[1])) + self.epsilon) * self.eta

    def advance(self, s):
        s["βp"] = [s["βp"][0] * self.beta[0], s["βp"][1] * self.beta[1]]

    def rule(self, s, x, g):
        self.moments(s, g)
        out = self.adam_step(s)
        self.advance(s)
        return out


class RefRAdam(RefAdam):
    def init(self, x):
        return {**super().init(x), "t": 1}

    def rule(self, s, x, g):
        β2 = self.beta[1]
        ρinf = 2 / (1 - β2) - 1
        self.moments(s, g)
        βp2, t = s["βp"][1], s["t"]
        ρ = ρinf - 2 * t * βp2 / (1 - βp2)
        if ρ > 4:
            r = np.sqrt((ρ - 4) * (ρ - 2) * ρinf / ((ρinf - 4) * (ρinf - 2) * ρ))
            out = self.adam_step(s) * r
        else:
            out = s["m"] / (1 - s["βp"][0]) * self.eta
        self.advance(s)
        s["t"] = t + 1
        return out


class RefAdaMax(RefAdam):
    def init(self, x):
        return {"m": np.zeros_like(x), "u": np.zeros_like(x), "βp": list(self.beta)}

    def rule(self, s, x, g):
        β1, β2 = self.beta
        s["m"] = β1 * s["m"] + (1 - β1) * g
        s["u"] = np.maximum(β2 * s["u"], np.abs(g))
        out = (self.eta / (1 - s["βp"][0])) * s["m"] / (s["u"] + self.epsilon)
        self.advance(s)
        return out


class RefOAdam(RefAdam):
    def __init__(self, eta=0.001, beta=(0.5, 0.9), epsilon=EPS):
        super().__init__(eta, beta, epsilon)

    def init(self, x):
        return {**super().init(x), "prev": np.zeros_like(x)}

    def rule(self, s, x, g):
        self.moments(s, g)
        term = self.adam_step(s)        # η·m/(1−βp1)/(√(v/(1−βp2))+ϵ)
        out = 2 * term - s["prev"]
        s["prev"] = term
        self.advance(s)
        return out


class RefAdaGrad(Ref):
    def __init__(self, eta=0.1, epsilon=EPS):
        super().__init__()
        self.eta, self.epsilon = eta, epsilon

    def init(self, x):
        return {"acc": np.full_like(x, self.epsilon)}

    def rule(self, s, x, g):
        s["acc"] = s["acc"] + np.abs(g) ** 2
        return g * self.eta / (np.sqrt(s["acc"]) + self.epsilon)


class RefAdaDelta(Ref):
    def __init__(self, rho=0.9, epsilon=EPS):
        super().__init__()
        self.rho, self.epsilon = rho, epsilon

    def init(self, x):
        return {"acc": np.zeros_like(x), "Δacc": np.zeros_like(x)}

    def rule(self, s, x, g):
        ρ, ϵ = self.rho, self.epsilon
        s["acc"] = ρ * s["acc"] + (1 - ρ) * np.abs(g) ** 2
        Δ = g * np.sqrt(s["Δacc"] + ϵ) / np.sqrt(s["acc"] + ϵ)
        s["Δacc"] = ρ * s["Δacc"] + (1 - ρ) * np.abs(Δ) ** 2     # with the NEW Δ
        return Δ


class RefAMSGrad(RefAdam):
    def init(self, x):
        ϵ = self.epsilon
        return {"m": np.full_like(x, ϵ), "v": np.full_like(x, ϵ), "v̂": np.full_like(x, ϵ)}

    def rule(self, s, x, g):
        β1, β2 = self.beta
        s["m"] = β1 * s["m"] + (1 - β1) * g
        s["v"] = β2 * s["v"] + (1 - β2) * g**2
        s["v̂"] = np.maximum(s["v̂"], s["v"])
        return self.eta * s["m"] / (np.sqrt(s["v̂"]) + self.epsilon)


class RefNAdam(RefAdam):
    def rule(self, s, x, g):
        β1, β2 = self.beta
        self.moments(s, g)
        βp1, βp2 = s["βp"]
        out = ((β1 * s["m"] / (1 - β1 * βp1) + (1 - β1) * g / (1 - βp1))
               / (np.sqrt(s["v"] * β2 / (1 - βp2)) + self.epsilon) * self.eta)
        self.advance(s)
        return out


class RefAdaBelief(RefAdam):
    def init(self, x):
        return {"m": np.zeros_like(x), "s": np.zeros_like(x), "βp": list(self.beta)}

    def rule(self, s, x, g):
        β1, β2 = self.beta
        ε2 = self.epsilon**2
        s["m"] = β1 * s["m"] + (1 - β1) * g
        s["s"] = β2 * s["s"] + (1 - β2) * np.abs(g - s["m"]) ** 2 + ε2     # the NEW m
        βp1, βp2 = s["βp"]
        out = self.eta * s["m"] / (1 - βp1) / (np.sqrt(s["s"] / (1 - βp2)) + ε2)
        self.advance(s)
        return out


class RefWeightDecay(Ref):
    def __init__(self, wd=0.0):
        super().__init__()
        self.wd = wd

    def rule(self, s, x, g):
        return g + self.wd * x


class RefClipValue(Ref):
    def __init__(self, thresh):
        super().__init__()
        self.thresh = thresh

    def rule(self, s, x, g):
        return np.clip(g, -self.thresh, self.thresh)


class RefClipNorm(Ref):
    def __init__(self, thresh):
        super().__init__()
        self.thresh = thresh

    def rule(self, s, x, g):
        n = np.sqrt(np.sum(g * g))
        return g * (self.thresh / n) if n > self.thresh else g


class RefInvDecay(Ref):
    def __init__(self, gamma=0.001):
        super().__init__()
        self.gamma = gamma

    def init(self, x):
        return {"n": 1}

    def rule(self, s, x, g):
        out = g * (1 / (1 + self.gamma * s["n"]))
        s["n"] += 1
        return out


class RefExpDecay(Ref):
    """η is shared by all parameters; ``current`` counts steps per parameter."""

    def __init__(self, eta=0.001, decay=0.1, decay_step=1000, clip=1e-4, start=0):
        super().__init__()
        self.eta, self.decay, self.decay_step, self.clip, self.start = (
            eta, decay, decay_step, clip, start)
        self.current = {}

    def rule(self, s, x, g):
        raise AssertionError("unused")

    def step(self, key, x, g):
        n = self.current[key] = self.current.get(key, 0) + 1

        def due(c):
            return c > self.start and c % self.decay_step == 0

        if due(n) and sum(due(c) for c in self.current.values()) == 1:
            self.eta = max(self.eta * self.decay, self.clip)
        return np.asarray(g, dtype=np.float64) * self.eta


class RefChain:
    def __init__(self, *rules):
        self.rules = rules

    def step(self, key, x, g):
        for r in self.rules:
            g = r.step(key, x, g)
        return g


def RefAdamW(eta=0.001, beta=(0.9, 0.999), decay=0):
    return RefChain(RefAdam(eta, beta), RefWeightDecay(decay))


# A user-defined optimiser (an exponential average of the incoming step, with its own IdDict),
# and its reference twin: used in the middle of a chain below.
class Averaged(mg.AbstractOptimiser):
    def __init__(self, a):
        self.a = a
        self.avg = mg.IdDict()

    def apply_(self, x, Δ):
        avg = self.avg.get_(x, np.zeros_like(Δ))
        avg[...] = self.a * avg + (1 - self.a) * Δ
        Δ[...] = avg
        return Δ


class RefAveraged(Ref):
    def __init__(self, a):
        super().__init__()
        self.a = a

    def init(self, x):
        return {"avg": np.zeros_like(x)}

    def rule(self, s, x, g):
        s["avg"] = self.a * s["avg"] + (1 - self.a) * g
        return s["avg"].copy()


# The rules at default settings (AdamW with decay 0.1), as (minigrad, reference) factories.
RULES = {
    "Descent": (mg.Descent, RefDescent),
    "Momentum": (mg.Momentum, RefMomentum),
    "Nesterov": (mg.Nesterov, RefNesterov),
    "RMSProp": (mg.RMSProp, RefRMSProp),
    "Adam": (mg.Adam, RefAdam),
    "RAdam": (mg.RAdam, RefRAdam),
    "AdaMax": (mg.AdaMax, RefAdaMax),
    "OAdam": (mg.OAdam, RefOAdam),
    "AdaGrad": (mg.AdaGrad, RefAdaGrad),
    "AdaDelta": (mg.AdaDelta, RefAdaDelta),
    "AMSGrad": (mg.AMSGrad, RefAMSGrad),
    "NAdam": (mg.NAdam, RefNAdam),
    "AdaBelief": (mg.AdaBelief, RefAdaBelief),
    "AdamW(decay=0.1)": (lambda: mg.AdamW(decay=0.1), lambda: RefAdamW(decay=0.1)),
}

# Composed optimisers, as (minigrad, reference) factories.
COMPOSED = {
    "WeightDecay(0.01)+Adam": (
        lambda: mg.Optimiser(mg.WeightDecay(0.01), mg.Adam()),
        lambda: RefChain(RefWeightDecay(0.01), RefAdam())),
    "ClipValue(0.5)+Momentum": (
        lambda: mg.Optimiser(mg.ClipValue(0.5), mg.Momentum()),
        lambda: RefChain(RefClipValue(0.5), RefMomentum())),
    "ClipNorm(1.0)+Adam": (
        lambda: mg.Optimiser(mg.ClipNorm(1.0), mg.Adam()),
        lambda: RefChain(RefClipNorm(1.0), RefAdam())),
    # η·0.5 every 10 steps: decays at steps 10, 20, ..., and reaches the clip (1e-3) at step 90.
    "Adam+ExpDecay(0.5,0.5,10,1e-3)": (
        lambda: mg.Optimiser(mg.Adam(), mg.ExpDecay(0.5, 0.5, 10, 1e-3)),
        lambda: RefChain(RefAdam(), RefExpDecay(0.5, 0.5, 10, 1e-3))),
    "Adam+InvDecay(0.01)": (
        lambda: mg.Optimiser(mg.Adam(), mg.InvDecay(0.01)),
        lambda: RefChain(RefAdam(), RefInvDecay(0.01))),
    "WeightDecay+user-defined+Adam": (
        lambda: mg.Optimiser(mg.WeightDecay(0.01), Averaged(0.5), mg.Adam()),
        lambda: RefChain(RefWeightDecay(0.01), RefAveraged(0.5), RefAdam())),
    # ClipNorm in the middle needs the whole step of the stages before it.
    "Momentum+ClipNorm(0.01)+nested(WeightDecay,Descent)": (
        lambda: mg.Optimiser(mg.Momentum(), mg.ClipNorm(0.01),
                             mg.Optimiser(mg.WeightDecay(0.1), mg.Descent(0.5))),
        lambda: RefChain(RefMomentum(), RefClipNorm(0.01), RefWeightDecay(0.1),
                         RefDescent(0.5))),
}

ALL = {**RULES, **COMPOSED}


# reference/flux.md §2, "Derived values": Δ1, Δ2, Δ3 and x after three steps.
TABLE = {
    "Descent": (0.1, -0.05, 0.2, 0.75),
    "Momentum": (0.01, 0.004, 0.0236, 0.9624),
    "Nesterov": (0.0019, -0.00014, 0.004124, 0.994116),
    "RMSProp": (0.003162278, -0.00147442, 0.002818579, 0.9954936),
    "Adam": (0.001, 0.000266337, 0.0006581116, 0.9980756),
    "RAdam": (0.001, 0.0002105263, 0.0008708487, 0.9979186),
    "AdaMax": (0.001, 0.0002107371, 0.0004354244, 0.9983538),
    "OAdam": (0.002, -0.001, 0.001676899, 0.9973231),
    "AdaGrad": (0.1, -0.04472136, 0.08728716, 0.8574342),
    "AdaDelta": (0.0003162278, -0.0002085144, 0.0004306788, 0.9994616),
    "AMSGrad": (0.003162261, 0.001131819, 0.003257804, 0.9924481),
    "NAdam": (0.001474422, -0.0001649461, 0.001024979, 0.9976655),
    "AdaBelief": (0.001111111, 0.0002837008, 0.0007346385, 0.9978705),
    "AdamW(decay=0.1)": (0.101, 0.09016634, 0.08154148, 0.7272922),
}
GRADIENTS = (1.0, -0.5, 2.0)
TABLE_RTOL = 1e-6   # the table is rounded to 7 significant digits


def _rel(a, b) -> float:
    """max|a − b| / max|b|: the relative error of a whole array."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / scale) if scale else float(np.max(np.abs(a)))


# ================================================================================================
# 1. The three-step table
# ================================================================================================

@pytest.mark.parametrize("name", TABLE)
def test_reference_transcription_reproduces_the_table(name):
    """Guards the transcription itself: it must give the page's derived values."""
    ref = RULES[name][1]()
    x = np.array([1.0])
    for g, expected in zip(GRADIENTS, TABLE[name][:3], strict=True):
        d = ref.step("x", x, np.array([g]))
        assert d[0] == pytest.approx(expected, rel=TABLE_RTOL)
        x = x - d
    assert x[0] == pytest.approx(TABLE[name][3], rel=TABLE_RTOL)


@pytest.mark.parametrize("name", TABLE)
def test_three_step_table_apply(name):
    opt = RULES[name][0]()
    x = np.array([1.0])
    for g, expected in zip(GRADIENTS, TABLE[name][:3], strict=True):
        Δ = np.array([g])
        d = mg.apply_(opt, x, Δ)
        assert d is Δ                             # apply_ overwrites Δ and returns it
        assert d.dtype == np.float64 and d.shape == (1,)
        assert d[0] == pytest.approx(expected, rel=TABLE_RTOL)
        x -= d
    assert x[0] == pytest.approx(TABLE[name][3], rel=TABLE_RTOL)


@pytest.mark.parametrize("name", TABLE)
def test_three_step_table_update(name):
    """The fused update path gives the same x, and leaves the caller's gradient alone."""
    opt = RULES[name][0]()
    x = mg.param([1.0])
    storage = np.asarray(x)
    for g in GRADIENTS:
        ḡ = np.array([g])
        assert mg.update_(opt, x, ḡ) is x
        assert ḡ[0] == g                          # update_ does not touch the gradient
    assert np.asarray(x) is storage               # updated in place
    assert float(x[0]) == pytest.approx(TABLE[name][3], rel=TABLE_RTOL)
    # ... and exactly what apply_ followed by x -= Δ gives.
    opt2, y = RULES[name][0](), np.array([1.0])
    for g in GRADIENTS:
        y -= mg.apply_(opt2, y, np.array([g]))
    assert float(x[0]) == y[0]


@pytest.mark.parametrize("name", TABLE)
def test_three_step_table_params_form(name):
    """``update_(opt, ps, gs)`` over two parameters: each follows the table independently."""
    opt = RULES[name][0]()
    a, b = mg.param([1.0]), mg.param([[1.0, 1.0]])
    ps = mg.Params([a, b])
    for g in GRADIENTS:
        ga, gb = np.array([g]), np.array([[g, g]])
        mg.update_(opt, ps, {a: ga, b: gb})
        assert ga[0] == g and (gb == g).all()
    assert float(a[0]) == pytest.approx(TABLE[name][3], rel=TABLE_RTOL)
    np.testing.assert_allclose(np.asarray(b), TABLE[name][3], rtol=TABLE_RTOL)


# ================================================================================================
# 2. Kernels against the float64 reference: random arrays, 100 steps
# ================================================================================================

N_STEPS = 100


def _random_run(make_opt, make_ref, dtype, n, seed, *, use_update, steps=N_STEPS):
    """Run ``steps`` steps of a minigrad optimiser and of its reference on the same data.

    Returns the worst per-step relative error of Δ (``apply_``) or of x (``update_``) and the
    final parameters.  The gradient scale changes every step (1e-3 … 10), so ClipNorm and
    ClipValue take both branches.
    """
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(n)
    x = x0.astype(dtype)                    # minigrad's parameter
    p = mg.param(x) if use_update else x
    xr = x.astype(np.float64)               # the reference's parameter
    opt, ref = make_opt(), make_ref()
    worst = 0.0
    for _ in range(steps):
        g = (rng.standard_normal(n) * 10 ** rng.uniform(-3, 1)).astype(dtype)
        given = g.copy()
        dr = ref.step("p", xr, g)
        xr = xr - dr
        if use_update:
            mg.update_(opt, p, g)
            np.testing.assert_array_equal(g, given)     # the caller's gradient is untouched
            worst = max(worst, _rel(np.asarray(p), xr))
        else:
            d = mg.apply_(opt, x, g)
            assert d is g and d.dtype == dtype
            worst = max(worst, _rel(d, dr))
            x -= d
    final = np.asarray(p) if use_update else x
    assert final.dtype == dtype
    return worst, final, xr


# float32: each float32 operation is exact to 6e-8 relative; the state (m, v, acc, ...) carries
# that rounding across 100 steps, so 1e-5 leaves a wide margin.  float64: 1e-12 allows for the
# transcription's different order of operations (about 1e-16 per operation).
DTYPES = [pytest.param(np.float32, 1e-5, id="float32"), pytest.param(np.float64, 1e-12,
                                                                     id="float64")]


@pytest.mark.parametrize("dtype,rtol", DTYPES)
@pytest.mark.parametrize("name", ALL)
def test_kernel_matches_reference(name, dtype, rtol):
    make_opt, make_ref = ALL[name]
    seed = sum(map(ord, name))
    worst, x, xr = _random_run(make_opt, make_ref, dtype, 1000, seed, use_update=False)
    assert worst <= rtol, f"{name}: worst per-step relative error of Δ {worst:.3g}"
    assert _rel(x, xr) <= rtol
    # The fused update_ path follows the same trajectory as apply_ then x -= Δ, bit for bit.
    worst_u, xu, _ = _random_run(make_opt, make_ref, dtype, 1000, seed, use_update=True)
    assert worst_u <= rtol
    np.testing.assert_array_equal(xu, x)


def test_float32_stays_float32():
    """float32 parameters get float32 steps whose hyperparameters were prepared in float64:
    over 10 Adam steps the float32 kernel stays within 1e-6 of the float64 reference (2.6e-7
    here), whereas computing 1 − β1, 1 − β2 and the bias corrections in float32 would be off
    by 7e-6."""
    rng = np.random.default_rng(0)
    x = np.zeros(1000, np.float32)
    opt, ref = mg.Adam(), RefAdam()
    for _ in range(10):
        g = rng.standard_normal(1000).astype(np.float32)
        d = mg.apply_(opt, x, g.copy())
        assert d.dtype == np.float32
        assert _rel(d, ref.step(0, x, g)) <= 1e-6


BIG = 70_000        # made above kernels.PARALLEL_THRESHOLD: the multi-threaded kernel


@pytest.mark.parametrize("name", ["Adam", "ClipNorm(1.0)+Adam", "WeightDecay+user-defined+Adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multithreaded_kernel_matches_serial(name, dtype, monkeypatch):
    monkeypatch.setattr(kernels, "PARALLEL_THRESHOLD", BIG // 2)      # multi-threaded
    make_opt, make_ref = ALL[name]
    worst, par, _ = _random_run(make_opt, make_ref, dtype, BIG, 7, use_update=False, steps=20)
    if dtype == np.float64:
        assert worst <= 1e-12
    # (No float32 bound against the float64 reference here: among 70 000 elements some have a
    # gradient that nearly cancels against the weight decay, |g + λx| ~ ϵ, where Adam's step
    # g/(|g| + ϵ) amplifies the float32 rounding of that sum; the 1000-element runs above
    # have no such element.  What matters here is threads versus one thread.)
    _, par_u, _ = _random_run(make_opt, make_ref, dtype, BIG, 7, use_update=True, steps=20)
    np.testing.assert_array_equal(par_u, par)
    # The same runs with every kernel serial: identical, element for element.
    monkeypatch.setattr(kernels, "PARALLEL_THRESHOLD", 10**12)
    _, ser, _ = _random_run(make_opt, make_ref, dtype, BIG, 7, use_update=False, steps=20)
    np.testing.assert_array_equal(par, ser)
    _, ser_u, _ = _random_run(make_opt, make_ref, dtype, BIG, 7, use_update=True, steps=20)
    np.testing.assert_array_equal(ser_u, par_u)


def test_multithreaded_flat_group_matches_per_parameter_updates(monkeypatch):
    """A flat group over the threshold runs the multi-threaded kernel; its steps end bitwise
    where per-parameter updates (serial kernels, each tensor under the threshold) end."""
    sizes = [40_000, 35_000, 25_000]
    monkeypatch.setattr(kernels, "PARALLEL_THRESHOLD", 50_000)
    ps, ref = _twin_models(sizes)
    θ, opt, opt_ref = mg.Params(ps), mg.Adam(), mg.Adam()
    rng = np.random.default_rng(5)
    for _ in range(4):
        values = [rng.standard_normal(n).astype(np.float32) for n in sizes]
        mg.update_(opt, θ, _grads_of(θ, values))
        for p, g in zip(ref, values, strict=True):
            mg.update_(opt_ref, p, g)
    assert any(key[2] for key in kernels._ready)        # (rules, update, parallel, dtype)
    for p, q in zip(ps, ref, strict=True):
        np.testing.assert_array_equal(p.data, q.data)


@pytest.mark.parametrize("rule", ["Momentum", "Adam"])
def test_same_rule_twice_in_a_chain(rule):
    """``Optimiser(a, a)`` calls ``apply!(a, ...)`` twice in turn on the same state, as Flux
    does: the second call sees the state (and Adam's βp) left by the first."""
    make_opt, make_ref = RULES[rule]
    a, r = make_opt(), make_ref()
    opt, ref = mg.Optimiser(a, a), RefChain(r, r)
    rng = np.random.default_rng(11)
    x = rng.standard_normal(50)
    xr = x.copy()
    for _ in range(5):
        g = rng.standard_normal(50)
        d = mg.apply_(opt, x, g.copy())
        dr = ref.step("x", xr, g)
        assert _rel(d, dr) <= 1e-12
        x -= d
        xr = xr - dr


def test_parameter_listed_twice_is_updated_twice():
    """A plain list naming a parameter twice updates it twice per call (Flux's loop over a
    Vector); ``Params`` drops the duplicate."""
    w, u, v = mg.param([1.0, 2.0]), mg.param([1.0, 2.0]), mg.param([1.0, 2.0])
    opt, twice, once = mg.Adam(), mg.Adam(), mg.Adam()
    g = np.array([1.0, -1.0])
    for _ in range(3):
        mg.update_(opt, [w, w], {w: g})
        mg.update_(twice, u, g)
        mg.update_(twice, u, g)
        mg.update_(once, mg.Params([v, v]), {v: g})
    np.testing.assert_array_equal(np.asarray(w), np.asarray(u))
    np.testing.assert_array_equal(opt.state[w].scalars, twice.state[u].scalars)
    expected = np.array([1.0, 2.0])
    opt_once = mg.Adam()
    for _ in range(3):
        expected -= mg.apply_(opt_once, expected, g.copy())
    np.testing.assert_array_equal(np.asarray(v), expected)


MODEL_CHAINS = {
    "Adam+InvDecay": (lambda: mg.Optimiser(mg.Adam(), mg.InvDecay(0.01)),
                      lambda: RefChain(RefAdam(), RefInvDecay(0.01))),
    # η shared by all parameters, decayed once per global step (every 3rd), down to the clip.
    "ExpDecay+Momentum": (lambda: mg.Optimiser(mg.ExpDecay(1.0, 0.5, 3, 0.1), mg.Momentum()),
                          lambda: RefChain(RefExpDecay(1.0, 0.5, 3, 0.1), RefMomentum())),
    "AdamW": (lambda: mg.AdamW(decay=0.1), lambda: RefAdamW(decay=0.1)),
}


@pytest.mark.parametrize("chain", MODEL_CHAINS)
def test_params_form_matches_reference_for_a_model(chain):
    """``update_(opt, ps, gs)`` over several parameters of different shapes (the one-call
    path for a whole model) equals the reference run parameter by parameter."""
    rng = np.random.default_rng(3)
    shapes = [(5, 4), (5,), (3, 5), (3,)]
    ps = [mg.param(rng.standard_normal(s)) for s in shapes]
    refx = [np.asarray(p).copy() for p in ps]
    opt, ref = MODEL_CHAINS[chain][0](), MODEL_CHAINS[chain][1]()
    θ = mg.Params(ps)
    for _ in range(20):
        gs = {p: rng.standard_normal(p.shape) for p in ps}
        mg.update_(opt, θ, gs)
        for i, p in enumerate(ps):
            refx[i] = refx[i] - ref.step(i, refx[i], gs[p])
    for p, xr in zip(ps, refx, strict=True):
        assert _rel(np.asarray(p), xr) <= 1e-12


# ================================================================================================
# 4. The seed's custom optimiser and its composition example (seed 001)
# ================================================================================================

class SeedMomentum(mg.AbstractOptimiser):
    """Seed 001, "Optimiser Interface", in Python: ``mutable struct Momentum eta; rho;
    velocity end`` with ``Momentum(eta, rho) = Momentum(eta, rho, IdDict())`` and its
    ``apply!``."""

    def __init__(self, eta, rho):
        self.eta, self.rho, self.velocity = eta, rho, mg.IdDict()

    def apply_(self, x, Δ):
        η, ρ = self.eta, self.rho
        v = self.velocity.get_(x, np.zeros_like(x))
        v[...] = ρ * v - η * Δ
        Δ[...] = -v
        return Δ


def _regression(seed):
    """Flux's test problem: w fixed, w′ trainable, loss(x) = mse(w x, w′ x)."""
    np.random.seed(seed)
    w = np.random.randn(10, 10)
    w1 = mg.randn(10, 10)

    def loss(x):
        return mg.losses.mse(w @ x, w1 @ x)

    return w1, loss


def _mean_loss(loss, n=200, seed=0):
    rng = np.random.default_rng(seed)
    return float(np.mean([float(loss(rng.random(10))) for _ in range(n)]))


@pytest.mark.parametrize("wrap", ["bare", "Optimiser", "chain"])
def test_seed_custom_momentum_trains(wrap):
    custom = SeedMomentum(0.01, 0.9)
    opt = {"bare": custom, "Optimiser": mg.Optimiser(custom),
           "chain": mg.Optimiser(mg.ClipValue(10.0), custom, mg.InvDecay(0.0))}[wrap]
    w1, loss = _regression(1)
    before = _mean_loss(loss)
    for _ in range(1000):
        θ = mg.Params([w1])
        x = np.random.rand(10)
        θ̄ = mg.gradient(lambda: loss(x), θ)  # noqa: B023  (called at once, inside the loop)
        mg.update_(opt, θ, θ̄)
    after = _mean_loss(loss)
    assert before > 1 and after < before / 20      # 3.5 -> 0.05 for this seed
    assert len(custom.velocity) == 1 and custom.velocity[w1].shape == (10, 10)


@pytest.mark.parametrize("form", ["update_", "Optimiser", "apply_"])
def test_seed_custom_momentum_equals_builtin(form):
    rng = np.random.default_rng(5)
    x0 = rng.standard_normal((4, 3))
    mine, builtin = SeedMomentum(0.01, 0.9), mg.Momentum(0.01, 0.9)
    if form == "Optimiser":
        mine, builtin = mg.Optimiser(mg.WeightDecay(0.1), mine), mg.Optimiser(
            mg.WeightDecay(0.1), builtin)
    a, b = mg.param(x0), mg.param(x0)
    for _ in range(50):
        g = rng.standard_normal((4, 3))
        if form == "apply_":
            da, db = mg.apply_(mine, a, g.copy()), mg.apply_(builtin, b, g.copy())
            np.testing.assert_array_equal(da, db)
            a.data -= da
            b.data -= db
        else:
            mg.update_(mine, a, g)
            mg.update_(builtin, b, g)
    # Same arithmetic in the same order (v = ρv − ηg; step −v): equal to the last bit.
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), x0)


def _composing_example(seed, steps):
    """Seed 001, "Composing Optimisers", as written (``steps`` is 10^5 there)."""
    np.random.seed(seed)
    opt = mg.Optimiser(mg.ExpDecay(1, 0.1, 1000, 1e-4), mg.Descent())
    w = mg.randn(10, 10)
    w1 = mg.randn(10, 10)
    ps = mg.Params([w, w1])

    def loss(x):
        return mg.losses.mse(w @ x, w1 @ x)

    before = float(loss(np.random.rand(10)))  # around 9
    for _ in range(steps):
        θ = mg.Params([w, w1])
        θ̄ = mg.gradient(lambda: loss(np.random.rand(10)), θ)  # noqa: B023
        mg.update_(opt, θ, θ̄)
    after = float(loss(np.random.rand(10)))  # around 0.9
    assert list(ps) == [w, w1]
    return before, after, _mean_loss(loss, 1000), opt


def test_composing_example_initial_loss_is_around_9():
    """"loss(rand(10)) # around 9": one draw.  loss = mean over 10 rows of ((w − w1)x)ᵢ², each
    row ~ N(0, 2|x|²) with E|x|² = 10/3, so its expectation is 20/3 ≈ 6.7, with a long right
    tail.  Over 400 seeds the mean is 6.5 and 9 sits well inside the central 90% (2.3 … 13)."""
    draws = []
    for seed in range(400):
        np.random.seed(seed)
        w = mg.randn(10, 10)
        w1 = mg.randn(10, 10)
        x = np.random.rand(10)
        draws.append(float(mg.losses.mse(w @ x, w1 @ x)))
    q05, q95 = np.quantile(draws, [0.05, 0.95])
    assert 5.5 < np.mean(draws) < 8.0          # 20/3, ± about 4 standard errors
    assert q05 < 9 < q95


def test_composing_example_short():
    """The first 5000 steps: by then ExpDecay has decayed η five times to its clip (1 → 1e-4;
    the effective rate, times Descent's 0.1, ends at 1e-5), and the loss is at its final level."""
    before, after, mean_after, opt = _composing_example(0, 5000)
    assert opt[0].eta == 1e-4
    assert mean_after < 0.01 < 1 < before


@pytest.mark.slow
def test_composing_example_full():
    """The 10^5 steps of the seed.  "around 0.9" is loose: with η = 0.1 for the first 1000
    steps, plain descent on w − w1 (both trainable, so the difference moves twice as fast)
    already brings the loss to about 2e-3; the mean over fresh x after 10^5 steps is 6e-4 …
    8e-4 for seeds 0-2, and single draws 3e-4 … 1.3e-3.  The band asserted is "below 0.01"."""
    before, after, mean_after, opt = _composing_example(0, 10**5)
    assert opt[0].eta == opt[0].clip == 1e-4
    assert after < 0.01 and mean_after < 0.01
    assert before > 100 * mean_after


# ================================================================================================
# 5. Bad input: a clear error, and nothing changes
# ================================================================================================

def _adam_state(opt, p):
    """Adam's (m, v, βp) for ``p``, copied."""
    st = opt.state[p]
    return st[0].copy(), st[1].copy(), list(st.scalars)


def _assert_same_state(a, b):
    for u, v in zip(a[:2], b[:2], strict=True):
        np.testing.assert_array_equal(u, v)
    assert a[2] == b[2]


def _snapshot(adam, ps):
    """Each parameter's values and its Adam state, copied."""
    return [(np.asarray(p).copy(), _adam_state(adam, p)) for p in ps]


def _assert_unchanged(adam, ps, snapshot):
    """The parameters and their Adam state are as in ``snapshot``."""
    for p, (v, st) in zip(ps, snapshot, strict=True):
        np.testing.assert_array_equal(np.asarray(p), v)
        _assert_same_state(_adam_state(adam, p), st)


BAD_GRADIENTS = {
    "shape": (np.ones(4), ValueError, r"shape \(4,\)"),
    "broadcastable shape": (np.ones(1), ValueError, r"shape \(1,\)"),
    "scalar": (np.float64(1.0), ValueError, r"shape \(\)"),
    "dtype float32": (np.ones(3, np.float32), TypeError, "dtype float32"),
    "dtype int64": (np.ones(3, np.int64), TypeError, "dtype int64"),
}


@pytest.mark.parametrize("form", ["update_", "apply_", "params"])
@pytest.mark.parametrize("bad", BAD_GRADIENTS)
def test_bad_gradient_changes_nothing(bad, form):
    g_bad, error, message = BAD_GRADIENTS[bad]
    opt, twin = mg.Adam(), mg.Adam()
    p, q = mg.param([1.0, 2.0, 3.0]), mg.param([1.0, 2.0, 3.0])
    for g in ([1.0, -0.5, 2.0], [0.3, 0.1, -1.0]):
        mg.update_(opt, p, np.array(g))
        mg.update_(twin, q, np.array(g))
    value, state = np.asarray(p).copy(), _adam_state(opt, p)
    with pytest.raises(error, match=message):
        if form == "update_":
            mg.update_(opt, p, g_bad)
        elif form == "apply_":
            mg.apply_(opt, p, g_bad)
        else:
            mg.update_(opt, mg.Params([p]), {p: g_bad})
    np.testing.assert_array_equal(np.asarray(p), value)
    _assert_same_state(_adam_state(opt, p), state)
    # ... and the next good step is the step an undisturbed optimiser takes.
    mg.update_(opt, p, np.array([0.5, 0.5, 0.5]))
    mg.update_(twin, q, np.array([0.5, 0.5, 0.5]))
    np.testing.assert_array_equal(np.asarray(p), np.asarray(q))


@pytest.mark.parametrize("form", ["update_", "apply_"])
def test_integer_parameter_is_refused(form):
    opt = mg.Adam()
    x = np.arange(3)
    f = mg.update_ if form == "update_" else mg.apply_
    with pytest.raises(TypeError, match="floating-point.*dtype int64"):
        f(opt, x, np.ones(3))
    np.testing.assert_array_equal(x, [0, 1, 2])
    assert len(opt.state) == 0


@pytest.mark.parametrize("form", ["update_", "apply_", "params"])
def test_read_only_parameter_is_refused(form):
    opt = mg.Adam()
    p = mg.param([1.0, 2.0, 3.0])
    mg.update_(opt, p, np.ones(3))
    state = _adam_state(opt, p)
    np.asarray(p).flags.writeable = False
    value = np.asarray(p).copy()
    with pytest.raises(ValueError, match="read-only"):
        if form == "update_":
            mg.update_(opt, p, np.ones(3))
        elif form == "apply_":
            mg.apply_(opt, p, np.ones(3))
        else:
            mg.update_(opt, mg.Params([p]), {p: np.ones(3)})
    np.testing.assert_array_equal(np.asarray(p), value)
    _assert_same_state(_adam_state(opt, p), state)
    x = np.ones(2)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        mg.update_(opt, x, np.ones(2))
    assert x not in opt.state


NON_FINITE = {
    "eta nan": ("eta", float("nan"), r"eta must be a finite real number, got nan"),
    "eta inf": ("eta", float("inf"), r"eta must be a finite real number, got inf"),
    "beta": ("beta", (0.9, float("nan")), r"beta must be a finite real number"),
    "epsilon": ("epsilon", float("-inf"), r"epsilon must be a finite real number"),
}


@pytest.mark.parametrize("form", ["update_", "apply_", "params", "chain"])
@pytest.mark.parametrize("bad", NON_FINITE)
def test_non_finite_hyperparameter_set_later(bad, form):
    field, value, message = NON_FINITE[bad]
    adam = mg.Adam()
    # "chain": the bad rule sits after a user-defined stage and a ClipNorm, in its own pass.
    opt = mg.Optimiser(mg.ClipNorm(10.0), SeedMomentum(0.5, 0.0), adam) if form == "chain" \
        else adam
    ps = [mg.param(np.full(3, float(i))) for i in range(3)]
    θ = mg.Params(ps)
    mg.update_(opt, θ, {p: np.ones(3) for p in ps})
    before = _snapshot(adam, ps)
    old = getattr(adam, field)
    with pytest.raises(ValueError, match=message):      # refused on assignment
        setattr(adam, field, value)
    assert getattr(adam, field) == old
    _assert_unchanged(adam, ps, before)
    adam.__dict__[field] = value        # bypassing the check: the step still refuses it
    g = np.ones(3)
    with pytest.raises(ValueError, match=message):
        if form == "update_":
            mg.update_(opt, ps[0], g)
        elif form == "apply_":
            mg.apply_(opt, ps[0], g)
        else:
            mg.update_(opt, θ, {p: np.ones(3) for p in ps})
    np.testing.assert_array_equal(g, 1.0)
    _assert_unchanged(adam, ps, before)
    if form == "chain":
        assert all(np.array_equal(opt[1].velocity[p], -0.5 * np.ones(3)) for p in ps)


def test_non_finite_hyperparameter_before_the_first_step_leaves_no_state():
    opt = mg.Adam()
    opt.__dict__["eta"] = float("nan")          # (setattr refuses it)
    ps = [mg.param(np.ones(3)) for _ in range(3)]
    for call in (lambda: mg.update_(opt, mg.Params(ps), {p: np.ones(3) for p in ps}),
                 lambda: mg.update_(opt, ps[0], np.ones(3))):
        with pytest.raises(ValueError, match="eta must be a finite real number"):
            call()
        assert len(opt.state) == 0
        assert all((np.asarray(p) == 1).all() for p in ps)


@pytest.mark.parametrize("make", [
    lambda: mg.Adam(float("nan")),
    lambda: mg.Adam(η=float("inf")),
    lambda: mg.Adam(beta=(0.9, float("nan"))),
    lambda: mg.Momentum(ρ=float("nan")),
    lambda: mg.Descent(eta=float("-inf")),
    lambda: mg.ClipValue(float("nan")),
    lambda: mg.ClipNorm(float("inf")),
    lambda: mg.ExpDecay(0.1, 0.1, 1000, float("nan")),
    lambda: mg.InvDecay(float("nan")),
    lambda: mg.WeightDecay(float("nan")),
    lambda: mg.AdamW(float("nan")),
], ids=["Adam", "Adam-η", "Adam-β", "Momentum-ρ", "Descent", "ClipValue", "ClipNorm",
        "ExpDecay-clip", "InvDecay", "WeightDecay", "AdamW"])
def test_non_finite_hyperparameter_at_construction(make):
    with pytest.raises(ValueError, match=r"hyperparameter \w+ must be a finite real number"):
        make()


@pytest.mark.parametrize("make,message", [
    (lambda: mg.Adam(foo=1), r"Adam got an unexpected keyword 'foo'; it takes eta \(η\)"),
    (lambda: mg.Descent(lr=0.1), r"Descent got an unexpected keyword 'lr'"),
    (lambda: mg.Momentum(beta=0.9), r"Momentum got an unexpected keyword 'beta'"),
    (lambda: mg.AdaDelta(eta=0.1), r"AdaDelta got an unexpected keyword 'eta'"),
    (lambda: mg.AdamW(epsilon=1e-7), r"AdamW got unexpected keywords \['epsilon'\]"),
    (lambda: mg.Descent(0.1, 0.2), r"Descent takes at most 1 positional argument"),
])
def test_unknown_keyword_or_extra_argument(make, message):
    with pytest.raises(TypeError, match=message):
        make()


@pytest.mark.parametrize("opt", [
    lambda: mg.Adam(),
    lambda: mg.Optimiser(mg.WeightDecay(0.1), SeedMomentum(0.1, 0.9), mg.Adam()),
], ids=["Adam", "chain"])
@pytest.mark.parametrize("bad", ["shape", "dtype", "read-only parameter", "None then bad"])
def test_params_form_with_a_bad_third_pair_changes_no_parameter(opt, bad):
    opt = opt()
    adam = opt if isinstance(opt, mg.Adam) else opt[2]
    ps = [mg.param(np.full((2, 2), float(i))) for i in range(4)]
    θ = mg.Params(ps)
    mg.update_(opt, θ, {p: np.ones((2, 2)) for p in ps})
    before = _snapshot(adam, ps)
    gs = {p: np.full((2, 2), 0.5) for p in ps}
    if bad == "shape":
        gs[ps[2]] = np.ones((2, 3))
    elif bad == "dtype":
        gs[ps[2]] = np.ones((2, 2), np.float32)
    elif bad == "read-only parameter":
        np.asarray(ps[2]).flags.writeable = False
    else:
        gs[ps[1]] = None                         # skipped, as Flux skips `nothing`
        gs[ps[2]] = np.ones(4)
    with pytest.raises((ValueError, TypeError), match="shape|dtype|read-only"):
        mg.update_(opt, θ, gs)
    _assert_unchanged(adam, ps, before)


def test_not_an_optimiser():
    with pytest.raises(TypeError, match="expected an optimiser"):
        mg.update_("Adam", mg.param([1.0]), np.ones(1))
    with pytest.raises(TypeError, match="item 1 is not an optimiser"):
        mg.Optimiser(mg.Adam(), 0.1)


# -- the steady state of update_(opt, ps, gs): a flat group stepped from the Grads of ps -------

def _twin_models(sizes, dtype=np.float32, seed=0):
    """Two identical lists of parameters of the given sizes (the second for the per-parameter
    reference)."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(n).astype(dtype) for n in sizes]
    return [mg.param(v.copy()) for v in values], [mg.param(v.copy()) for v in values]


def _grads_of(ps, values):
    """A ``Grads`` of ``ps`` holding ``values`` (``None`` for none), set by hand: the gradients
    lie where they are, not in a flat buffer."""
    gs = mg.Grads(ps)
    for p, g in zip(ps, values, strict=True):
        gs[p] = g
    return gs


def _gradient_of(θ, values):
    """What ``mg.gradient`` gives for a loss whose gradient is ``values`` (``Σ sum(p·v)``; a
    ``None`` value leaves its parameter out of the loss): once the parameters lie in a flat
    buffer, the gradients land in one laid out alike, as in a training loop."""
    terms = [(p, v) for p, v in zip(θ, values, strict=True) if v is not None]
    return mg.gradient(lambda: sum(mg.sum(p * v) for p, v in terms), θ)


STEADY_CHAINS = {
    "Adam": mg.Adam,
    "ClipValue+Momentum+InvDecay": lambda: mg.Optimiser(mg.ClipValue(0.3), mg.Momentum(),
                                                        mg.InvDecay(0.1)),
    "Adam+ExpDecay": lambda: mg.Optimiser(mg.Adam(), mg.ExpDecay(1.0, 0.5, 2, 1e-3)),
}


@pytest.mark.parametrize("name", sorted(STEADY_CHAINS))
def test_steady_state_equals_parameter_by_parameter(name, monkeypatch):
    """70 tensors, one empty, 100k elements in all (over the multi-threaded kernel's
    threshold, lowered here): every step after the first, whose gradients land in the flat
    buffer, takes the steady path and ends bitwise where updating parameter by parameter
    ends."""
    from minigrad.optimise import flat, step
    steady = []
    monkeypatch.setattr(step, "steady_step",
                        lambda *a: steady.append(flat.steady_step(*a)) or steady[-1])
    sizes = [0, 50_005] + [1 + (37 * k) % 1500 for k in range(68)]
    monkeypatch.setattr(kernels, "PARALLEL_THRESHOLD", 65536)
    assert sum(sizes) >= kernels.PARALLEL_THRESHOLD
    ps, ref = _twin_models(sizes)
    θ, opt, opt_ref = mg.Params(ps), STEADY_CHAINS[name](), STEADY_CHAINS[name]()
    rng = np.random.default_rng(1)
    for i in range(5):
        values = [rng.standard_normal(n).astype(np.float32) for n in sizes]
        gs = _gradient_of(θ, values)
        assert (gs.flat is not None) == (i > 0)
        mg.update_(opt, θ, gs)
        for p, g in zip(ref, values, strict=True):
            mg.update_(opt_ref, p, g)
    assert steady == [True, True, True, True]
    for p, q in zip(ps, ref, strict=True):
        np.testing.assert_array_equal(p.data, q.data)


@pytest.mark.parametrize("change", ["shape", "dtype", "not an array", "read-only parameter"])
def test_steady_state_refuses_a_bad_step_and_changes_nothing(change):
    ps = [mg.param(np.full((2, 3), float(i), np.float32)) for i in range(4)]
    θ, opt = mg.Params(ps), mg.Adam()
    for _ in range(2):
        mg.update_(opt, θ, _grads_of(θ, [np.ones((2, 3), np.float32)] * 4))
    before = _snapshot(opt, ps)
    bad = [np.ones((2, 3), np.float32) for _ in ps]
    if change == "shape":
        bad[2] = np.ones((3, 2), np.float32)
    elif change == "dtype":
        bad[2] = np.ones((2, 3))
    elif change == "not an array":
        bad[2] = [[1.0] * 3] * 2
    else:
        ps[2].data.flags.writeable = False
    with pytest.raises((ValueError, TypeError), match="shape|dtype|array|read-only"):
        mg.update_(opt, θ, _grads_of(θ, bad))
    _assert_unchanged(opt, ps, before)


@pytest.mark.parametrize("change", ["a gradient is None", "p.data replaced",
                                    "one parameter updated alone", "state deleted"])
def test_steady_state_follows_what_changed(change):
    """Whatever a user does between steps, the update equals the per-parameter one."""
    ps, ref = _twin_models([6, 4, 5])
    θ, opt, opt_ref = mg.Params(ps), mg.Adam(0.1), mg.Adam(0.1)
    values = [np.full(n, 0.5, np.float32) for n in (6, 4, 5)]

    def both(grads):
        mg.update_(opt, θ, _grads_of(θ, grads))
        for p, g in zip(ref, grads, strict=True):
            if g is not None:
                mg.update_(opt_ref, p, g)

    both(values)
    both(values)
    if change == "a gradient is None":
        both([values[0], None, values[2]])
    elif change == "p.data replaced":
        ps[1].data = ps[1].data.copy() * 2
        ref[1].data = ref[1].data.copy() * 2
    elif change == "one parameter updated alone":
        mg.update_(opt, ps[0], values[0])
        mg.update_(opt_ref, ref[0], values[0])
    else:
        del opt.state[ps[2]]
        del opt_ref.state[ref[2]]
    both(values)
    both(values)
    for p, q in zip(ps, ref, strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def _unaligned(values):
    """A copy of float32 ``values`` whose data starts one byte past an aligned address."""
    raw = np.zeros(values.size * 4 + 1, np.uint8)
    copy = np.frombuffer(raw.data, np.float32, offset=1, count=values.size).reshape(values.shape)
    copy[...] = values
    assert not copy.flags.aligned
    return copy


def _reference_twin(opt, θ):
    """Copies of ``θ``'s parameters and an ``Adam(0.1)`` with a copy of ``opt``'s state for
    each: the per-parameter reference from here on."""
    ref, opt_ref = [mg.param(p.data.copy()) for p in θ], mg.Adam(0.1)
    for q, p in zip(ref, θ, strict=True):
        st = opt.state[p]
        opt_ref.state[q] = type(st)(tuple(a.copy() for a in st.arrays), list(st.scalars),
                                    st.shape)
    return ref, opt_ref


class _Subclass(np.ndarray):
    pass


GRADIENT_MISFITS = {   # what the kernel refuses to read where it lies, and the error it means
    "None": (lambda g: None, None),
    "a list": (lambda g: g.tolist(), TypeError),
    "float64": (lambda g: g.astype(np.float64), TypeError),
    "big-endian": (lambda g: g.astype(">f4"), TypeError),
    "transposed shape": (lambda g: np.ascontiguousarray(g.T), ValueError),
    "one more axis": (lambda g: g[None], ValueError),
    "not C-contiguous": (np.asfortranarray, None),
    "unaligned": (_unaligned, None),
    "an ndarray subclass": (lambda g: g.view(_Subclass), None),
}


def _flat_model():
    """Three Adam parameters ((2, 3), (4,) and ()) in a flat buffer, past their first step,
    their Params and gradients that fit."""
    ps = [mg.param(np.arange(6, dtype=np.float32).reshape(2, 3)),
          mg.param(np.ones(4, np.float32)), mg.param(np.float32(2.0))]
    θ, opt = mg.Params(ps), mg.Adam(0.1)
    good = [np.full(p.shape, 0.5, np.float32) for p in ps]
    mg.update_(opt, θ, _grads_of(θ, good))
    return opt, θ, good


@pytest.mark.parametrize("misfit", sorted(GRADIENT_MISFITS))
def test_gradients_set_by_hand_are_checked_and_otherwise_update_as_per_parameter(misfit):
    """A ``Grads`` whose gradient was replaced no longer lies in the flat buffer: ``update_``
    takes the general path, which names real errors (changing nothing) and otherwise updates
    as it would parameter by parameter."""
    opt, θ, good = _flat_model()
    gs = _gradient_of(θ, good)
    assert gs.flat is not None and gs[θ[0]].base is gs.flat
    make, error = GRADIENT_MISFITS[misfit]
    gs[θ[0]] = make(good[0])
    assert gs.flat is None
    before = _snapshot(opt, θ)
    if error is not None:
        with pytest.raises(error, match="shape|dtype"):
            mg.update_(opt, θ, gs)
        _assert_unchanged(opt, θ, before)
        return
    ref, opt_ref = _reference_twin(opt, θ)
    mg.update_(opt, θ, gs)
    for q, g in zip(ref, [gs[p] for p in θ], strict=True):
        if g is not None:
            mg.update_(opt_ref, q, g)
    for p, q in zip(θ, ref, strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def test_gradients_in_the_flat_buffer_are_the_gradients():
    """``Grads.flat`` holds every gradient, laid out like the parameters' buffer, each
    ``gs[p]`` a view into it; a parameter the loss does not reach has ``None`` and zeros
    there, and the step then skips it (Flux's rule for ``nothing``)."""
    opt, θ, good = _flat_model()
    gs = _gradient_of(θ, [good[0], None, good[2]])
    assert gs[θ[1]] is None
    np.testing.assert_array_equal(gs.flat, np.r_[good[0].ravel(), np.zeros(4), good[2].ravel()])
    before = θ[1].data.copy()
    mg.update_(opt, θ, gs)
    np.testing.assert_array_equal(θ[1].data, before)


def test_a_read_only_parameter_is_refused_and_nothing_changes():
    opt, θ, good = _flat_model()
    gs = _gradient_of(θ, good)
    θ[1].data.flags.writeable = False
    before = _snapshot(opt, θ)
    with pytest.raises(ValueError, match="read-only"):
        mg.update_(opt, θ, gs)
    _assert_unchanged(opt, θ, before)


# ================================================================================================
# 6. State
# ================================================================================================

@pytest.mark.parametrize("form", ["apply_", "update_", "params"])
def test_hyperparameters_are_mutable_between_steps(form):
    opt, ref = mg.Adam(), RefAdam()
    ps = [mg.param([1.0, -2.0]), mg.param([3.0, 0.5])]
    xr = [np.asarray(p).copy() for p in ps]
    grads = [np.array([1.0, -0.5]), np.array([2.0, 0.25])]
    schedule = [(0.001, (0.9, 0.999)), (0.1, (0.9, 0.999)), (0.1, (0.5, 0.9)), (0.02, (0.5, 0.9))]
    for k, (eta, beta) in enumerate(schedule):
        opt.eta, opt.beta = eta, beta
        ref.eta, ref.beta = eta, beta
        gs = [g * (k + 1) for g in grads]
        if form == "params":
            mg.update_(opt, mg.Params(ps), dict(zip(ps, gs, strict=True)))
        for i, (p, g) in enumerate(zip(ps, gs, strict=True)):
            if form == "apply_":
                p.data -= mg.apply_(opt, p, g.copy())
            elif form == "update_":
                mg.update_(opt, p, g)
            xr[i] = xr[i] - ref.step(i, xr[i], g)
    for p, x in zip(ps, xr, strict=True):
        assert _rel(np.asarray(p), x) <= 1e-13


def test_learning_rate_change_applies_to_the_next_step_exactly():
    opt, x = mg.Descent(0.1), np.zeros(2)
    assert mg.apply_(opt, x, np.array([1.0, 2.0])).tolist() == [0.1, 0.2]
    opt.eta = 0.5
    assert mg.apply_(opt, x, np.array([1.0, 2.0])).tolist() == [0.5, 1.0]
    mom = mg.Momentum(0.1, 0.9)
    mg.apply_(mom, x, np.array([1.0, 1.0]))          # v = −0.1
    mom.rho, mom.eta = 0.5, 1.0
    np.testing.assert_allclose(mg.apply_(mom, x, np.array([1.0, 1.0])), 0.05 + 1.0,
                               rtol=1e-15)


def _state_dicts(opt):
    """Every per-parameter dictionary an optimiser (or chain) keeps."""
    out = []
    for o in (opt.os if isinstance(opt, mg.Optimiser) else [opt]):
        for name in ("state", "current", "velocity", "avg"):
            if isinstance(getattr(o, name, None), mg.IdDict):
                out.append(getattr(o, name))
    return out


def _step_all(opt, form, params, g):
    """One step of ``opt`` on every parameter, in one of the calling forms."""
    if form == "params":
        mg.update_(opt, mg.Params(params), {p: g for p in params})
        return
    for p in params:
        if form == "apply_":
            p -= mg.apply_(opt, p, g.copy())
        else:
            mg.update_(opt, p, g)


def _new_params(form, n, size):
    """``n`` fresh parameters: plain NumPy arrays for the "numpy" form."""
    if form == "numpy":
        return [np.ones(size) for _ in range(n)]
    return [mg.param(np.ones(size)) for _ in range(n)]


@pytest.mark.parametrize("make", [
    lambda: mg.Adam(),
    lambda: mg.Optimiser(mg.ExpDecay(), mg.InvDecay(), mg.ClipNorm(1.0), mg.AMSGrad()),
    lambda: mg.Optimiser(mg.WeightDecay(0.1), SeedMomentum(0.1, 0.9), mg.RAdam()),
], ids=["Adam", "decays", "user-defined"])
@pytest.mark.parametrize("form", ["update_", "apply_", "params", "numpy"])
def test_state_is_freed_with_its_parameter(make, form):
    opt = make()
    ps = _new_params(form, 4, 5)
    for _ in range(3):
        _step_all(opt, form, ps, np.ones(5))
    # Every per-parameter dictionary with entries (stateless rules may keep none) has 4.
    dicts = [d for d in _state_dicts(opt) if len(d)]
    assert dicts and all(len(d) == 4 for d in dicts)
    keep = ps[0]
    storage = [weakref.ref(np.asarray(p)) for p in ps[1:]]
    owners = [weakref.ref(p) for p in ps[1:]]
    del ps
    gc.collect()
    assert all(r() is None for r in owners)
    assert all(len(d) == 1 for d in dicts)
    assert all(keep in d for d in dicts)
    # Nothing else holds on to the freed parameters' arrays either (buffers, state).
    assert all(r() is None for r in storage)


def test_state_is_freed_with_its_optimiser():
    """A new optimiser per run on the same model: each old optimiser, and the state it kept
    for the (still alive) parameters, goes away with it."""
    ps = [mg.param(np.ones(5)) for _ in range(3)]
    refs = []
    for _ in range(3):
        opt = mg.Adam()
        mg.update_(opt, mg.Params(ps), {p: np.ones(5) for p in ps})
        m = opt.state[ps[0]][0]
        refs += [weakref.ref(opt), weakref.ref(m if m.base is None else m.base)]
        del m
    del opt
    gc.collect()
    assert all(r() is None for r in refs)
    for p in ps:       # three fresh optimisers, one first Adam step (η·g/(|g|+ϵ)) each
        np.testing.assert_allclose(np.asarray(p), 1 - 3 * 0.001 / (1 + 1e-8), rtol=1e-15)


def _pickled(x):
    return pickle.loads(pickle.dumps(x))


@pytest.mark.parametrize("make", [
    lambda: mg.Adam(),
    lambda: mg.Optimiser(mg.ExpDecay(), mg.InvDecay(), mg.ClipNorm(1.0), mg.AMSGrad()),
    lambda: mg.Optimiser(mg.WeightDecay(0.1), SeedMomentum(0.1, 0.9), mg.RAdam()),
], ids=["Adam", "decays", "user-defined"])
@pytest.mark.parametrize("form", ["update_", "params"])
@pytest.mark.parametrize("copy_of", [copy.deepcopy, _pickled], ids=["deepcopy", "pickle"])
def test_a_copy_of_parameters_and_optimiser_trains_on_as_the_original_does(make, form, copy_of):
    """``copy.deepcopy((ps, opt))`` or a pickle of both: the copied state belongs to the
    copied parameters (the "params" form's flat group is left behind and rebuilt), and each
    side then steps on its own, the same way."""
    opt = make()
    ps = [mg.param(np.linspace(-1.0, 1.0, 5) * (k + 1)) for k in range(3)]
    g = np.array([0.5, -1.0, 0.25, 2.0, -0.75])
    for _ in range(3):
        _step_all(opt, form, ps, g)
    ps2, opt2 = copy_of((ps, opt))
    assert "_flat_groups" not in vars(opt2)
    dicts = [d for d in _state_dicts(opt2) if len(d)]
    assert dicts and all(all(p in d for p in ps2) and not any(p in d for p in ps) for d in dicts)
    before = [p.data.copy() for p in ps]
    for _ in range(3):
        _step_all(opt2, form, ps2, g)
    for p, b, p2 in zip(ps, before, ps2, strict=True):
        np.testing.assert_array_equal(p.data, b)        # the copy's steps left these alone
        assert not np.array_equal(p2.data, b)
    for _ in range(3):
        _step_all(opt, form, ps, g)
    for p, p2 in zip(ps, ps2, strict=True):
        np.testing.assert_array_equal(p2.data, p.data)


class _Slotted(mg.AbstractOptimiser):
    """A user-defined rule keeping its attributes in ``__slots__``: halves the step, counts."""

    __slots__ = ("eta", "steps")

    def __init__(self):
        self.eta, self.steps = 0.5, mg.IdDict()

    def apply_(self, x, Δ):
        self.steps[x] = self.steps.get(x, 0) + 1
        Δ *= self.eta
        return Δ


@pytest.mark.parametrize("copy_of", [copy.deepcopy, _pickled], ids=["deepcopy", "pickle"])
def test_a_copy_keeps_the_slots_of_a_user_defined_optimiser(copy_of):
    opt, p = _Slotted(), mg.param(np.ones(2))
    mg.update_(opt, p, np.ones(2))
    opt2, p2 = copy_of((opt, p))
    assert opt2.eta == 0.5 and opt2.steps[p2] == 1
    mg.update_(opt2, p2, np.ones(2))
    np.testing.assert_array_equal(p2.data, [0.0, 0.0])
    assert opt2.steps[p2] == 2 and opt.steps[p] == 1


@pytest.mark.parametrize("copy_of", [copy.deepcopy, _pickled], ids=["deepcopy", "pickle"])
def test_copies_of_params_grads_and_iddict_are_keyed_by_the_copied_parameters(copy_of):
    W, b = mg.param([1.0, 2.0]), mg.param([3.0])
    gs = mg.gradient(lambda: mg.sum(W * W) + mg.sum(b), mg.params(W, b))
    d = mg.IdDict()
    d[W] = "W's"
    ps2, gs2, d2, W2, b2 = copy_of((mg.params(W, b), gs, d, W, b))
    assert W2 in ps2 and b2 in ps2 and W not in ps2 and list(ps2) == [W2, b2]
    np.testing.assert_array_equal(gs2[W2], [2.0, 4.0])
    np.testing.assert_array_equal(gs2[b2], [1.0])
    with pytest.raises(mg.tracker.NotAParameterError):
        gs2[W]
    assert d2[W2] == "W's" and W not in d2 and len(d2) == 1
    # An IdDict copied on its own copies its keys too, which nothing else holds: they die at
    # once, and their entries with them (as after ``del W``).
    alone = copy_of(d)
    gc.collect()
    assert len(alone) == 0 and d[W] == "W's"


def _replace(opt, form, n):
    """Create ``n`` parameters, step them three times, free them and create ``n`` new ones at
    once (CPython then usually hands the new objects the freed addresses).  Returns the new
    parameters and whether one of them has a freed one's ``id``."""
    olds = _new_params(form, n, 3)
    for _ in range(3):
        _step_all(opt, form, olds, np.array([0.5, 0.5, 0.5]))
    old_ids = {id(p) for p in olds}
    storage = [np.ones(3) for _ in range(n)]
    del olds
    new = [np.ones(3) if form == "numpy" else mg.Param(a) for a in storage]
    return new, bool(old_ids & {id(p) for p in new})


@pytest.mark.parametrize("form", ["update_", "numpy", "params"])
def test_new_parameter_at_a_reused_address_starts_fresh(form):
    def make():
        return mg.Optimiser(mg.ExpDecay(0.5, 0.5, 2), mg.InvDecay(0.5), mg.Adam())

    g = np.array([1.0, -0.5, 2.0])
    expected = np.ones(3)
    expected -= mg.apply_(make(), expected, g.copy())
    opt = make()
    reused = 0
    for _ in range(20):
        new, same_id = _replace(opt, form, 2 if form == "params" else 1)
        reused += same_id
        opt[0].eta = 0.5        # ExpDecay's η is shared and has decayed; restore the original
        _step_all(opt, "update_" if form == "numpy" else form, new, g)
        for p in new:
            np.testing.assert_array_equal(np.asarray(p), expected)
    assert reused > 0, "the test never saw an address reused; it proved nothing"


def test_greek_and_ascii_keywords():
    greek = mg.Adam(η=0.01, β=(0.8, 0.9), ϵ=1e-7)
    ascii_ = mg.Adam(eta=0.01, beta=(0.8, 0.9), epsilon=1e-7)
    assert (greek.eta, greek.beta, greek.epsilon) == (ascii_.eta, ascii_.beta, ascii_.epsilon) \
        == (0.01, (0.8, 0.9), 1e-7)
    # ϵ (U+03F5) as written above reaches Python as ε (U+03B5); both spellings work.
    assert mg.Adam(ε=1e-6).epsilon == mg.Adam(**{"ϵ": 1e-6}).epsilon == 1e-6
    assert mg.Momentum(ρ=0.5).rho == 0.5
    assert mg.RMSProp(η=0.1, ρ=0.5, ϵ=1e-3).epsilon == 1e-3
    assert mg.AdaDelta(ρ=0.5).rho == 0.5
    assert mg.AdaGrad(η=0.5, ϵ=1e-4).epsilon == 1e-4
    assert mg.InvDecay(γ=0.5).gamma == 0.5
    assert mg.WeightDecay(λ=0.5).wd == 0.5
    assert mg.ExpDecay(η=0.5, decay=0.2, decay_step=3, clip=1e-3, start=2).step == 3
    assert mg.Adam(β1=0.5).beta == (0.5, 0.999)
    w = mg.AdamW(η=0.01, β=(0.8, 0.9), decay=0.1)
    assert (w[0].eta, w[0].beta, w[1].wd) == (0.01, (0.8, 0.9), 0.1)
    # Positional arguments in Flux's order.
    o = mg.OAdam(0.01, (0.6, 0.7), 1e-6)
    assert (o.eta, o.beta, o.epsilon) == (0.01, (0.6, 0.7), 1e-6)
    assert mg.OAdam().eta == 0.001 and mg.OAdam().beta == (0.5, 0.9)


def test_old_names():
    pairs = [("ADAM", "Adam"), ("RADAM", "RAdam"), ("OADAM", "OAdam"), ("ADAGrad", "AdaGrad"),
             ("ADADelta", "AdaDelta"), ("NADAM", "NAdam"), ("ADAMW", "AdamW")]
    for old, new in pairs:
        assert getattr(mg, old) is getattr(mg, new)
        assert getattr(mg.optimise, old) is getattr(mg.optimise, new)
    x, y = np.array([1.0]), np.array([1.0])
    x -= mg.apply_(mg.ADAM(), x, np.array([1.0]))
    y -= mg.apply_(mg.Adam(), y, np.array([1.0]))
    assert x[0] == y[0] == pytest.approx(0.999, rel=1e-9)
    w = mg.ADAMW(0.001, (0.9, 0.999), 0.1)
    assert isinstance(w, mg.Optimiser) and isinstance(w[0], mg.Adam) and w[1].wd == 0.1


def _legacy_problem():
    W = mg.param([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    b = mg.param([0.1, -0.2])
    x, y = np.array([1.0, 0.5, -1.0]), np.array([0.3, 0.7])

    def loss(x, y):
        return mg.sum((W @ x + b - y) ** 2)

    def exact_grads():
        r = np.asarray(W) @ x + np.asarray(b) - y        # loss = Σ r²: ∂W = 2r xᵀ, ∂b = 2r
        return 2 * np.outer(r, x), 2 * r

    return W, b, x, y, loss, exact_grads


def test_legacy_sgd_closure():
    W, b, x, y, loss, exact_grads = _legacy_problem()
    opt = mg.SGD([W, b], 0.1)
    assert callable(opt)
    for _ in range(3):
        W0, b0 = np.asarray(W).copy(), np.asarray(b).copy()
        gW, gb = exact_grads()
        mg.tracker.back_(lambda: loss(x, y))  # noqa: B023
        np.testing.assert_allclose(W.grad, gW, rtol=1e-14)
        assert opt() is None
        np.testing.assert_allclose(np.asarray(W), W0 - 0.1 * gW, rtol=1e-14)
        np.testing.assert_allclose(np.asarray(b), b0 - 0.1 * gb, rtol=1e-14)
        assert (W.grad == 0).all() and (b.grad == 0).all()
    # Gradients accumulate across back_ calls until opt() uses them.
    W0 = np.asarray(W).copy()
    gW, _ = exact_grads()
    mg.tracker.back_(lambda: loss(x, y))
    mg.tracker.back_(lambda: loss(x, y))
    opt()
    np.testing.assert_allclose(np.asarray(W), W0 - 0.1 * 2 * gW, rtol=1e-14)
    # Without a parameter list SGD is Descent.
    assert isinstance(mg.SGD(0.3), mg.Descent) and mg.SGD(0.3).eta == 0.3


def test_legacy_momentum_closure():
    W, b, x, y, loss, exact_grads = _legacy_problem()
    opt = mg.Momentum([W, b], 0.01, ρ=0.9, decay=0)
    assert callable(opt)
    ref = RefMomentum(0.01, 0.9)
    Wr, br = np.asarray(W).copy(), np.asarray(b).copy()
    for _ in range(4):
        gW, gb = exact_grads()
        mg.tracker.back_(lambda: loss(x, y))  # noqa: B023
        opt()
        Wr, br = Wr - ref.step("W", Wr, gW), br - ref.step("b", br, gb)
        np.testing.assert_allclose(np.asarray(W), Wr, rtol=1e-14)
        np.testing.assert_allclose(np.asarray(b), br, rtol=1e-14)
        assert (W.grad == 0).all()
    # A parameter with no accumulated gradient is left alone.
    untouched = mg.param([5.0])
    mg.Momentum([untouched], 0.01)()
    assert float(untouched[0]) == 5.0


def test_parameters_of_a_buffer_whose_member_died_form_a_new_one():
    """Once a parameter of a flat buffer dies, the others (with a new one) move into a new
    buffer at their next update together, and their gradients land there again."""
    import gc
    ps = [mg.param(np.ones(3, np.float32)) for _ in range(3)]
    opt = mg.Descent(0.5)
    mg.update_(opt, mg.Params(ps), {p: np.ones(3, np.float32) for p in ps})
    old = ps[0].flat
    del ps[2]
    gc.collect()
    assert old.views == []                          # dissolved: it holds no one now
    ps.append(mg.param(np.ones(3, np.float32)))
    θ, opt = mg.Params(ps), mg.Descent(0.5)     # (a new optimiser: its state in lockstep)
    mg.update_(opt, θ, {p: np.ones(3, np.float32) for p in ps})
    assert ps[0].flat is not old and ps[0].flat is ps[2].flat
    gs = mg.gradient(lambda: sum(mg.sum(p) for p in ps), θ)
    assert gs.flat is not None
    mg.update_(opt, θ, gs)
    np.testing.assert_array_equal(np.concatenate([p.data for p in ps]),
                                  np.r_[np.full(6, -0.5), np.zeros(3)])


@pytest.mark.parametrize("storage", ["new values", "its own view again"])
def test_a_parameter_given_new_storage_leaves_its_buffer(storage):
    """Assigning ``p.data`` dissolves the parameter's flat buffer at once (the step does not
    check each parameter's storage): gradients stop landing there, and the next update forms
    a new buffer from the values the parameters hold then."""
    ps = [mg.param(np.ones(3, np.float32)) for _ in range(3)]
    θ, opt = mg.Params(ps), mg.Descent(0.5)
    mg.update_(opt, θ, {p: np.ones(3, np.float32) for p in ps})      # each is 0.5 now
    old = ps[0].flat
    assert old.holds(θ) and ps[1].data.base is old.data
    ps[1].data = np.full(3, 4.0, np.float32) if storage == "new values" else ps[1].data
    assert old.views == [] and not old.holds(θ)
    gs = mg.gradient(lambda: sum(mg.sum(p) for p in ps), θ)
    assert gs.flat is None                          # not landed in the dissolved buffer
    mg.update_(opt, θ, gs)
    assert ps[0].flat is not old and ps[0].flat.holds(θ)
    moved = 3.5 if storage == "new values" else 0.0
    np.testing.assert_array_equal(np.concatenate([p.data for p in ps]),
                                  np.r_[np.zeros(3), np.full(3, moved), np.zeros(3)])


def test_a_buffer_keeps_its_latest_gradient_until_the_next_or_until_it_dissolves():
    """The flat buffer holds the latest gradient that landed in it (so that a gradient tree's
    arrays are recognised by identity); the next gradient replaces it, and a dissolved buffer
    lets go of it, so that its memory is freed with the caller's last reference."""
    ps = [mg.param(np.ones(3, np.float32)) for _ in range(2)]
    θ = mg.Params(ps)
    mg.update_(mg.Descent(0.5), θ, {p: np.ones(3, np.float32) for p in ps})
    loss = lambda: mg.sum(ps[0]) + mg.sum(ps[1])     # noqa: E731
    gs = mg.gradient(loss, θ)
    first = weakref.ref(gs.flat)
    views = [gs[p] for p in ps]
    assert ps[0].flat.landed_flat(views) is gs.flat
    del gs, views
    gc.collect()
    assert first() is not None                      # kept by the buffer
    gs = mg.gradient(loss, θ)
    gc.collect()
    assert first() is None and ps[0].flat.landed_flat([gs[p] for p in ps]) is gs.flat
    partial = mg.gradient(lambda: mg.sum(ps[0]), θ)     # ps[1]'s gradient stays None
    assert partial.flat is not None and ps[0].flat.landed is None
    assert ps[0].flat.landed_flat([partial[ps[0]], None]) is None
    gs = mg.gradient(loss, θ)
    latest = weakref.ref(gs.flat)
    buffer = ps[0].flat
    ps[0].data = np.zeros(3, np.float32)            # dissolves the buffer
    del gs
    gc.collect()
    assert latest() is None and buffer.landed is None

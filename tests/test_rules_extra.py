"""The rules Optimisers.jl added, and Muon (:mod:`minigrad.optimise.rules_extra`).

* Every rule's trajectory against an independent NumPy transcription of its published formula
  (Optimisers.jl 0.4's Julia code, the Lion paper / optax, torch.optim.Muon and optax's
  Muon), computed in float64: float64 to 1e-12 relative, float32 to 1e-5.
* Inside ``Optimiser(...)`` and over ``Params`` (flat buffers, one kernel call) bitwise equal to
  parameter-by-parameter updates; checkpoints resume bit for bit.
* Optimisers.jl's own tests of these rules (``test/runtests.jl`` and ``test/rules.jl``,
  ``shared/reference/flux.md`` §5), ported case by case; the 10^4-10^5-step training runs are
  ported with fewer steps.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pytest

import minigrad as mg
from minigrad.optimise import rules_extra as rx
from minigrad.optimise.step import fused_passes

# -- independent references (float64 NumPy, one object per parameter) -----------------------------


class RefRprop:         # Optimisers.jl's apply!(::Rprop)
    def __init__(self, eta=1e-3, ell=(0.5, 1.2), gamma=(1e-6, 50.0)):
        self.eta, self.ell, self.gamma, self.g = eta, ell, gamma, None

    def step(self, x, dx):
        if self.g is None:
            self.g, self.etai = np.zeros_like(x), np.full_like(x, self.eta)
        p = self.g * dx
        self.etai = np.where(p > 0, np.minimum(self.etai * self.ell[1], self.gamma[1]),
                             np.where(p < 0, np.maximum(self.etai * self.ell[0], self.gamma[0]),
                                      self.etai))
        self.g = np.where(p < 0, 0.0, dx)
        return self.etai * np.sign(self.g)


class RefSignum:        # Bernstein et al. 2018: m = βm + (1−β)g, step η·sign(m)
    def __init__(self, eta=0.01, beta=0.9):
        self.eta, self.beta, self.m = eta, beta, 0.0

    def step(self, x, dx):
        self.m = self.beta * self.m + (1 - self.beta) * dx
        return self.eta * np.sign(self.m)


class RefSignDecay:
    def __init__(self, lam=1e-3):
        self.lam = lam

    def step(self, x, dx):
        return dx + self.lam * np.sign(x)


class RefClipGrad:
    def __init__(self, delta=10.0):
        self.delta = delta

    def step(self, x, dx):
        return np.clip(dx, -self.delta, self.delta)


class RefClipNorm:
    def __init__(self, omega=10.0, p=2.0):
        self.omega, self.p = omega, p

    def step(self, x, dx):
        return dx * min(self.omega / np.linalg.norm(dx.ravel(), self.p), 1.0)


class RefAccumGrad:     # Optimisers.jl's apply!(::AccumGrad); None is Julia's nothing
    def __init__(self, n):
        self.n, self.counter, self.acc = n, 1, None

    def step(self, x, dx):
        self.acc = dx / self.n if self.counter == 1 else self.acc + dx / self.n
        if self.counter == self.n:
            self.counter = 1
            return self.acc
        self.counter += 1
        return None


class RefAdamW:         # Optimisers.jl 0.4's apply!(::AdamW)
    def __init__(self, eta=1e-3, beta=(0.9, 0.999), lam=0.0, eps=1e-8, couple=True):
        self.eta, self.beta, self.lam, self.eps, self.couple = eta, beta, lam, eps, couple
        self.m = self.v = 0.0
        self.bt = beta

    def step(self, x, dx):
        (b1, b2), (t1, t2) = self.beta, self.bt
        self.m = b1 * self.m + (1 - b1) * dx
        self.v = b2 * self.v + (1 - b2) * dx ** 2
        a = self.m / (1 - t1) / (np.sqrt(self.v / (1 - t2)) + self.eps)
        self.bt = (t1 * b1, t2 * b2)
        if self.couple:
            return self.eta * (a + self.lam * x)
        return self.eta * a + self.lam * x


class RefAdam(RefAdamW):
    pass


class RefCentredRMSProp:    # Optimisers.jl's apply!(::RMSProp) with centred = true
    def __init__(self, eta=1e-3, rho=0.9, eps=1e-8):
        self.eta, self.rho, self.eps, self.quad, self.lin = eta, rho, eps, 0.0, 0.0

    def step(self, x, dx):
        self.quad = self.rho * self.quad + (1 - self.rho) * dx ** 2
        self.lin = self.rho * self.lin + (1 - self.rho) * dx
        return dx * self.eta / (np.sqrt(self.quad - self.lin ** 2) + self.eps)


class RefLion:          # Chen et al. 2023, Algorithm 2 (and optax.scale_by_lion), no decay
    def __init__(self, eta=1e-3, beta=(0.9, 0.999)):
        self.eta, self.beta, self.m = eta, beta, 0.0

    def step(self, x, dx):
        b1, b2 = self.beta
        update = np.sign(b1 * self.m + (1 - b1) * dx)
        self.m = b2 * self.m + (1 - b2) * dx
        return self.eta * update


class RefLionOptimisersJl:  # Optimisers.jl 0.4's apply!(::Lion): the weights swapped
    def __init__(self, eta=1e-3, beta=(0.9, 0.999)):
        self.eta, self.beta, self.m = eta, beta, 0.0

    def step(self, x, dx):
        b1, b2 = self.beta
        self.m = b2 * dx + (1 - b2) * self.m
        return self.eta * np.sign((b2 - b1) * dx + b1 * self.m)


class RefDescent:
    def __init__(self, eta):
        self.eta = eta

    def step(self, x, dx):
        return self.eta * dx


class RefChain:         # Optimisers.jl's OptimiserChain: stops at nothing
    def __init__(self, *refs):
        self.refs = refs

    def step(self, x, dx):
        for r in self.refs:
            dx = r.step(x, dx)
            if dx is None:
                return None
        return dx


# (name, minigrad rule, reference): each with hyperparameters that make it do something.
CASES = {
    "Rprop": (lambda: mg.Rprop(0.01), lambda: RefRprop(0.01)),
    "Rprop(ℓ, Γ)": (lambda: mg.Rprop(0.01, (0.3, 1.5), (0.005, 0.02)),
                    lambda: RefRprop(0.01, (0.3, 1.5), (0.005, 0.02))),
    "Signum": (lambda: mg.Signum(), lambda: RefSignum()),
    "SignDecay": (lambda: mg.SignDecay(0.3), lambda: RefSignDecay(0.3)),
    "ClipGrad": (lambda: mg.ClipGrad(0.7), lambda: RefClipGrad(0.7)),
    "ClipNorm(p=2)": (lambda: rx.ClipNorm(2.0), lambda: RefClipNorm(2.0)),
    "ClipNorm(p=1)": (lambda: rx.ClipNorm(5.0, 1), lambda: RefClipNorm(5.0, 1)),
    "ClipNorm(p=3.5)": (lambda: rx.ClipNorm(1.5, 3.5), lambda: RefClipNorm(1.5, 3.5)),
    "ClipNorm(p=inf)": (lambda: rx.ClipNorm(1.2, math.inf), lambda: RefClipNorm(1.2, math.inf)),
    "AccumGrad": (lambda: mg.AccumGrad(3),
                  lambda: RefChain(RefAccumGrad(3))),
    "AccumGrad+Adam": (lambda: mg.Optimiser(mg.AccumGrad(2), mg.Adam(0.01)),
                       lambda: RefChain(RefAccumGrad(2), RefAdam(0.01))),
    "AdamW": (lambda: rx.AdamW(0.01, (0.8, 0.99), 0.3),
              lambda: RefAdamW(0.01, (0.8, 0.99), 0.3)),
    "AdamW(couple=false)": (lambda: rx.AdamW(0.01, λ=0.3, couple=False),
                            lambda: RefAdamW(0.01, lam=0.3, couple=False)),
    "CentredRMSProp": (lambda: rx.RMSProp(0.01, 0.8, centred=True),
                       lambda: RefCentredRMSProp(0.01, 0.8)),
    "Lion": (lambda: mg.Lion(0.01, (0.9, 0.99)), lambda: RefLion(0.01, (0.9, 0.99))),
}


def _reference_trajectory(ref, x0, grads):
    x = x0.astype(np.float64)
    out = []
    for g in grads:
        step = ref.step(x, g.astype(np.float64))
        if step is not None:        # (nothing: the parameter stays)
            x = x - step
        out.append(x)
    return out


def _gradients(rng, shape, steps, dtype):
    # Scales that vary, so that clipping and Rprop's sign changes both happen.
    return [(rng.standard_normal(shape) * (0.3 + 0.4 * t)).astype(dtype) for t in range(steps)]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("name", CASES)
def test_trajectory_matches_the_published_formula(name, dtype, rtol):
    make, make_ref = CASES[name]
    rng = np.random.default_rng(7)
    x0 = rng.standard_normal((3, 4)).astype(dtype)
    grads = _gradients(rng, (3, 4), 9, dtype)
    W, opt = mg.param(x0.copy()), make()
    expected = _reference_trajectory(make_ref(), x0, grads)
    for t, g in enumerate(grads):
        mg.update_(opt, W, g)
        assert W.dtype == dtype
        # Relative to the array's scale: an element that passes near zero keeps the
        # absolute error of its operands.
        np.testing.assert_allclose(W.data, expected[t], rtol=rtol,
                                   atol=rtol * np.abs(expected[t]).max(),
                                   err_msg=f"{name}, step {t + 1}")
    assert not np.array_equal(expected[-1], x0)     # (it moved)


def test_lion_is_not_optimisers_jl_lion():
    """The documented difference: Optimisers.jl weights the new gradient by β2, so after a
    long run of g = 1 a small g = −0.1 flips its step at once; the paper's momentum keeps
    stepping along the old direction."""
    x0, grads = np.zeros(1), [np.ones(1)] * 30 + [np.full(1, -0.1)] * 5
    W, opt = mg.param(x0.copy()), mg.Lion(0.01, (0.9, 0.99))
    steps = []
    for g in grads:
        before = W.data.copy()
        mg.update_(opt, W, g)
        steps.append(float((before - W.data)[0]))
    paper = _reference_trajectory(RefLion(0.01, (0.9, 0.99)), x0, grads)[-1]
    julia = _reference_trajectory(RefLionOptimisersJl(0.01, (0.9, 0.99)), x0, grads)[-1]
    np.testing.assert_allclose(W.data, paper, rtol=1e-12)
    assert steps[-5:] == pytest.approx([0.01] * 5)
    np.testing.assert_allclose(julia, -0.3 + 0.05, rtol=1e-12)     # (30 down, 5 back up)


# -- chains, flat buffers, checkpoints ------------------------------------------------------------

SHAPES = [(4, 3), (4,), (2, 5)]


def _model(dtype=np.float64):
    rng = np.random.default_rng(11)
    return [mg.param(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def _grads_of(ps, values):
    """A ``Grads`` of ``ps`` holding ``values``, set by hand."""
    gs = mg.Grads(ps)
    for p, g in zip(ps, values, strict=True):
        gs[p] = g
    return gs


def _grads(t, dtype=np.float64):
    rng = np.random.default_rng(100 + t)
    return [(rng.standard_normal(s) * (0.5 + 0.3 * t)).astype(dtype) for s in SHAPES]


@pytest.mark.parametrize("chained", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_params_and_chains_equal_per_parameter_updates_bitwise(name, chained):
    make = CASES[name][0]

    def build():
        return mg.Optimiser(make(), mg.Descent(0.5)) if chained else make()

    flat_ps, flat_opt = mg.Params(_model()), build()
    one_by_one, opt = _model(), build()
    for t in range(5):
        mg.update_(flat_opt, flat_ps, _grads_of(flat_ps, _grads(t)))
        for p, g in zip(one_by_one, _grads(t), strict=True):
            mg.update_(opt, p, g)
    for a, b in zip(flat_ps, one_by_one, strict=True):
        assert np.array_equal(a.data, b.data), name
    passes = fused_passes(build())
    if not name.startswith(("ClipNorm", "AccumGrad")):
        # One fused pass, and the parameters were updated through one flat buffer.
        assert len(passes) == 1 and len(passes[0]) == (2 if chained else 1)
        assert all(p.flat is not None and p.flat is flat_ps[0].flat for p in flat_ps)


def test_accumgrad_alone_updates_a_whole_model_in_one_kernel():
    ps, opt = mg.Params(_model()), mg.AccumGrad(2)
    gs = mg.Grads(ps)
    for p, g in zip(ps, _grads(0), strict=True):
        gs[p] = g
    mg.update_(opt, ps, gs)
    assert all(p.flat is ps[0].flat is not None for p in ps)


def test_accumgrad_holds_back_the_rest_of_the_chain():
    """Adam after AccumGrad neither moves nor advances its state on the silent calls."""
    opt, x = mg.Optimiser(mg.AccumGrad(3), mg.Adam(0.1)), np.zeros(2)
    for _ in range(2):
        assert np.array_equal(mg.apply_(opt, x, np.ones(2)), np.zeros(2))
        assert x not in opt[1].state
    mg.apply_(opt, x, np.ones(2))
    assert opt[1].state[x].scalars == [0.81, 0.998001]      # (one Adam step)


def _train(model, opt, x, steps, start=0):
    ps = mg.params(model)
    for t in range(start, start + steps):
        gs = mg.gradient(lambda t=t: mg.sum(model(x) * model(x)) * (1 + 0.1 * t), ps)
        mg.update_(opt, ps, gs)


@pytest.mark.parametrize("make", [
    lambda: mg.Lion(0.01),
    lambda: mg.AccumGrad(2),
    lambda: mg.Optimiser(mg.AccumGrad(2), mg.Adam(0.01)),
    lambda: mg.Rprop(0.01),
    lambda: rx.AdamW(0.01, λ=0.1),
    lambda: mg.Muon(0.02, fallback=rx.AdamW(0.01)),
], ids=["Lion", "AccumGrad", "AccumGrad+Adam", "Rprop", "AdamW", "Muon"])
def test_checkpoint_resumes_bit_for_bit(make):
    np.random.seed(5)
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    model, opt = mg.Chain(mg.Dense(3, 4), mg.Dense(4, 2)), make()
    _train(model, opt, x, 3)        # (3 steps: AccumGrad(2) is mid-cycle)
    path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    mg.save(path, model, opt)
    _train(model, opt, x, 4, start=3)
    np.random.seed(6)
    model2, opt2 = mg.Chain(mg.Dense(3, 4), mg.Dense(4, 2)), make()
    mg.load(path, model2, opt2)
    _train(model2, opt2, x, 4, start=3)
    for a, b in zip(mg.params(model), mg.params(model2), strict=True):
        assert np.array_equal(a.data, b.data)


# -- Muon ---------------------------------------------------------------------------------------

def torch_newton_schulz(g, coefficients=(3.4445, -4.775, 2.0315), steps=5, eps=1e-7):
    """torch.optim._muon._zeropower_via_newtonschulz, transcribed (float64, no bfloat16)."""
    a, b, c = coefficients
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / max(np.linalg.norm(x), eps)
    for _ in range(steps):
        gram = x @ x.T
        gram_update = b * gram + c * (gram @ gram)      # addmm(gram, gram, gram, beta=b, alpha=c)
        x = a * x + gram_update @ x                     # addmm(x, gram_update, x, beta=a)
    return x.T if g.shape[0] > g.shape[1] else x


class RefTorchMuon:     # torch.optim.Muon's step, transcribed: lerp momentum, Nesterov
    def __init__(self, lr=1e-3, weight_decay=0.1, momentum=0.95, adjust="original"):
        self.lr, self.wd, self.mu, self.adjust, self.buf = lr, weight_decay, momentum, adjust, 0.0

    def new_param(self, p, g):
        self.buf = self.buf + (1 - self.mu) * (g - self.buf)        # buf.lerp_(g, 1 − μ)
        update = g + self.mu * (self.buf - g)                       # g.lerp(buf, μ)
        update = torch_newton_schulz(update)
        a, b = p.shape
        ratio = math.sqrt(max(1, a / b)) if self.adjust == "original" else \
            0.2 * math.sqrt(max(a, b))
        p = p * (1 - self.lr * self.wd)
        return p - self.lr * ratio * update


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)])
@pytest.mark.parametrize("scaling", ["original", "match_rms_adamw"])
def test_muon_matches_torch_muon(shape, scaling):
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal(shape)
    W, opt = mg.param(x0.copy()), mg.Muon(0.02, scaling=scaling)
    ref, x = RefTorchMuon(0.02, adjust=scaling), x0
    for _ in range(6):
        g = rng.standard_normal(shape)
        mg.update_(opt, W, g)
        x = ref.new_param(x, g)
        np.testing.assert_allclose(W.data, x, rtol=1e-12, atol=1e-14)


def test_muon_matches_optax_muon():
    """optax.contrib.scale_by_muon (nesterov: mu_hat = β·mu + (1−β)·g, then Newton-Schulz of
    mu_hat/(‖mu_hat‖ + ϵ) and the factor √max(1, fan_out/fan_in)), without weight decay."""
    rng = np.random.default_rng(4)
    shape = (8, 3)
    x, mu = rng.standard_normal(shape), np.zeros(shape)
    W, opt = mg.param(x.copy()), mg.Muon(0.05, λ=0.0, ϵ=0.0)
    a, b, c = 3.4445, -4.7750, 2.0315
    for _ in range(5):
        g = rng.standard_normal(shape)
        mg.update_(opt, W, g)
        mu = 0.95 * mu + 0.05 * g
        u = (0.95 * mu + 0.05 * g).T        # (wide: optax transposes a tall matrix)
        u = u / (np.linalg.norm(u) + 0.0)
        for _ in range(5):
            gram = u @ u.T
            u = a * u + (b * gram + c * gram @ gram) @ u
        x = x - 0.05 * math.sqrt(max(1, 8 / 3)) * u.T
        np.testing.assert_allclose(W.data, x, rtol=1e-12, atol=1e-14)


def test_newton_schulz_orthogonalises():
    """The output keeps the input's singular vectors and pushes its singular values into
    the quintic's band around 1 (roughly 0.68 to 1.13, Jordan's coefficients)."""
    rng = np.random.default_rng(9)
    g = rng.standard_normal((7, 4)) @ np.diag([5.0, 1.0, 0.3, 0.05])
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    o = rx.newton_schulz(g)
    inner = u.T @ o @ vt.T
    assert np.abs(inner - np.diag(np.diag(inner))).max() < 1e-12
    assert np.all((np.diag(inner) > 0.6) & (np.diag(inner) < 1.2))


def test_muon_float32_stays_float32_and_matches_float64():
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((5, 3))
    W32, W64 = mg.param(x0.astype(np.float32)), mg.param(x0.copy())
    o32, o64 = mg.Muon(0.02), mg.Muon(0.02)
    for _ in range(4):
        g = rng.standard_normal((5, 3)).astype(np.float32)
        mg.update_(o32, W32, g)
        mg.update_(o64, W64, g.astype(np.float64))
    assert W32.dtype == np.float32 and o32.momentum[W32].dtype == np.float32
    np.testing.assert_allclose(W32.data, W64.data, rtol=1e-5)


def test_muon_fallback_handles_other_arrays_and_params_match_one_by_one():
    ps = mg.Params(_model())
    one_by_one = _model()
    muon, alone, fallback = mg.Muon(0.02), mg.Muon(0.02), rx.AdamW()
    b_alone = mg.param(one_by_one[1].data.copy())
    for t in range(4):
        mg.update_(muon, ps, _grads_of(ps, _grads(t)))
        for p, g in zip(one_by_one, _grads(t), strict=True):
            mg.update_(alone, p, g)
        mg.update_(fallback, b_alone, _grads(t)[1])
    for a, b in zip(ps, one_by_one, strict=True):
        assert np.array_equal(a.data, b.data)
    assert np.array_equal(ps[1].data, b_alone.data)        # (the 1-D bias: AdamW's step)
    assert ps[0] in muon.momentum and ps[1] not in muon.momentum


def test_muon_hyperparameters_are_checked():
    with pytest.raises(ValueError, match="Muon: hyperparameter rho must be in \\[0, 1\\]"):
        mg.Muon(rho=1.5)
    opt = mg.Muon()
    with pytest.raises(ValueError, match="Muon: hyperparameter eta must be a finite real"):
        opt.eta = float("nan")
    assert opt.eta == 0.001
    with pytest.raises(ValueError, match="scaling one of"):
        mg.Muon(scaling="sqrt")
    with pytest.raises(TypeError, match="unexpected keyword 'beta'"):
        mg.Muon(beta=0.9)
    assert mg.Muon(momentum=0.9, λ=0.0).rho == 0.9


# -- construction: defaults, keywords, ranges -----------------------------------------------------

def test_defaults_are_optimisers_jl_04s():
    assert (mg.Rprop().eta, mg.Rprop().ell, mg.Rprop().bounds) == (0.001, (0.5, 1.2), (1e-6, 50.0))
    assert (mg.Signum().eta, mg.Signum().rho) == (0.01, 0.9)
    assert mg.SignDecay().wd == 1e-3 and mg.ClipGrad().thresh == 10.0
    c = rx.ClipNorm()
    assert (c.omega, c.p, c.throw) == (10.0, 2.0, True)
    w = rx.AdamW()
    assert (w.eta, w.beta, w.wd, w.epsilon, w.couple) == (0.001, (0.9, 0.999), 0.0, 1e-8, True)
    assert (mg.Lion().eta, mg.Lion().beta) == (0.001, (0.9, 0.999))
    assert type(rx.RMSProp()) is mg.RMSProp and type(rx.RMSProp(centered=True)) is \
        mg.CentredRMSProp
    m = mg.Muon()
    assert (m.eta, m.rho, m.wd, m.epsilon, m.steps, m.coefficients, m.nesterov, m.scaling) == \
        (0.001, 0.95, 0.1, 1e-7, 5, (3.4445, -4.775, 2.0315), True, "original")


def test_keywords_in_ascii_and_greek():
    assert mg.Rprop(η=0.1, ℓ=(0.4, 1.3), Γ=(1e-5, 10.0)).bounds == (1e-5, 10.0)
    assert mg.Signum(β=0.8).rho == mg.Signum(beta=0.8).rho == 0.8
    assert mg.ClipGrad(δ=3.0).thresh == mg.ClipGrad(delta=3.0).thresh == 3.0
    assert rx.AdamW(λ=0.1).wd == rx.AdamW(lambda_=0.1).wd == 0.1
    assert rx.ClipNorm(ω=2.0, p=1).omega == 2.0
    assert mg.SignDecay(λ=0.2).wd == 0.2


@pytest.mark.parametrize("make, message", [
    (lambda: mg.Rprop(ell=(0.5,)), "Rprop: hyperparameter ell must be a finite real number "
                                    "pair (ℓ−, ℓ+), each > 0"),
    (lambda: mg.Rprop(Γ=(-1.0, 2.0)), "Rprop: hyperparameter bounds must be a finite real "
                                      "number pair (Γmin, Γmax), each >= 0"),
    (lambda: mg.AccumGrad(0), "AccumGrad: hyperparameter n must be an integer >= 1, got 0"),
    (lambda: mg.AccumGrad(2.5), "AccumGrad: hyperparameter n must be an integer >= 1"),
    (lambda: rx.ClipNorm(p=-1), "ClipNorm: hyperparameter p must be > 0 (inf allowed)"),
    (lambda: rx.ClipNorm(0.0), "ClipNorm: hyperparameter omega must be > 0"),
    (lambda: mg.Signum(rho=1.5), "Signum: hyperparameter rho must be in [0, 1]"),
    (lambda: mg.Lion(β=(0.9, 1.0)), "Lion: hyperparameter beta must be a finite real number "
                                    "pair (β1, β2), each in [0, 1)"),
    (lambda: mg.ClipGrad(-1.0), "ClipGrad: hyperparameter thresh must be > 0"),
])
def test_hyperparameters_out_of_range_are_refused(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert message in str(err.value)


def test_assignment_is_checked_and_changes_nothing():
    opt = mg.Rprop()
    with pytest.raises(ValueError, match="ell"):
        opt.ell = (0.5, float("inf"))
    assert opt.ell == (0.5, 1.2)
    clip = rx.ClipNorm()
    clip.p = math.inf
    assert clip.p == math.inf
    with pytest.raises(TypeError, match="throw must be True or False"):
        rx.ClipNorm(throw=1)
    with pytest.raises(TypeError, match="couple must be True or False"):
        rx.AdamW(couple="yes")


# -- Optimisers.jl's test/runtests.jl and test/rules.jl, ported -----------------------------------

def test_runtests_clipgrad_and_clipnorm():
    x = np.array([1.0, 10.0, 100.0])
    g = np.array([1.0, 10.0, 100.0])
    assert mg.apply_(mg.ClipGrad(13), x, g.copy()).tolist() == [1.0, 10.0, 13.0]
    assert np.linalg.norm(mg.apply_(rx.ClipNorm(10), x, g.copy())) == pytest.approx(10)
    with pytest.raises(mg.DomainError, match="2.0-norm nan"):
        mg.apply_(rx.ClipNorm(10), x, np.array([1.0, np.nan, 1.0]))
    # ... per array: two arrays clipped separately.
    ps = mg.Params([mg.param([3.0, 4.0]), mg.param([30.0, 40.0])])
    gs = mg.Grads(ps)
    gs[ps[0]], gs[ps[1]] = np.array([3.0, 4.0]), np.array([30.0, 40.0])
    mg.update_(rx.ClipNorm(10), ps, gs)
    assert ps[0].data.tolist() == [0.0, 0.0] and ps[1].data.tolist() == [24.0, 32.0]


def test_runtests_chains_with_clipgrad():
    for opt, expected in [
        (mg.ClipGrad(2), [0.0, 8.0, 98.0]),
        (mg.Optimiser(mg.ClipGrad(2), mg.WeightDecay(0.1)), [1 - 0.1 - 1, 10 - 1 - 2,
                                                             100 - 10 - 2]),
    ]:
        W = mg.param([1.0, 10.0, 100.0])
        mg.update_(opt, W, np.array([1.0, 2.0, 3.0]))
        np.testing.assert_allclose(W.data, expected, rtol=1e-14)


def test_rules_accumgrad_with_descent():
    """test/rules.jl: AccumGrad(3) + Descent(0.01)."""
    x0 = np.array([1.0, 2.0, 3.0])
    W, opt = mg.param(x0.copy()), mg.Optimiser(mg.AccumGrad(3), mg.Descent(0.01))
    gs = [np.array([1.0, 2.0, 4.0]), np.array([-3.0, 1.0, 0.5]), np.array([2.0, 2.0, 2.0])]
    for g in gs[:2]:
        mg.update_(opt, W, g)
        assert np.array_equal(W.data, x0)
    mg.update_(opt, W, gs[2])
    np.testing.assert_allclose(W.data, x0 - 0.01 * (gs[0] + gs[1] + gs[2]) / 3, rtol=1e-15)
    after = W.data.copy()
    mg.update_(opt, W, np.array([5.0, 5.0, 5.0]))
    assert np.array_equal(W.data, after)


def test_accumgrad_docstring_example():
    """AccumGrad's jldoctest: OptimiserChain(AccumGrad(2), WeightDecay(0.01), Descent(0.1))."""
    x, y = mg.param(np.float32([1.0])), mg.param(np.float32([2.0]))
    ps, r = mg.Params([x, y]), mg.Optimiser(mg.AccumGrad(2), mg.WeightDecay(0.01),
                                            mg.Descent(0.1))
    for gx, gy, ex, ey in ((33, 0, 1.0, 2.0), (0, 444, -0.651, -20.202002)):
        gs = mg.Grads(ps)
        gs[x], gs[y] = np.float32([gx]), np.float32([gy])
        mg.update_(r, ps, gs)
        np.testing.assert_allclose([x.data[0], y.data[0]], [ex, ey], rtol=1e-6)


# test/rules.jl's RULES list: the new rules at default settings, and its chains.
UPSTREAM_RULES = {
    "Rprop()": lambda: mg.Rprop(),
    "Signum()": lambda: mg.Signum(),
    "Lion()": lambda: mg.Lion(),
    "AdamW()": lambda: rx.AdamW(),
    "AdamW(couple=false)": lambda: rx.AdamW(couple=False),
    "RMSProp(centred=true)": lambda: rx.RMSProp(centred=True),
    "Chain(SignDecay(0.001), Adam(0.001))": lambda: mg.Optimiser(mg.SignDecay(0.001),
                                                                 mg.Adam(0.001)),
    "Chain(ClipNorm(), Adam(0.001))": lambda: mg.Optimiser(rx.ClipNorm(), mg.Adam(0.001)),
    "Chain(ClipGrad(0.5), Momentum())": lambda: mg.Optimiser(mg.ClipGrad(0.5), mg.Momentum()),
    "Muon()": lambda: mg.Muon(),
}


@pytest.mark.parametrize("name", UPSTREAM_RULES)
def test_rules_simple_sum(name):
    """test/rules.jl "simple sum": loss sum(abs2, x + x') from shuffled 1..64, whose sum is
    2080; upstream asserts sum(m) < 2080 after 10^5 steps, here after 300 (and each of the
    last 100 steps lowered the loss)."""
    rng = np.random.default_rng(1)
    m = mg.param(rng.permutation(np.arange(1.0, 65.0)).reshape(8, 8))
    opt = UPSTREAM_RULES[name]()

    def loss():
        s = m.data + m.data.T
        return float(np.sum(s * s))

    losses = []
    for _ in range(300):
        s = m.data + m.data.T
        mg.update_(opt, m, 4 * s)           # the gradient of sum(abs2, x + x')
        losses.append(loss())
    assert m.data.sum() < 2080
    assert losses[-1] < losses[-100]


@pytest.mark.parametrize("name", UPSTREAM_RULES)
def test_rules_independence(name):
    """test/rules.jl "independence": w′ learns w from iloss = mean((w·x − w′·x)²), x =
    rand(10, 20); upstream asserts iloss > 1 at the start and < 0.01 after 10^5 steps, here
    that it halves within 1000 (Julia's random numbers differ from NumPy's anyway).  Muon's
    steps have a fixed spectral size, η = 0.001 at torch's default: 3000 steps."""
    rng = np.random.default_rng(1)
    w, w2 = rng.standard_normal((10, 10)), mg.param(rng.standard_normal((10, 10)))
    opt = UPSTREAM_RULES[name]()

    def iloss(x):
        e = w @ x - w2.data @ x
        return float(np.mean(e * e)), e

    start = iloss(rng.random((10, 20)))[0]
    assert start > 1
    for _ in range(3000 if name == "Muon()" else 1000):
        x = rng.random((10, 20))
        _, e = iloss(x)
        mg.update_(opt, w2, -2 * e @ x.T / e.size)     # ∂iloss/∂w′
    assert iloss(rng.random((10, 20)))[0] < start / 2

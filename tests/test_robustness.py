"""Property-based robustness tests (Hypothesis) over ops and optimiser rules.

Random shapes (including empty ones and 0-d), float32 and float64, extreme values (the largest
finite numbers, subnormals, signed zeros) and NaN/±inf in gradients:

* every rule's fused kernel equals, bit for bit, its per-element ``math`` evaluated in Python
  with NumPy scalars of the parameter's dtype (so no element is corrupted by another, by the
  flat layout or by a silent float64 round trip), for 1 to 3 steps, NaN and inf included;
* parameters and state keep their dtype and size;
* ``update_(opt, ps, gs)`` (one kernel over a flat buffer) equals updating each parameter on
  its own, bit for bit, for any mix of shapes;
* ``ClipNorm`` clips to its threshold even when the squared norm overflows;
* ``ApplyIfFinite`` leaves parameters and the inner state untouched on a non-finite gradient
  (skip) or names the parameter (raise); a bad gradient shape or dtype is an error naming the
  parameter and changes nothing;
* every op keeps float32 as float32 (value and gradient), never writes into its inputs, gives
  gradients of the inputs' shapes, and the bounded ops (``tanh``, ``σ``, ``softmax``,
  ``logsoftmax``, ``softplus``, ...) stay finite on finite inputs of any size.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad.optimise.kernels import as_hyper

EXAMPLES = int(os.environ.get("ROBUSTNESS_EXAMPLES", "25"))
examples = settings(max_examples=EXAMPLES)

dtypes = st.sampled_from([np.float32, np.float64])
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


def special(dtype) -> list:
    info = np.finfo(dtype)
    return [0.0, -0.0, float(info.tiny), -float(info.tiny), float(info.smallest_subnormal),
            float(info.max) / 4, -float(info.max) / 4, float(info.eps), 1.0, -1.0]


def finite_values(dtype, big: bool = True):
    width = np.finfo(dtype).bits
    top = float(np.finfo(dtype).max) / 4 if big else 1e3
    return st.one_of(st.floats(-10, 10, width=width),
                     st.sampled_from(special(dtype) if big else [0.0, -0.0, 1.0]),
                     st.floats(-top, top, width=width))


def values(dtype, nonfinite: bool):
    elements = finite_values(dtype)
    if nonfinite:
        elements = st.one_of(elements, st.sampled_from([np.nan, np.inf, -np.inf]))
    return elements


def arrays(draw, dtype, shape, nonfinite=False, big=True):
    elements = values(dtype, nonfinite) if big else finite_values(dtype, big=False)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def equal(a, b) -> bool:
    """Bitwise equal, NaNs included (any NaN payload)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(
        np.all((a == b) & (np.signbit(a) == np.signbit(b)) | (np.isnan(a) & np.isnan(b))))


# -- rules: the kernel against the per-element math ---------------------------------------------

RULES = {
    "Descent": lambda: mg.Descent(0.1), "Momentum": mg.Momentum, "Nesterov": mg.Nesterov,
    "RMSProp": mg.RMSProp, "Adam": mg.Adam, "RAdam": mg.RAdam, "AdaMax": mg.AdaMax,
    "OAdam": mg.OAdam, "AdaGrad": mg.AdaGrad, "AdaDelta": mg.AdaDelta, "AMSGrad": mg.AMSGrad,
    "NAdam": mg.NAdam, "AdaBelief": mg.AdaBelief, "WeightDecay": lambda: mg.WeightDecay(0.1),
    "ClipValue": lambda: mg.ClipValue(0.5), "ClipNorm": lambda: mg.ClipNorm(1.0),
    "ExpDecay": lambda: mg.ExpDecay(0.5, 0.5, 2, 1e-3), "InvDecay": lambda: mg.InvDecay(0.5),
}


def reference(rule, x: np.ndarray, grads: list) -> tuple:
    """``rule``'s steps evaluated element by element in Python, in the parameter's dtype."""
    dtype = x.dtype
    fills = [rule.epsilon if f == "epsilon" else f for f in rule.state_fill]
    state = [np.full(x.size, f, dtype) for f in fills]
    scalars = rule.scalars()
    xf = x.reshape(-1).copy()
    with np.errstate(all="ignore"):
        for g in grads:
            gf = g.reshape(-1)
            h = list(as_hyper(rule.hypers(scalars, "key", gf), dtype))
            for i in range(xf.size):
                out = rule.math(gf[i], xf[i], *[s[i] for s in state], *h)
                d, *new = out if isinstance(out, tuple) else (out,)
                for s, v in zip(state, new, strict=True):
                    s[i] = v
                xf[i] = xf[i] - dtype.type(d)
            rule.advance(scalars, "key")
    return xf.reshape(x.shape), state, scalars


@examples
@given(name=st.sampled_from(sorted(RULES)), dtype=dtypes, shape=shapes, data=st.data())
def test_kernel_equals_the_per_element_math(name, dtype, shape, data):
    nonfinite = data.draw(st.booleans(), "nonfinite gradients")
    x0 = arrays(data.draw, dtype, shape, big=False)
    steps = data.draw(st.integers(1, 3), "steps")
    grads = [arrays(data.draw, dtype, shape, nonfinite) for _ in range(steps)]
    rule = RULES[name]()
    p = mg.param(x0)
    with np.errstate(all="ignore"):
        for g in grads:
            g_before = g.copy()
            mg.update_(rule, p, g)
            assert equal(g, g_before), "update_ modified the caller's gradient"
    want_x, want_state, want_scalars = reference(RULES[name](), x0, grads)
    assert p.dtype == dtype
    assert equal(p.data, want_x), f"{name}: parameter differs from the per-element math"
    if rule.state_fill:
        st_ = rule.state[p]
        assert [a.dtype for a in st_.arrays] == [np.dtype(dtype)] * len(want_state)
        for a, b in zip(st_.arrays, want_state, strict=True):
            assert equal(a, b), f"{name}: state differs"
    if p in rule.state:
        assert rule.state[p].scalars == want_scalars


@examples
@given(name=st.sampled_from(sorted(RULES)), dtype=dtypes, shape=shapes, data=st.data())
def test_apply_equals_update(name, dtype, shape, data):
    x0 = arrays(data.draw, dtype, shape, big=False)
    g = arrays(data.draw, dtype, shape, nonfinite=data.draw(st.booleans()))
    a, b = RULES[name](), RULES[name]()
    p = mg.param(x0)
    with np.errstate(all="ignore"):
        step = mg.apply_(a, x0.copy(), g.copy())
        mg.update_(b, p, g)
        assert step.dtype == dtype and step.shape == shape
        assert equal(p.data, x0 - step)


CHAINS = {
    "AdamW": lambda: mg.AdamW(0.01, (0.9, 0.999), 0.1),
    "ClipValue+Momentum+InvDecay": lambda: mg.Optimiser(mg.ClipValue(0.3), mg.Momentum(),
                                                        mg.InvDecay(0.1)),
    "Adam+ExpDecay": lambda: mg.Optimiser(mg.Adam(), mg.ExpDecay(1.0, 0.5, 1, 1e-3)),
    **{name: RULES[name] for name in ("Adam", "RAdam", "AdaDelta", "AMSGrad", "OAdam",
                                      "NAdam", "AdaBelief", "AdaMax")},
}


@examples
@given(name=st.sampled_from(sorted(CHAINS)), dtype=dtypes,
       shapes_=st.lists(shapes, min_size=1, max_size=4), data=st.data())
def test_flat_update_equals_parameter_by_parameter(name, dtype, shapes_, data):
    xs = [arrays(data.draw, dtype, s, big=False) for s in shapes_]
    steps = [[arrays(data.draw, dtype, s, nonfinite=True) for s in shapes_] for _ in range(2)]
    flat, each = [mg.param(x) for x in xs], [mg.param(x) for x in xs]
    opt_flat, opt_each = CHAINS[name](), CHAINS[name]()
    with np.errstate(all="ignore"):
        for gs_ in steps:
            grads = mg.Grads(mg.Params(flat))
            for p, g in zip(flat, gs_, strict=True):
                grads[p] = g
            mg.update_(opt_flat, mg.Params(flat), grads)
            for p, g in zip(each, gs_, strict=True):
                mg.update_(opt_each, p, g)
    for p, q in zip(flat, each, strict=True):
        assert p.dtype == dtype and equal(p.data, q.data)


@examples
@given(dtype=dtypes, shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6),
       data=st.data())
def test_clipnorm_clips_even_when_the_squares_overflow(dtype, shape, data):
    g = arrays(data.draw, dtype, shape)
    thresh = data.draw(st.sampled_from([1e-3, 1.0, 10.0]))
    norm = float(np.linalg.norm(g.astype(np.longdouble)))
    assume(0 < norm < float(np.finfo(np.float64).max))   # a norm past 1.8e308 has no float
    step = mg.apply_(mg.ClipNorm(thresh), np.zeros(shape, dtype), g.copy())
    assert step.dtype == dtype and np.all(np.isfinite(step))
    got = float(np.linalg.norm(step.astype(np.longdouble)))
    if norm <= thresh:
        assert equal(step, g)
    elif thresh / norm >= np.finfo(dtype).tiny:
        assert got == pytest.approx(thresh, rel=1e-5)
    else:       # the scale itself is subnormal in this dtype: as many digits as it has left
        granularity = float(np.finfo(dtype).smallest_subnormal) / (thresh / norm)
        assert got == pytest.approx(thresh, rel=1e-5 + granularity)


# -- the guard -----------------------------------------------------------------------------------

GUARDED = {"Adam": mg.Adam, "AdamW": CHAINS["AdamW"], "ExpDecay": RULES["ExpDecay"],
           "RAdam": mg.RAdam, "user": lambda: mg.Optimiser(mg.Descent(0.1), mg.Momentum())}


@examples
@given(name=st.sampled_from(sorted(GUARDED)), dtype=dtypes,
       shapes_=st.lists(shapes, min_size=1, max_size=3), data=st.data())
def test_guard_skips_exactly_the_non_finite_steps(name, dtype, shapes_, data):
    xs = [arrays(data.draw, dtype, s, big=False) for s in shapes_]
    model = {f"p{i}": mg.param(x) for i, x in enumerate(xs)}
    ps = mg.Params(model.values())
    mirror = [mg.param(x) for x in xs]          # the same finite steps, unguarded
    guard, plain = mg.ApplyIfFinite(GUARDED[name](), model=model), GUARDED[name]()
    skipped = 0
    with np.errstate(all="ignore"):
        for _ in range(data.draw(st.integers(1, 4), "steps")):
            gs_ = [arrays(data.draw, dtype, s, nonfinite=True) for s in shapes_]
            finite = all(np.all(np.isfinite(g)) for g in gs_)
            grads = mg.Grads(ps)
            for p, g in zip(ps, gs_, strict=True):
                grads[p] = g
            mg.update_(guard, ps, grads)
            if finite:
                mg.update_(plain, mirror, _grads(mirror, gs_))
            else:
                skipped += 1
    assert guard.skipped == skipped
    for p, q in zip(ps, mirror, strict=True):
        assert equal(p.data, q.data)


def _grads(ps, gs_):
    grads = mg.Grads(mg.Params(ps))
    for p, g in zip(ps, gs_, strict=True):
        grads[p] = g
    return grads


@examples
@given(dtype=dtypes, shapes_=st.lists(shapes.filter(lambda s: np.prod(s) > 0), min_size=1,
                                      max_size=3), data=st.data())
def test_guard_raise_names_the_parameter_and_changes_nothing(dtype, shapes_, data):
    xs = [arrays(data.draw, dtype, s, big=False) for s in shapes_]
    model = {f"layer{i}": mg.param(x) for i, x in enumerate(xs)}
    ps = mg.Params(model.values())
    guard = mg.ApplyIfFinite(mg.Adam(), "raise", model=model)
    mg.update_(guard, ps, _grads(list(ps), [np.ones(s, dtype) for s in shapes_]))
    before = [p.data.copy() for p in ps]
    state = [[a.copy() for a in guard.opt.state[p].arrays] for p in ps]
    scalars = [list(guard.opt.state[p].scalars) for p in ps]
    bad = data.draw(st.integers(0, len(shapes_) - 1), "bad parameter")
    gs_ = [np.ones(s, dtype) for s in shapes_]
    flat = gs_[bad].reshape(-1)
    flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(
        st.sampled_from([np.nan, np.inf, -np.inf]))
    with pytest.raises(mg.NonFiniteGradientError) as info:
        mg.update_(guard, ps, _grads(list(ps), gs_))
    assert f"layer{bad} (a param of dtype {np.dtype(dtype)} and shape {shapes_[bad]})" in str(
        info.value)
    assert info.value.parameter.startswith(f"layer{bad} ")
    for p, b, s, c in zip(ps, before, state, scalars, strict=True):
        assert equal(p.data, b) and guard.opt.state[p].scalars == c
        assert all(equal(x, y) for x, y in zip(guard.opt.state[p].arrays, s, strict=True))


@examples
@given(dtype=dtypes, shape=shapes.filter(lambda s: len(s) > 0), data=st.data())
def test_bad_gradient_is_an_error_naming_the_parameter(dtype, shape, data):
    p = mg.param(arrays(data.draw, dtype, shape, big=False))
    before = p.data.copy()
    opt = mg.ApplyIfFinite(mg.Adam()) if data.draw(st.booleans()) else mg.Adam()
    other = np.float64 if dtype == np.float32 else np.float32
    kind = data.draw(st.sampled_from(["shape", "dtype"]))
    if kind == "shape":
        wrong = shape[:-1] + (shape[-1] + 1,)
        g = np.full(wrong, np.nan, dtype)
        with pytest.raises(ValueError, match=rf"shape {wrong!r}.*shape {shape!r}".replace(
                "(", r"\(").replace(")", r"\)")):
            mg.update_(opt, mg.Params([p]), _grads([p], [g]))
    else:
        g = np.full(shape, np.nan, other)
        with pytest.raises(TypeError, match=f"dtype {np.dtype(other)}.*dtype {np.dtype(dtype)}"):
            mg.update_(opt, p, g)
    assert equal(p.data, before)
    inner = opt.opt if isinstance(opt, mg.ApplyIfFinite) else opt
    assert len(inner.state) == 0 and getattr(opt, "skipped", 0) == 0


# -- ops -----------------------------------------------------------------------------------------

UNARY = {
    "exp": mg.exp, "log": mg.log, "sqrt": mg.sqrt, "abs": mg.abs, "tanh": mg.tanh,
    "σ": mg.σ, "relu": mg.relu, "leakyrelu": mg.leakyrelu, "softplus": mg.softplus,
    "logσ": mg.logσ, "neg": lambda x: -x, "square": lambda x: x ** 2,
    "softmax": lambda x: mg.softmax(x, axis=-1) if np.ndim(x) else mg.softmax(x, axis=None),
    "logsoftmax": lambda x: (mg.logsoftmax(x, axis=-1) if np.ndim(x)
                             else mg.logsoftmax(x, axis=None)),
    "reshape": lambda x: mg.reshape(x, -1), "transpose": mg.transpose,
    "index": lambda x: x[..., ::2] if np.ndim(x) else x,
    "sum": lambda x: mg.sum(x, axis=-1) if np.ndim(x) else x,
    "mean": lambda x: mg.mean(x), "scale": lambda x: x * 0.5 + 1,
}
# Finite inputs (of any size up to max/4) give finite values and gradients.
BOUNDED = {"abs", "tanh", "σ", "relu", "leakyrelu", "softplus", "logσ", "neg", "softmax",
           "logsoftmax", "reshape", "transpose", "index"}


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")    # (NumPy's, too)
@examples
@given(name=st.sampled_from(sorted(UNARY)), dtype=dtypes, shape=shapes, data=st.data())
def test_unary_ops(name, dtype, shape, data):
    if name in ("softmax", "logsoftmax"):
        assume(shape == () or shape[-1] > 0)
    nonfinite = data.draw(st.booleans(), "nonfinite inputs")
    x = arrays(data.draw, dtype, shape, nonfinite)
    f = UNARY[name]
    p = mg.param(x)
    with np.errstate(all="ignore"):
        y = np.asarray(f(x))
        value, gs = mg.withgradient(lambda: mg.sum(f(p)), mg.Params([p]))
    assert equal(p.data, x), f"{name} wrote into its input"
    assert y.dtype == dtype, f"{name}: {dtype.__name__} became {y.dtype}"
    g = gs[p]
    if g is not None:
        assert g.shape == x.shape and g.dtype == dtype
    if name in BOUNDED and not nonfinite:
        assert np.all(np.isfinite(y)), f"{name} overflowed on finite input"
        assert g is None or np.all(np.isfinite(g)), f"{name}: gradient overflowed"


BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "maximum": mg.maximum, "minimum": mg.minimum,
}


@examples
@given(name=st.sampled_from(sorted(BINARY)), dtype=dtypes,
       shapes_=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                 min_side=0, max_side=4),
       data=st.data())
def test_binary_ops_broadcast(name, dtype, shapes_, data):
    sa, sb = shapes_.input_shapes
    nonfinite = data.draw(st.booleans(), "nonfinite inputs")
    a, b = arrays(data.draw, dtype, sa, nonfinite), arrays(data.draw, dtype, sb, nonfinite)
    pa, pb = mg.param(a), mg.param(b)
    f = BINARY[name]
    with np.errstate(all="ignore"):
        y = np.asarray(f(a, b))
        gs = mg.gradient(lambda: mg.sum(f(pa, pb)), mg.Params([pa, pb]))
    assert equal(pa.data, a) and equal(pb.data, b)
    assert y.dtype == dtype and y.shape == shapes_.result_shape
    for p, x in ((pa, a), (pb, b)):
        if gs[p] is not None:
            assert gs[p].shape == x.shape and gs[p].dtype == dtype
    if name in ("maximum", "minimum") and not nonfinite:
        assert np.all(np.isfinite(y))
        assert all(gs[p] is None or np.all(np.isfinite(gs[p])) for p in (pa, pb))


@examples
@given(dtype=dtypes, n=st.integers(1, 4), k=st.integers(0, 4), m=st.integers(1, 4),
       data=st.data())
def test_matmul_and_dense(dtype, n, k, m, data):
    W = mg.param(arrays(data.draw, dtype, (n, k), big=False))
    x = arrays(data.draw, dtype, (k, m), big=False)
    gs = mg.gradient(lambda: mg.sum(W @ x), mg.Params([W]))
    assert gs[W].dtype == dtype and gs[W].shape == (n, k)
    assert np.allclose(gs[W], np.broadcast_to(x.sum(axis=1), (n, k)), rtol=1e-4, atol=1e-3)
    if k:
        layer = mg.Dense(k, n, mg.σ, init=lambda o, i: np.ones((o, i), dtype))
        value, grads = mg.withgradient(lambda: mg.sum(layer(x)), mg.params(layer))
        assert np.isfinite(value) and grads[layer.weight].dtype == dtype

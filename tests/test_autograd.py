"""The autograd machinery: the tape, Params, Grads, gradient forms and Tracker semantics.

Every expected value here is computed independently, by hand or with plain NumPy.
"""

import sys
import threading

import numpy as np
import pytest

import minigrad as mg
from minigrad import tracker
from minigrad.tracker import Node


def f64_init(rng):
    """A Dense ``init`` giving float64 weights, so expected values can be exact."""
    return lambda out, inp: rng.standard_normal((out, inp))


# -- depth ---------------------------------------------------------------------------------------

def test_chain_of_10000_ops():
    a, c = 1.0001, 0.001
    x0 = np.array([0.5, -1.0])
    x = mg.param(x0)

    def f():
        y = x
        for _ in range(5000):           # 10,000 recorded ops, far past Python's recursion limit
            y = y * a
            y = y + c
        return mg.sum(y)

    assert sys.getrecursionlimit() < 10_000
    value, gs = mg.withgradient(f, mg.params(x))
    # y_n = aⁿ x + c (aⁿ - 1) / (a - 1), so ∂/∂x sum(y_n) = aⁿ.
    an = a ** 5000
    np.testing.assert_allclose(gs[x], [an, an], rtol=1e-10)
    np.testing.assert_allclose(value, np.sum(an * x0 + c * (an - 1) / (a - 1)), rtol=1e-10)
    # The explicit form and Tracker's back_ walk the same 10,000 nodes.
    (g,) = mg.gradient(lambda x: mg.sum(_chain(x, 5000, a, c)), x0)
    np.testing.assert_allclose(g, [an, an], rtol=1e-10)
    tracker.back_(f)
    np.testing.assert_allclose(x.grad, [an, an], rtol=1e-10)


def _chain(y, n, a, c):
    for _ in range(n):
        y = y * a + c
    return y


def test_chain_of_10000_tanh():
    x0 = 0.3
    x = mg.param(x0)

    def f():
        y = x
        for _ in range(10_000):
            y = mg.tanh(y)
        return y

    gs = mg.gradient(f, mg.params(x))
    # Chain rule by hand: ∏ (1 - tanh²(yᵢ)).
    y, d = x0, 1.0
    for _ in range(10_000):
        y = np.tanh(y)
        d *= 1 - y * y
    np.testing.assert_allclose(gs[x], d, rtol=1e-9)


# -- accumulation --------------------------------------------------------------------------------

def test_value_used_twice_in_one_op():
    x0 = np.array([1.5, -2.0, 0.25])
    x = mg.param(x0)
    np.testing.assert_allclose(mg.gradient(lambda: mg.sum(x * x), mg.params(x))[x], 2 * x0)
    np.testing.assert_allclose(mg.gradient(lambda: mg.sum(x + x), mg.params(x))[x], [2, 2, 2])
    np.testing.assert_allclose(mg.gradient(lambda: mg.sum(x - x), mg.params(x))[x], [0, 0, 0])
    np.testing.assert_allclose(mg.gradient(lambda: x @ x, mg.params(x))[x], 2 * x0)
    np.testing.assert_allclose(mg.gradient(lambda: mg.sum(x / x), mg.params(x))[x], [0, 0, 0],
                               atol=1e-15)
    np.testing.assert_allclose(mg.gradient(lambda: mg.sum(x * x * x), mg.params(x))[x],
                               3 * x0 ** 2)
    (g,) = mg.gradient(lambda x: mg.sum(x * x), x0)
    np.testing.assert_allclose(g, 2 * x0)


def test_value_reused_in_two_branches():
    x0 = np.array([0.5, -1.0, 2.0])
    x = mg.param(x0)

    def f():
        a = mg.exp(x)           # branch 1
        b = x * 3               # branch 2
        return mg.sum(a * b) + mg.sum(x)

    # d/dx Σ 3x·eˣ + x = 3eˣ(x + 1) + 1
    np.testing.assert_allclose(mg.gradient(f, mg.params(x))[x], 3 * np.exp(x0) * (x0 + 1) + 1)

    def g():
        h = x * 2               # an intermediate used by three later ops
        return mg.sum(h * h) + mg.sum(mg.tanh(h)) - h[0]

    expected = 8 * x0 + 2 * (1 - np.tanh(2 * x0) ** 2) - np.array([2.0, 0, 0])
    np.testing.assert_allclose(mg.gradient(g, mg.params(x))[x], expected)


def test_parameter_used_in_two_layers():
    rng = np.random.default_rng(0)
    layer = mg.Dense(3, 3, mg.identity, init=f64_init(rng))
    layer.bias.data[:] = rng.standard_normal(3)
    m = mg.Chain(layer, layer)          # the same weights twice
    assert len(mg.params(m)) == 2
    x = rng.standard_normal((3, 4))
    W, b = layer.weight.data, layer.bias.data
    gs = mg.gradient(lambda: mg.sum(m(x)), mg.params(m))
    # L = 1ᵀ(W h + b 1ᵀ)1 with h = W x + b 1ᵀ:
    #   ∂L/∂W = 1 hᵀ + (Wᵀ 1) xᵀ   (summed over the batch), ∂L/∂b = n + n Wᵀ 1
    h = W @ x + b[:, None]
    ones = np.ones((3, 4))
    np.testing.assert_allclose(gs[layer.weight], ones @ h.T + (W.T @ ones) @ x.T, rtol=1e-12)
    np.testing.assert_allclose(gs[layer.bias], 4 + W.T @ np.full(3, 4.0), rtol=1e-12)


def test_parameter_and_its_transpose():
    rng = np.random.default_rng(1)
    W0 = rng.standard_normal((3, 3))
    v = rng.standard_normal(3)
    W = mg.param(W0)
    gs = mg.gradient(lambda: v @ (W @ W.T) @ v, mg.params(W))
    # vᵀ W Wᵀ v = |Wᵀ v|²  →  ∂/∂W = 2 v (Wᵀ v)ᵀ
    np.testing.assert_allclose(gs[W], 2 * np.outer(v, W0.T @ v), rtol=1e-12)


# -- Grads: None, shape, dtype, fresh arrays -----------------------------------------------------

def test_grads_none_when_loss_does_not_depend_on_parameter():
    W, b, unused = mg.rand(2, 3), mg.rand(2), mg.rand(4)
    x = np.ones(3)
    gs = mg.gradient(lambda: mg.sum(W @ x), mg.params(W, b, unused))
    np.testing.assert_array_equal(gs[W], np.ones((2, 3)))
    assert gs[b] is None and gs[unused] is None
    # Used only through a comparison (not differentiable): still no gradient.
    gs = mg.gradient(lambda: mg.sum(W @ x * (b > 0.5)), mg.params(W, b))
    assert gs[b] is None
    # A constant loss: nothing depends on anything.
    gs = mg.gradient(lambda: 3.0, mg.params(W, b))
    assert gs[W] is None and gs[b] is None
    # Explicit form: an unused argument.
    ga, gb = mg.gradient(lambda a, b: mg.sum(a * 2), np.ones(2), np.ones(3))
    np.testing.assert_array_equal(ga, [2.0, 2.0])
    assert gb is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grads_shape_and_dtype(dtype):
    rng = np.random.default_rng(2)
    W = mg.param(rng.standard_normal((3, 4)), dtype=dtype)
    b = mg.param(rng.standard_normal(3), dtype=dtype)
    s = mg.param(2.0, dtype=dtype)
    x = rng.standard_normal((4, 5))             # float64 data
    gs = mg.gradient(lambda: mg.sum((W @ x + b[:, None]) * s), mg.params(W, b, s))
    for p in (W, b, s):
        assert isinstance(gs[p], np.ndarray)
        assert gs[p].shape == p.shape and gs[p].dtype == np.dtype(dtype)
    Wd, bd = W.data.astype(np.float64), b.data.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gs[W], float(s.data) * np.outer(np.ones(3), x.sum(1)), rtol=tol)
    np.testing.assert_allclose(gs[b], np.full(3, 5 * float(s.data)), rtol=tol)
    np.testing.assert_allclose(gs[s], np.sum(Wd @ x + bd[:, None]), rtol=tol)


def test_float32_layers_give_float32_grads():
    m = mg.Chain(mg.Dense(4, 3, mg.relu), mg.Dense(3, 2))
    x, y = np.random.rand(4, 6), np.random.rand(2, 6)      # float64 data
    gs = mg.gradient(lambda: mg.losses.mse(m(x), y), mg.params(m))
    for p in mg.params(m):
        assert p.dtype == np.float32
        assert gs[p].dtype == np.float32 and gs[p].shape == p.shape


LOSSES_SHARING_GRADIENTS = {
    "sum(W + b)": lambda W, b, c: mg.sum(W + b),
    "sum((W + b) * c)": lambda W, b, c: mg.sum((W + b) * c),
    "sum(W - b)": lambda W, b, c: mg.sum(W - b),
    "sum(W * c + b * c)": lambda W, b, c: mg.sum(W * c + b * c),
    "sum(concat)": lambda W, b, c: mg.sum(mg.concatenate([W, b])),
    "sum(reshape)": lambda W, b, c: mg.sum(W.reshape(-1) + b.reshape(-1)),
    "sum(transpose)": lambda W, b, c: mg.sum(W.T + b.T),
    "mean(W) + mean(b)": lambda W, b, c: mg.mean(W) + mg.mean(b),
    "sum(W * 1 + b)": lambda W, b, c: mg.sum(W * 1.0 + b),
}


@pytest.mark.parametrize("name", LOSSES_SHARING_GRADIENTS)
def test_grads_are_fresh_writable_and_unaliased(name):
    f = LOSSES_SHARING_GRADIENTS[name]
    W, b = mg.param(np.zeros((2, 3))), mg.param(np.zeros((2, 3)))
    c = np.arange(6.0).reshape(2, 3)
    gs = mg.gradient(lambda: f(W, b, c), mg.params(W, b))
    gW, gb = gs[W], gs[b]
    gb_before = gb.copy()
    for g in (gW, gb):
        assert type(g) is np.ndarray and g.flags.writeable and g.flags.owndata
        for other in (W.data, b.data, c):
            assert not np.shares_memory(g, other)
    assert not np.shares_memory(gW, gb)
    gW[...] = 123.0                 # the user's to keep and mutate ...
    np.testing.assert_array_equal(gb, gb_before)    # ... without touching the other gradient
    # The explicit form hands out fresh arrays too.
    gW2, gb2 = mg.gradient(lambda W, b: f(W, b, c), W.data, b.data)
    assert not np.shares_memory(gW2, gb2)
    assert not np.shares_memory(gW2, W.data) and not np.shares_memory(gb2, b.data)
    gW2[...] = -1.0
    np.testing.assert_array_equal(gb2, gb_before)


def test_explicit_gradient_does_not_touch_its_arguments():
    x = np.array([1.0, 2.0])
    (g,) = mg.gradient(lambda x: mg.sum(x * 1.0), x)
    g[0] = 99.0
    np.testing.assert_array_equal(x, [1.0, 2.0])
    np.testing.assert_array_equal(mg.gradient(lambda x: x * x, 3.0)[0], 6.0)


def test_loss_that_is_a_parameter():
    s = mg.param(2.5)
    gs = mg.gradient(lambda: s, mg.params(s))
    np.testing.assert_array_equal(gs[s], 1.0)
    assert gs[s].shape == () and gs[s].flags.writeable


# -- Params and params() -------------------------------------------------------------------------

def test_params_dedup_by_identity_and_keep_order():
    W, b = mg.rand(2, 5), mg.rand(2)
    W_copy = mg.param(W.data)        # equal values, a different parameter
    ps = mg.Params([W, b, W, W_copy, b])
    assert len(ps) == 3
    assert [id(p) for p in ps] == [id(W), id(b), id(W_copy)]
    assert ps[0] is W and ps[1] is b and ps[2] is W_copy
    assert W in ps and W_copy in ps
    assert mg.param(W.data) not in ps
    assert np.zeros(2) not in ps
    ps2 = mg.params(b, W, b, [W, W_copy])
    assert [id(p) for p in ps2] == [id(b), id(W), id(W_copy)]
    ps2.append(b)
    assert len(ps2) == 3


def test_params_of_chain():
    m = mg.Chain(mg.Dense(10, 5, mg.σ), mg.Dense(5, 2), mg.softmax)
    ps = mg.params(m)
    expected = [m[0].weight, m[0].bias, m[1].weight, m[1].bias]
    assert len(ps) == 4 and all(p is e for p, e in zip(ps, expected, strict=True))
    assert [p.shape for p in ps] == [(5, 10), (5,), (2, 5), (2,)]
    m2 = mg.Chain(mg.Dense(3, 2, bias=False), m)
    assert [p.shape for p in mg.params(m2)] == [(2, 3), (5, 10), (5,), (2, 5), (2,)]


def test_params_of_user_defined_model():
    class Block:
        def __init__(self):
            self.inner = mg.Dense(3, 3)

    class Net:
        def __init__(self):
            self.encoder = mg.Dense(4, 3, mg.relu)
            self.heads = [mg.Dense(3, 2), mg.Dense(3, 1, bias=False)]
            self.extra = {"scale": mg.param([1.0]), "shift": mg.param([0.0])}
            self.blocks = (Block(),)
            self.shared = self.encoder           # reachable twice: counted once
            self.frozen = np.ones(3)             # a plain array is not a parameter
            self.name = "net"
            self.act = mg.relu

        def __call__(self, x):
            return self.heads[0](self.encoder(x)) * self.extra["scale"] + self.extra["shift"]

    net = Net()
    expected = [net.encoder.weight, net.encoder.bias, net.heads[0].weight, net.heads[0].bias,
                net.heads[1].weight, net.extra["scale"], net.extra["shift"],
                net.blocks[0].inner.weight, net.blocks[0].inner.bias]
    ps = mg.params(net)
    assert [id(p) for p in ps] == [id(p) for p in expected]
    assert not any(p is net.frozen for p in ps)
    # and every one of them gets a gradient when it is used
    gs = mg.gradient(lambda: mg.sum(net(np.ones(4))), ps)
    assert gs[net.extra["scale"]] is not None and gs[net.heads[1].weight] is None


# -- outside gradient(): plain NumPy -------------------------------------------------------------

OUTSIDE = {
    "W + 1": lambda W, b, x: W + 1,
    "1 - W": lambda W, b, x: 1 - W,
    "W * W": lambda W, b, x: W * W,
    "W @ x": lambda W, b, x: W @ x,
    "x @ W.T": lambda W, b, x: x @ W.T,
    "W ** 2": lambda W, b, x: W ** 2,
    "-W": lambda W, b, x: -W,
    "W[0]": lambda W, b, x: W[0],
    "W[:, [0, 0]]": lambda W, b, x: W[:, [0, 0]],
    "W.T": lambda W, b, x: W.T,
    "W.reshape(-1)": lambda W, b, x: W.reshape(-1),
    "mg.sum(W, axis=0)": lambda W, b, x: mg.sum(W, axis=0),
    "mg.relu(W)": lambda W, b, x: mg.relu(W),
    "mg.softmax(W)": lambda W, b, x: mg.softmax(W),
    "np.exp(W)": lambda W, b, x: np.exp(W),
    "np.sin(W)": lambda W, b, x: np.sin(W),
    "np.sum(W, axis=1)": lambda W, b, x: np.sum(W, axis=1),
    "x_ndarray + b": lambda W, b, x: np.ones(2) + b,
    "dense": lambda W, b, x: mg.ops.dense(W, x, b, mg.tanh),
    "concatenate": lambda W, b, x: mg.concatenate([W[0], b]),
    "mse": lambda W, b, x: mg.losses.mse(W @ x, b),
}


@pytest.mark.parametrize("name", OUTSIDE)
def test_outside_gradient_ops_return_plain_numpy(name):
    W = mg.param([[1.0, -2.0, 3.0], [0.5, 0.25, -1.0]])
    b = mg.param([0.1, 0.2])
    x = np.array([1.0, 2.0, 3.0])
    y = OUTSIDE[name](W, b, x)
    assert not isinstance(y, Node)
    assert isinstance(y, (np.ndarray, np.generic))
    # The same expression on the raw arrays is the independent reference.
    expected = OUTSIDE[name](W.data, b.data, x) if name not in ("dense",) else \
        np.tanh(W.data @ x + b.data)
    np.testing.assert_allclose(y, expected)


def test_layers_outside_gradient_return_numpy():
    m = mg.Chain(mg.Dense(3, 2, mg.relu), mg.Dense(2, 1))
    y = m(np.ones((3, 4), np.float32))
    assert type(y) is np.ndarray and y.shape == (1, 4)
    W1, b1, W2, b2 = (p.data for p in mg.params(m))
    # (float32 against a float64 reference: the sum can cancel to near zero, so an absolute
    # tolerance at float32's resolution of the terms, not only a relative one)
    np.testing.assert_allclose(y, W2 @ np.maximum(W1 @ np.ones((3, 4)) + b1[:, None], 0)
                               + b2[:, None], rtol=1e-6, atol=1e-6)


def test_asarray_is_the_storage():
    p = mg.rand(3, 2)
    assert np.asarray(p) is p.data
    assert np.shares_memory(np.asarray(p), p.data)
    assert np.asarray(p, dtype=np.float64) is p.data or np.shares_memory(np.asarray(p), p.data)
    a = np.asarray(p)
    a[0, 0] = 42.0
    assert p.data[0, 0] == 42.0
    assert not np.shares_memory(np.array(p), p.data)        # np.array copies, as for arrays
    assert p.shape == (3, 2) and p.dtype == np.float64 and p.ndim == 2 and len(p) == 3


def test_inplace_update_of_parameter():
    p = mg.param([1.0, 2.0, 3.0])
    storage = p.data
    same = p
    g = np.array([0.5, 0.5, 1.0])
    p -= g
    assert p is same and p.data is storage
    np.testing.assert_array_equal(storage, [0.5, 1.5, 2.0])
    p *= 2
    p += mg.param([1.0, 1.0, 1.0])
    p /= 2
    assert p is same and p.data is storage
    np.testing.assert_array_equal(storage, [1.0, 2.0, 2.5])
    p[1] = 7.0
    np.testing.assert_array_equal(storage, [1.0, 7.0, 2.5])


# -- Tracker semantics ---------------------------------------------------------------------------

def test_back_accumulates_into_grad():
    W = mg.param([1.0, 2.0])
    assert tracker.grad(W) is W.grad
    np.testing.assert_array_equal(W.grad, [0.0, 0.0])
    tracker.back_(lambda: mg.sum(3 * W))
    np.testing.assert_array_equal(W.grad, [3.0, 3.0])
    with tracker.recording():
        loss = mg.sum(W * W)
    tracker.back_(loss)
    np.testing.assert_array_equal(tracker.grad(W), [5.0, 7.0])     # 3 + 2W
    # gradient() is Zygote-style: it does not touch .grad
    mg.gradient(lambda: mg.sum(W), mg.params(W))
    np.testing.assert_array_equal(W.grad, [5.0, 7.0])


def test_back_accumulates_over_a_shared_gradient_array():
    # d/dW and d/db of sum((W + b) * c) are the same array inside the backward pass.
    W, b = mg.param(np.zeros(3)), mg.param(np.zeros(3))
    c = np.array([1.0, 2.0, 3.0])
    tracker.back_(lambda: mg.sum(W * 0))            # W.grad exists before, b.grad does not
    tracker.back_(lambda: mg.sum((W + b) * c))
    tracker.back_(lambda: mg.sum((W + b) * c))
    np.testing.assert_array_equal(W.grad, 2 * c)
    np.testing.assert_array_equal(b.grad, 2 * c)


def test_back_grads_do_not_alias():
    # Regression: back_ once stored the one gradient array of W + b in both W.grad and b.grad,
    # so the next back_ added into it twice.
    W, b = mg.param(np.zeros(3)), mg.param(np.zeros(3))
    c = np.array([1.0, 2.0, 3.0])
    tracker.back_(lambda: mg.sum((W + b) * c))
    assert not np.shares_memory(W.grad, b.grad)
    tracker.back_(lambda: mg.sum((W + b) * c))
    np.testing.assert_array_equal(W.grad, 2 * c)
    np.testing.assert_array_equal(b.grad, 2 * c)


def test_tracker_update_adds_and_resets_grad():
    x = tracker.update_(mg.param([1, 2, 3]), mg.param([4, 5, 6]))
    np.testing.assert_array_equal(x.data, [5.0, 7.0, 9.0])
    W = mg.param([1.0, 2.0])
    tracker.back_(lambda: mg.sum(W * W))
    np.testing.assert_array_equal(W.grad, [2.0, 4.0])
    assert tracker.update_(W, -0.5 * W.grad) is W
    np.testing.assert_array_equal(W.data, [0.0, 0.0])
    np.testing.assert_array_equal(W.grad, [0.0, 0.0])         # reset
    # Flux.Optimise's update_ subtracts
    mg.update_(W, np.array([1.0, -1.0]))
    np.testing.assert_array_equal(W.data, [-1.0, 1.0])


# -- Tracker's own style: tracker.param, l = loss(x, y), back_(l) ---------------------------------

def _mlp_loss(W1, b1, W2, x, y):
    h = mg.tanh(W1 @ x + b1[:, None])
    return mg.losses.logitcrossentropy(W2 @ h, y) + mg.sum(W1 * W1) * 0.01


def test_tracker_style_back_of_a_loss_computed_outside_gradient():
    rng = np.random.default_rng(5)
    values = [rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal((2, 4))]
    x, y = rng.standard_normal((3, 6)), np.eye(2)[:, rng.integers(0, 2, 6)]
    W1, b1, W2 = (tracker.param(v) for v in values)
    assert type(W1) is tracker.TrackerParam and type(mg.param(values[0])) is tracker.Param
    l = _mlp_loss(W1, b1, W2, x, y)                 # no gradient call, no recording block
    assert tracker.istracked(l) and l.tape is None
    tracker.back_(l)
    # Against the tape's answer for plain parameters holding the same values ...
    plain = [mg.param(v) for v in values]
    gs = mg.gradient(lambda: _mlp_loss(*plain, x, y), mg.Params(plain))
    for p, q in zip((W1, b1, W2), plain, strict=True):
        np.testing.assert_allclose(p.grad, gs[q], rtol=1e-12, atol=1e-15)
    # ... and against central finite differences of the loss.
    for p in (W1, b1, W2):
        fd = np.empty_like(p.data)
        for i in np.ndindex(p.shape):
            saved = p.data[i]
            p.data[i] = saved + 1e-6
            up = float(_mlp_loss(W1, b1, W2, x, y))
            p.data[i] = saved - 1e-6
            down = float(_mlp_loss(W1, b1, W2, x, y))
            p.data[i] = saved
            fd[i] = (up - down) / 2e-6
        np.testing.assert_allclose(p.grad, fd, rtol=1e-6, atol=1e-8)
    tracker.back_(_mlp_loss(W1, b1, W2, x, y))      # back_ accumulates, as Tracker's back!
    np.testing.assert_allclose(W2.grad, 2 * gs[plain[2]], rtol=1e-12)


def test_tracker_style_shared_values_and_depth():
    V = tracker.param([0.5, -1.0])
    h = V * V                                        # used three times below
    tracker.back_(mg.sum(h * h + h) + mg.sum(h))     # d/dV (V⁴ + 2V²) = 4V³ + 4V
    np.testing.assert_allclose(V.grad, 4 * V.data ** 3 + 4 * V.data, rtol=1e-15)
    x, a, c = tracker.param([0.5, -1.0]), 1.0001, 0.001
    y = x
    for _ in range(5000):                           # 10,000 nodes: the walk is not recursive
        y = y * a + c
    tracker.back_(mg.sum(y))
    np.testing.assert_allclose(x.grad, [a ** 5000] * 2, rtol=1e-10)


def test_tracker_style_leaves_plain_parameters_as_they_were():
    V = tracker.param([1.0, 2.0])
    W = mg.param([3.0, 4.0])
    assert type(W * 2) is np.ndarray and type(mg.Dense(2, 1)(np.ones(2))) is np.ndarray
    with pytest.raises(TypeError, match="minigrad.tracker.param"):
        tracker.back_(mg.sum(W * W))                # a plain parameter's loss is not recorded
    tracker.back_(mg.sum(V * W))                    # mixed: the plain one is a parent too
    np.testing.assert_array_equal(V.grad, [3.0, 4.0])
    np.testing.assert_array_equal(W.grad, [1.0, 2.0])
    # Inside gradient() a Tracker parameter is an ordinary one, and .grad is left alone.
    gs = mg.gradient(lambda: mg.sum(V * V * W), mg.params(V, W))
    np.testing.assert_array_equal(gs[V], 2 * V.data * W.data)
    np.testing.assert_array_equal(V.grad, [3.0, 4.0])
    assert type(mg.cpu(V)) is tracker.TrackerParam and mg.cpu(V) is V


def test_tracker_style_survives_copies_into_a_fresh_process(monkeypatch):
    import copy
    V = tracker.param([1.0, 2.0])
    monkeypatch.setattr(tracker, "_tracker_style", False)     # as in a process that only loads
    W = copy.deepcopy(V)                                        # (made without __init__)
    assert type(W) is tracker.TrackerParam and tracker.istracked(W * 2)


def test_tracker_style_graph_goes_with_its_loss():
    import gc
    import weakref
    V = tracker.param(np.ones(1000))
    gc.disable()                                    # freed by reference counting alone
    try:
        h = V * 3.0
        alive = weakref.ref(h.data)
        l = mg.sum(h)
        del h
        assert alive() is not None                   # the loss holds its graph
        del l
        assert alive() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "nfinite"), (-np.inf, "nfinite")])
def test_tracker_gradient_raises_on_nonfinite_loss(bad, word):
    W = mg.param([1.0, 2.0])
    with pytest.raises(ValueError, match=word):
        tracker.gradient(lambda: mg.sum(W) * bad, mg.Params([W]))
    with pytest.raises(ValueError, match=word):
        tracker.gradient(lambda w: mg.sum(w) * bad, [1.0, 2.0])
    with pytest.raises(ValueError, match=word):
        tracker.withgradient(lambda: mg.sum(W) * bad, mg.Params([W]))
    with pytest.raises(ValueError, match=word):
        tracker.back_(lambda: mg.sum(W) * bad)
    np.testing.assert_array_equal(W.grad, [0.0, 0.0])        # nothing accumulated
    # minigrad.gradient (Zygote semantics) does not check
    gs = mg.gradient(lambda: mg.sum(W) * bad, mg.Params([W]))
    np.testing.assert_array_equal(gs[W], [bad, bad])
    value, gs = mg.withgradient(lambda: mg.sum(W) * bad, mg.Params([W]))
    assert not np.isfinite(value)


def test_tracker_upstream_implicit_equals_explicit():
    # Flux.Tracker's test: gradient(() -> sum(W*x), Params([W]))[W] == gradient(W -> sum(W*x), W)[1]
    W = tracker.param(np.random.randn(5, 10))
    x = np.random.rand(10)
    implicit = tracker.gradient(lambda: mg.sum(W @ x), tracker.Params([W]))[W]
    explicit = tracker.gradient(lambda W: mg.sum(W @ x), W)[0]
    np.testing.assert_array_equal(implicit, explicit)
    np.testing.assert_allclose(implicit, np.outer(np.ones(5), x))
    np.testing.assert_array_equal(mg.gradient(lambda: mg.sum(W @ x), mg.Params([W]))[W],
                                  implicit)


def test_withgradient_returns_the_value():
    rng = np.random.default_rng(3)
    W, b = mg.param(rng.standard_normal((2, 3))), mg.param(rng.standard_normal(2))
    x, y = rng.standard_normal(3), rng.standard_normal(2)
    value, gs = mg.withgradient(lambda: mg.sum((W @ x + b - y) ** 2), mg.params(W, b))
    r = W.data @ x + b.data - y
    np.testing.assert_allclose(float(value), np.sum(r ** 2), rtol=1e-13)
    np.testing.assert_allclose(gs[b], 2 * r, rtol=1e-13)
    np.testing.assert_allclose(gs[W], 2 * np.outer(r, x), rtol=1e-13)
    value, (gx,) = mg.withgradient(lambda x: mg.sum(x ** 3), np.array([1.0, 2.0]))
    np.testing.assert_allclose(float(value), 9.0)
    np.testing.assert_allclose(gx, [3.0, 12.0])


# -- NumPy protocols inside gradient() -----------------------------------------------------------

def test_numpy_functions_on_params_are_differentiated():
    rng = np.random.default_rng(4)
    W0 = rng.standard_normal((3, 2))
    x = rng.standard_normal(3)
    c = rng.standard_normal((3, 2))
    W = mg.param(W0)
    cases = [
        (lambda: np.sum(np.exp(W)), np.exp(W0)),
        (lambda: np.sum(W * c), c),
        (lambda: np.sum(c + W), np.ones((3, 2))),
        (lambda: np.sum((x @ W) ** 2), 2 * np.outer(x, x @ W0)),
        (lambda: np.sum(np.matmul(x, W)), np.outer(x, np.ones(2))),
        (lambda: np.mean(np.tanh(W)), (1 - np.tanh(W0) ** 2) / 6),
        (lambda: np.sum(np.maximum(W, 0.0)), (W0 > 0).astype(float)),
        (lambda: np.sum(np.abs(W) * c), np.sign(W0) * c),
        (lambda: np.sum(np.transpose(W) @ x), np.outer(x, np.ones(2))),
        (lambda: np.sum(np.concatenate([W, c]) ** 2), 2 * W0),
        (lambda: np.sum(np.reshape(W, (6,)) * c.reshape(6)), c),
        (lambda: np.sum(np.sqrt(W * W + 1)), W0 / np.sqrt(W0 ** 2 + 1)),
        (lambda: np.sum(np.log(W * W + 1)), 2 * W0 / (W0 ** 2 + 1)),
    ]
    for i, (f, expected) in enumerate(cases):
        gs = mg.gradient(f, mg.params(W))
        np.testing.assert_allclose(gs[W], expected, rtol=1e-12, err_msg=f"case {i}")


@pytest.mark.parametrize("fn, name", [(np.sin, "sin"), (np.cos, "cos"), (np.square, "square"),
                                       (lambda w: np.dot(w, w), "dot")])
def test_non_differentiable_numpy_function_raises_naming_it(fn, name):
    W = mg.param([0.5, 1.0])
    with pytest.raises(TypeError, match=rf"numpy\.{name}\b"):
        mg.gradient(lambda: mg.sum(fn(W)), mg.params(W))
    # Outside gradient() it is plain NumPy, and on raw data inside gradient() a constant.
    np.testing.assert_allclose(fn(W), fn(W.data))
    gs = mg.gradient(lambda: mg.sum(W * fn(mg.data(W))), mg.params(W))
    np.testing.assert_allclose(gs[W], fn(W.data))


# -- threads -------------------------------------------------------------------------------------

def test_two_threads_take_gradients_at_once():
    rng = np.random.default_rng(5)
    specs = [(4, 3, 8), (6, 2, 5)]
    models, data, expected = [], [], []
    for n_in, n_out, n in specs:
        m = mg.Dense(n_in, n_out, init=f64_init(rng))
        m.bias.data[:] = rng.standard_normal(n_out)
        x, y = rng.standard_normal((n_in, n)), rng.standard_normal((n_out, n))
        W, b = m.weight.data, m.bias.data
        r = W @ x + b[:, None] - y                    # mse = mean(r²) → ∂ = 2r / r.size
        expected.append((2 * r @ x.T / r.size, 2 * r.sum(1) / r.size))
        models.append(m)
        data.append((x, y))

    barrier = threading.Barrier(2)
    errors = []

    def work(i):
        m, (x, y), (gW, gb) = models[i], data[i], expected[i]
        try:
            barrier.wait()
            for _ in range(150):
                gs = mg.gradient(lambda: mg.losses.mse(m(x), y), mg.params(m))
                np.testing.assert_allclose(gs[m.weight], gW, rtol=1e-12)
                np.testing.assert_allclose(gs[m.bias], gb, rtol=1e-12)
                (g,) = mg.gradient(lambda W: mg.losses.mse(mg.ops.dense(W, x, m.bias), y),
                                   m.weight.data)
                np.testing.assert_allclose(g, gW, rtol=1e-12)
        except BaseException as err:    # reported below
            errors.append((i, err))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)      # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors


# -- nested gradients ----------------------------------------------------------------------------

def test_nested_gradient_of_parameters_only():
    """A gradient taken inside a loss, from parameters alone, leaves the outer one intact."""
    W = mg.param([1.0, 2.0])
    inner = []

    def loss():
        inner.append(mg.gradient(lambda: mg.sum(W * W), mg.params(W))[W])
        return mg.sum(W * 3)

    gs = mg.gradient(loss, mg.params(W))
    np.testing.assert_array_equal(inner[0], [2.0, 4.0])
    np.testing.assert_array_equal(gs[W], [3.0, 3.0])


def test_nested_gradient_through_outer_values():
    """Regression: an inner gradient over values recorded on the outer tape once returned None
    and left their ``.g`` set, which the outer backward pass then added in."""
    W = mg.param([1.0, 2.0])
    inner = []

    def loss():
        y = W * 3
        inner.append(mg.gradient(lambda: mg.sum(y * y), mg.params(W))[W])
        return mg.sum(y)

    np.testing.assert_array_equal(mg.gradient(loss, mg.params(W))[W], [3.0, 3.0])
    np.testing.assert_array_equal(inner[0], [18.0, 36.0])       # ∂/∂W Σ (3W)² = 18 W

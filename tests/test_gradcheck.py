"""Every differentiable op's gradient against central finite differences, in float64.

Each test gives an op written with minigrad (``f``) and the same function written in plain
NumPy (``ref``, the independent reference).  :func:`check_grads` then

* checks the forward value of ``f`` (outside and inside ``gradient``) against ``ref``;
* reduces the output to a scalar with a fixed random weighting ``R``:
  ``L(x) = sum(f(x) * R)``;
* takes ``∇L`` with minigrad in the explicit form ``mg.withgradient(L, x1, x2, ...)`` and in
  the implicit form ``mg.gradient(lambda: L(p1, p2, ...), mg.Params([p1, p2, ...]))``;
* compares ``<∇L, v>`` for a random direction ``v`` with the central difference
  ``(Lref(x + h·v) - Lref(x - h·v)) / 2h`` (HIPS autograd's ``check_grads``), and, for small
  inputs, every partial derivative with its own central difference.

Shapes and seeds are drawn by Hypothesis; the values come from a NumPy generator seeded by the
drawn seed and are kept away from points where an op is not differentiable (``abs``/``relu`` at
0, ties of ``maximum``, ``log``/``sqrt`` of non-positive numbers).
"""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import losses, ops
from minigrad.tracker import Node

H = 1e-5            # central-difference step; truncation ~H², rounding ~ε/H: both ≪ RTOL
RTOL = 1e-6
ATOL = 1e-8
FULL_MAX = 40       # inputs with at most this many elements get every partial checked

# Examples per property: modest by default (the file runs in ~15 s on 2 cores); raise it for a
# longer search, e.g. GRADCHECK_EXAMPLES=300 (about 25x longer).
examples = settings(max_examples=int(os.environ.get("GRADCHECK_EXAMPLES", "12")))

seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
pair_shapes = hnp.mutually_broadcastable_shapes(
    num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3
).map(lambda bs: bs.input_shapes)


# -- the checker ---------------------------------------------------------------------------------

def check_grads(f, ref, *xs, rng):
    """Check minigrad's gradient of ``f`` at ``xs`` against finite differences of ``ref``."""
    xs = [np.array(x, dtype=np.float64) for x in xs]
    expected = np.asarray(ref(*xs), dtype=np.float64)

    # Forward, outside gradient(): plain NumPy values.
    plain = f(*xs)
    assert not isinstance(plain, Node)
    np.testing.assert_allclose(plain, expected, rtol=1e-12, atol=1e-12)

    R = rng.standard_normal(expected.shape)
    seen = []

    def loss(*args):
        y = f(*args)
        seen.append(mg.data(y))
        return mg.sum(y * R)

    def ref_loss(*args):
        return float(np.sum(ref(*args) * R))

    # Explicit form: gradients with respect to the arguments.
    value, grads = mg.withgradient(loss, *xs)
    assert isinstance(grads, tuple) and len(grads) == len(xs)
    np.testing.assert_allclose(seen[-1], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(float(value), ref_loss(*xs), rtol=1e-12, atol=1e-12)
    for g, x in zip(grads, xs, strict=True):
        assert isinstance(g, np.ndarray), f"no gradient: {g!r}"
        assert g.shape == x.shape and g.dtype == np.float64

    # Implicit form: the same gradients looked up by parameter.
    ps = [mg.param(x) for x in xs]
    gs = mg.gradient(lambda: loss(*ps), mg.Params(ps))
    for p, g in zip(ps, grads, strict=True):
        assert gs[p].shape == p.shape and gs[p].dtype == np.float64
        np.testing.assert_allclose(gs[p], g, rtol=1e-13, atol=1e-15)

    # Directional derivative along a random direction.
    vs = [rng.standard_normal(x.shape) for x in xs]
    plus = ref_loss(*(x + H * v for x, v in zip(xs, vs, strict=True)))
    minus = ref_loss(*(x - H * v for x, v in zip(xs, vs, strict=True)))
    numeric = (plus - minus) / (2 * H)
    analytic = sum(float(np.vdot(g, v)) for g, v in zip(grads, vs, strict=True))
    # Relative to the sum of the terms' sizes, not to the sum itself: the terms' signs are
    # random, so the sum may cancel to far below the differences' truncation error (2 / x
    # near x = 0.1 read 1.24e-6 of a cancelled sum).
    terms = sum(float(np.vdot(np.abs(g), np.abs(v))) for g, v in zip(grads, vs, strict=True))
    assert abs(analytic - numeric) <= RTOL * terms + ATOL, (
        f"directional derivative: analytic {analytic!r}, numeric {numeric!r}, terms {terms!r}")

    # Every partial derivative, for small inputs.
    for i, (x, g) in enumerate(zip(xs, grads, strict=True)):
        if x.size > FULL_MAX:
            continue
        numeric = np.zeros_like(x)
        for j in np.ndindex(x.shape):
            shifted = list(xs)
            e = np.zeros_like(x)
            e[j] = H
            shifted[i] = x + e
            plus = ref_loss(*shifted)
            shifted[i] = x - e
            minus = ref_loss(*shifted)
            numeric[j] = (plus - minus) / (2 * H)
        np.testing.assert_allclose(g, numeric, rtol=RTOL, atol=ATOL,
                                   err_msg=f"gradient of argument {i}")
    return grads


# -- input domains -------------------------------------------------------------------------------

def real(rng, shape):
    return rng.uniform(-2, 2, shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2, shape)


def nonzero(rng, shape):
    """Away from 0 (abs, relu, leakyrelu, division): |x| in [0.1, 2]."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 2, shape)


def even_grid(rng, shape):
    """Multiples of 0.2 plus a small jitter."""
    return 0.2 * rng.integers(-5, 6, shape) + rng.uniform(-0.03, 0.03, shape)


def odd_grid(rng, shape):
    """Odd multiples of 0.1 plus a small jitter: at least 0.04 from any ``even_grid`` value."""
    return 0.2 * rng.integers(-5, 6, shape) + 0.1 + rng.uniform(-0.03, 0.03, shape)


# -- binary ops with broadcasting ----------------------------------------------------------------

BINARY = {
    # name: (minigrad op, numpy reference, domain of a, domain of b)
    "+": (lambda a, b: a + b, np.add, real, real),
    "-": (lambda a, b: a - b, np.subtract, real, real),
    "*": (lambda a, b: a * b, np.multiply, real, real),
    "/": (lambda a, b: a / b, np.divide, real, nonzero),
    "**": (lambda a, b: a ** b, np.power, positive, real),
    "maximum": (mg.maximum, np.maximum, even_grid, odd_grid),
    "minimum": (mg.minimum, np.minimum, odd_grid, even_grid),
    "ops.add": (ops.add, np.add, real, real),
    "ops.sub": (ops.sub, np.subtract, real, real),
    "ops.mul": (ops.mul, np.multiply, real, real),
    "ops.div": (ops.div, np.divide, real, nonzero),
    "ops.pow": (ops.pow, np.power, positive, real),
    "np.add": (np.add, np.add, real, real),
    "np.multiply": (np.multiply, np.multiply, real, real),
    "np.maximum": (np.maximum, np.maximum, even_grid, odd_grid),
}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("tracked", ["both", "left", "right"])
@examples
@given(shapes=pair_shapes, seed=seeds)
def test_binary_broadcasting(name, tracked, shapes, seed):
    op, ref, dom_a, dom_b = BINARY[name]
    rng = np.random.default_rng(seed)
    a, b = dom_a(rng, shapes[0]), dom_b(rng, shapes[1])
    if tracked == "both":
        check_grads(op, ref, a, b, rng=rng)
    elif tracked == "left":     # b is a NumPy constant
        check_grads(lambda a: op(a, b), lambda a: ref(a, b), a, rng=rng)
    else:                       # a is a NumPy constant: the reflected / ufunc path
        check_grads(lambda b: op(a, b), lambda b: ref(a, b), b, rng=rng)


SCALAR_FORMS = {
    "x + 2": (lambda x: x + 2.0, real),
    "2 + x": (lambda x: 2.0 + x, real),
    "x - 3": (lambda x: x - 3, real),
    "1 - x": (lambda x: 1 - x, real),
    "3 * x": (lambda x: 3.0 * x, real),
    "x * 3": (lambda x: x * 3, real),
    "x / 4": (lambda x: x / 4.0, real),
    "2 / x": (lambda x: 2.0 / x, nonzero),
    "x ** 2": (lambda x: x ** 2, real),
    "x ** 3": (lambda x: x ** 3, real),
    "x ** 2.0": (lambda x: x ** 2.0, real),
    "x ** 0.5": (lambda x: x ** 0.5, positive),
    "x ** -1.5": (lambda x: x ** -1.5, positive),
    "x ** array(2)": (lambda x: x ** np.array(2.0), real),
    "2 ** x": (lambda x: 2.0 ** x, real),
    "x ** x": (lambda x: x ** x, positive),
    "-x": (lambda x: -x, real),
    "ops.neg": (ops.neg, real, np.negative),
    "np.negative": (np.negative, real),
    "+x": (lambda x: +x, real),
}


@pytest.mark.parametrize("name", SCALAR_FORMS)
@examples
@given(shape=shapes, seed=seeds)
def test_scalar_operand_forms(name, shape, seed):
    f, domain, *ref = SCALAR_FORMS[name]
    rng = np.random.default_rng(seed)
    x = domain(rng, shape)
    # Unless given, the reference is the same lambda on a plain float64 array: NumPy itself.
    check_grads(f, ref[0] if ref else f, x, rng=rng)


def test_pow_with_list_exponent():
    rng = np.random.default_rng(0)
    x = positive(rng, (2,))
    check_grads(lambda x: x ** [2.0, 3.0], lambda x: x ** np.array([2.0, 3.0]), x, rng=rng)
    check_grads(lambda x: mg.maximum(x, [1.0, 1.05]), lambda x: np.maximum(x, [1.0, 1.05]),
                np.array([0.7, 1.6]), rng=rng)


# -- matrix product ------------------------------------------------------------------------------

MATMUL = {
    "vector @ vector": lambda B, C, m, k, n: ((k,), (k,)),
    "matrix @ vector": lambda B, C, m, k, n: ((m, k), (k,)),
    "vector @ matrix": lambda B, C, m, k, n: ((k,), (k, n)),
    "matrix @ matrix": lambda B, C, m, k, n: ((m, k), (k, n)),
    "batch @ matrix": lambda B, C, m, k, n: ((B, m, k), (k, n)),
    "matrix @ batch": lambda B, C, m, k, n: ((m, k), (B, k, n)),
    "batch @ batch": lambda B, C, m, k, n: ((B, m, k), (B, k, n)),
    "broadcast batches": lambda B, C, m, k, n: ((B, 1, m, k), (C, k, n)),
    "batch @ vector": lambda B, C, m, k, n: ((B, m, k), (k,)),
    "vector @ batch": lambda B, C, m, k, n: ((k,), (B, k, n)),
}


@pytest.mark.parametrize("case", MATMUL)
@pytest.mark.parametrize("tracked", ["both", "left", "right"])
@examples
@given(dims=st.tuples(*[st.integers(1, 3)] * 5), seed=seeds)
def test_matmul(case, tracked, dims, seed):
    rng = np.random.default_rng(seed)
    sa, sb = MATMUL[case](*dims)
    a, b = real(rng, sa), real(rng, sb)
    if tracked == "both":
        check_grads(lambda a, b: a @ b, np.matmul, a, b, rng=rng)
        check_grads(ops.matmul, np.matmul, a, b, rng=rng)
    elif tracked == "left":
        check_grads(lambda a: a @ b, lambda a: a @ b, a, rng=rng)
    else:       # ndarray @ tracked: NumPy hands the product to the tracked operand
        check_grads(lambda b: a @ b, lambda b: a @ b, b, rng=rng)
        check_grads(lambda b: np.matmul(a, b), lambda b: a @ b, b, rng=rng)


def test_matmul_with_list_operand():
    rng = np.random.default_rng(1)
    W = real(rng, (2, 3))
    check_grads(lambda W: [1.0, -2.0] @ W, lambda W: np.array([1.0, -2.0]) @ W, W, rng=rng)
    check_grads(lambda W: W @ [0.5, 1.0, -1.0], lambda W: W @ np.array([0.5, 1.0, -1.0]), W,
                rng=rng)


# -- elementwise functions -----------------------------------------------------------------------

def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


UNARY = {
    "exp": (mg.exp, np.exp, real),
    "log": (mg.log, np.log, positive),
    "sqrt": (mg.sqrt, np.sqrt, positive),
    "abs": (mg.abs, np.abs, nonzero),
    "builtin abs": (lambda x: abs(x), np.abs, nonzero),
    "tanh": (mg.tanh, np.tanh, real),
    "sigmoid": (mg.sigmoid, np_sigmoid, real),
    "σ": (mg.σ, np_sigmoid, real),
    "relu": (mg.relu, lambda x: np.where(x > 0, x, 0.0), nonzero),
    "leakyrelu": (mg.leakyrelu, lambda x: np.where(x > 0, x, 0.01 * x), nonzero),
    "leakyrelu(a=0.2)": (lambda x: mg.leakyrelu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                         nonzero),
    "softplus": (mg.softplus, lambda x: np.log1p(np.exp(x)), real),
    "logsigmoid": (mg.logsigmoid, lambda x: -np.log1p(np.exp(-x)), real),
    "logσ": (mg.logσ, lambda x: np.log(np_sigmoid(x)), real),
    "identity": (mg.identity, lambda x: x, real),
    "np.exp": (np.exp, np.exp, real),
    "np.log": (np.log, np.log, positive),
    "np.sqrt": (np.sqrt, np.sqrt, positive),
    "np.abs": (np.abs, np.abs, nonzero),
    "np.tanh": (np.tanh, np.tanh, real),
}


@pytest.mark.parametrize("name", UNARY)
@examples
@given(shape=shapes, seed=seeds)
def test_unary(name, shape, seed):
    op, ref, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    check_grads(op, ref, domain(rng, shape), rng=rng)


@pytest.mark.parametrize("op, ref", [
    (mg.sigmoid, np_sigmoid),
    (mg.softplus, lambda x: np.log1p(np.exp(x))),
    (mg.logsigmoid, lambda x: -np.log1p(np.exp(-x))),
    (mg.tanh, np.tanh),
])
def test_unary_large_inputs(op, ref):
    """Far from 0 the stable forms must neither overflow nor lose the gradient."""
    rng = np.random.default_rng(2)
    x = np.array([-30.0, -12.0, -5.0, 5.0, 12.0, 30.0])
    check_grads(op, ref, x, rng=rng)


# -- reductions ----------------------------------------------------------------------------------

@st.composite
def shape_and_axis(draw):
    shape = draw(nonscalar_shapes)
    ndim = len(shape)
    axis = draw(st.one_of(
        st.none(),
        st.integers(-ndim, ndim - 1),
        st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple),
    ))
    if isinstance(axis, tuple):     # write some of the axes as negative numbers
        flips = draw(st.lists(st.booleans(), min_size=len(axis), max_size=len(axis)))
        axis = tuple(a - ndim if flip else a for a, flip in zip(axis, flips, strict=True))
    return shape, axis


REDUCTIONS = {
    "mg.sum": (mg.sum, np.sum),
    "mg.mean": (mg.mean, np.mean),
    "x.sum": (lambda x, **kw: x.sum(**kw), np.sum),
    "x.mean": (lambda x, **kw: x.mean(**kw), np.mean),
    "np.sum": (np.sum, np.sum),
    "np.mean": (np.mean, np.mean),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@examples
@given(shape_axis=shape_and_axis(), keepdims=st.booleans(), seed=seeds)
def test_reductions(name, shape_axis, keepdims, seed):
    op, ref = REDUCTIONS[name]
    shape, axis = shape_axis
    rng = np.random.default_rng(seed)
    check_grads(lambda x: op(x, axis=axis, keepdims=keepdims),
                lambda x: ref(x, axis=axis, keepdims=keepdims), real(rng, shape), rng=rng)


@pytest.mark.parametrize("op, ref", [(mg.sum, np.sum), (mg.mean, np.mean)])
@examples
@given(shape=shapes, seed=seeds)
def test_full_reductions_default(op, ref, shape, seed):
    rng = np.random.default_rng(seed)
    check_grads(op, ref, real(rng, shape), rng=rng)


# -- softmax and logsoftmax ----------------------------------------------------------------------

def np_softmax(x, axis=0):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_logsoftmax(x, axis=0):
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("op, ref", [(mg.softmax, np_softmax), (mg.logsoftmax, np_logsoftmax)])
@examples
@given(shape=nonscalar_shapes, data=st.data(), seed=seeds)
def test_softmax(op, ref, shape, data, seed):
    rng = np.random.default_rng(seed)
    x = 1.5 * real(rng, shape)
    # The default: along the first axis (Flux's dims=1).
    check_grads(op, ref, x, rng=rng)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    check_grads(lambda x: op(x, axis=axis), lambda x: ref(x, axis=axis), x, rng=rng)


def test_softmax_large_logits():
    rng = np.random.default_rng(3)
    x = np.array([[500.0, -300.0], [501.0, -299.0], [499.5, -301.0]])
    check_grads(mg.softmax, np_softmax, x, rng=rng)
    check_grads(mg.logsoftmax, lambda x: np_logsoftmax(x - x.max(axis=0)), x, rng=rng)


# -- shape ops -----------------------------------------------------------------------------------

@examples
@given(shape=shapes, data=st.data(), seed=seeds)
def test_reshape(shape, data, seed):
    rng = np.random.default_rng(seed)
    x = real(rng, shape)
    n = x.size
    targets = [(n,), (-1,), tuple(reversed(shape)), (1, n), shape + (1,), (n, 1, 1)]
    if n == 1:
        targets.append(())
    target = data.draw(st.sampled_from(targets), label="target")
    expected = lambda x: np.reshape(x, target)  # noqa: E731
    check_grads(lambda x: mg.reshape(x, target), expected, x, rng=rng)
    check_grads(lambda x: mg.reshape(x, *target), expected, x, rng=rng)
    check_grads(lambda x: x.reshape(target), expected, x, rng=rng)
    check_grads(lambda x: np.reshape(x, target), expected, x, rng=rng)


@examples
@given(shape=nonscalar_shapes, data=st.data(), seed=seeds)
def test_transpose(shape, data, seed):
    rng = np.random.default_rng(seed)
    x = real(rng, shape)
    ndim = len(shape)
    check_grads(lambda x: x.T, lambda x: x.T, x, rng=rng)
    check_grads(mg.transpose, np.transpose, x, rng=rng)
    perm = tuple(data.draw(st.permutations(range(ndim)), label="axes"))
    expected = lambda x: np.transpose(x, perm)  # noqa: E731
    check_grads(lambda x: mg.transpose(x, perm), expected, x, rng=rng)
    check_grads(lambda x: x.transpose(*perm), expected, x, rng=rng)
    check_grads(lambda x: x.transpose(perm), expected, x, rng=rng)
    check_grads(lambda x: np.transpose(x, perm), expected, x, rng=rng)
    # The same permutation with some axes written as negative numbers.
    negative = tuple(a - ndim if rng.random() < 0.5 else a for a in perm)
    check_grads(lambda x: mg.transpose(x, negative), expected, x, rng=rng)


@pytest.mark.parametrize("axes", [
    (0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0),   # every 3-d permutation
    (-1, 0, 1), (1, -1, -3), (3, 0, 2, 1), (1, 2, 3, 0), (-3, -1, 0, -2),
])
def test_transpose_every_permutation(axes):
    rng = np.random.default_rng(sum(a % len(axes) * 10 ** i for i, a in enumerate(axes)))
    x = real(rng, (2, 3, 4, 5)[: len(axes)])
    check_grads(lambda x: mg.transpose(x, axes), lambda x: np.transpose(x, axes), x, rng=rng)
    check_grads(lambda x: x.transpose(*axes), lambda x: np.transpose(x, axes), x, rng=rng)


@examples
@given(shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4),
       data=st.data(), seed=seeds)
def test_basic_indexing(shape, data, seed):
    rng = np.random.default_rng(seed)
    x = real(rng, shape)
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True), label="index")
    check_grads(lambda x: x[index], lambda x: x[index], x, rng=rng)


@examples
@given(n=st.integers(1, 6), data=st.data(), seed=seeds)
def test_slicing_vector(n, data, seed):
    rng = np.random.default_rng(seed)
    x = real(rng, (n,))
    index = data.draw(st.one_of(st.slices(n), st.integers(-n, n - 1)), label="index")
    check_grads(lambda x: x[index], lambda x: x[index], x, rng=rng)


@examples
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
       data=st.data(), seed=seeds)
def test_fancy_indexing(shape, data, seed):
    rng = np.random.default_rng(seed)
    x = real(rng, shape)
    # Index arrays: repeated entries (they must add up) are likely with these small shapes.
    index = data.draw(hnp.integer_array_indices(
        shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)), label="index")
    check_grads(lambda x: x[index], lambda x: x[index], x, rng=rng)
    # A single index array along the first axis, as a list and as an array.
    rows = rng.integers(-shape[0], shape[0], size=rng.integers(1, 7)).tolist()
    check_grads(lambda x: x[rows], lambda x: x[np.array(rows)], x, rng=rng)
    check_grads(lambda x: x[np.array(rows)], lambda x: x[np.array(rows)], x, rng=rng)
    # A boolean mask.
    mask = rng.random(shape) < 0.5
    check_grads(lambda x: x[mask], lambda x: x[mask], x, rng=rng)
    if len(shape) >= 2:
        cols = rng.integers(0, shape[1], size=4).tolist()
        check_grads(lambda x: x[:, cols], lambda x: x[:, np.array(cols)], x, rng=rng)
        check_grads(lambda x: x[rows[0], cols], lambda x: x[rows[0], np.array(cols)], x,
                    rng=rng)


def test_repeated_index_counts():
    """``x[[0, 0, 2, 0]]``: the gradient of element 0 counts its three uses."""
    x = mg.param([1.0, 2.0, 3.0])
    gs = mg.gradient(lambda: mg.sum(x[[0, 0, 2, 0]] * np.array([1.0, 10.0, 100.0, 1000.0])),
                     mg.params(x))
    np.testing.assert_array_equal(gs[x], [1011.0, 0.0, 100.0])
    gs = mg.gradient(lambda: mg.sum(x[np.array([2, 2])]), mg.params(x))
    np.testing.assert_array_equal(gs[x], [0.0, 0.0, 2.0])


def test_iterating_a_parameter():
    rng = np.random.default_rng(4)
    x = real(rng, (3, 2))
    check_grads(lambda x: mg.concatenate([r * (i + 1) for i, r in enumerate(x)]),
                lambda x: np.concatenate([r * (i + 1) for i, r in enumerate(x)]), x, rng=rng)


@examples
@given(shape=nonscalar_shapes, pieces=st.integers(1, 3), data=st.data(), seed=seeds)
def test_concatenate(shape, pieces, data, seed):
    rng = np.random.default_rng(seed)
    ndim = len(shape)
    axis = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    xs = []
    for _ in range(pieces):
        s = list(shape)
        s[axis] = int(rng.integers(1, 4))
        xs.append(real(rng, tuple(s)))
    check_grads(lambda *xs: mg.concatenate(xs, axis=axis),
                lambda *xs: np.concatenate(xs, axis=axis), *xs, rng=rng)
    check_grads(lambda *xs: np.concatenate(list(xs), axis=axis),
                lambda *xs: np.concatenate(xs, axis=axis), *xs, rng=rng)
    # A constant piece in front.
    c = real(rng, xs[0].shape)
    check_grads(lambda *xs: mg.concatenate((c, *xs), axis=axis),
                lambda *xs: np.concatenate((c, *xs), axis=axis), *xs, rng=rng)
    # axis=None flattens the pieces first.
    check_grads(lambda *xs: mg.concatenate(xs, axis=None),
                lambda *xs: np.concatenate(xs, axis=None), *xs, rng=rng)


@examples
@given(shape=shapes, seed=seeds)
def test_astype(shape, seed):
    rng = np.random.default_rng(seed)
    check_grads(lambda x: ops.astype(x, np.float64), lambda x: x, real(rng, shape), rng=rng)
    check_grads(lambda x: x.astype(np.float64) * 2, lambda x: x * 2, real(rng, shape), rng=rng)


def test_astype_between_precisions():
    """float64 → float32 → float64 and back: the gradient comes back in the input's dtype."""
    x32 = mg.param(np.array([0.5, -1.25, 2.0], np.float32))
    R = np.array([1.5, -2.0, 0.25])
    gs = mg.gradient(lambda: mg.sum(x32.astype(np.float64) * R), mg.params(x32))
    assert gs[x32].dtype == np.float32
    np.testing.assert_array_equal(gs[x32], R.astype(np.float32))
    x64 = mg.param([0.5, -1.25, 2.0])
    gs = mg.gradient(lambda: mg.sum(x64.astype(np.float32) * R.astype(np.float32)),
                     mg.params(x64))
    assert gs[x64].dtype == np.float64
    np.testing.assert_array_equal(gs[x64], R)


# -- the fused dense op --------------------------------------------------------------------------

ACTIVATIONS = {
    "identity": (mg.identity, lambda z: z),
    "relu": (mg.relu, lambda z: np.where(z > 0, z, 0.0)),
    "tanh": (mg.tanh, np.tanh),
    "σ": (mg.σ, np_sigmoid),
    "softmax": (mg.softmax, np_softmax),                      # not fused: applied after
    "softplus": (mg.softplus, lambda z: np.log1p(np.exp(z))),  # not fused
    "lambda": (lambda z: z * z, lambda z: z * z),              # not fused
}


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False])
@examples
@given(n_in=st.integers(1, 4), n_out=st.integers(1, 4), batch=st.sampled_from([None, 1, 3]),
       seed=seeds)
def test_dense(act, bias, n_in, n_out, batch, seed):
    f, g = ACTIVATIONS[act]
    rng = np.random.default_rng(seed)
    xshape = (n_in,) if batch is None else (n_in, batch)
    for _ in range(1000):   # keep W x + b away from relu's kink
        W, x, b = real(rng, (n_out, n_in)), real(rng, xshape), real(rng, (n_out,))
        z = W @ x + ((b if x.ndim == 1 else b[:, None]) if bias else 0)
        if np.abs(z).min() > 0.05:
            break
    if bias:
        def ref(W, x, b):
            return g(W @ x + (b if x.ndim == 1 else b[:, None]))

        check_grads(lambda W, x, b: ops.dense(W, x, b, f), ref, W, x, b, rng=rng)
        # x a constant (the usual case: data), W and b tracked
        check_grads(lambda W, b: ops.dense(W, x, b, f), lambda W, b: ref(W, x, b), W, b,
                    rng=rng)
    else:
        check_grads(lambda W, x: ops.dense(W, x, None, f), lambda W, x: g(W @ x), W, x, rng=rng)
        check_grads(lambda W: ops.dense(W, x, activation=f), lambda W: g(W @ x), W, rng=rng)


# -- losses --------------------------------------------------------------------------------------

EPS = np.finfo(np.float64).eps


def probabilities(rng, shape):
    return rng.uniform(0.05, 1.0, shape)


def labels(rng, shape):
    return rng.uniform(0.0, 1.0, shape)


def apart(rng, shape):
    """A pair (ŷ, y) with |ŷ - y| ≥ 0.1 everywhere (mae's kink)."""
    y = real(rng, shape)
    return y + nonzero(rng, shape), y


LOSSES = {
    # name: (loss, reference without reduction, reduce axis, (ŷ, y) sampler)
    "mse": (losses.mse, lambda ŷ, y: (ŷ - y) ** 2, None,
            lambda rng, s: (real(rng, s), real(rng, s))),
    "mae": (losses.mae, lambda ŷ, y: np.abs(ŷ - y), None, apart),
    "crossentropy": (losses.crossentropy, lambda ŷ, y, axis: -np.sum(y * np.log(ŷ + EPS), axis),
                     "axis", lambda rng, s: (probabilities(rng, s), labels(rng, s))),
    "logitcrossentropy": (losses.logitcrossentropy,
                          lambda ŷ, y, axis: -np.sum(y * np_logsoftmax(ŷ, axis), axis), "axis",
                          lambda rng, s: (real(rng, s), labels(rng, s))),
    "binarycrossentropy": (losses.binarycrossentropy,
                           lambda ŷ, y: -y * np.log(ŷ + EPS) - (1 - y) * np.log(1 - ŷ + EPS),
                           None, lambda rng, s: (rng.uniform(0.1, 0.9, s), labels(rng, s))),
    "logitbinarycrossentropy": (losses.logitbinarycrossentropy,
                                lambda ŷ, y: (1 - y) * ŷ + np.log1p(np.exp(-ŷ)), None,
                                lambda rng, s: (real(rng, s), labels(rng, s))),
}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("agg", ["default", "mean", "sum"])
@examples
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), data=st.data(),
       seed=seeds)
def test_losses(name, agg, shape, data, seed):
    loss, ref, per_axis, sample = LOSSES[name]
    rng = np.random.default_rng(seed)
    ŷ, y = sample(rng, shape)
    kwargs = {} if agg == "default" else {"agg": {"mean": mg.mean, "sum": mg.sum}[agg]}
    np_agg = np.sum if agg == "sum" else np.mean
    if per_axis:
        axis = data.draw(st.sampled_from([None] + list(range(len(shape)))), label="axis")
        if axis is not None:
            kwargs["axis"] = axis

        def reference(ŷ, y):
            return np_agg(ref(ŷ, y, 0 if axis is None else axis))
    else:
        def reference(ŷ, y):
            return np_agg(ref(ŷ, y))

    # With respect to the prediction and the target together, and to the prediction alone.
    check_grads(lambda ŷ, y: loss(ŷ, y, **kwargs), reference, ŷ, y, rng=rng)
    check_grads(lambda ŷ: loss(ŷ, y, **kwargs), lambda ŷ: reference(ŷ, y), ŷ, rng=rng)

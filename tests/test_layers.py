"""The layers a small model needs: Conv, CrossCor, MaxPool, MeanPool, BatchNorm, LayerNorm,
Dropout, Embedding, and the ``rng`` keyword of every constructor.

Each op is checked twice, independently:

* against finite differences of a plain NumPy reference written from the definition (loops
  over output positions for convolution and pooling), with the project's
  :func:`test_gradcheck.check_grads` (always runs);
* against PyTorch autograd (forward values and every gradient), where torch is installed.
"""

import numpy as np
import pytest
from test_gradcheck import check_grads

import minigrad as mg
from minigrad import ops

# -- plain NumPy references from the definitions -------------------------------------------------


def np_conv(x, w, b=None, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1), flipped=True):
    """y[i, j, o, n] = b[o] + Σ w'[p, q, c, o] x_padded[i·s + p·d, j·s + q·d, c, n], one output
    element at a time; w' is w flipped along width and height for a true convolution."""
    xp = np.pad(x, ((pad[0], pad[1]), (pad[2], pad[3]), (0, 0), (0, 0)))
    if flipped:
        w = w[::-1, ::-1]
    kw, kh, cin, cout = w.shape
    Wo = (xp.shape[0] - dilation[0] * (kw - 1) - 1) // stride[0] + 1
    Ho = (xp.shape[1] - dilation[1] * (kh - 1) - 1) // stride[1] + 1
    y = np.zeros((Wo, Ho, cout, x.shape[3]))
    for i in range(Wo):
        for j in range(Ho):
            for p in range(kw):
                for q in range(kh):
                    patch = xp[i * stride[0] + p * dilation[0], j * stride[1] + q * dilation[1]]
                    y[i, j] += w[p, q].T @ patch          # (cout, cin) @ (cin, N)
    return y if b is None else y + b[:, None]


def np_pool(x, size, stride, reduce, pad=(0, 0, 0, 0), fill=0.0):
    xp = np.pad(x, ((pad[0], pad[1]), (pad[2], pad[3]), (0, 0), (0, 0)), constant_values=fill)
    Wo = (xp.shape[0] - size[0]) // stride[0] + 1
    Ho = (xp.shape[1] - size[1]) // stride[1] + 1
    y = np.zeros((Wo, Ho) + x.shape[2:])
    for i in range(Wo):
        for j in range(Ho):
            window = xp[i * stride[0]: i * stride[0] + size[0],
                        j * stride[1]: j * stride[1] + size[1]]
            y[i, j] = reduce(window, axis=(0, 1))
    return y


def np_normalise(x, axis, eps):
    μ = x.mean(axis=axis, keepdims=True)
    return (x - μ) / np.sqrt(x.var(axis=axis, keepdims=True) + eps)


CONV_CASES = [
    # (x shape W, H, C, N), kernel (kw, kh), cout, stride, pad, dilation
    ((5, 4, 2, 3), (3, 2), 3, (1, 1), (0, 0, 0, 0), (1, 1)),
    ((6, 7, 1, 2), (3, 3), 2, (2, 1), (1, 1, 1, 1), (1, 1)),
    ((7, 6, 2, 1), (2, 3), 2, (1, 2), (0, 2, 1, 0), (2, 1)),
    ((5, 5, 3, 2), (1, 1), 4, (2, 2), (0, 0, 0, 0), (1, 1)),
]


@pytest.mark.parametrize("flipped", [True, False])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_against_finite_differences(case, flipped):
    shape, size, cout, stride, pad, dilation = CONV_CASES[case]
    rng = np.random.default_rng(case)
    x = rng.standard_normal(shape)
    w = rng.standard_normal(size + (shape[2], cout))
    b = rng.standard_normal(cout)
    kw = dict(stride=stride, pad=pad, dilation=dilation, flipped=flipped)
    check_grads(lambda x, w, b: ops.conv(x, w, b, **kw), lambda x, w, b: np_conv(x, w, b, **kw),
                x, w, b, rng=rng)
    check_grads(lambda w: ops.conv(x, w, **kw), lambda w: np_conv(x, w, **kw), w, rng=rng)


def test_conv_flips_the_kernel():
    """Flux's Conv is a true convolution: a kernel [1, 2] along the width gives 2·x[i] + x[i+1];
    CrossCor gives x[i] + 2·x[i+1]."""
    x = np.array([1.0, 10.0, 100.0]).reshape(3, 1, 1, 1)
    w = np.array([1.0, 2.0]).reshape(2, 1, 1, 1)
    np.testing.assert_array_equal(ops.conv(x, w).ravel(), [12.0, 120.0])
    np.testing.assert_array_equal(ops.conv(x, w, flipped=False).ravel(), [21.0, 210.0])
    init = lambda *s: w.astype(np.float32)  # noqa: E731
    np.testing.assert_array_equal(mg.Conv((2, 1), (1, 1), bias=False, init=init)(x).ravel(),
                                  [12.0, 120.0])
    np.testing.assert_array_equal(mg.CrossCor((2, 1), (1, 1), bias=False, init=init)(x).ravel(),
                                  [21.0, 210.0])


POOL_CASES = [((4, 4, 2, 3), (2, 2), None, 0), ((5, 7, 1, 2), (2, 3), (1, 2), 0),
              ((5, 5, 2, 1), (3, 3), (2, 2), 1)]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_pools_against_finite_differences(case):
    shape, size, stride, pad = POOL_CASES[case]
    rng = np.random.default_rng(10 + case)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1   # distinct values: no max ties
    s = size if stride is None else stride
    p4 = (pad,) * 4
    check_grads(lambda x: ops.maxpool(x, size, stride, p4),
                lambda x: np_pool(x, size, s, np.max, p4, -np.inf), x, rng=rng)
    check_grads(lambda x: ops.meanpool(x, size, stride, p4),
                lambda x: np_pool(x, size, s, np.mean, p4), x, rng=rng)


def test_maxpool_gradient_goes_to_the_first_maximum():
    """Ties (common after relu) send the gradient to one element: the first along the width,
    then the height, as PyTorch does."""
    x = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]).reshape(2, 3, 1, 1)   # (width, height)
    xp = mg.param(x)
    gs = mg.gradient(lambda: mg.sum(ops.maxpool(xp, (2, 2), (1, 1))), mg.params(xp))
    # window at height 0: x[1, 0] is first (width fastest); at height 1: x[0, 1]
    np.testing.assert_array_equal(gs[xp][:, :, 0, 0], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    torch = pytest.importorskip("torch")
    tx = _to_torch(torch, x)
    torch.nn.functional.max_pool2d(tx, 2, stride=1).sum().backward()
    np.testing.assert_array_equal(gs[xp], tx.grad.numpy().T)


@pytest.mark.parametrize("axis", [0, (0, 1, 3), 1])
def test_normalise_against_finite_differences(axis):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 2, 5))
    check_grads(lambda x: ops.normalise(x, axis, 1e-3), lambda x: np_normalise(x, axis, 1e-3),
                x, rng=rng)


def test_flatten():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 5))
    check_grads(mg.flatten, lambda x: x.reshape(24, 5), x, rng=rng)
    assert mg.flatten(np.zeros(7)).shape == (1, 7)
    with pytest.raises(ValueError, match="scalar"):
        mg.flatten(1.0)


# -- layers: forward and gradients of every parameter against PyTorch ----------------------------

def _torch():
    return pytest.importorskip("torch")


def _to_torch(torch, a):
    """An image batch (W, H, C, N) or kernel (kW, kH, in, out) in PyTorch's order (N, C, H, W) /
    (out, in, kH, kW): both reverse the axes."""
    return torch.tensor(np.ascontiguousarray(np.transpose(a)), requires_grad=True)


def _layer_grads(layer, x, R):
    """Output, and gradients with respect to the input and to each parameter, of sum(layer(x)·R).
    """
    xp = mg.param(x)
    ps = mg.params(layer)
    ps.append(xp)
    out = []
    gs = mg.gradient(lambda: mg.sum(_record(out, layer(xp)) * R), ps)
    return out[0], gs[xp], gs


def _record(out, y):
    out.append(np.array(mg.data(y)))
    return y


@pytest.mark.parametrize("flipped", [True, False])
def test_conv_layer_against_torch(flipped):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    Layer = mg.Conv if flipped else mg.CrossCor
    layer = Layer((3, 2), (2, 4), mg.relu, stride=(2, 1), pad=(1, 0, 2, 1), dilation=(1, 2),
                  rng=rng)
    layer.bias[...] = rng.standard_normal(4)
    x = rng.standard_normal((9, 8, 2, 3)).astype(np.float32)
    y, gx, gs = _layer_grads(layer, x, R := rng.standard_normal((4, 9, 4, 3)).astype(np.float32))

    tx, tw = _to_torch(torch, x), _to_torch(torch, np.asarray(layer.weight))
    tb = torch.tensor(np.asarray(layer.bias), requires_grad=True)
    kernel = tw.flip(2, 3) if flipped else tw
    ty = F.relu(F.conv2d(F.pad(tx, (1, 0, 2, 1)), kernel, tb, stride=(1, 2), dilation=(2, 1)))
    (ty * torch.tensor(np.ascontiguousarray(R.T))).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy().T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, tx.grad.numpy().T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gs[layer.weight], tw.grad.numpy().T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gs[layer.bias], tb.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert gs[layer.weight].dtype == np.float32


@pytest.mark.parametrize("Pool", [mg.MaxPool, mg.MeanPool])
def test_pool_layers_against_torch(Pool):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 6, 3, 2)).astype(np.float32)
    layer = Pool((3, 2), stride=(2, 2), pad=1)
    y, gx, _ = _layer_grads(layer, x, R := rng.standard_normal((4, 4, 3, 2)).astype(np.float32))
    tx = _to_torch(torch, x)
    if Pool is mg.MaxPool:
        ty = F.max_pool2d(tx, (2, 3), stride=2, padding=(1, 1))
    else:
        ty = F.avg_pool2d(tx, (2, 3), stride=2, padding=(1, 1), count_include_pad=True)
    (ty * torch.tensor(np.ascontiguousarray(R.T))).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy().T, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gx, tx.grad.numpy().T, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 8), (5, 4, 3, 6)])
def test_batchnorm_against_torch(shape):
    """Training mode (inside gradient): batch statistics, gradients of x, γ, β, and the running
    statistics after two steps; then test mode, with the running statistics."""
    torch = _torch()
    rng = np.random.default_rng(2)
    C = shape[-2]
    bn = mg.BatchNorm(C, mg.relu)
    bn.γ[...] = rng.uniform(0.5, 1.5, C)
    bn.β[...] = rng.standard_normal(C)
    tbn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(C, eps=1e-5,
                                                                              momentum=0.1)
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(np.asarray(bn.γ)))
        tbn.bias.copy_(torch.tensor(np.asarray(bn.β)))
    for _ in range(2):
        x = (3 * rng.standard_normal(shape) + 1).astype(np.float32)
        R = rng.standard_normal(shape).astype(np.float32)
        y, gx, gs = _layer_grads(bn, x, R)
        tx = _to_torch(torch, x)
        tbn.zero_grad()
        ty = torch.relu(tbn(tx))
        (ty * torch.tensor(np.ascontiguousarray(R.T))).sum().backward()
        np.testing.assert_allclose(y, ty.detach().numpy().T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gx, tx.grad.numpy().T, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gs[bn.γ], tbn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gs[bn.β], tbn.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(bn.μ, tbn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.σ2, tbn.running_var.numpy(), rtol=1e-5, atol=1e-6)
    tbn.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(bn(x), torch.relu(tbn(torch.tensor(x.T))).detach().numpy().T,
                               rtol=1e-5, atol=1e-5)


def test_batchnorm_momentum_and_test_mode_by_hand():
    """Flux's update by hand: μ = 0.9·0 + 0.1·mean, σ² = 0.9·1 + 0.1·var·m/(m-1)."""
    bn = mg.BatchNorm(1)
    x = np.array([[1.0, 2.0, 6.0]], np.float32)          # mean 3, biased var 14/3, m = 3
    mg.gradient(lambda: mg.sum(bn(x)), mg.params(bn))
    np.testing.assert_allclose(bn.μ, [0.3], rtol=1e-6)
    np.testing.assert_allclose(bn.σ2, [0.9 + 0.1 * 7.0], rtol=1e-6)
    # Outside gradient (auto mode): the running statistics, and no update of them.
    np.testing.assert_allclose(bn(x), (x - 0.3) / np.sqrt(1.6 + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(bn.μ, [0.3], rtol=1e-6)
    # trainmode_: batch statistics outside gradient too.
    mg.trainmode_(bn)
    np.testing.assert_allclose(bn(x), (x - 3) / np.sqrt(14 / 3 + 1e-5), rtol=1e-5)


def test_batchnorm_running_statistics_survive_a_checkpoint(tmp_path):
    """Running statistics are not parameters; given among save's objects they are kept."""
    bn = mg.BatchNorm(2)
    x = np.array([[1.0, 5.0], [2.0, -2.0]], np.float32)
    mg.gradient(lambda: mg.sum(bn(x)), mg.params(bn))
    mg.save(tmp_path / "bn.npz", bn, [bn])
    again = mg.BatchNorm(2)
    mg.load(tmp_path / "bn.npz", again, [again])
    np.testing.assert_array_equal(again.μ, bn.μ)
    np.testing.assert_array_equal(again.σ2, bn.σ2)
    np.testing.assert_array_equal(again(x), bn(x))


def test_batchnorm_finite_differences():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 4, 5))
    bn = mg.BatchNorm(4, mg.tanh)
    bn.γ[...] = rng.uniform(0.5, 1.5, 4)
    bn.β[...] = rng.standard_normal(4)
    γ, β = np.asarray(bn.γ, np.float64)[:, None], np.asarray(bn.β, np.float64)[:, None]
    mg.trainmode_(bn)
    check_grads(lambda x: bn(x), lambda x: np.tanh(np_normalise(x, (0, 1, 3), 1e-5) * γ + β), x,
                rng=rng)


def test_layernorm_against_torch_and_finite_differences():
    torch = _torch()
    rng = np.random.default_rng(3)
    ln = mg.LayerNorm(5)
    ln.scale[...] = rng.uniform(0.5, 1.5, 5)
    ln.bias[...] = rng.standard_normal(5)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    y, gx, gs = _layer_grads(ln, x, R := rng.standard_normal(x.shape).astype(np.float32))
    tx = _to_torch(torch, x)                # (4, 3, 5): PyTorch normalises the last axis
    tw = torch.tensor(np.asarray(ln.scale), requires_grad=True)
    tb = torch.tensor(np.asarray(ln.bias), requires_grad=True)
    ty = torch.nn.functional.layer_norm(tx, (5,), tw, tb, eps=1e-5)
    (ty * torch.tensor(np.ascontiguousarray(R.T))).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy().T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, tx.grad.numpy().T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gs[ln.scale], tw.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gs[ln.bias], tb.grad.numpy(), rtol=1e-4, atol=1e-4)
    s, b = np.asarray(ln.scale, np.float64)[:, None, None], np.asarray(ln.bias, np.float64)[
        :, None, None]
    check_grads(lambda x: ln(x), lambda x: np_normalise(x, 0, 1e-5) * s + b,
                x.astype(np.float64), rng=rng)


def test_embedding_against_torch():
    torch = _torch()
    rng = np.random.default_rng(4)
    e = mg.Embedding(6, 3, rng=rng)
    idx = np.array([[1, 4, 1], [5, 0, 1]])
    y, _, gs = _layer_grads_int(e, idx, R := rng.standard_normal((3, 2, 3)).astype(np.float32))
    tw = torch.tensor(np.ascontiguousarray(np.asarray(e.weight).T), requires_grad=True)
    ty = torch.nn.functional.embedding(torch.tensor(idx), tw)     # (2, 3, dim)
    (ty * torch.tensor(np.ascontiguousarray(np.moveaxis(R, 0, -1)))).sum().backward()
    np.testing.assert_allclose(y, np.moveaxis(ty.detach().numpy(), -1, 0))
    np.testing.assert_allclose(gs[e.weight], tw.grad.numpy().T, rtol=1e-6, atol=1e-6)


def _layer_grads_int(layer, idx, R):
    out = []
    gs = mg.gradient(lambda: mg.sum(_record(out, layer(idx)) * R), mg.params(layer))
    return out[0], None, gs


def test_embedding_gradient_by_hand_and_errors():
    e = mg.Embedding(4, 2, init=lambda *s: np.arange(8, dtype=np.float32).reshape(s))
    gs = mg.gradient(lambda: mg.sum(e(np.array([3, 3, 0]))), mg.params(e))
    np.testing.assert_array_equal(gs[e.weight], [[1, 0, 0, 2], [1, 0, 0, 2]])
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        e(np.array([4]))
    with pytest.raises(TypeError, match="integer indices"):
        e(np.array([1.0]))


# -- Dropout and modes ---------------------------------------------------------------------------

def test_dropout_is_active_only_inside_gradient_by_default():
    d = mg.Dropout(0.3, rng=0)
    x = np.ones((100, 100), np.float32)
    np.testing.assert_array_equal(d(x), x)                 # inference: the identity
    W = mg.param(np.ones((100, 100), np.float32))
    seen = []
    gs = mg.gradient(lambda: mg.sum(_record(seen, d(W))), mg.params(W))
    y = seen[0]
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(gs[W], y)                 # ∂Σ(W·mask)/∂W = mask
    mg.testmode_(d)
    assert (mg.gradient(lambda: mg.sum(d(W)), mg.params(W))[W] == 1).all()
    mg.trainmode_(d)
    assert (d(x) == 0).any()
    mg.trainmode_(d, "auto")
    np.testing.assert_array_equal(d(x), x)


def test_dropout_masks_follow_the_rng():
    a, b = mg.trainmode_(mg.Dropout(0.5, rng=3)), mg.trainmode_(mg.Dropout(0.5, rng=3))
    x = np.ones(50)
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.array_equal(a(x), a(x))                   # a fresh mask each call
    assert (mg.trainmode_(mg.Dropout(1.0))(x) == 0).all()
    kept = mg.trainmode_(mg.Dropout(0.5, rng=0))([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])   # a list
    assert set(kept.tolist()) <= {0.0, 2.0} and kept.dtype == np.float64
    with pytest.raises(ValueError, match="probability"):
        mg.Dropout(1.5)


def test_modes_reach_nested_layers():
    m = mg.Chain(mg.Dense(2, 3), mg.Chain(mg.Dropout(0.5), mg.BatchNorm(3)))
    mg.testmode_(m)
    assert m[1][0].active is False and m[1][1].active is False
    mg.trainmode_(m)
    assert m[1][0].active is True and m[1][1].active is True
    with pytest.raises(ValueError, match="'auto'"):
        mg.testmode_(m, "yes")


# -- rng -----------------------------------------------------------------------------------------

def test_rng_makes_every_constructor_reproducible():
    def build(rng):
        return [mg.Dense(3, 2, rng=rng).weight, mg.Conv((3, 3), (1, 2), rng=rng).weight,
                mg.CrossCor((2, 2), (2, 2), rng=rng).weight, mg.Embedding(5, 2, rng=rng).weight,
                mg.glorot_uniform(2, 2, rng=rng)]

    for first, second in zip(build(11), build(11), strict=True):
        np.testing.assert_array_equal(first, second)
    one = np.random.default_rng(5)
    a = build(one)
    assert not np.array_equal(a[0], build(one)[0])          # a shared generator moves on


def test_default_init_still_uses_numpy_global_state():
    """Without rng, glorot_uniform draws as before: np.random.random_sample, scaled."""
    np.random.seed(0)
    w = mg.Dense(10, 5).weight
    np.random.seed(0)
    expected = (np.random.random_sample((5, 10)) * 2 - 1) * np.sqrt(6 / 15)
    np.testing.assert_array_equal(w, expected.astype(np.float32))
    # Conv fans as Flux's nfan: kW·kH·in and kW·kH·out.
    w = mg.Conv((3, 3), (2, 4), rng=0).weight
    assert np.abs(w).max() <= np.sqrt(6 / (18 + 36))
    assert np.abs(w).max() > 0.9 * np.sqrt(6 / (18 + 36))


def test_layer_errors_name_the_problem():
    c = mg.Conv((3, 3), (2, 4))
    with pytest.raises(ValueError, match=r"third axis must be the input's channels"):
        c(np.zeros((8, 8, 3, 1), np.float32))
    with pytest.raises(ValueError, match=r"x\[\.\.\., None\]"):
        c(np.zeros((8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        c(np.zeros((2, 8, 2, 1), np.float32))
    with pytest.raises(ValueError, match="pad must be"):
        mg.Conv((3, 3), (1, 1), pad=(1, 2, 3))
    with pytest.raises(ValueError, match=r"\(…, 3, batch\)"):
        mg.BatchNorm(3)(np.zeros((4, 2)))
    assert mg.Conv((3, 3), (1, 1), pad="same")(np.zeros((7, 5, 1, 1))).shape == (7, 5, 1, 1)

    class OnAGpu:                      # what minigrad.devices takes for a GPU array
        __cuda_array_interface__ = {}

    for layer in (c, mg.MaxPool((2, 2)), mg.MeanPool((2, 2))):
        with pytest.raises(TypeError, match=r"CPU \(NumPy\) only.*minigrad\.cpu"):
            layer(OnAGpu())


def test_a_small_cnn_trains():
    """Conv → MaxPool → flatten → Dense learns to tell a bright left half from a bright right
    half in a few Adam steps."""
    rng = np.random.default_rng(0)
    x = rng.random((6, 6, 1, 64)).astype(np.float32)
    labels = rng.integers(0, 2, 64)
    x[:3, :, 0, labels == 0] += 1
    x[3:, :, 0, labels == 1] += 1
    y = mg.onehotbatch(labels, range(2))
    m = mg.Chain(mg.Conv((3, 3), (1, 4), mg.relu, pad=1, rng=1), mg.MaxPool((2, 2)),
                 mg.BatchNorm(4), mg.flatten, mg.Dense(36, 2, rng=2))
    ps, opt = mg.params(m), mg.Adam(0.01)
    for _ in range(30):
        mg.update_(opt, ps, mg.gradient(lambda: mg.losses.logitcrossentropy(m(x), y), ps))
    assert np.mean(mg.onecold(m(x)) == labels) == 1.0

"""The explicit-state API (minigrad.optimisers): Optimisers.jl's interface tests
(test/runtests.jl: setup, update, adjust, freeze, trainable, destructure, tied arrays) with
their values, explicit against implicit bitwise, a user rule, masks and checkpoint resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import minigrad as mg
from minigrad import optimisers as opt
from minigrad.optimise import cpu


def one(x):
    return {"x": mg.param(np.asarray(x, dtype=np.float64))}


def step(rule, x, dx):
    m = one(x)
    st = opt.setup(rule, m)
    opt.update_(st, m, {"x": np.asarray(dx, dtype=np.float64)})
    return np.asarray(m["x"])


# -- Optimisers.jl test/runtests.jl, exact checks --------------------------------------------

def test_descent_and_momentum_values():
    assert np.array_equal(step(opt.Descent(0.1), [1.0, 2.0], [25.0, 33.0]),
                          np.array([1.0, 2.0]) - 0.1 * np.array([25.0, 33.0]))
    m = one([1.0, 2.0])
    st = opt.setup(opt.Momentum(0.1), m)
    opt.update_(st, m, {"x": np.array([25.0, 33.0])})
    np.testing.assert_allclose(st["x"].state[0], [2.5, 3.3], rtol=1e-15)
    # Flux's Momentum keeps the opposite sign, and steps alike.
    m2 = one([1.0, 2.0])
    st2 = opt.setup(mg.Momentum(0.1), m2)
    opt.update_(st2, m2, {"x": np.array([25.0, 33.0])})
    np.testing.assert_allclose(st2["x"].state[0], [-2.5, -3.3], rtol=1e-15)
    assert np.array_equal(m["x"], m2["x"])


def test_clipping_decay_and_chains():
    x, dx = [1.0, 10.0, 100.0], [1.0, 2.0, 3.0]
    xa = np.array(x)
    assert np.array_equal(step(mg.ClipValue(13.0), x, [1.0, 10.0, 100.0]),
                          xa - [1.0, 10.0, 13.0])
    np.testing.assert_allclose(step(opt.WeightDecay(0.1), x, dx), xa - 0.1 * xa - dx)
    assert np.array_equal(step(mg.ClipValue(2.0), x, dx), [0.0, 8.0, 98.0])
    np.testing.assert_allclose(
        step(opt.OptimiserChain(mg.ClipValue(2.0), opt.WeightDecay(0.1)), x, dx),
        [1 - 0.1 - 1, 10 - 1 - 2, 100 - 10 - 2])
    np.testing.assert_allclose(step(opt.OptimiserChain(opt.Descent(0.1)), x, dx),
                               [0.9, 9.8, 99.7])
    assert np.array_equal(step(opt.OptimiserChain(), x, dx), xa - dx)


def test_freeze_adjust_thaw():
    m = {"x": mg.param([1.0, 2.0]), "y": (mg.param([3.0, 4.0]), np.sin)}
    st = opt.setup(opt.Descent(0.1), m)
    assert st["y"][1] is None
    g = {"x": np.array([1.0, 10.0]), "y": (np.array([100.0, 1000.0]), None)}
    opt.freeze_(st["y"])
    opt.update_(st, m, g)
    np.testing.assert_allclose(m["x"], [0.9, 1.0])
    assert np.array_equal(m["y"][0], [3.0, 4.0])
    opt.adjust_(st, 0.2)
    opt.thaw_(st)
    opt.update_(st, m, g)
    np.testing.assert_allclose(m["y"][0], [-17.0, -196.0])
    np.testing.assert_allclose(m["x"], [0.7, -1.0])
    with pytest.raises(TypeError, match="state tree from setup"):
        opt.freeze_(m)


def test_tied_arrays_share_one_leaf_and_sum_gradients():
    W = mg.param([1.0, 2.0])
    m = {"a": W, "b": [W, mg.param([0.0])]}
    st = opt.setup(opt.Descent(0.1), m)
    assert st["a"] is st["b"][0]
    opt.update_(st, m, {"a": np.array([1.0, 1.0]), "b": (np.array([2.0, 2.0]), None)})
    np.testing.assert_allclose(W, [0.7, 1.7])
    # gradient() puts the whole gradient at the first place and None at the others.
    g = mg.gradient(lambda m: mg.sum(m["a"]) + mg.sum(2 * m["b"][0]) + mg.sum(m["b"][1]),
                    m)[0]
    assert np.array_equal(g["a"], [3.0, 3.0]) and g["b"][0] is None
    opt.update_(st, m, g)
    np.testing.assert_allclose(W, [0.4, 1.4])


class Scaled:
    """A layer training ``w`` only."""

    def __init__(self):
        self.w, self.s = mg.param([1.0, 2.0]), mg.param([5.0])

    def trainable(self):
        return ("w",)

    def __call__(self, x):
        return self.w * self.s * x


def test_trainable_limits_setup_update_and_destructure():
    layer = Scaled()
    assert list(opt.trainable(layer)) == ["w"]
    assert opt.trainable({"a": 1}) == {"a": 1} and opt.trainable(layer.w) is None
    st = opt.setup(opt.Descent(0.5), layer)
    assert list(st) == ["w"]
    g = mg.gradient(lambda m: mg.sum(m(1.0)), layer)[0]
    assert np.array_equal(g["s"], [3.0])            # the gradient has every field
    opt.update_(st, layer, g)
    np.testing.assert_allclose(layer.w, [1.0 - 2.5, 2.0 - 2.5])
    assert np.array_equal(layer.s, [5.0])
    flat, rebuild = opt.destructure(layer)
    np.testing.assert_allclose(flat, [-1.5, -0.5])
    new = rebuild(np.array([7.0, 8.0]))
    assert np.array_equal(new.w, [7.0, 8.0]) and new.s is layer.s and new.w is not layer.w


def test_destructure_tied_and_dtypes():
    W = mg.param(np.array([[1.0, 2.0]], np.float32))
    m = [mg.Dense(1, 1), {"a": W, "b": W, "c": mg.param([3.0])}]
    m[0].weight[...] = 4.0
    m[0].bias[...] = 5.0
    flat, rebuild = opt.destructure(m)
    assert flat.dtype == np.float64 and np.array_equal(flat, [4.0, 5.0, 1.0, 2.0, 3.0])
    new = rebuild(np.arange(5.0))
    assert new[1]["a"] is new[1]["b"] and new[1]["a"].dtype == np.float32
    assert np.array_equal(new[1]["a"], [[2.0, 3.0]]) and np.array_equal(new[0].bias, [1.0])
    assert np.array_equal(m[0].weight, [[4.0]])     # the original is untouched
    with pytest.raises(ValueError, match="shape"):
        rebuild(np.zeros(4))


def test_update_copies_and_leaves_the_originals():
    m = one([1.0, 2.0])
    st = opt.setup(opt.Adam(0.1), m)
    st2, m2 = opt.update(st, m, {"x": np.array([1.0, -1.0])})
    assert np.array_equal(m["x"], [1.0, 2.0])
    assert st["x"].state[2] == (0.9, 0.999) and st2["x"].state[2] == (0.81, 0.998001)
    np.testing.assert_allclose(m2["x"], [0.9, 2.1])
    assert st2["x"].param is m2["x"]


def test_adjust_fields_and_subtrees():
    m = {"a": mg.param([1.0]), "b": mg.param([1.0])}
    st = opt.setup(opt.OptimiserChain(opt.WeightDecay(0.0), opt.Adam()), m)
    opt.update_(st, m, {"a": np.array([1.0]), "b": np.array([1.0])})
    opt.adjust_(st["a"], β=(0.5, 0.6), lambda_=0.25)
    wd, adam = st["a"].rule.opts
    assert (wd.wd, adam.beta, adam.eta) == (0.25, (0.5, 0.6), 0.001)
    assert st["b"].rule.opts[1].beta == (0.9, 0.999)
    assert st["a"].state[1][2] == (0.81, 0.998001)      # the state was kept
    with pytest.raises(ValueError, match="no rule in this tree has"):
        opt.adjust_(st, gamma=1.0)
    with pytest.raises(ValueError, match="eta"):
        opt.adjust_(st, -1.0)
    assert st["b"].rule.opts[1].eta == 0.001            # the refused call changed nothing
    # Both now step with their own rules: Adam's first step is η·sign(g) here.
    before = [float(m["a"][0]), float(m["b"][0])]
    opt.adjust_(st["b"], 0.5)
    opt.update_(st, m, {"a": np.array([1.0]), "b": np.array([1.0])})
    assert float(m["b"][0]) < before[1] - 0.4 and float(m["a"][0]) > before[0] - 0.01


def test_a_model_that_is_one_array_and_none_gradients():
    W = mg.param([1.0, 2.0])
    st = opt.setup(opt.Descent(0.5), W)
    assert isinstance(st, opt.Leaf) and st.param is W
    g = mg.gradient(lambda w: mg.sum(w * w), W)[0]        # the array form: an array
    opt.update_(st, W, g)
    assert np.array_equal(W, [0.0, 0.0])
    m = {"a": mg.param([1.0]), "b": {"c": mg.param([2.0])}}
    st = opt.setup(opt.Descent(1.0), m)
    opt.update_(st, m, None)
    opt.update_(st, m, {"a": None, "b": {"c": np.array([1.0])}})
    assert np.array_equal(m["a"], [1.0]) and np.array_equal(m["b"]["c"], [1.0])
    g = mg.gradient(lambda m: mg.sum(m["a"]), m)[0]       # b has no gradient: None
    assert g["b"] is None
    opt.update_(st, m, g)
    assert np.array_equal(m["a"], [0.0]) and np.array_equal(m["b"]["c"], [1.0])


# -- the rule interface --------------------------------------------------------------------

class DecayDescent(opt.AbstractRule):
    """Optimisers.jl's documentation example: step η·dx/√t, t this array's step count."""

    def __init__(self, eta=0.1):
        self.eta = eta

    def init(self, x):
        return 1

    def apply_(self, t, x, dx):
        return t + 1, dx * (self.eta / np.sqrt(t))


def test_user_rule_against_hand_computation():
    m = {"w": mg.param([1.0, 2.0]), "b": mg.param([0.5])}
    st = opt.setup(DecayDescent(0.2), m)
    g = {"w": np.array([1.0, -1.0]), "b": np.array([2.0])}
    for _ in range(3):
        opt.update_(st, m, g)
    decay = 0.2 * (1 + 1 / np.sqrt(2) + 1 / np.sqrt(3))
    np.testing.assert_allclose(m["w"], [1.0 - decay, 2.0 + decay], rtol=1e-15)
    np.testing.assert_allclose(m["b"], [0.5 - 2 * decay], rtol=1e-15)
    assert st["w"].state == 4
    opt.adjust_(st, 0.0)
    opt.update_(st, m, g)
    np.testing.assert_allclose(m["b"], [0.5 - 2 * decay], rtol=1e-15)
    # In a chain with an engine rule: per parameter, the engine's math for its stage.
    m = one([1.0, 10.0])
    st = opt.setup(opt.OptimiserChain(DecayDescent(1.0), mg.ClipValue(0.5)), m)
    for _ in range(2):
        opt.update_(st, m, {"x": np.array([0.25, 4.0])})
    np.testing.assert_allclose(m["x"], [1.0 - 0.25 - 0.25 / np.sqrt(2), 10.0 - 1.0])
    assert st["x"].state[0] == 3


def test_init_apply_on_engine_rules():
    x = np.array([1.0, 2.0])
    rule = opt.Adam(0.1)
    state = opt.init(rule, x)
    assert state[2] == (0.9, 0.999)
    state, d = opt.apply_(rule, state, x, np.array([1.0, -1.0]))
    np.testing.assert_allclose(d, [0.1, -0.1], rtol=1e-7)
    np.testing.assert_allclose(state[0], [0.1, -0.1])
    assert state[2] == (0.81, 0.998001)


def test_optimisers_jl_defaults():
    assert opt.WeightDecay().wd == 5e-4 and mg.WeightDecay().wd == 0
    assert opt.AdaBelief().epsilon == 1e-16 and mg.AdaBelief().epsilon == 1e-8
    xs = [one([0.5, -1.0]) for _ in range(2)]
    sts = [opt.setup(opt.AdaBelief(0.01), xs[0]), opt.setup(mg.AdaBelief(0.01), xs[1])]
    for g in ([1.0, 2.0], [-3.0, 0.5]):
        for st, m in zip(sts, xs, strict=True):
            opt.update_(st, m, {"x": np.array(g)})
    assert np.array_equal(xs[0]["x"], xs[1]["x"])


# -- masks ---------------------------------------------------------------------------------

def test_masks_no_weight_decay_on_biases():
    m = mg.Chain(mg.Dense(2, 2), mg.Dense(2, 1))
    for p in mg.params(m):
        p[...] = 1.0
    g = {"layers": tuple({"weight": np.full(p.shape, 0.5, np.float32),
                          "bias": np.full(q.shape, 0.5, np.float32)}
                         for p, q in ((m[0].weight, m[0].bias), (m[1].weight, m[1].bias)))}
    rule = {"*.bias": opt.Descent(0.1),
            "*": opt.OptimiserChain(opt.WeightDecay(0.5), opt.Descent(0.1))}
    st = opt.setup(rule, m)
    assert st["layers"][0]["weight"].rule is st["layers"][1]["weight"].rule
    opt.update_(st, m, g)
    assert np.array_equal(m[0].bias, np.float32([0.95, 0.95]))
    assert np.array_equal(m[1].weight, np.float32([[0.9, 0.9]]))     # 1 − 0.1(0.5 + 0.5)
    # A function of the path; None leaves an array untrained.
    m2 = mg.Chain(mg.Dense(2, 1))
    st = opt.setup(lambda path: None if path[-1] == "bias" else opt.Descent(1.0), m2)
    assert st["layers"][0]["bias"] is None
    before = np.array(m2[0].bias)
    opt.update_(st, m2, mg.gradient(lambda m: mg.sum(m([1.0, 1.0])), m2)[0])
    assert np.array_equal(m2[0].bias, before)
    with pytest.raises(ValueError, match="no pattern"):
        opt.setup({"*.bias": opt.Descent()}, m2)


# -- gradient trees, errors --------------------------------------------------------------------

def test_gradient_tree_shape_and_array_form():
    m = mg.Chain(mg.Dense(3, 2, mg.relu), mg.Dense(2, 1))
    x = np.ones((3, 4), np.float32)
    g = mg.gradient(lambda m: mg.sum(m(x)), m)
    assert isinstance(g, tuple) and len(g) == 1
    assert list(g[0]) == ["layers"] and isinstance(g[0]["layers"], tuple)
    assert sorted(g[0]["layers"][1]) == ["bias", "weight", "σ"] and g[0]["layers"][1]["σ"] is None
    implicit = mg.gradient(lambda: mg.sum(m(x)), mg.params(m))
    assert np.array_equal(g[0]["layers"][0]["weight"], implicit[m[0].weight])
    assert np.array_equal(g[0]["layers"][1]["bias"], [4.0])
    a, b = mg.gradient(lambda a, b: mg.sum(a * b), [1.0, 2.0], [3.0, 4.0])
    assert np.array_equal(a, [3.0, 4.0]) and np.array_equal(b, [1.0, 2.0])


def test_errors_name_the_problem():
    m = mg.Chain(mg.Dense(2, 1))
    st = opt.setup(opt.Descent(), m)
    g = mg.gradient(lambda m: mg.sum(m([1.0, 1.0])), m)
    with pytest.raises(ValueError, match=r"pass its \[0\]"):
        opt.update_(st, m, g)
    with pytest.raises(ValueError, match="not the one this state was set up for"):
        opt.update_(st, mg.Chain(mg.Dense(2, 1)), g[0])
    with pytest.raises(TypeError, match="expected a rule"):
        opt.setup(3, m)
    with pytest.warns(UserWarning, match="no trainable array"):
        opt.setup(opt.Descent(), {"a": 1.0})


# -- one engine: explicit and implicit, bitwise ------------------------------------------------

def mlp():
    np.random.seed(0)
    return mg.Chain(mg.Dense(6, 16, mg.relu), mg.Dense(16, 16, mg.tanh), mg.Dense(16, 3))


@pytest.mark.parametrize("make", [lambda: mg.Adam(0.01),
                                  lambda: mg.Optimiser(mg.WeightDecay(1e-3), mg.Momentum(0.05)),
                                  lambda: mg.Optimiser(mg.ClipNorm(0.5), mg.Adam(0.01))])
def test_explicit_matches_implicit_bitwise(make, monkeypatch):
    rng = np.random.default_rng(1)
    data = [(rng.standard_normal((6, 8)).astype(np.float32),
             rng.standard_normal((3, 8)).astype(np.float32)) for _ in range(4)]
    m_imp, m_exp = mlp(), mlp()
    o = make()
    st = opt.setup(make(), m_exp)
    calls = []
    real = cpu.run
    monkeypatch.setattr(cpu, "run", lambda *a: (calls.append(1), real(*a))[1])
    for x, y in data:
        ps = mg.params(m_imp)
        mg.update_(o, ps, mg.gradient(lambda x=x, y=y: mg.losses.mse(m_imp(x), y), ps))
        before = len(calls)
        g = mg.gradient(lambda m, x=x, y=y: mg.losses.mse(m(x), y), m_exp)[0]
        opt.update_(st, m_exp, g)
        kernels = len(calls) - before
    for p, q in zip(mg.params(m_imp), mg.params(m_exp), strict=True):
        assert np.array_equal(p, q)
    if not isinstance(o, mg.Optimiser) or not isinstance(o[0], mg.ClipNorm):
        assert kernels == 1                      # the whole model in one kernel call
        assert g["layers"][0]["weight"].base is g["layers"][2]["bias"].base   # landed


def test_gradients_moved_within_the_tree_are_not_taken_as_landed():
    m = {"a": mg.param([1.0, 2.0]), "b": mg.param([3.0, 4.0])}
    st = opt.setup(opt.Descent(1.0), m)
    opt.update_(st, m, {"a": np.zeros(2), "b": np.zeros(2)})     # one flat buffer now
    g = mg.gradient(lambda m: mg.sum(m["a"]) + mg.sum(10 * m["b"]), m)[0]
    assert g["a"].base is g["b"].base
    opt.update_(st, m, {"a": g["b"], "b": g["a"]})              # swapped: still exact
    assert np.array_equal(m["a"], [-9.0, -8.0]) and np.array_equal(m["b"], [2.0, 3.0])


# -- checkpoints ---------------------------------------------------------------------------

def test_checkpoint_resumes_bit_for_bit(tmp_path):
    rng = np.random.default_rng(2)
    data = [(rng.standard_normal((6, 5)).astype(np.float32),
             rng.standard_normal((3, 5)).astype(np.float32)) for _ in range(6)]
    rule = {"*.bias": opt.Adam(0.01), "*": opt.OptimiserChain(opt.WeightDecay(), opt.Adam())}

    def train(st, m, batches):
        for x, y in batches:
            opt.update_(st, m, mg.gradient(lambda m, x=x, y=y: mg.losses.mse(m(x), y), m)[0])

    m = mlp()
    st = opt.setup(rule, m)
    opt.freeze_(st["layers"][1]["bias"])
    train(st, m, data[:3])
    mg.save(tmp_path / "c.npz", m, st)
    train(st, m, data[3:])
    m2 = mlp()
    st2 = opt.setup(rule, m2)
    mg.load(tmp_path / "c.npz", m2, st2)
    assert st2["layers"][1]["bias"].frozen
    train(st2, m2, data[3:])
    for p, q in zip(mg.params(m), mg.params(m2), strict=True):
        assert np.array_equal(p, q)
    assert st2["layers"][0]["weight"].state[1][2] == st["layers"][0]["weight"].state[1][2]


def test_checkpoint_refuses_a_bad_state(tmp_path):
    m = mg.Chain(mg.Dense(2, 2))
    st = opt.setup(opt.Adam(), m)
    mg.save(tmp_path / "c.npz", m, st)
    st_sgd = opt.setup(opt.Descent(), m)
    with pytest.raises(mg.CheckpointError):
        mg.load(tmp_path / "c.npz", m, st_sgd)
    m3 = copy.deepcopy(m)
    st3 = opt.setup(opt.Adam(), m3)
    mg.load(tmp_path / "c.npz", m3, st3)
    assert st3["layers"][0]["weight"].state[2] == (0.9, 0.999)


NEW_RULES = {   # Optimisers.jl's added rules and Muon, as minigrad.optimisers exports them
    "Lion": lambda: opt.Lion(1e-3), "AdamW(couple)": lambda: opt.AdamW(1e-3, couple=True),
    "ClipNorm(p=1)": lambda: opt.ClipNorm(1.0, 1), "RMSProp(centred)": lambda: opt.RMSProp(
        centred=True), "AccumGrad": lambda: opt.AccumGrad(2), "Rprop": opt.Rprop,
    "Signum": opt.Signum, "Muon": opt.Muon,
    "SignDecay+Descent": lambda: opt.OptimiserChain(opt.SignDecay(), opt.Descent(0.01)),
    "ClipGrad+Adam": lambda: opt.OptimiserChain(opt.ClipGrad(1.0), opt.Adam()),
}


@pytest.mark.parametrize("name", sorted(NEW_RULES))
def test_the_new_rules_run_explicitly_as_they_do_implicitly(name):
    """Each rule Optimisers.jl added (and Muon) gives, through setup/update_, bitwise the
    parameters the implicit update_(rule, ps, gs) gives on a copy of the model."""
    rng = np.random.default_rng(0)
    m = mg.Chain(mg.Dense(3, 4, mg.relu, rng=rng), mg.Dense(4, 2, rng=rng))
    twin, start = copy.deepcopy(m), copy.deepcopy(m)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    state, rule, ps = opt.setup(NEW_RULES[name](), m), NEW_RULES[name](), mg.params(twin)
    for _ in range(4):
        (grads,) = mg.gradient(lambda model: mg.sum(model(x) ** 2), m)
        state, m = opt.update_(state, m, grads)
        mg.update_(rule, ps, mg.gradient(lambda: mg.sum(twin(x) ** 2), ps))
    for p, q in zip(mg.params(m), ps, strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    assert not np.array_equal(m[1].weight.data, start[1].weight.data)     # it did train


# -- the steady path (one kernel on the landed gradients) follows every change -----------------

def steady_model():
    """A nested model of float32 arrays (``w`` and ``v`` of one shape), its gradient values,
    and a loss whose gradient is those values."""
    rng = np.random.default_rng(3)
    shapes = {"w": (2, 3), "v": (2, 3), "sub": {"b": (4,), "c": (5,)}, "e": (3,)}

    def build(tree):
        if isinstance(tree, dict):
            return {k: build(v) for k, v in tree.items()}
        return rng.standard_normal(tree).astype(np.float32)

    values, grads = build(shapes), build(shapes)
    return values, grads


def arrays_of(tree, path=()):
    """``{path: array}`` of a nested dict."""
    if isinstance(tree, dict):
        return {q: a for k, v in tree.items() for q, a in arrays_of(v, (*path, k)).items()}
    return {path: tree}


def at(tree, path):
    for key in path:
        tree = tree[key]
    return tree


STEADY_CHANGES = ["nothing", "a gradient replaced", "two gradients swapped", "a None gradient",
                  "a None subtree", "a frozen subtree", "the rule adjusted",
                  "a subtree's rule adjusted", "a leaf of the state replaced",
                  "p.data replaced"]


@pytest.mark.parametrize("change", STEADY_CHANGES)
def test_the_steady_path_follows_every_change(change, monkeypatch):
    """Training with landed gradients takes the steady path (one kernel call over the flat
    buffers); whatever changes between steps, the step ends bitwise where updating each array
    on its own (one setup per array, no flat buffer) ends, and the steady path is taken only
    while nothing that it relies on changed."""
    from minigrad.optimise import step
    values, grads = steady_model()
    m = fmap_param(values)
    ref = {path: mg.param(a.copy()) for path, a in arrays_of(values).items()}
    st = opt.setup(opt.Adam(0.1), m)
    refs = {path: opt.setup(opt.Adam(0.1), {"x": p}) for path, p in ref.items()}
    steady = []
    real = step.steady_step
    monkeypatch.setattr(step, "steady_step", lambda *a: steady.append(real(*a)) or steady[-1])

    def both(g, given):
        """One step of ``m`` with the gradient tree ``g`` and of the references with
        ``given`` (``{path: array or None}``)."""
        steady.clear()
        opt.update_(st, m, g)
        for path, dx in given.items():
            if dx is not None:
                opt.update_(refs[path], {"x": ref[path]}, {"x": dx})

    def landed():
        terms = list(arrays_of(grads).items())
        g = mg.gradient(lambda m: sum(mg.sum(at(m, path) * dx) for path, dx in terms), m)[0]
        assert at(g, ("w",)).base is at(g, ("e",)).base          # landed in one buffer
        return g, dict(terms)

    both(*landed())                     # moves the arrays into one flat buffer
    both(*landed())
    assert steady == [True]
    g, given = landed()
    if change == "a gradient replaced":
        g["e"] = g["e"] * 2
        given[("e",)] = g["e"]
    elif change == "two gradients swapped":
        g["w"], g["v"] = g["v"], g["w"]
        given[("w",)], given[("v",)] = given[("v",)], given[("w",)]
    elif change == "a None gradient":
        g["e"] = None
        given[("e",)] = None
    elif change == "a None subtree":
        g["sub"] = None
        given[("sub", "b")] = given[("sub", "c")] = None
    elif change == "a frozen subtree":
        opt.freeze_(st["sub"])
        given[("sub", "b")] = given[("sub", "c")] = None
    elif change == "the rule adjusted":
        opt.adjust_(st, 0.05)
        for r in refs.values():
            opt.adjust_(r, 0.05)
    elif change == "a subtree's rule adjusted":
        opt.adjust_(st["sub"], beta=(0.8, 0.9))
        opt.adjust_(refs[("sub", "b")], beta=(0.8, 0.9))
        opt.adjust_(refs[("sub", "c")], beta=(0.8, 0.9))
    elif change == "a leaf of the state replaced":
        st["e"] = opt.setup(opt.Descent(0.5), {"e": m["e"]})["e"]
        refs[("e",)] = opt.setup(opt.Descent(0.5), {"x": ref[("e",)]})
    elif change == "p.data replaced":
        m["e"].data = m["e"].data * 2
        ref[("e",)].data = ref[("e",)].data * 2
    both(g, given)
    assert steady.count(True) == (change in ("nothing", "the rule adjusted"))
    if change == "a frozen subtree":
        opt.thaw_(st["sub"])
    both(*landed())                     # and the step after
    for path, q in ref.items():
        np.testing.assert_array_equal(at(m, path).data, q.data, err_msg=f"{change}: {path}")
    assert not np.array_equal(at(m, ("w",)).data, at(values, ("w",)))    # it did train


def fmap_param(tree):
    return {k: fmap_param(v) for k, v in tree.items()} if isinstance(tree, dict) else \
        mg.param(tree.copy())


@pytest.mark.parametrize("change", ["an array of the model replaced", "a read-only array"])
def test_the_steady_path_refuses_what_the_general_path_refuses(change):
    """A model whose array is not the one set up, or a read-only array, is refused on the
    steady path as elsewhere, and nothing changes."""
    values, grads = steady_model()
    m = fmap_param(values)
    st = opt.setup(opt.Adam(0.1), m)
    terms = list(arrays_of(grads).items())
    for _ in range(2):
        g = mg.gradient(lambda m: sum(mg.sum(at(m, path) * dx) for path, dx in terms), m)[0]
        opt.update_(st, m, g)
    g = mg.gradient(lambda m: sum(mg.sum(at(m, path) * dx) for path, dx in terms), m)[0]
    def snapshot():     # every array and its Adam state (m, v, and the powers βᵗ)
        return {path: (at(st, path).param.data.copy(), *(np.copy(s) for s in at(st, path).state))
                for path in arrays_of(values)}

    before = snapshot()
    if change == "an array of the model replaced":
        m["e"] = mg.param(np.zeros(3, np.float32))
        with pytest.raises(ValueError, match="not the one this state was set up for"):
            opt.update_(st, m, g)
        m["e"] = at(st, ("e",)).param
    else:
        m["w"].data.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            opt.update_(st, m, g)
    for path, saved in snapshot().items():
        for now, then in zip(saved, before[path], strict=True):
            np.testing.assert_array_equal(now, then, err_msg=f"{change}: {path}")


def test_a_guarded_rule_steps_landed_gradients_as_they_lie(monkeypatch):
    """With ApplyIfFinite around the rule, finite landed gradients still go to the one kernel
    call over the flat buffers (the guard hands its rule the flat gradient), not a gather."""
    from minigrad.optimise import step
    steady = []
    real = step.steady_step
    monkeypatch.setattr(step, "steady_step", lambda *a: steady.append(real(*a)) or steady[-1])
    m = {"a": mg.param(np.ones(3, np.float32)), "b": mg.param(np.ones(2, np.float32))}
    st = opt.setup(mg.ApplyIfFinite(mg.Adam(0.1)), m)
    for _ in range(3):
        steady.clear()
        opt.update_(st, m, mg.gradient(lambda m: mg.sum(m["a"] * 2) + mg.sum(m["b"]), m)[0])
    assert steady == [True]


def test_a_guarded_rule_checks_landed_gradients_before_the_steady_path():
    """ApplyIfFinite's check comes first even where the gradients lie in the flat buffer:
    a NaN there skips the whole step."""
    m = {"a": mg.param(np.ones(3, np.float32)), "b": mg.param(np.ones(2, np.float32))}
    st = opt.setup(mg.ApplyIfFinite(mg.Adam(0.1)), m)
    for _ in range(3):
        g = mg.gradient(lambda m: mg.sum(m["a"] * 2) + mg.sum(m["b"]), m)[0]
        assert g["a"].base is g["b"].base
        opt.update_(st, m, g)
    before = {k: p.data.copy() for k, p in m.items()}
    g["a"][0] = np.nan
    opt.update_(st, m, g)
    assert st["a"].rule.skipped == 1
    for k, p in m.items():
        np.testing.assert_array_equal(p.data, before[k])

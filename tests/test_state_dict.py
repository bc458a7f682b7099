"""The state_dict protocol of each stateful object, and the one model walk (minigrad.tree)."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import mx
from minigrad.schedules import Exp, Scheduler, Stateful
from minigrad.tree import children, fmap, walk


def _step(opt, ps, g):
    gs = mg.IdDict()
    for p in ps:
        gs[p] = np.full(p.shape, g)
    mg.update_(opt, mg.Params(ps), gs)


@pytest.mark.parametrize("make", [
    lambda: mg.Adam(0.1), lambda: mg.RAdam(0.1), lambda: mg.Momentum(0.1),
    lambda: mg.ExpDecay(0.5, 0.5, 1, 1e-3), lambda: mg.InvDecay(0.5), lambda: mg.AdaDelta(),
], ids=["Adam", "RAdam", "Momentum", "ExpDecay", "InvDecay", "AdaDelta"])
def test_rule_load_state_dict_continues_bitwise(make):
    ps = [mg.param(np.arange(3.0)), mg.param(np.ones((2, 2)))]
    a = make()
    _step(a, ps, 1.0)
    b = make()
    b.load_state_dict(a.state_dict())
    start = [p.data.copy() for p in ps]
    _step(a, ps, 0.5)
    after_a = [p.data.copy() for p in ps]
    for p, v in zip(ps, start, strict=True):
        p.data[...] = v
    _step(b, ps, 0.5)                   # b continues from a's state, as a did
    assert all(p.data.tobytes() == v.tobytes() for p, v in zip(ps, after_a, strict=True))


def test_settings_fixed_at_construction_are_saved_and_restored(tmp_path):
    from minigrad import optimisers as o
    W = mg.param(np.arange(3.0))
    saved = o.AdamW(0.1, λ=0.5, couple=False)
    _step(saved, [W], 1.0)
    # Through a file, into a rule built with the other setting: the resumed steps are the
    # saved rule's (uncoupled decay η·a + λx), not the new one's (η·(a + λx)).
    path = tmp_path / "ckpt.npz"
    mg.save(path, {"W": W}, saved)
    resumed = o.AdamW(0.1, λ=0.5)
    mg.load(path, {"W": W}, resumed)
    assert resumed.couple is False
    start = W.data.copy()
    _step(saved, [W], 0.5)
    expected = W.data.copy()
    W.data[...] = start
    _step(resumed, [W], 0.5)
    assert W.data.tobytes() == expected.tobytes()
    clip = o.ClipNorm(1.0)
    clip.load_state_dict(o.ClipNorm(2.0, throw=False).state_dict())
    assert (clip.omega, clip.throw) == (2.0, False)
    state = saved.state_dict()
    state["settings"] = {"couple": 1}               # not a bool: refused, nothing changes
    with pytest.raises(ValueError, match="saved settings"):
        resumed.load_state_dict(state)
    assert resumed.couple is False
    del state["settings"]                           # a file from before settings were saved
    o.AdamW(0.1, λ=0.5, couple=False).load_state_dict(state)
    with pytest.raises(ValueError, match="'hyper' and 'state'"):
        mg.Adam().load_state_dict({**mg.Adam().state_dict(), "settings": {}})


def test_load_state_dict_arrays_are_copies_and_failures_change_nothing():
    W = mg.param([1.0, 2.0])
    a, b = mg.Adam(0.1), mg.Adam(0.2)
    mg.update_(a, W, np.ones(2))
    state = a.state_dict()
    b.load_state_dict(state)
    assert b.state[W].arrays[0] is not a.state[W].arrays[0]
    state["state"][W]["arrays"][1] = np.array([np.nan, 1.0])
    state["hyper"]["eta"] = 0.3
    c = mg.Adam(0.05)
    with pytest.raises(ValueError, match=r"state array 1 holds 1 NaN or infinite value"):
        c.load_state_dict(state)
    assert c.eta == 0.05 and len(c.state) == 0


def test_nested_objects_are_their_own():
    inner = mg.Adam()
    for outer in (mg.Optimiser(inner), mg.ApplyIfFinite(inner), Scheduler(Exp(0.1, 0.5), inner)):
        state = outer.state_dict()
        outer.load_state_dict(state)                       # its own stage: accepted
        key = "os" if "os" in state else "opt"
        state[key] = [mg.Adam()] if key == "os" else mg.Adam()
        with pytest.raises(ValueError, match="own"):
            outer.load_state_dict(state)


def test_guard_scheduler_stateful_counters_are_checked():
    g = mg.ApplyIfFinite(mg.Descent())
    with pytest.raises(ValueError, match="consecutive .2. cannot exceed skipped .1."):
        g.load_state_dict({"skipped": 1, "consecutive": 2, "opt": g.opt})
    with pytest.raises(ValueError, match="skipped must be an integer >= 0"):
        g.load_state_dict({"skipped": -1, "consecutive": 0, "opt": g.opt})
    st = Stateful(Exp(1.0, 0.5))
    with pytest.raises(ValueError, match="state must be an integer >= 1"):
        st.load_state_dict({"state": 0})
    s = Scheduler(mg.Descent, Exp(0.1, 0.5))
    w = mg.param([1.0])
    counters = mg.IdDict()
    counters[w] = 2.5
    with pytest.raises(ValueError, match="integer >= 1"):
        s.load_state_dict({"state": counters, "opt": s.opt})
    assert (g.skipped, st.state, len(s.state)) == (0, 1, 0)


def test_mx_updater_state_round_trips_and_is_checked():
    W = np.ones(3, np.float32)
    a = mx.getupdater(mx.ADAM(η=0.01))
    a(0, np.full(3, 0.5, np.float32), W)
    b = mx.getupdater(mx.ADAM(η=0.01))
    state = a.state_dict()
    state["optimizer"] = b.optimizer
    b.load_state_dict(state)
    assert b.states[0].arrays[0].tobytes() == a.states[0].arrays[0].tobytes()
    assert b.states[0].scalars == a.states[0].scalars
    W2 = W.copy()
    a(0, np.full(3, 0.25, np.float32), W)
    b(0, np.full(3, 0.25, np.float32), W2)
    assert W.tobytes() == W2.tobytes()
    state["states"][0]["scalars"] = [0.01, 1.0, 0.999]
    with pytest.raises(ValueError, match="beta1_t must be in"):
        b.load_state_dict(state)


def test_mx_scheduler_values_are_checked_by_its_constructor():
    s = mx.LearningRate.Inv(1.0)
    with pytest.raises(ValueError, match=r"p must be >= 0"):
        s.load_state_dict({"eta0": 1.0, "gamma": 0.9, "p": -1.0, "t": 3})
    assert s.t == 0


def test_a_subclass_overriding_load_state_dict_is_loaded_by_it(tmp_path):
    calls = []

    class Tagged(mg.Descent):
        def state_dict(self):
            return {"tag": "x", "eta": self.eta}

        def load_state_dict(self, state):
            calls.append(state)
            self.eta = state["eta"]

    W = mg.param([1.0])
    mg.save(tmp_path / "t.npz", {"W": W}, Tagged(0.3))
    opt = Tagged(0.1)
    mg.load(tmp_path / "t.npz", {"W": W}, opt)
    assert calls == [{"tag": "x", "eta": 0.3}] and opt.eta == 0.3


def test_extra_arrays_are_bounded_by_the_model(tmp_path):
    extra = {"a": np.zeros(1 << 17), "b": np.zeros(1 << 17)}          # 1 MiB each
    small, big = {"w": mg.param([1.0])}, {"w": mg.param(np.zeros(1 << 17))}
    mg.save(tmp_path / "small.npz", small, extra=extra)
    mg.save(tmp_path / "big.npz", big, extra=extra)
    # 1 MiB beyond 8 times a 1-element model: the second array is refused before reading.
    with pytest.raises(mg.CheckpointError, match=r"'state/1' declares shape \(131072,\)"):
        mg.load(tmp_path / "small.npz", small)
    assert mg.load(tmp_path / "big.npz", big)["b"].shape == (1 << 17,)    # 1 + 8 MiB allowed


# -- the model walk ------------------------------------------------------------------------------

def test_walk_finds_each_parameter_once_with_its_first_path():
    W, b = mg.param(np.ones(2)), mg.param(np.zeros(1))
    model = {"layers": [W, (b, W)], "tied": W, "name": "m", "f": np.sum}
    assert [(path, p is W) for path, p in walk(model, mg.Param, (mg.Params,))] == [
        (("layers", 0), True), (("layers", 1, 0), False)]
    assert children(mg.Params([W, b]), (mg.Params,)) == [(0, W), (1, b)]


def test_walk_is_not_limited_by_the_recursion_limit():
    leaf = mg.param([1.0])
    node = [leaf]
    for _ in range(5000):
        node = [node]
    assert len(walk(node, mg.Param)) == 1
    assert len(mg.params(node)) == 1


def test_fmap_rebuilds_only_what_changed_and_keeps_ties():
    class Box:
        def __init__(self, a, b):
            self.a, self.b = a, b

    shared = np.ones(2)
    box = Box(shared, [shared, "text"])
    out = fmap(lambda y: y * 2 if isinstance(y, np.ndarray) else NotImplemented, box)
    assert out is not box and box.a is shared                 # a copy; the original unchanged
    assert out.b[0] is out.a and np.array_equal(out.a, [2.0, 2.0]) and out.b[1] == "text"
    same = {"k": "v"}
    assert fmap(lambda y: NotImplemented, same) is same


@pytest.mark.parametrize("model,message", [
    (lambda W: {(1, 2): W}, r"the dict at the model has the key \(1, 2\)"),
    (lambda W: {"a": {None: [W]}}, r"the dict at a has the key None"),
    (lambda W: {"a": {"b": {W}}}, r"a\.b is a set holding parameters"),
])
def test_named_params_refuses_unnameable_paths(model, message):
    with pytest.raises(TypeError, match=message):
        mg.checkpoint.named_params(model(mg.param([1.0])))


def test_named_params_ignores_odd_keys_without_parameters():
    W = mg.param([1.0])
    assert mg.checkpoint.named_params({(1, 2): "x", "s": {3}, "k": W}) == [("k", W)]

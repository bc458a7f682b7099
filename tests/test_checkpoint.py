"""Checkpoints (``minigrad.save``/``minigrad.load``, ``minigrad/checkpoint.py``).

* Resume: for every rule, chain, decay, schedule, the guard and user-defined optimisers, a run
  saved after step 5, loaded into a FRESH model and optimiser (other initial values) and run
  5 more steps ends bit for bit where an uninterrupted 10-step run ends: parameters
  (``np.array_equal``, same dtype) and the optimiser's whole state (the two final checkpoints
  hold equal arrays and equal JSON).  Through the flat one-kernel path, parameter by
  parameter, in float32 and float64, with ``train_``.
* In place: loading into the model and optimiser that are training keeps every ``p.data``
  object and the flat group (``optimise/flat.py``) intact.
* Faults: a process SIGKILLed in the middle of ``save`` (deterministically, and at random
  moments) leaves the previous checkpoint loadable and whole.
* Bad files and mismatches: truncated, bit-flipped, foreign or newer files, other names,
  shapes, dtypes or optimiser structures raise ``CheckpointError`` naming the file and every
  difference, and change nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import minigrad as mg
from minigrad.checkpoint import CheckpointError, named_params
from minigrad.schedules import Exp, Scheduler, Stateful, Step, next_

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- helpers -------------------------------------------------------------------------------------

def make_model(seed: int, dtype=np.float32):
    rng = np.random.default_rng(seed)

    def init(out, inp):
        return rng.standard_normal((out, inp)).astype(dtype)

    return mg.Chain(mg.Dense(4, 6, mg.tanh, init=init), mg.Dense(6, 3, init=init))


def batches(n: int, dtype=np.float32, seed: int = 7):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((4, 8)).astype(dtype), rng.standard_normal((3, 8)).astype(dtype))
            for _ in range(n)]


def loss(m, x, y):
    return mg.losses.mse(m(x), y)


def run(model, opt, data, mode: str = "flat") -> None:
    ps = mg.params(model)
    if mode == "train":
        mg.train_(lambda x, y: loss(model, x, y), ps, data, opt)
        return
    for x, y in data:
        gs = mg.gradient(lambda x=x, y=y: loss(model, x, y), ps)
        if mode == "flat":
            mg.update_(opt, ps, gs)
        else:                               # one parameter at a time: no flat group
            for p in ps:
                mg.update_(opt, p, gs[p])


def contents(path) -> tuple:
    """``(meta, arrays)`` of a checkpoint, for comparing two of them."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "minigrad.json"}
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("minigrad.json")), arrays


def same_checkpoint(a, b) -> None:
    (ma, xa), (mb, xb) = contents(a), contents(b)
    assert json.dumps(ma, sort_keys=True) == json.dumps(mb, sort_keys=True)
    assert sorted(xa) == sorted(xb)
    for key in xa:
        assert xa[key].dtype == xb[key].dtype and np.array_equal(xa[key], xb[key]), key


def snapshot(tmp_path, model, opt, name="snap.npz"):
    path = tmp_path / name
    mg.save(path, model, opt)
    return path


class UserMomentum(mg.AbstractOptimiser):
    """The docs' user-defined rule: plain attributes, no checkpoint methods."""

    def __init__(self, eta=0.01, rho=0.9):
        self.eta, self.rho, self.velocity = eta, rho, mg.IdDict()

    def apply_(self, x, Δ):
        v = self.velocity.get_(x, np.zeros_like(x))
        v[...] = self.rho * v - self.eta * Δ
        Δ[...] = -v
        return Δ


class UserCounted(mg.AbstractOptimiser):
    """A rule with the state_dict protocol, a step counter and an inner rule."""

    def __init__(self):
        self.inner, self.calls, self.lr = mg.Adam(0.01), 0, Stateful(Exp(0.1, 0.9))
        self.rate = 0.1

    def apply_(self, x, Δ):
        self.calls += 1
        Δ = self.inner.apply_(x, Δ)
        Δ *= 1 + self.calls % 3
        return Δ

    def state_dict(self):
        return {"calls": self.calls, "inner": self.inner}

    def load_state_dict(self, state):
        self.calls = state["calls"]
        assert state["inner"] is self.inner        # nested objects are restored in place


# Every rule, with hyperparameters that make each step matter; chains, decays, schedules.
OPTIMISERS = {
    "Descent": lambda: mg.Descent(0.1),
    "Momentum": lambda: mg.Momentum(0.05, 0.9),
    "Nesterov": lambda: mg.Nesterov(0.05, 0.9),
    "RMSProp": lambda: mg.RMSProp(0.01),
    "Adam": lambda: mg.Adam(0.01),
    "RAdam": lambda: mg.RAdam(0.01),            # rectifies from step 6: after the resume
    "AdaMax": lambda: mg.AdaMax(0.01),
    "OAdam": lambda: mg.OAdam(0.01),
    "AdaGrad": lambda: mg.AdaGrad(0.1),
    "AdaDelta": lambda: mg.AdaDelta(0.9),
    "AMSGrad": lambda: mg.AMSGrad(0.01),
    "NAdam": lambda: mg.NAdam(0.01),
    "AdaBelief": lambda: mg.AdaBelief(0.01),
    "AdamW": lambda: mg.AdamW(0.01, (0.9, 0.999), 0.1),
    "ClipNorm+Adam": lambda: mg.Optimiser(mg.ClipNorm(0.5), mg.Adam(0.01)),
    "ClipValue+WeightDecay+Momentum": lambda: mg.Optimiser(
        mg.ClipValue(0.05), mg.WeightDecay(0.01), mg.Momentum(0.05)),
    "Adam+ExpDecay": lambda: mg.Optimiser(mg.Adam(0.01), mg.ExpDecay(1.0, 0.5, 2, 1e-3)),
    "Momentum+InvDecay": lambda: mg.Optimiser(mg.Momentum(0.05), mg.InvDecay(0.5)),
    "Scheduler": lambda: Scheduler(mg.Momentum, eta=Exp(0.1, 0.8), rho=Step(0.9, 0.5, 3)),
    "Scheduler-v0.3": lambda: Scheduler(Exp(0.05, 0.7), mg.Adam()),
    "ApplyIfFinite": lambda: mg.ApplyIfFinite(mg.Optimiser(mg.WeightDecay(0.1), mg.NAdam())),
    "user-defined": lambda: UserMomentum(0.05, 0.9),
    "user-protocol": UserCounted,
    "user+builtin": lambda: mg.Optimiser(UserMomentum(0.05), mg.RAdam(0.01)),
}


def resume_case(tmp_path, factory, mode="flat", dtype=np.float32, n=10, cut=5):
    data = batches(n, dtype)
    whole, whole_opt = make_model(1, dtype), factory()
    run(whole, whole_opt, data, mode)

    first, first_opt = make_model(1, dtype), factory()
    run(first, first_opt, data[:cut], mode)
    path = tmp_path / "resume.npz"
    mg.save(path, first, first_opt, extra={"step": cut})
    del first, first_opt

    resumed, resumed_opt = make_model(2, dtype), factory()     # other values everywhere
    assert mg.load(path, resumed, resumed_opt) == {"step": cut}
    run(resumed, resumed_opt, data[cut:], mode)

    for (name, p), (_, q) in zip(named_params(whole), named_params(resumed), strict=True):
        assert p.dtype == q.dtype == dtype
        assert np.array_equal(p, q), f"{name} differs after resuming"
    assert not np.array_equal(mg.params(whole)[0], make_model(1, dtype)[0].weight)   # it moved
    same_checkpoint(snapshot(tmp_path, whole, whole_opt, "a.npz"),
                    snapshot(tmp_path, resumed, resumed_opt, "b.npz"))


# -- resume, bit for bit -------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_resume_is_bit_identical_flat(tmp_path, name):
    resume_case(tmp_path, OPTIMISERS[name], "flat")


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_resume_is_bit_identical_per_parameter(tmp_path, name):
    resume_case(tmp_path, OPTIMISERS[name], "each")


@pytest.mark.parametrize("name", ["Adam", "RAdam", "AdaDelta", "Adam+ExpDecay", "Scheduler",
                                  "ApplyIfFinite", "user-defined"])
def test_resume_is_bit_identical_float64(tmp_path, name):
    resume_case(tmp_path, OPTIMISERS[name], "flat", dtype=np.float64)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "ApplyIfFinite"])
def test_resume_is_bit_identical_with_train(tmp_path, name):
    resume_case(tmp_path, OPTIMISERS[name], "train")


def test_resume_in_a_new_process(tmp_path):
    data = batches(8)
    m, opt = make_model(1), mg.Optimiser(mg.ClipNorm(1.0), mg.Adam(0.01), mg.ExpDecay(1, .5, 3))
    run(m, opt, data)
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})
        import minigrad as mg, numpy as np
        from test_checkpoint import make_model, batches, run
        data = batches(8)
        m, opt = make_model(1), mg.Optimiser(mg.ClipNorm(1.0), mg.Adam(0.01),
                                             mg.ExpDecay(1, .5, 3))
        run(m, opt, data[:3])
        mg.save(sys.argv[1], m, opt)
    """)
    path = tmp_path / "other.npz"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120)
    m2, opt2 = make_model(5), mg.Optimiser(mg.ClipNorm(1.0), mg.Adam(0.01), mg.ExpDecay(1, .5, 3))
    mg.load(path, m2, opt2)
    run(m2, opt2, data[3:])
    assert all(np.array_equal(p, q) for p, q in zip(mg.params(m), mg.params(m2), strict=True))
    assert opt2[2].eta == opt[2].eta == 0.25        # ExpDecay's η: halved at steps 3 and 6


def test_load_in_place_keeps_the_flat_group(tmp_path):
    data = batches(12)
    reference, ref_opt = make_model(1), mg.Adam(0.01)
    run(reference, ref_opt, data[:5] + data[8:])    # what undoing steps 5-7 must give

    m, opt = make_model(1), mg.Adam(0.01)
    run(m, opt, data[:5])
    ps = mg.params(m)
    group = next(iter(opt._flat_groups.values()))
    storage = [p.data for p in ps]
    states = [opt.state[p] for p in ps]
    assert all(s.arrays[0].base is not None for s in states)     # views into the group
    mg.save(tmp_path / "c.npz", m, opt)
    run(m, opt, data[5:8])                          # three steps to undo
    mg.load(tmp_path / "c.npz", m, opt)
    assert all(p.data is a for p, a in zip(ps, storage, strict=True))
    assert all(opt.state[p] is s for p, s in zip(ps, states, strict=True))
    assert group.intact([opt], list(ps)), "load broke the flat group"
    run(m, opt, data[8:])
    assert next(iter(opt._flat_groups.values())) is group       # still the same group
    assert all(np.array_equal(p, q) for p, q in zip(ps, mg.params(reference), strict=True))


def test_load_gives_each_member_of_a_flat_group_its_saved_scalars(tmp_path):
    """A flat group's members share one list of scalars (Adam's βp); a checkpoint whose
    parameters were at different steps (one updated on its own) loaded into such a group
    gives each member its own, and training goes on as from a fresh optimiser loaded alike."""
    data = batches(6)
    m, opt = make_model(1), mg.Adam(0.01)
    run(m, opt, data[:2], mode="params")
    ps = mg.params(m)
    gs = mg.gradient(lambda: loss(m, *data[2]), ps)
    mg.update_(opt, ps[0], gs[ps[0]])                   # ps[0] one step ahead of the others
    mg.save(tmp_path / "uneven.npz", m, opt)

    grouped, opt_grouped = make_model(2), mg.Adam(0.01)
    run(grouped, opt_grouped, data[:2])                 # a flat group with shared scalars
    [group] = opt_grouped._flat_groups.values()
    mg.load(tmp_path / "uneven.npz", grouped, opt_grouped)
    fresh, opt_fresh = make_model(3), mg.Adam(0.01)
    mg.load(tmp_path / "uneven.npz", fresh, opt_fresh)
    for p, q in zip(mg.params(grouped), mg.params(fresh), strict=True):
        assert opt_grouped.state[p].scalars == opt_fresh.state[q].scalars
    assert opt_grouped.state[mg.params(grouped)[0]].scalars != \
        opt_grouped.state[mg.params(grouped)[1]].scalars
    assert not group.intact([opt_grouped], list(mg.params(grouped)))
    run(grouped, opt_grouped, data[3:])
    run(fresh, opt_fresh, data[3:])
    for p, q in zip(mg.params(grouped), mg.params(fresh), strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def test_guard_counters_and_stateful_are_saved(tmp_path):
    m, guard = make_model(1), mg.ApplyIfFinite(mg.Adam())
    ps = mg.params(m)
    gs = mg.gradient(lambda: loss(m, *batches(1)[0]), ps)
    gs[ps[1]][0] = np.nan
    mg.update_(guard, ps, gs)
    mg.update_(guard, ps, gs)
    lr = Stateful(Exp(1.0, 0.5))
    [next_(lr) for _ in range(3)]
    mg.save(tmp_path / "g.npz", m, {"opt": guard, "lr": lr})
    guard2, lr2 = mg.ApplyIfFinite(mg.Adam()), Stateful(Exp(1.0, 0.5))
    mg.load(tmp_path / "g.npz", make_model(3), {"opt": guard2, "lr": lr2})
    assert (guard2.skipped, guard2.consecutive, lr2.state) == (2, 2, 4)
    assert next_(lr2) == 0.125


def test_extra_round_trips_exactly(tmp_path):
    rng_state = np.random.default_rng(3).bit_generator.state
    legacy = np.random.RandomState(4).get_state()
    extra = {"epoch": 3, "loss": 0.1 + 0.2, "tiny": 5e-324, "nan": float("nan"),
             "f32": np.float32(1 / 3), "name": "run-α", "none": None, "ints": (1, 2),
             "rng": rng_state, "legacy": legacy, 7: [1.5, -np.inf]}
    mg.save(tmp_path / "e.npz", [], extra=extra)
    back = mg.load(tmp_path / "e.npz", [])
    assert back["loss"] == 0.1 + 0.2 and back["tiny"] == 5e-324 and np.isnan(back["nan"])
    assert type(back["f32"]) is np.float32 and back["f32"] == np.float32(1 / 3)
    assert back["ints"] == (1, 2) and back[7] == [1.5, -np.inf] and back["name"] == "run-α"
    gen = np.random.default_rng()
    gen.bit_generator.state = back["rng"]
    assert gen.random() == np.random.default_rng(3).random()
    old = np.random.RandomState()
    old.set_state(back["legacy"])
    assert old.rand() == np.random.RandomState(4).rand()


def test_file_is_a_plain_npz_without_pickles(tmp_path):
    m, opt = make_model(1), mg.Adam()
    run(m, opt, batches(1))
    mg.save(tmp_path / "p.npz", m, opt)
    with np.load(tmp_path / "p.npz", allow_pickle=False) as f:
        assert "params/layers.0.weight" in f.files and "minigrad.json" in f.files
        assert np.array_equal(f["params/layers.1.bias"], m[1].bias)
    with zipfile.ZipFile(tmp_path / "p.npz") as zf:
        meta = json.loads(zf.read("minigrad.json"))
    assert meta["format"] == "minigrad-checkpoint" and meta["version"] == 1
    assert [p["name"] for p in meta["params"]] == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert oct(os.stat(tmp_path / "p.npz").st_mode & 0o777) != oct(0o600)    # umask, not 0600
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_named_params_follow_params_order():
    m = mg.Chain(mg.Dense(3, 4), mg.Chain(mg.Dense(4, 2, bias=False)), mg.softmax)
    shared = m[0].weight
    model = {"body": m, "tied": [shared], "heads": {"a": mg.Dense(2, 1)}, 3: mg.param([1.0])}
    names = named_params(model)
    assert [p for _, p in names] == list(mg.params(model))
    assert [n for n, _ in names] == [
        "body.layers.0.weight", "body.layers.0.bias", "body.layers.1.layers.0.weight",
        "heads.a.weight", "heads.a.bias", "3"]
    assert named_params(shared) == [("param", shared)]
    with pytest.raises(TypeError, match="set"):
        named_params({"s": {mg.param([1.0])}})


# -- faults --------------------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import numpy as np, minigrad as mg
    import minigrad.checkpoint as ck
    path, mode = sys.argv[1], sys.argv[2]
    W = mg.param(np.zeros((512, 512), np.float32)); b = mg.param(np.zeros(512, np.float32))
    opt = mg.Adam()
    model = {{"W": W, "b": b}}
    version = 0
    def write(version):
        W.data[...] = version; b.data[...] = version
        mg.update_(opt, mg.params(W, b), mg.gradient(lambda: mg.sum(W) + mg.sum(b),
                                                    mg.params(W, b)))
        W.data[...] = version; b.data[...] = version
        mg.save(path, model, opt, extra={{"version": version}})
    write(1)
    print("SAVED", flush=True)
    if mode == "hang":                 # stop for good in the middle of the second save
        original = ck._write_array
        def slow(zf, key, a):
            original(zf, key, a)
            if key == "params/W":
                print("MIDWAY", flush=True)
                time.sleep(600)
        ck._write_array = slow
        write(2)
    else:                              # save again and again until killed
        version = 2
        while True:
            write(version)
            version += 1
""")


def _child(tmp_path, mode):
    path = tmp_path / "fault.npz"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(root=ROOT), str(path), mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "SAVED"
    return path, proc


def _check_whole(path, version=None):
    W = mg.param(np.full((512, 512), -1, np.float32))
    b = mg.param(np.full(512, -1, np.float32))
    opt = mg.Adam()
    extra = mg.load(path, {"W": W, "b": b}, opt)
    if version is not None:
        assert extra["version"] == version
    v = extra["version"]
    assert np.all(W.data == v) and np.all(b.data == v)       # one checkpoint, not a mixture
    beta = [0.9, 0.999]                 # Adam's βp after v steps: β, times β after each step
    for _ in range(v):
        beta = [beta[0] * 0.9, beta[1] * 0.999]
    assert opt.state[W].scalars == opt.state[b].scalars == beta
    return v


def test_kill_in_the_middle_of_save_keeps_the_previous_checkpoint(tmp_path):
    path, proc = _child(tmp_path, "hang")
    try:
        assert proc.stdout.readline().strip() == "MIDWAY"
        before = path.read_bytes()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert len(leftovers) == 1, "the save was not killed while writing its temporary file"
    assert path.read_bytes() == before                       # untouched
    assert _check_whole(path, version=1) == 1
    with pytest.raises(CheckpointError, match="not a readable minigrad checkpoint"):
        mg.load(tmp_path / leftovers[0], {"W": mg.param(np.zeros((512, 512), np.float32)),
                                          "b": mg.param(np.zeros(512, np.float32))})


def test_kill_at_random_moments_during_repeated_saves(tmp_path):
    rnd = random.Random(1234)
    seen = set()
    for _ in range(4):
        path, proc = _child(tmp_path, "loop")
        try:
            time.sleep(rnd.uniform(0.05, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()
        seen.add(_check_whole(path))            # always a whole checkpoint of one version
    assert seen and all(v >= 1 for v in seen)


# -- bad files and mismatches change nothing ----------------------------------------------------

@pytest.fixture
def trained(tmp_path):
    m, opt = make_model(1), mg.Optimiser(mg.ClipNorm(1.0), mg.Adam(0.01))
    run(m, opt, batches(3))
    path = tmp_path / "good.npz"
    mg.save(path, m, opt, extra={"epoch": 2})
    return path, m, opt


def _unchanged(tmp_path, model, opt, before):
    same_checkpoint(before, snapshot(tmp_path, model, opt, "after.npz"))


def _target(tmp_path):
    m, opt = make_model(9), mg.Optimiser(mg.ClipNorm(1.0), mg.Adam(0.01))
    run(m, opt, batches(1, seed=3))
    return m, opt, snapshot(tmp_path, m, opt, "before.npz")


@pytest.mark.parametrize("damage", ["truncate", "flip-array", "flip-meta", "garbage", "empty"])
def test_corrupted_file_is_refused_and_changes_nothing(tmp_path, trained, damage):
    path = trained[0]
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip-array":
        offset = raw.find(b"\x93NUMPY", raw.find(b"params/layers.0.weight")) + 200
        raw[offset] ^= 0xFF
    elif damage == "flip-meta":
        raw[raw.find(b'"format"') + 3] ^= 0x01
    elif damage == "garbage":
        raw = bytearray(os.urandom(4096))
    else:
        raw = bytearray()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    m, opt, before = _target(tmp_path)
    with pytest.raises(CheckpointError) as info:
        mg.load(bad, m, opt)
    assert str(bad) in str(info.value)
    assert "checkpoint" in str(info.value)
    _unchanged(tmp_path, m, opt, before)


def _rewrite_meta(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "minigrad.json":
                meta = json.loads(data)
                edit(meta)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)


@pytest.mark.parametrize("edit,message", [
    (lambda meta: meta.update(format="something-else"), "not a minigrad checkpoint"),
    (lambda meta: meta.update(version=99), "version 99"),
    (lambda meta: meta["opt"]["state"]["__dict__"][0][1].pop(0),
     r"opt.os: the checkpoint has 1 item\(s\), the object given has 2"),
])
def test_foreign_newer_or_edited_file_is_refused(tmp_path, trained, edit, message):
    bad = tmp_path / "edited.npz"
    _rewrite_meta(trained[0], bad, edit)
    m, opt, before = _target(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        mg.load(bad, m, opt)
    _unchanged(tmp_path, m, opt, before)


def test_missing_member_is_refused(tmp_path, trained):
    bad = tmp_path / "nomember.npz"
    with zipfile.ZipFile(trained[0]) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.namelist():
            if item != "state/1.npy":
                zout.writestr(item, zin.read(item))
    m, opt, before = _target(tmp_path)
    with pytest.raises(CheckpointError, match=r"array 'state/1' .* is missing"):
        mg.load(bad, m, opt)
    _unchanged(tmp_path, m, opt, before)


def test_model_mismatch_lists_every_difference(tmp_path, trained):
    path = trained[0]
    np.random.seed(0)
    other = mg.Chain(mg.Dense(4, 5, mg.tanh), mg.Dense(5, 3, bias=False),
                     mg.Dense(3, 3))                             # shapes, a missing bias, extra
    other[2].weight.data = other[2].weight.data.astype(np.float64)
    opt = mg.Optimiser(mg.ClipNorm(1.0), mg.Adam(0.01))
    before = [p.data.copy() for p in mg.params(other)]
    with pytest.raises(CheckpointError) as info:
        mg.load(path, other, opt)
    text = str(info.value)
    assert str(path) in text and "nothing was loaded" in text
    assert "layers.0.weight: the checkpoint has shape (6, 4) float32, the model has shape " \
           "(5, 4) float32" in text
    assert "the checkpoint's layers.1.bias (shape (3,) float32) is not in the model" in text
    assert "the model's layers.2.weight (shape (3, 3) float64) is not in the checkpoint" in text
    assert "6 difference(s)" in text
    assert all(np.array_equal(p, b) for p, b in zip(mg.params(other), before, strict=True))
    assert len(opt[1].state) == 0


def test_dtype_mismatch_is_named(tmp_path, trained):
    m64 = make_model(1, np.float64)
    with pytest.raises(CheckpointError, match=r"layers.1.bias: the checkpoint has shape \(3,\) "
                                              r"float32, the model has shape \(3,\) float64"):
        mg.load(trained[0], m64)


@pytest.mark.parametrize("wrong,message", [
    (lambda: mg.Optimiser(mg.ClipNorm(1.0), mg.Momentum()),
     r"opt.os\[1\]: the checkpoint has a minigrad.optimise.rules.Adam, the object given has a "
     r"minigrad.optimise.rules.Momentum there"),
    (lambda: mg.Optimiser(mg.ClipNorm(1.0)), r"opt.os: the checkpoint has 2 item\(s\), the "
                                             r"object given has 1"),
    (lambda: mg.Adam(), r"opt: the checkpoint has a minigrad.optimise.rules.Optimiser"),
    (lambda: mg.ApplyIfFinite(mg.Adam()), "ApplyIfFinite"),
])
def test_optimiser_mismatch_is_named_and_changes_nothing(tmp_path, trained, wrong, message):
    m = make_model(9)
    opt = wrong()
    run(m, opt, batches(1, seed=4))
    before = snapshot(tmp_path, m, opt, "before.npz")
    with pytest.raises(CheckpointError, match=message):
        mg.load(trained[0], m, opt)
    _unchanged(tmp_path, m, opt, before)


def test_optimiser_expected_but_not_saved(tmp_path):
    m = make_model(1)
    mg.save(tmp_path / "p.npz", m)
    with pytest.raises(CheckpointError, match="holds no optimiser state"):
        mg.load(tmp_path / "p.npz", m, mg.Adam())
    mg.load(tmp_path / "p.npz", make_model(2))                  # parameters only: fine


def test_state_for_a_parameter_outside_the_model(tmp_path):
    m, opt = make_model(1), mg.Adam()
    stray = mg.param([1.0, 2.0])
    mg.update_(opt, stray, np.ones(2))
    with pytest.raises(TypeError, match=r"opt\.state: it holds state for a param of dtype "
                                        r"float64 and shape \(2,\), which is not a parameter"):
        mg.save(tmp_path / "s.npz", m, opt)
    assert not os.path.exists(tmp_path / "s.npz") and os.listdir(tmp_path) == []


def test_unsavable_user_optimiser_is_named(tmp_path):
    class Clever(mg.AbstractOptimiser):
        def __init__(self):
            self.eta, self.rule = 0.1, lambda g: g * 2

        def apply_(self, x, Δ):
            return Δ

    with pytest.raises(TypeError, match=r"cannot save opt\.rule \(function"):
        mg.save(tmp_path / "u.npz", make_model(1), Clever())
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_the_old_file(tmp_path, trained):
    path, m, opt = trained
    before = path.read_bytes()
    with pytest.raises(TypeError):
        mg.save(path, m, [opt, object()])
    assert path.read_bytes() == before
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_register_a_class(tmp_path):
    class Clock:
        def __init__(self):
            self.ticks = 0

    def restore(clock, state):
        if state["ticks"] < 0:
            raise ValueError("negative ticks")
        return lambda: setattr(clock, "ticks", state["ticks"])

    mg.checkpoint.register(Clock, lambda c: {"ticks": c.ticks}, restore)
    c = Clock()
    c.ticks = 12
    mg.save(tmp_path / "c.npz", [], {"clock": c})
    c2 = Clock()
    mg.load(tmp_path / "c.npz", [], {"clock": c2})
    assert c2.ticks == 12


# -- minigrad.mx ---------------------------------------------------------------------------------

def _mx_optimisers():
    from minigrad import mx
    return {
        "SGD": lambda: mx.SGD(η=0.1, μ=0.9, η_sched=mx.LearningRate.Exp(0.1, γ=0.8)),
        "ADAM": lambda: mx.ADAM(η=0.05, η_sched=mx.LearningRate.Inv(0.05)),
        "AdaGrad": lambda: mx.AdaGrad(η=0.1),
        "AdaDelta": lambda: mx.AdaDelta(),
        "AdaMax": lambda: mx.AdaMax(η=0.05),
        "RMSProp": lambda: mx.RMSProp(η=0.05, clip=0.5),
        "Nadam": lambda: mx.Nadam(η=0.05, λ=0.01),
    }


@pytest.mark.parametrize("name", ["SGD", "ADAM", "AdaGrad", "AdaDelta", "AdaMax", "RMSProp",
                                  "Nadam"])
def test_mx_updater_resumes_bit_identically(tmp_path, name):
    mx = pytest.importorskip("minigrad.mx")
    factory = _mx_optimisers()[name]
    data = batches(8)

    def steps(model, descend_, state, items):
        ps = list(mg.params(model))
        for x, y in items:
            gs = mg.gradient(lambda x=x, y=y: loss(model, x, y), mg.Params(ps))
            for i, p in enumerate(ps):
                descend_(i, gs[p], p)
            state.curr_iter += 1
            mx.update_(descend_.optimizer.eta_sched)        # η_decay = :batch

    whole, whole_up, whole_state = make_model(1), mx.getupdater(factory()), \
        mx.OptimizationState(8)
    steps(whole, whole_up, whole_state, data)
    first, first_up, first_state = make_model(1), mx.getupdater(factory()), \
        mx.OptimizationState(8)
    steps(first, first_up, first_state, data[:4])
    mg.save(tmp_path / "mx.npz", first, {"updater": first_up, "state": first_state})
    again, again_up, again_state = make_model(2), mx.getupdater(factory()), \
        mx.OptimizationState(8)
    mg.load(tmp_path / "mx.npz", again, {"updater": again_up, "state": again_state})
    assert again_state.curr_iter == 4 and len(again_up.states) == 4
    steps(again, again_up, again_state, data[4:])
    for p, q in zip(mg.params(whole), mg.params(again), strict=True):
        assert p.dtype == q.dtype and np.array_equal(p, q)
    same_checkpoint(snapshot(tmp_path, whole, {"updater": whole_up, "state": whole_state}),
                    snapshot(tmp_path, again, {"updater": again_up, "state": again_state},
                             "other.npz"))


def test_mx_mismatch_is_named(tmp_path):
    mx = pytest.importorskip("minigrad.mx")
    W = mg.param(np.ones(3, np.float32))
    up = mx.getupdater(mx.ADAM())
    up(0, np.ones(3, np.float32), W)
    mg.save(tmp_path / "a.npz", [W], up)
    other = mx.getupdater(mx.SGD(η=0.1))
    with pytest.raises(CheckpointError, match=r"opt.optimizer: the checkpoint has a "
                                              r"minigrad.mx.optimizers.ADAM"):
        mg.load(tmp_path / "a.npz", [mg.param(np.ones(3, np.float32))], other)
    assert other.states == {}


def test_batchnorm_running_statistics_are_saved_with_the_model(tmp_path):
    """A layer's state besides its parameters (BatchNorm's running statistics) goes into the
    checkpoint with the model and comes back; a damaged value is refused, changing nothing."""
    rng = np.random.default_rng(0)
    m = mg.Chain(mg.Dense(3, 4, rng=rng), mg.BatchNorm(4, mg.relu), mg.Dense(4, 2, rng=rng))
    x = rng.standard_normal((3, 16)).astype(np.float32)
    ps, opt = mg.params(m), mg.Adam(0.01)
    for _ in range(3):
        mg.update_(opt, ps, mg.gradient(lambda: mg.sum(m(x) ** 2), ps))
    μ, σ2 = m[1].μ.copy(), m[1].σ2.copy()
    assert not np.allclose(μ, 0)                    # the statistics moved
    mg.save(tmp_path / "bn.npz", m, opt)
    m2, opt2 = mg.Chain(mg.Dense(3, 4), mg.BatchNorm(4, mg.relu), mg.Dense(4, 2)), mg.Adam()
    mg.load(tmp_path / "bn.npz", m2, opt2)
    np.testing.assert_array_equal(m2[1].μ, μ)
    np.testing.assert_array_equal(m2[1].σ2, σ2)
    mg.testmode_(m), mg.testmode_(m2)
    np.testing.assert_array_equal(m2(x), m(x))
    with pytest.raises(ValueError, match="σ2 holds a non-finite or negative value"):
        m2[1].load_state_dict({"μ": μ, "σ2": -σ2})
    np.testing.assert_array_equal(m2[1].σ2, σ2)
    class Affine:           # BatchNorm's parameters without its running statistics: refused
        def __init__(self):
            self.γ, self.β = mg.param(np.ones(4, np.float32)), mg.param(np.zeros(4, np.float32))

        def __call__(self, x):
            return x

    m3 = mg.Chain(mg.Dense(3, 4), Affine(), mg.Dense(4, 2))
    before = m3[0].weight.data.copy()
    with pytest.raises(mg.CheckpointError, match="the model's layers given"):
        mg.load(tmp_path / "bn.npz", m3)
    np.testing.assert_array_equal(m3[0].weight.data, before)

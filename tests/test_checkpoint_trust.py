"""Issue 19: every shape round-trips; a damaged or hostile checkpoint is refused as a
``CheckpointError`` and changes nothing; hyperparameters are checked when set."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pytest

import minigrad as mg
from minigrad.checkpoint import CheckpointError

# -- part 2: every shape --------------------------------------------------------------------------

SHAPES = [(), (0,), (1,), (2, 0, 3), (2, 3)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_parameter_of_every_shape_round_trips_and_resumes(tmp_path, shape):
    def build():
        return {"w": mg.param(np.arange(np.prod(shape), dtype=np.float64).reshape(shape) + 1)}

    def step(m, opt, k):
        g = mg.IdDict()
        g[m["w"]] = np.full(shape, 0.5 + k)
        mg.update_(opt, mg.params(m), g)

    m, opt = build(), mg.Adam(0.1)
    step(m, opt, 0)
    mg.save(tmp_path / "c.npz", m, opt)
    saved = m["w"].data.copy()
    step(m, opt, 1)
    m2, opt2 = build(), mg.Adam()
    mg.load(tmp_path / "c.npz", m2, opt2)
    assert m2["w"].shape == shape and np.array_equal(m2["w"].data, saved)
    step(m2, opt2, 1)
    assert m2["w"].data.tobytes() == m["w"].data.tobytes()


@pytest.mark.parametrize("value", [np.array(2.5), np.zeros(0), np.zeros((2, 0), np.float32),
                                   np.int64(7)], ids=["0-d", "empty", "empty-2d", "scalar"])
def test_extra_of_every_shape_round_trips(tmp_path, value):
    mg.save(tmp_path / "e.npz", [], extra={"v": value})
    back = mg.load(tmp_path / "e.npz", [])["v"]
    assert np.shape(back) == np.shape(value) and np.asarray(back).dtype == np.asarray(value).dtype
    assert np.array_equal(back, value)


# -- part 4: values and hostile files ------------------------------------------------------------

def _trained(tmp_path):
    """A model and Adam after one step, saved; returns (path, fresh model, fresh optimiser
    after one different step, their snapshot)."""
    def build():
        return {"W": mg.param(np.ones((2, 3))), "b": mg.param(np.zeros(2))}

    def step(m, opt, g):
        gs = mg.IdDict()
        for p in mg.params(m):
            gs[p] = np.full(p.shape, g)
        mg.update_(opt, mg.params(m), gs)

    m, opt = build(), mg.Adam(0.1)
    step(m, opt, 1.0)
    path = tmp_path / "good.npz"
    mg.save(path, m, opt, extra={"epoch": 1})
    m2, opt2 = build(), mg.Adam(0.01)
    step(m2, opt2, -2.0)
    return path, m2, opt2


def _snapshot(m, opt) -> list:
    out = [p.data.copy() for p in mg.params(m)] + [opt.eta]
    for p in mg.params(m):
        st = opt.state[p]
        out += [a.copy() for a in st.arrays] + [list(st.scalars)]
    return out


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
        for x, y in zip(a, b, strict=True))


def _rewrite(src, dst, meta_edit=None, members=None, compress=zipfile.ZIP_STORED):
    """Copy a checkpoint, editing its JSON and adding or replacing members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compress) as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "minigrad.json" and meta_edit is not None:
                meta = json.loads(data)
                meta_edit(meta)
                # (a nesting too deep for json.dumps is spliced in as text)
                data = json.dumps(meta).replace('"<deep>"', "[" * 100_000 + "]" * 100_000)
                data = data.encode()
            if members and item in members:
                continue
            zout.writestr(item, data)
        for name, data in (members or {}).items():
            zout.writestr(name, data)


def _rule_state(meta) -> dict:
    """The Adam node's {"hyper": ..., "state": ...} pairs of the JSON."""
    return dict(meta["opt"]["state"]["__dict__"])


def _set_hyper(meta, value):
    hyper = dict(_rule_state(meta)["hyper"]["__dict__"])
    hyper["eta"] = value
    for pair in meta["opt"]["state"]["__dict__"]:
        if pair[0] == "hyper":
            pair[1]["__dict__"] = [[k, v] for k, v in hyper.items()]


def _set_scalars(meta, scalars):
    entries = _rule_state(meta)["state"]["__iddict__"]
    for entry in entries.values():
        for pair in entry["__dict__"]:
            if pair[0] == "scalars":
                pair[1] = scalars


def _npy(shape, dtype="<f8", data=b"") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def _state_member(path) -> str:
    with zipfile.ZipFile(path) as zf:
        return sorted(n for n in zf.namelist() if n.startswith("state/"))[0]


def _nan_state(path):
    name = _state_member(path)
    with zipfile.ZipFile(path) as zf:
        a = np.load(io.BytesIO(zf.read(name)))
    a[0] = np.nan
    buf = io.BytesIO()
    np.save(buf, a)
    return {name: buf.getvalue()}


def _encrypted(src, dst):
    raw = bytearray(src.read_bytes())
    at = raw.rfind(b"PK\x01\x02")           # the last central-directory entry: its flag bit 0
    raw[at + 8] |= 0x01
    dst.write_bytes(bytes(raw))


def _bad_deflate(src, dst, referenced: bool):
    """A deflated member whose data is damaged: a state array, or an unreferenced one."""
    name = _state_member(src) if referenced else "junk.npy"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            if item != name:
                zout.writestr(item, zin.read(item))
        payload = zin.read(name) if referenced else _npy((1000,), data=bytes(8000))
        zout.writestr(zipfile.ZipInfo(name), payload, compress_type=zipfile.ZIP_DEFLATED)
    raw = bytearray(dst.read_bytes())
    at = raw.find(b"PK\x03\x04" + b"\x14\x00")
    for i in range(len(raw)):
        if raw[i:i + 4] == b"PK\x03\x04":
            n, e = struct.unpack("<HH", raw[i + 26:i + 30])
            if raw[i + 30:i + 30 + n].decode() == name:
                at = i + 30 + n + e
                break
    for k in range(at, at + 12):
        raw[k] ^= 0xA5
    dst.write_bytes(bytes(raw))


def _deep(meta):
    meta["extra"] = "<deep>"


HOSTILE = {
    "nan hyperparameter": lambda s, d: _rewrite(
        s, d, lambda m: _set_hyper(m, {"__float__": "nan"})),
    "string hyperparameter": lambda s, d: _rewrite(s, d, lambda m: _set_hyper(m, "fast")),
    "βp = [1, 1]": lambda s, d: _rewrite(s, d, lambda m: _set_scalars(m, [1.0, 1.0])),
    "nan in a state array": lambda s, d: _rewrite(s, d, members=_nan_state(s)),
    "zlib.error": lambda s, d: _bad_deflate(s, d, referenced=True),
    "encrypted flag": _encrypted,
    "deep nesting": lambda s, d: _rewrite(s, d, _deep),
    "overflow": lambda s, d: _rewrite(s, d, lambda m: m.update(
        extra={"__numpy__": "|i1", "value": 10 ** 30})),
    "huge declared shape": lambda s, d: _rewrite(
        s, d, lambda m: m.update(extra={"__array__": "state/99"}),
        members={"state/99.npy": _npy((1 << 40,))}),
    "huge parameter member": lambda s, d: _rewrite(
        s, d, members={"params/W.npy": _npy((1 << 40, 3))}),
}


@pytest.mark.parametrize("damage", HOSTILE)
def test_hostile_file_is_refused_and_changes_nothing(tmp_path, damage):
    path, m, opt = _trained(tmp_path)
    bad = tmp_path / "bad.npz"
    HOSTILE[damage](path, bad)
    before = _snapshot(m, opt)
    with pytest.raises(CheckpointError) as info:
        mg.load(bad, m, opt)
    assert str(bad) in str(info.value)
    assert _same(_snapshot(m, opt), before)


@pytest.mark.parametrize("damage,words", [
    ("nan hyperparameter", "eta"), ("string hyperparameter", "eta"),
    ("βp = [1, 1]", "βp"), ("nan in a state array", "NaN"),
    ("huge declared shape", "state/99"),
])
def test_refusal_names_what_and_where(tmp_path, damage, words):
    path, m, opt = _trained(tmp_path)
    bad = tmp_path / "bad.npz"
    HOSTILE[damage](path, bad)
    with pytest.raises(CheckpointError, match=words):
        mg.load(bad, m, opt)


def test_unreferenced_deflated_member_is_never_inflated(tmp_path):
    # Its data is damaged, so inflating it would fail: the load succeeding shows it was not read.
    path, m, opt = _trained(tmp_path)
    bad = tmp_path / "junk.npz"
    _bad_deflate(path, bad, referenced=False)
    with zipfile.ZipFile(bad) as zf, pytest.raises((zlib.error, zipfile.BadZipFile)):
        zf.read("junk.npy")
    assert mg.load(bad, m, opt) == {"epoch": 1}
    assert opt.eta == 0.1


# -- part 5: hyperparameters ---------------------------------------------------------------------

@pytest.mark.parametrize("make,message", [
    (lambda: mg.ClipNorm(-1), r"ClipNorm: hyperparameter thresh must be > 0, got -1"),
    (lambda: mg.ClipValue(0), r"thresh must be > 0"),
    (lambda: mg.Adam(β=(1.0, 0.999)), r"beta must be .*each in \[0, 1\), got \(1.0, 0.999\)"),
    (lambda: mg.Adam(β2=1.5), r"beta must be"),
    (lambda: mg.InvDecay(-1), r"gamma must be >= 0, got -1"),
    (lambda: mg.ExpDecay(step=0), r"step must be an integer >= 1, got 0"),
    (lambda: mg.ExpDecay(decay_step=2.5), r"step must be an integer >= 1"),
    (lambda: mg.ExpDecay(0.1, 0.0), r"decay must be in \(0, 1\]"),
    (lambda: mg.Descent(eta=None), r"eta must be a finite real number, got None"),
    (lambda: mg.Descent(-0.1), r"eta must be >= 0, got -0.1"),
    (lambda: mg.Momentum(ρ=1.5), r"rho must be in \[0, 1\]"),
    (lambda: mg.RMSProp(ϵ=-1e-8), r"epsilon must be >= 0"),
    (lambda: mg.WeightDecay(-0.1), r"wd must be >= 0"),
])
def test_out_of_range_hyperparameter_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make,field,value", [
    (lambda: mg.ClipNorm(1.0), "thresh", float("nan")),
    (lambda: mg.ClipNorm(1.0), "thresh", -1.0),
    (lambda: mg.Adam(), "beta", (0.9, 1.0)),
    (lambda: mg.Adam(), "eta", None),
    (lambda: mg.InvDecay(), "gamma", -1),
    (lambda: mg.ExpDecay(), "step", 0),
])
def test_out_of_range_assignment_changes_nothing(make, field, value):
    opt = make()
    W = mg.param([1.0, 2.0])
    mg.update_(opt, W, np.array([0.5, 0.5]))
    old, before = getattr(opt, field), W.data.copy()
    with pytest.raises(ValueError, match=field):
        setattr(opt, field, value)
    assert getattr(opt, field) == old and np.array_equal(W.data, before)


def test_expdecay_decays_once_per_global_step_with_several_parameters():
    # η = 0.2 decays by 0.5 at every step: each step of every parameter is g·0.2·0.5ᵏ.
    opt = mg.ExpDecay(0.2, 0.5, 1, 1e-3)
    ps = mg.Params([mg.param(np.zeros(2)), mg.param(np.zeros(3))])
    for k in range(1, 4):
        gs = mg.IdDict()
        for p in ps:
            gs[p] = np.ones(p.shape)
        mg.update_(opt, ps, gs)
        expected = -sum(0.2 * 0.5 ** j for j in range(1, k + 1))
        assert all(np.allclose(p.data, expected, rtol=0, atol=1e-15) for p in ps)
    assert opt.eta == 0.2 * 0.5 ** 3

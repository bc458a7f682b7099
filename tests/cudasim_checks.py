"""GPU checks run in Numba's CUDA simulator, in a subprocess started by ``tests/test_gpu.py``.

Run as ``NUMBA_ENABLE_CUDASIM=1 python tests/cudasim_checks.py``: the simulator must be chosen
before ``numba.cuda`` is first imported, hence a process of its own.  Prints one JSON object:
each check's name mapped to its result (numbers, or the text of an error message).  Arrays are
small (32 elements): the simulator runs every GPU thread in Python.
"""

from __future__ import annotations

import json
import os
import sys
import weakref

import numpy as np

import minigrad as mg
from minigrad.optimise import gpu_checks as gpu_kernels
from minigrad.optimise.step import steady_update


def _moved_by_hand(to_gpu: bool) -> None:
    """A parameter whose storage was swapped between host and GPU by hand after a step: its
    optimiser state stayed where it was."""
    from numba import cuda
    opt = mg.Adam()
    host = np.ones(3, np.float32)
    p = mg.param(host) if to_gpu else mg.gpu(mg.param(host))
    mg.update_(opt, p, host if to_gpu else cuda.to_device(host))
    p.data = cuda.to_device(host) if to_gpu else host.copy()
    mg.update_(opt, p, cuda.to_device(host) if to_gpu else host)


def _error(fn) -> str:
    try:
        fn()
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def main() -> dict:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
    from numba import cuda

    out: dict = {}
    # Every stage type's CUDA kernel against its CPU kernel, 10 steps, float32.
    out["kernels"] = gpu_kernels.check_kernels(size=32, steps=10, dtype=np.float32)
    # Every Flux rule through update_/apply_ (state, hypers, ClipNorm, Params form).
    out["rules"] = gpu_kernels.check_rules(size=32, steps=4, dtype=np.float32)
    out["rules64"] = gpu_kernels.check_rules(size=16, steps=2, dtype=np.float64)

    # gpu()/cpu() round trips.
    x = np.arange(6.0).reshape(2, 3)
    xg = mg.gpu(x)
    out["array_type"] = type(xg).__name__
    out["array_roundtrip"] = bool(np.array_equal(mg.cpu(xg), x)) and mg.gpu(xg) is xg
    W = mg.param(np.ones((2, 2), np.float32))
    Wg = mg.gpu(W)
    out["param_roundtrip"] = (isinstance(Wg, mg.Param) and Wg is not W
                              and mg.devices.on_device(Wg.data) and mg.gpu(Wg) is Wg
                              and np.array_equal(mg.cpu(Wg).data, W.data))
    layer = mg.Dense(3, 2)
    model = mg.Chain(layer, mg.relu, layer)          # tied: the same layer twice
    mg_model = mg.gpu(model)
    moved = mg.params(mg_model)
    out["model"] = {
        "new_object": mg_model is not model and mg_model[0] is mg_model[2],
        "params": len(moved),
        "on_device": all(mg.devices.on_device(p.data) for p in moved),
        "original_untouched": all(isinstance(p.data, np.ndarray) for p in mg.params(model)),
        "back": all(np.array_equal(a.data, b.data) for a, b in
                    zip(mg.params(mg.cpu(mg_model)), mg.params(model), strict=True)),
        "activation_kept": mg_model[1] is mg.relu,
    }

    # Dispatch: state on the device; Params form re-points into one flat buffer.
    opt = mg.Adam(0.1)
    ps = [mg.gpu(mg.param(np.ones(3, np.float32))), mg.gpu(mg.param(np.ones(2, np.float32)))]
    gs = {p: cuda.to_device(np.full(p.shape, 0.5, np.float32)) for p in ps}
    mg.update_(opt, ps, gs)
    mg.update_(opt, ps, gs)
    state = opt.state[ps[0]]
    out["dispatch"] = {
        "state_on_device": all(mg.devices.on_device(a) for a in state.arrays),
        "flat_groups": len(opt.__dict__.get("_flat_groups", {})),
        "values": mg.cpu(ps[0]).data.tolist(),
        "state_shape": list(state[0].shape),
    }
    # The steady step, from a flat gradient laid out as the parameters' buffer (as gradient()
    # leaves it), on device arrays (which have no read-only flag to check).
    flat_g = cuda.to_device(np.full(5, 0.5, np.float32))
    out["steady"] = {"taken": steady_update(opt, ps, ps[0].flat, flat_g),
                     "values": mg.cpu(ps[1]).data.tolist()}
    # A user-defined rule gets the GPU Δ and updates it in place.

    class Halve(mg.AbstractOptimiser):
        def apply_(self, x, Δ):
            seen.append(type(Δ).__name__)
            Δ.copy_to_device(Δ.copy_to_host() / 2)      # any GPU code; here the simulator's
            return Δ

    seen: list = []
    p = mg.gpu(mg.param(np.ones(4)))
    mg.update_(mg.Optimiser(Halve(), mg.Descent(1.0)), p, cuda.to_device(np.ones(4)))
    out["user_rule"] = {"delta_type": seen, "values": mg.cpu(p).data.tolist()}
    # The two-argument update_, and apply_ returning the GPU Δ.
    q = cuda.to_device(np.ones(3))
    mg.update_(q, cuda.to_device(np.full(3, 0.25)))
    Δ = cuda.to_device(np.ones(3))
    out["plain"] = {"update": q.copy_to_host().tolist(),
                    "apply_returns_delta": mg.apply_(mg.Descent(0.5), q, Δ) is Δ,
                    "delta": Δ.copy_to_host().tolist()}

    # Clear errors.
    gp = cuda.to_device(np.ones(3, np.float32))
    out["errors"] = {
        "host_grad": _error(lambda: mg.update_(mg.Adam(), gp, np.ones(3, np.float32))),
        "host_param": _error(lambda: mg.update_(mg.Adam(), np.ones(3, np.float32), gp)),
        "dtype": _error(lambda: mg.update_(mg.Adam(), gp, cuda.to_device(np.ones(3)))),
        "shape": _error(lambda: mg.update_(mg.Adam(), gp, cuda.to_device(
            np.ones(4, np.float32)))),
        "integer": _error(lambda: mg.update_(mg.Descent(), cuda.to_device(np.ones(3, int)),
                                             cuda.to_device(np.ones(3, int)))),
        "mixed_params": _error(lambda: mg.update_(mg.Descent(), *_mixed_params())),
        "host_from_user_rule": _error(lambda: mg.update_(
            mg.Optimiser(_HostRule()), mg.gpu(mg.param(np.ones(2))),
            cuda.to_device(np.ones(2)))),
        "nan_hyper": _error(lambda: mg.update_(_nan_descent(), gp, gp)),
        "moved_to_gpu": _error(lambda: _moved_by_hand(to_gpu=True)),
        "moved_to_host": _error(lambda: _moved_by_hand(to_gpu=False)),
        "unchanged_after_errors": gp.copy_to_host().tolist(),
    }
    # State is freed with its parameter.
    opt = mg.Momentum()
    r = mg.gpu(mg.param(np.ones(2)))
    mg.update_(opt, r, cuda.to_device(np.ones(2)))
    ref = weakref.ref(r)
    del r
    out["state_freed"] = ref() is None and len(opt.state) == 0
    return out


class _HostRule(mg.AbstractOptimiser):
    def apply_(self, x, Δ):
        return np.zeros(2)


def _mixed_params():
    from numba import cuda
    host, device = mg.param(np.ones(2)), mg.gpu(mg.param(np.ones(2)))
    return [host, device], {host: np.ones(2), device: cuda.to_device(np.ones(2))}


def _nan_descent():
    opt = mg.Descent()
    opt.eta = float("nan")
    return opt


if __name__ == "__main__":
    json.dump(main(), sys.stdout)

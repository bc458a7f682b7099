"""GPU support without a GPU: the CUDA kernels in Numba's simulator, gpu()/cpu(), dispatch, errors.

* ``tests/cudasim_checks.py`` runs once, in a subprocess with ``NUMBA_ENABLE_CUDASIM=1`` (the
  simulator must be chosen before ``numba.cuda`` is first imported): every stage type's CUDA
  kernel against its CPU kernel over 10 steps (Flux rules and ``minigrad.mx`` stages, found by
  looking), every Flux rule through ``update_``/``apply_`` (state on the GPU, ClipNorm's
  reduction, the Params form over flat buffers), gpu()/cpu() round trips, errors.
* The PTX of float32 kernels holds no float64 instruction, where the CUDA compiler is present.
* In this process (no simulator, no GPU): importing minigrad never imports ``numba.cuda``;
  without CUDA, ``gpu()`` says what to install; ``cpu()`` never needs CUDA; the CUDA kernel
  is generated from the same per-element body as the CPU kernel.

What this cannot show: speed, and behaviour on a real GPU (streams, CuPy and PyTorch arrays,
the float32 rounding of real hardware).  ``benchmarks/gpu.py`` checks those on a GPU.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad.optimise import gpu_checks as gpu_kernels
from minigrad.optimise import kernels, rules

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-6


@pytest.fixture(scope="module")
def sim() -> dict:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "cudasim_checks.py")], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout)


# -- the kernels, in the simulator ----------------------------------------------------------------

def test_every_stage_type_has_a_cuda_kernel_matching_its_cpu_kernel(sim):
    errors = sim["kernels"]
    assert set(errors) == set(gpu_kernels.stage_types())
    assert {"Adam", "AdaBelief", "ClipNorm", "InvDecay"} <= set(errors)
    bad = {name: e for name, e in errors.items() if not e <= RTOL}
    assert not bad, f"CUDA kernels differ from the CPU kernels by more than {RTOL}: {bad}"


@pytest.mark.parametrize("dtype", ["rules", "rules64"])
def test_every_flux_rule_through_update_matches_the_cpu(sim, dtype):
    errors = sim[dtype]
    assert {"Adam", "ClipNorm", "ExpDecay", "Params", "Optimiser(ClipNorm, AdamW, ExpDecay)"} \
        <= set(errors)
    bad = {name: e for name, e in errors.items() if not e <= RTOL}
    assert not bad, f"GPU update_ differs from the CPU by more than {RTOL}: {bad}"


def test_gpu_and_cpu_round_trips(sim):
    assert sim["array_type"] == "FakeCUDAArray"     # no CuPy in the simulator: Numba arrays
    assert sim["array_roundtrip"] and sim["param_roundtrip"]
    assert sim["model"] == {"new_object": True, "params": 2, "on_device": True,
                            "original_untouched": True, "back": True, "activation_kept": True}


def test_dispatch_keeps_state_on_the_gpu_and_uses_one_flat_buffer(sim):
    dispatch = sim["dispatch"]
    assert dispatch["state_on_device"] and dispatch["flat_groups"] == 1
    assert dispatch["state_shape"] == [3]
    assert dispatch["values"] == pytest.approx([0.8] * 3, rel=1e-6)     # two Adam(0.1) steps
    # The steady step (one kernel call from a flat gradient) runs on device arrays too: a
    # third Adam(0.1) step, as on the host.
    host, cpu_opt = mg.param(np.ones(2, np.float32)), mg.Adam(0.1)
    for _ in range(3):
        mg.update_(cpu_opt, host, np.full(2, 0.5, np.float32))
    assert sim["steady"]["taken"]
    assert sim["steady"]["values"] == pytest.approx(host.data.tolist(), rel=1e-6)
    assert sim["user_rule"] == {"delta_type": ["FakeCUDAArray"], "values": [0.5] * 4}
    assert sim["plain"] == {"update": [0.75] * 3, "apply_returns_delta": True,
                            "delta": [0.5] * 3}
    assert sim["state_freed"]


def test_clear_errors_on_the_gpu(sim):
    errors = sim["errors"]
    assert errors["host_grad"].startswith("TypeError") and "gradient" in errors["host_grad"] \
        and "on the host" in errors["host_grad"] and "minigrad.gpu" in errors["host_grad"]
    assert "the parameter (a numpy array" in errors["host_param"]
    assert errors["dtype"].startswith("TypeError") and "float64" in errors["dtype"]
    assert errors["shape"].startswith("ValueError") and "(4,)" in errors["shape"]
    assert "float32 or float64" in errors["integer"]
    assert "separate calls" in errors["mixed_params"]
    assert "returned a numpy array" in errors["host_from_user_rule"]
    assert "eta must be a finite real number" in errors["nan_hyper"]
    assert errors["unchanged_after_errors"] == [1.0, 1.0, 1.0]
    # Storage swapped by hand after a step: the state is still where it was; both directions.
    assert errors["moved_to_gpu"].startswith("TypeError: Adam: its state for this parameter is "
                                             "on the host but the parameter is on the GPU")
    assert errors["moved_to_host"].startswith("TypeError: Adam: its state for this parameter is "
                                              "on the GPU but the parameter is on the host")


# -- the PTX of float32 kernels --------------------------------------------------------------------

def test_float32_ptx_has_no_float64():
    try:
        gpu_kernels.ptx((rules.Descent,))
    except Exception as err:   # no NVRTC/NVVM: numba-cuda[cu13] is not installed
        # numba-cuda compiles a kernel that calls device functions only with a CUDA driver
        # present, and PTX needs NVRTC (numba-cuda[cu13]); benchmarks/gpu.py runs this check.
        reason = " ".join(str(err).split())[:100]
        pytest.skip(f"cannot compile PTX here (no CUDA driver or NVRTC: {type(err).__name__}: "
                    f"{reason}); benchmarks/gpu.py checks the PTX on a GPU")
    offenders = {}
    for name, stage in gpu_kernels.stage_types().items():
        lines = [line for line in gpu_kernels.ptx((stage,)).splitlines() if ".f64" in line]
        if lines:
            offenders[name] = lines[:3]
    assert not offenders, f"float64 instructions in float32 kernels: {offenders}"


# -- this process: no simulator, no GPU ------------------------------------------------------------

def test_importing_minigrad_never_imports_numba_cuda():
    code = ("import sys, minigrad, minigrad.optimise.cuda, minigrad.devices; "
            "print(sorted(m for m in sys.modules if m.startswith('numba.cuda')))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_without_cuda_gpu_says_what_to_install():
    try:
        mg.devices.cuda_module()
    except mg.devices.CUDAUnavailableError:
        pass
    else:
        pytest.skip("a CUDA GPU (or the simulator) is usable in this process")
    with pytest.raises(mg.devices.CUDAUnavailableError, match=r"numba-cuda.*minigrad\[gpu\]|"
                       r"minigrad\[gpu\].*numba-cuda"):
        mg.gpu(np.ones(2))
    with pytest.raises(mg.devices.CUDAUnavailableError, match="NUMBA_ENABLE_CUDASIM"):
        mg.gpu(mg.Dense(2, 2))


def test_cpu_never_needs_cuda_and_leaves_host_values_alone():
    m = mg.Chain(mg.Dense(2, 3), mg.relu)
    x = np.ones(2)
    assert mg.cpu(m) is m and mg.cpu(x) is x and mg.cpu(3.0) == 3.0
    assert mg.cpu(mg.params(m)) is not None
    assert not mg.devices.on_device(x) and not mg.devices.on_device(mg.param(x))


def test_the_cuda_kernel_is_generated_from_the_same_body_as_the_cpu_kernel():
    args = ((rules.Adam, rules.ClipValue), True, False)
    cpu = kernels._source(*args, target="cpu").splitlines()
    gpu = kernels._source(*args, target="cuda").splitlines()

    def body(lines):
        return [line for line in lines if line.startswith("        ")]

    # The same statements, hyperparameter j being h[j] on the CPU (one array) and hj on the GPU
    # (scalar arguments).
    assert [re.sub(r"h\[(\d+)\]", r"h\1", line) for line in body(cpu)] == body(gpu)
    assert len(body(gpu)) == 5
    text = "\n".join(gpu)
    assert "cuda.jit(device=True)(_module0.Adam.math)" in text
    assert "@cuda.jit(cache=True)" in text and "cuda.gridsize(1)" in text


def test_gpu_params_of_a_non_float_dtype_are_refused():
    with pytest.raises(TypeError, match="floating-point"):
        mg.Param(np.ones(2, int))

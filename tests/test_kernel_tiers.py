"""The two ways a CPU optimiser step runs (``minigrad/optimise/kernels.py``): the compiled kernel,
and, while a process is still loading that kernel in the background, NumPy evaluating the same
math functions on whole arrays.  Both must give bitwise the same numbers, so that which one ran
a step can never be seen in the results."""

import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minigrad as mg
import minigrad.mx.optimizers as mx_optimizers
from minigrad.optimise import kernels
from minigrad.optimise import rules as flux_rules

STAGES = sorted({cls for module in (flux_rules, mx_optimizers)
                 for _, cls in inspect.getmembers(module, inspect.isclass)
                 if hasattr(cls, "math") and hasattr(cls, "state_fill")},
                key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def test_every_stage_type_is_covered():
    names = {cls.__qualname__ for cls in STAGES}
    assert {"Adam", "AdaMax", "AMSGrad", "ClipValue", "ExpDecay", "NormGrad"} <= names
    assert len(STAGES) >= 25


@pytest.mark.parametrize("update", [True, False], ids=["update", "apply"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stage", STAGES, ids=lambda cls: cls.__qualname__)
def test_numpy_evaluation_is_bitwise_the_kernel(stage, dtype, update):
    rng = np.random.default_rng(abs(hash(stage.__qualname__)) % 2**32)
    n = 301
    x, g = (rng.standard_normal(n).astype(dtype) for _ in range(2))
    g[:4] = [np.nan, np.inf, -np.inf, 0.0]          # the special values take the same path too
    states = [np.abs(rng.standard_normal(n)).astype(dtype) for _ in stage.state_fill]
    h = (np.abs(rng.standard_normal(kernels._n_hypers(stage))) + 0.5).astype(dtype)
    by_kernel = [x.copy(), g.copy(), *(s.copy() for s in states)]
    kernels.fused_kernel((stage,), update, n)(by_kernel[0], by_kernel[1], h, *by_kernel[2:])
    by_numpy = [x.copy(), g.copy(), *(s.copy() for s in states)]
    with np.errstate(all="ignore"):
        kernels.numpy_pass((stage,), update, by_numpy[0], by_numpy[1], h, *by_numpy[2:])
    for name, a, b in zip(["x", "g", *map("state {}".format, range(len(states)))],
                          by_kernel, by_numpy, strict=True):
        assert a.dtype == b.dtype == dtype
        assert np.array_equal(a, b, equal_nan=True), f"{stage.__qualname__}: {name} differs"


def test_a_chain_of_stages_too():
    stages = (mg.ClipValue, mg.WeightDecay, mg.Adam, mg.ExpDecay)
    rng = np.random.default_rng(3)
    x, g = (rng.standard_normal(1000).astype(np.float32) for _ in range(2))
    states = [np.zeros(1000, np.float32) for s in stages for _ in s.state_fill]
    h = np.array([0.5, 1e-3, 0.9, 0.999, 0.1, 1e-3, 1e-2, 1e3, 1e-8, 0.1], np.float32)
    assert h.size == sum(map(kernels._n_hypers, stages))
    a, b = [x.copy(), *(s.copy() for s in states)], [x.copy(), *(s.copy() for s in states)]
    kernels.fused_kernel(stages, True, 1000)(a[0], g, h, *a[1:])
    kernels.numpy_pass(stages, True, b[0], g, h, *b[1:])
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


TRAIN = textwrap.dedent("""
    import numpy as np, minigrad as mg
    from minigrad.optimise import kernels
    rng = np.random.default_rng(0)
    ps = mg.Params([mg.param(rng.standard_normal(s).astype(np.float32)) for s in (7, 300, 5)])
    single = mg.param(rng.standard_normal(50).astype(np.float32))
    opt, other = mg.Adam(0.01), mg.Optimiser(mg.ClipNorm(1.0), mg.NAdam())
    first_step_by_kernel = None
    for step in range(20):
        gs = {p: rng.standard_normal(p.shape).astype(np.float32) for p in ps}
        mg.update_(opt, ps, gs)
        mg.update_(other, single, rng.standard_normal(50).astype(np.float32))
        if first_step_by_kernel is None:
            first_step_by_kernel = bool(kernels._ready)
        if step == 10:
            kernels.wait()                          # the rest run by the kernels
    print(first_step_by_kernel, len(kernels._ready))
    np.save(OUT, np.concatenate([*map(np.ravel, ps), np.ravel(single)]))
""")


def _train(tmp_path, name: str, background: str) -> tuple:
    out = tmp_path / f"{name}.npy"
    env = dict(os.environ, MINIGRAD_BACKGROUND_KERNELS=background)
    proc = subprocess.run([sys.executable, "-c", TRAIN.replace("OUT", repr(str(out)))], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split(), np.load(out)


def test_a_fresh_process_starts_on_numpy_and_ends_on_the_kernels_with_the_same_numbers(tmp_path):
    (first_by_kernel, ready), background = _train(tmp_path, "background", "1")
    (first_by_kernel_0, ready_0), foreground = _train(tmp_path, "foreground", "0")
    assert first_by_kernel_0 == "True"      # loaded before the first step
    assert int(ready) >= 2 and int(ready_0) >= 2
    assert np.array_equal(background, foreground)
    # (Whether the background run's first step was NumPy's depends on timing; it usually is.)
    assert first_by_kernel in ("True", "False")


def test_a_kernel_that_fails_to_load_in_the_background_raises_at_the_next_step(monkeypatch):
    monkeypatch.setattr(kernels, "BACKGROUND", True)
    failures = []

    def broken(*args, **kwargs):
        failures.append(args)
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(kernels, "fused_kernel", broken)
    stages = (mg.Descent, mg.Descent, mg.Descent)      # a chain no other test loads
    x = np.ones(3)
    kernels.run(stages, True, x, np.ones(3), np.array([0.5, 1.0, 2.0]))
    kernels.wait()
    assert x.tolist() == [0.0, 0.0, 0.0] and failures      # NumPy ran the step meanwhile
    with pytest.raises(RuntimeError, match="no compiler today"):
        kernels.run(stages, True, x, np.ones(3), np.array([0.5, 1.0, 2.0]))
    assert x.tolist() == [0.0, 0.0, 0.0]                  # and the failed step changed nothing
    kernels._failed.clear()


FORK = textwrap.dedent("""
    import os, numpy as np, minigrad as mg
    w = mg.param(np.ones(5))
    mg.update_(mg.RMSProp(), w, np.ones(5))         # starts loading RMSProp's kernel
    pid = os.fork()                                  # waits for that loading to finish first
    if pid == 0:
        v = mg.param(np.ones(5))
        mg.update_(mg.AdaGrad(), v, np.ones(5))      # the child loads (and uses) a kernel too
        mg.optimise.kernels.wait()
        mg.update_(mg.AdaGrad(), v, np.ones(5))
        os._exit(0 if np.all(np.isfinite(v.data)) else 1)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_fork_right_after_the_first_step_does_not_hang():
    proc = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, MINIGRAD_BACKGROUND_KERNELS="1"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0"]

"""Checks of the CUDA kernels against the CPU kernels, for tests (in Numba's CUDA simulator)
and for ``benchmarks/gpu.py`` (on a real GPU): every kernel stage type side by side, every rule
through ``update_``/``apply_``, and the PTX of a kernel.

>>> "Adam" in stage_types()
True
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np

from ..arrays import cuda_module
from ..autograd import param
from ..tracker import Param
from . import rules
from .cuda import launch
from .kernels import fused_kernel, n_hypers
from .step import apply_, update_

__all__ = ["stage_types", "check_kernels", "check_rules", "ptx"]


def stage_types() -> dict:
    """Every kernel stage type of minigrad by name: the classes with ``math`` and
    ``state_fill`` in :mod:`minigrad.optimise.rules` and :mod:`minigrad.mx` (found by looking,
    so new rules are covered without a list to update).

    >>> names = stage_types()
    >>> "Adam" in names and "ClipNorm" in names
    True
    """
    found = {}
    for module_name in ("minigrad.optimise.rules", "minigrad.mx.optimizers", "minigrad.mx"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        prefix = "mx." if module_name.startswith("minigrad.mx") else ""
        for cls in vars(module).values():
            if (inspect.isclass(cls) and "math" in vars(cls) and hasattr(cls, "state_fill")
                    and cls.__module__.startswith("minigrad.")):
                found.setdefault(prefix + cls.__name__, cls)
    return found


def check_kernels(size: int = 64, steps: int = 10, dtype=np.float32, seed: int = 0) -> dict:
    """Run every stage type's CUDA kernel and its CPU kernel side by side; return, per stage
    type, the largest difference of the parameters after ``steps`` updates relative to their
    largest magnitude (``max|x_gpu − x_cpu| / max|x_cpu|``).

    Each step draws a new gradient; hyperparameters are drawn once in ``[0.05, 0.95]`` (valid
    for every rule: rates, decays and thresholds alike) and state starts at ``state_fill``
    (``"epsilon"`` as 1e-3).  Needs CUDA or ``NUMBA_ENABLE_CUDASIM=1`` (keep ``size`` small
    there: the simulator runs each GPU thread in Python).
    """
    cuda = cuda_module()
    rng = np.random.default_rng(seed)
    errors = {}
    for name, stage in sorted(stage_types().items()):
        hypers = rng.uniform(0.05, 0.95, n_hypers(stage)).astype(dtype)
        x = rng.standard_normal(size).astype(dtype)
        fills = [1e-3 if f == "epsilon" else f for f in stage.state_fill]
        states = [np.full(size, f, dtype) for f in fills]
        x_gpu = cuda.to_device(x)
        states_gpu = [cuda.to_device(s) for s in states]
        cpu = fused_kernel((stage,), True, size)
        gpu = fused_kernel((stage,), True, size, target="cuda")
        for _ in range(steps):
            g = rng.standard_normal(size).astype(dtype)
            cpu(x, g, hypers, *states)
            launch(gpu, size, x_gpu, cuda.to_device(g), *hypers, *states_gpu)
        errors[name] = float(np.abs(x_gpu.copy_to_host() - x).max() / np.abs(x).max())
    return errors


def check_rules(size: int = 64, steps: int = 10, dtype=np.float32, seed: int = 0) -> dict:
    """Every Flux rule (default hyperparameters; the clipping rules with a threshold of 0.5),
    and a composed chain, through ``update_``/``apply_`` on a GPU array and on a host array
    side by side; per rule, ``max|x_gpu − x_cpu| / max|x_cpu|`` after ``steps`` updates.

    Covers what :func:`check_kernels` does not: ``hypers``/``advance`` (βp, counters), state
    on the GPU, ClipNorm's reduction, the multi-pass ``apply_`` path and ``update_(opt, ps,
    gs)`` over flat buffers (the ``"Params"`` entry).  Needs CUDA or the simulator.
    """
    cuda = cuda_module()
    makers = {name: (lambda cls=cls: cls(0.5) if "thresh" in cls.__init__.__code__.co_varnames
                     else cls())
              for name, cls in stage_types().items()
              if not name.startswith("mx.") and issubclass(cls, rules.Rule)}
    makers["Optimiser(ClipNorm, AdamW, ExpDecay)"] = lambda: rules.Optimiser(
        rules.ClipNorm(0.5), rules.AdamW(0.01, decay=0.1), rules.ExpDecay(0.5, 0.5, 3))
    rng = np.random.default_rng(seed)
    errors = {}
    for name, make in makers.items():
        opt_cpu, opt_gpu = make(), make()
        x = rng.standard_normal(size).astype(dtype)
        x_gpu = cuda.to_device(x)
        for t in range(steps):
            g = rng.standard_normal(size).astype(dtype)
            if t % 2:       # apply_ then update_(x, Δ), alternating with the fused update_
                update_(x, apply_(opt_cpu, x, g.copy()))
                update_(x_gpu, apply_(opt_gpu, x_gpu, cuda.to_device(g)))
            else:
                update_(opt_cpu, x, g)
                update_(opt_gpu, x_gpu, cuda.to_device(g))
        errors[name] = float(np.abs(x_gpu.copy_to_host() - x).max() / np.abs(x).max())
    # Many parameters: one launch over flat buffers.
    shapes = [(3, 5), (5,), (2, 3), (2,)]
    host = [param(rng.standard_normal(s).astype(dtype)) for s in shapes]
    device = [Param(cuda.to_device(p.data)) for p in host]
    opt_cpu, opt_gpu = rules.Adam(0.01), rules.Adam(0.01)
    for _ in range(steps):
        gs = [rng.standard_normal(s).astype(dtype) for s in shapes]
        update_(opt_cpu, host, dict(zip(host, gs, strict=True)))
        update_(opt_gpu, device, dict(zip(device, map(cuda.to_device, gs), strict=True)))
    flat_cpu = np.concatenate([p.data.ravel() for p in host])
    flat_gpu = np.concatenate([p.data.copy_to_host().ravel() for p in device])
    errors["Params"] = float(np.abs(flat_gpu - flat_cpu).max() / np.abs(flat_cpu).max())
    return errors


def ptx(rule_types: tuple, update: bool = True, dtype=np.float32, cc=(9, 0)) -> str:
    """The PTX of the fused CUDA kernel of ``rule_types`` for 1-D arrays of ``dtype`` (to check,
    for example, that float32 kernels hold no float64 instruction).  Needs the CUDA compiler
    libraries (NVVM and NVRTC: ``pip install "numba-cuda[cu13]"``), not a GPU; raises
    otherwise."""
    from numba import cuda, types

    scalar = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    array = types.Array(scalar, 1, "C")
    hypers = sum(map(n_hypers, rule_types))
    n_states = sum(len(r.state_fill) for r in rule_types)
    kernel = fused_kernel(tuple(rule_types), update, 0, target="cuda")
    signature = (array, array, *[scalar] * hypers, *[array] * n_states)
    code, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
    return code

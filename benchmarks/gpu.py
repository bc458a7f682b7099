"""minigrad on a real GPU: validation, end-to-end training, and the Adam step against bounds.

Run on a machine with an NVIDIA GPU (written for an H100/H200) and numba, numba-cuda, CuPy and
PyTorch (CUDA build) installed::

    pip install -e ".[gpu]" cupy-cuda12x torch      # or cupy-cuda13x, to match the driver
    python benchmarks/gpu.py                        # --sizes 1e6,1e7 --rounds 7 --skip-train

What it does, in one process, printing every figure as it goes:

1. The device (name, compute capability, memory) and the library versions.
2. PTX: every stage type's float32 kernel (Flux rules and ``minigrad.mx`` stages) compiled to
   PTX for this GPU and searched for float64 instructions (``.f64``).
3. Validation: every stage type's CUDA kernel against its CPU kernel over 10 steps on 65 536
   float32 elements (:func:`minigrad.optimise.gpu_checks.check_kernels`), and every Flux rule
   through ``update_``/``apply_`` on GPU arrays, ClipNorm, a composed chain and the flat-buffer
   Params form (:func:`minigrad.optimise.gpu_checks.check_rules`), each against the CPU: largest
   difference relative to the largest parameter.  The same update through a PyTorch CUDA tensor
   and a CuPy array (``__cuda_array_interface__``, no host copies) must give the same values.
4. End to end (needs CuPy): an MLP (784-256-256-10, float32) trained for 200 Adam steps on the
   GPU (``gpu(model)``, forward and backward on CuPy arrays, the optimiser's CUDA kernel) and the
   same model from the same initial weights on the CPU; the loss curves are compared and the GPU
   step time reported.
5. The Adam step on 1e6, 1e7 and 1e8 float32 parameters (one tensor), interleaved rounds, median
   time per step:
   (a) the device's copy bandwidth, measured here: a device-to-device copy of an n-element
       float32 buffer (``torch`` ``copy_``; 8 bytes per element);
   (b) minigrad ``update_(Adam, x, g)`` on PyTorch CUDA tensors (whole call, Python included)
       and the bare kernel launch; 28 bytes per parameter (read x, g, m, v; write x, m, v);
   (c) ``torch.optim.Adam(fused=True)`` on the same tensors (``p.grad`` set once).
   Ratios printed: minigrad's GB/s over the copy bandwidth, and torch fused time over minigrad's.
   Targets at 1e8: at least 85% of the copy bandwidth, and faster than torch fused.

Record the device name and the figures in ``docs/gpu.md`` (the "Figures" section).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

try:
    import minigrad as mg
except ImportError:  # not installed: use the checkout this folder lives in
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import minigrad as mg

from minigrad.optimise import cuda as gk
from minigrad.optimise import gpu_checks
from minigrad.optimise.kernels import fused_kernel


def header() -> None:
    cuda = mg.devices.cuda_module()
    dev = cuda.get_current_device()
    free, total = cuda.current_context().get_memory_info()
    name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
    print(f"device: {name}, compute capability {dev.compute_capability}, "
          f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} free)")
    import numba
    versions = [f"numpy {np.__version__}", f"numba {numba.__version__}"]
    for module in ("numba_cuda", "cupy", "torch"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} missing")
    print("versions:", ", ".join(versions))


def check_ptx() -> bool:
    from numba import cuda
    cc = cuda.get_current_device().compute_capability
    bad = {}
    for name, stage in sorted(gpu_checks.stage_types().items()):
        lines = [ln.strip() for ln in gpu_checks.ptx((stage,), dtype=np.float32, cc=cc).splitlines()
                 if ".f64" in ln]
        if lines:
            bad[name] = lines[:2]
    print(f"PTX (float32 kernels, cc {cc}): "
          + ("no float64 instructions" if not bad else f"float64 found in {bad}"))
    return not bad


def validate(tolerance: float) -> bool:
    ok = True
    for title, errors in (("kernels (65536 elements, 10 steps)",
                           gpu_checks.check_kernels(size=65536, steps=10)),
                          ("update_/apply_ (4096 elements, 10 steps)",
                           gpu_checks.check_rules(size=4096, steps=10))):
        worst = max(errors, key=errors.get)
        failed = {k: f"{v:.2e}" for k, v in errors.items() if not v <= tolerance}
        ok &= not failed
        print(f"validation, {title}: {len(errors)} checks, worst {worst} "
              f"{errors[worst]:.2e} (tolerance {tolerance:g})"
              + (f"; FAILED: {failed}" if failed else ""))
    # The same Adam steps through a torch tensor and a CuPy array as through a Numba array.
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal(10_000).astype(np.float32)
    gs = [rng.standard_normal(x0.size).astype(np.float32) for _ in range(5)]
    reference = x0.copy()
    opt = mg.Adam(0.01)
    for g in gs:
        mg.update_(opt, reference, g)
    for library in ("torch", "cupy"):
        try:
            if library == "torch":
                import torch
                x, to = torch.tensor(x0, device="cuda"), lambda a: torch.tensor(a, device="cuda")
                back = lambda a: a.cpu().numpy()    # noqa: E731
            else:
                import cupy
                x, to, back = cupy.asarray(x0), cupy.asarray, cupy.asnumpy
        except ImportError:
            print(f"validation through {library}: skipped ({library} not installed)")
            continue
        opt = mg.Adam(0.01)
        for g in gs:
            mg.update_(opt, x, to(g))
        error = float(np.abs(back(x) - reference).max() / np.abs(reference).max())
        ok &= error <= tolerance
        print(f"validation through {library} arrays (5 Adam steps vs the CPU): {error:.2e}")
    return ok


def train_end_to_end(steps: int) -> None:
    try:
        import cupy
    except ImportError:
        print("end to end: skipped (CuPy is not installed; the autograd needs it on the GPU)")
        return
    rng = np.random.default_rng(0)
    n, batch = 784, 128
    centres = rng.standard_normal((10, n)).astype(np.float32)
    labels = rng.integers(0, 10, 4096)
    X = (centres[labels] + rng.standard_normal((labels.size, n)).astype(np.float32)).T.copy()
    Y = np.eye(10, dtype=np.float32)[labels].T.copy()
    np.random.seed(0)
    cpu_model = mg.Chain(mg.Dense(n, 256, mg.relu), mg.Dense(256, 256, mg.relu),
                         mg.Dense(256, 10))
    gpu_model = mg.gpu(cpu_model)
    assert all(isinstance(p.data, cupy.ndarray) for p in mg.params(gpu_model))
    curves = {}
    timings = {}
    for where, model in (("gpu", gpu_model), ("cpu", cpu_model)):
        move = mg.gpu if where == "gpu" else (lambda a: a)
        ps, opt, losses = mg.params(model), mg.Adam(1e-3), []
        batches = [(move(X[:, i:i + batch]), move(Y[:, i:i + batch]))
                   for i in range(0, X.shape[1], batch)]
        loss = lambda x, y: mg.losses.logitcrossentropy(model(x), y)    # noqa: B023,E731
        for step in range(steps):
            if step == 10:
                if where == "gpu":
                    cupy.cuda.Device().synchronize()
                start = time.perf_counter()
            x, y = batches[step % len(batches)]
            value, gs = mg.withgradient(lambda: loss(x, y), ps)     # noqa: B023
            mg.update_(opt, ps, gs)
            losses.append(float(value))
        if where == "gpu":
            cupy.cuda.Device().synchronize()
        timings[where] = (time.perf_counter() - start) / (steps - 10)
        curves[where] = np.array(losses)
    gap = float(np.abs(curves["gpu"] - curves["cpu"]).max())
    print(f"end to end: MLP {n}-256-256-10, batch {batch}, {steps} Adam steps: loss "
          f"{curves['gpu'][0]:.4f} -> {curves['gpu'][-1]:.4f} on the GPU, "
          f"{curves['cpu'][0]:.4f} -> {curves['cpu'][-1]:.4f} on the CPU (largest gap "
          f"{gap:.2e}); step {timings['gpu'] * 1e3:.3f} ms on the GPU, "
          f"{timings['cpu'] * 1e3:.3f} ms on the CPU")
    trained = curves["gpu"][-20:].mean() < 0.5 * curves["gpu"][:5].mean()
    print("end to end:", "the loss fell on the GPU" if trained else "FAILED: the loss did not fall")


def _time(fn, sync, reps: int) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - start) / reps


def _measure(n: int, rounds: int) -> dict:
    """Median seconds per call of each method on ``n`` float32 parameters."""
    import torch
    from numba import cuda
    x = torch.randn(n, device="cuda")
    g = torch.randn(n, device="cuda") * 1e-3
    src, dst = torch.empty_like(x), torch.empty_like(x)
    opt = mg.Adam(1e-3)
    mg.update_(opt, x, g)                                       # compiles, allocates state
    state = opt.state[x]
    kernel = fused_kernel((mg.Adam,), True, n, target="cuda")
    xv, gv = cuda.as_cuda_array(x), cuda.as_cuda_array(g)
    hypers = [np.float32(h) for h in opt.hypers(state.scalars, x, None)]
    tp = torch.nn.Parameter(torch.randn(n, device="cuda"))
    tp.grad = torch.randn(n, device="cuda") * 1e-3
    topt = torch.optim.Adam([tp], lr=1e-3, fused=True)
    topt.step()
    methods = {
        "copy": lambda: dst.copy_(src),
        "minigrad update_": lambda: mg.update_(opt, x, g),
        "minigrad kernel": lambda: gk.launch(kernel, n, xv, gv, *hypers, *state.arrays),
        "torch fused": topt.step,
    }
    reps = max(5, min(200, int(2e9 // (28 * n))))
    times = {k: [] for k in methods}
    for r in range(rounds):
        names = list(methods)
        for k in names[r % len(names):] + names[:r % len(names)]:     # rotate the order
            times[k].append(_time(methods[k], torch.cuda.synchronize, reps))
    return {k: statistics.median(v) for k, v in times.items()} | {"reps": reps}


def adam_throughput(sizes: list, rounds: int) -> dict:
    import torch
    results = {}
    for n in sizes:
        med = _measure(n, rounds)
        torch.cuda.empty_cache()
        copy_bw = 8 * n / med["copy"]
        row = {"copy GB/s": copy_bw / 1e9}
        for k in ("minigrad update_", "minigrad kernel", "torch fused"):
            row[k + " ms"] = med[k] * 1e3
            row[k + " % of copy"] = 100 * (28 * n / med[k]) / copy_bw
        row["torch fused / minigrad update_"] = med["torch fused"] / med["minigrad update_"]
        results[n] = row
        print(f"Adam, {n:.0e} float32 parameters ({med['reps']} steps x {rounds} rounds): copy "
              f"{copy_bw / 1e9:.0f} GB/s; minigrad update_ {row['minigrad update_ ms']:.3f} ms "
              f"({row['minigrad update_ % of copy']:.1f}% of copy), kernel alone "
              f"{row['minigrad kernel ms']:.3f} ms ({row['minigrad kernel % of copy']:.1f}%); "
              f"torch fused {row['torch fused ms']:.3f} ms "
              f"({row['torch fused % of copy']:.1f}%); torch fused / minigrad = "
              f"{row['torch fused / minigrad update_']:.2f}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7,1e8")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="relative tolerance of GPU vs CPU (FMA contraction on the GPU "
                             "rounds differently from the CPU)")
    args = parser.parse_args()
    header()
    ok = check_ptx()
    ok &= validate(args.tolerance)
    if not args.skip_train:
        try:
            train_end_to_end(args.train_steps)
        except Exception as err:      # report, and still measure the Adam step
            ok = False
            print(f"end to end: FAILED with {type(err).__name__}: {err}")
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    results = adam_throughput(sizes, args.rounds)
    largest = results[max(sizes)]
    bandwidth = largest["minigrad update_ % of copy"] >= 85
    faster = largest["torch fused / minigrad update_"] > 1
    print(f"targets at {max(sizes):.0e}: >= 85% of copy bandwidth: "
          f"{'met' if bandwidth else 'NOT met'} ({largest['minigrad update_ % of copy']:.1f}%); "
          f"faster than torch fused: {'met' if faster else 'NOT met'} "
          f"({largest['torch fused / minigrad update_']:.2f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

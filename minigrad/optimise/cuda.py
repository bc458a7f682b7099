"""Optimisers on GPU arrays: CUDA kernels generated from each rule's per-element math.

``update_`` and ``apply_`` come here when the parameter's storage is a GPU array (anything
exposing ``__cuda_array_interface__``: Numba device arrays, CuPy arrays, PyTorch CUDA tensors;
see :mod:`minigrad.devices`).  Everything mirrors the CPU path of
:mod:`minigrad.optimise.step`, with the same checks, the same chain splitting and the same
state handling:

* A fused pass of built-in rules is ONE ``@cuda.jit`` kernel launch.  The kernel is written by
  :func:`minigrad.optimise.kernels.fused_kernel` with ``target="cuda"``: the same generator and
  the same per-element body as the CPU loop, each rule's ``math`` compiled as a CUDA device
  function, so no formula exists twice and any new rule type (anything with ``math`` and
  ``state_fill``) runs on the GPU with no code here.  The kernel is a grid-stride loop over
  flat 1-D views; hyperparameters are passed as scalars of the parameter's dtype (so float32
  kernels stay float32) and per-parameter scalar state (Adam's ``βp``) stays on the host.
* ``update_(opt, ps, gs)`` over many GPU parameters of one dtype moves their storage into one
  flat buffer of their own library (each ``p.data`` becomes a view of it, as on the CPU, see
  :mod:`minigrad.optimise.flat`), keeps the state in flat device buffers, copies the gradients
  into a flat device buffer (device to device) and launches one kernel per step.
* Optimiser state of a GPU parameter is allocated on the GPU as Numba device arrays
  (``opt.state[p][i]`` is one).
* ``ClipNorm`` takes the norm with a reduction kernel (one 8-byte read back per step).
* Any other :class:`~minigrad.AbstractOptimiser` runs its Python ``apply_(x, Δ)`` with ``Δ`` a
  GPU array of the gradient's own library (a CuPy array for CuPy gradients); it must return a
  GPU array.

Values never pass through the host, except the hyperparameters (a few scalars per launch)
and ClipNorm's norm.  Nothing here is imported before the first GPU step.

>>> import minigrad as mg
>>> mg.optimise.cuda.THREADS
256
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..devices import _library, cuda_module, device_dtype, on_device
from ..tracker import Node, _describe, data
from .flat import FlatGroup, update_flat
from .kernels import _load, fused_kernel
from .step import _fused_pass

__all__ = ["THREADS", "launch", "flat_view", "full", "l2norm", "step", "update_params",
           "subtract"]

#: Threads per block of every kernel launch.
THREADS = 256
#: Blocks per launch at most; the kernels loop (grid-stride) over larger arrays.
MAX_BLOCKS = 65536


def launch(kernel, n: int, *args) -> None:
    """Launch the grid-stride ``kernel`` over ``n`` elements with ``args`` (nothing if ``n``
    is 0): one thread per element up to ``MAX_BLOCKS`` blocks of ``THREADS`` threads.

    >>> launch(None, 0)     # an empty array launches nothing
    """
    if n:
        threads = min(THREADS, -(-n // 32) * 32)
        kernel[min(-(-n // threads), MAX_BLOCKS), threads](*args)


# -- GPU arrays of any library as Numba views ----------------------------------------------------

def _numba(a) -> bool:
    return bool(getattr(type(a), "__cuda_ndarray__", False))


def flat_view(a):
    """A flat 1-D Numba device view of the contiguous GPU array ``a`` (Numba, CuPy or PyTorch);
    never a copy.  On a GPU, ``flat_view(cupy.zeros((2, 3))).shape`` is ``(6,)``."""
    if not _numba(a):
        # Synchronise the producer's stream only when it is not a default stream (None, 1, 2):
        # Numba launches on the legacy default stream, which already waits for those, and a
        # host-side wait per step would stop the GPU from running ahead of Python.
        stream = a.__cuda_array_interface__.get("stream")
        a = cuda_module().as_cuda_array(a, sync=stream not in (None, 1, 2))
    return a if a.ndim == 1 else a.reshape(a.size)


def _shape(a) -> tuple:
    return tuple(a.shape)


def _c_contiguous(a) -> bool:
    if _numba(a):
        return a.is_c_contiguous()
    interface = a.__cuda_array_interface__
    strides = interface.get("strides")
    if strides is None:
        return True
    expected = np.dtype(interface["typestr"]).itemsize
    for n, stride in zip(reversed(interface["shape"]), reversed(strides), strict=True):
        if n != 1 and stride != expected:
            return False
        expected *= n
    return True


def _empty(like, size: int):
    """A new flat GPU array of ``size`` elements, of ``like``'s library and dtype."""
    library = _library(like)
    if library == "cupy":
        import cupy
        return cupy.empty(size, dtype=like.dtype)
    if library == "torch":
        import torch
        return torch.empty(size, dtype=like.dtype, device=like.device)
    return cuda_module().device_array(size, dtype=like.dtype)


def _copy(a):
    """A copy of GPU array ``a`` in its own library (a device-to-device copy)."""
    library = _library(a)
    if library == "cupy":
        return a.copy()
    if library == "torch":
        return a.clone()
    out = cuda_module().device_array_like(a)
    out.copy_to_device(a)
    return out


def describe(a) -> str:
    """``a`` in words, for error messages: its device, library, dtype and shape.

    >>> import numpy as np
    >>> describe(np.zeros((2, 3)))
    'a numpy array of dtype float64 and shape (2, 3)'
    """
    target = data(a)
    if not on_device(target):
        return _describe(a)
    what = f"a {type(a).__name__.lower()} holding " if isinstance(a, Node) else ""
    return (f"{what}a {_library(target)} GPU array of dtype {device_dtype(target)} and shape "
            f"{_shape(target)}")


# -- helper kernels (fill, sum of squares), cached on disk like the rule kernels -----------------

_HELPERS = '''\
# Generated by minigrad.optimise.cuda; safe to delete.
from numba import cuda, float64


@cuda.jit(cache=True)
def fill(a, value):
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


@cuda.jit(cache=True)
def sumsq(a, out):
    # Each block sums its share of a² in float64 (blockDim.x a power of two, at most 256), then
    # one thread adds the block's total to out[0].
    partial = cuda.shared.array(256, float64)
    t = cuda.threadIdx.x
    acc = float64(0)
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        v = float64(a[i])
        acc += v * v
    partial[t] = acc
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            partial[t] += partial[t + half]
        cuda.syncthreads()
        half //= 2
    if t == 0:
        cuda.atomic.add(out, 0, partial[0])


class kernel:       # what minigrad.optimise.kernels._load hands back
    fill, sumsq = fill, sumsq
'''


def _helpers():
    cuda_module()
    return _load(_HELPERS)


def full(size: int, fill, dtype):
    """A new flat Numba device array of ``size`` elements of ``dtype``, all ``fill`` (the GPU
    ``np.full`` used for optimiser state).  Needs CUDA (or ``NUMBA_ENABLE_CUDASIM=1``)."""
    out = cuda_module().device_array(size, dtype=dtype)
    launch(_helpers().fill, size, out, np.dtype(dtype).type(fill))
    return out


def l2norm(a) -> float:
    """The L2 norm of GPU array ``a`` (accumulated in float64), as a Python float."""
    flat = flat_view(a)
    out = cuda_module().to_device(np.zeros(1))
    if flat.size:
        threads = min(THREADS, 1 << max(5, (flat.size - 1).bit_length()))   # a power of two
        _helpers().sumsq[min(-(-flat.size // threads), 1024), threads](flat, out)
    return math.sqrt(float(out.copy_to_host()[0]))


# -- checks ---------------------------------------------------------------------------------------

def _where(a) -> str:
    return "on the GPU" if on_device(data(a)) else "on the host"


def operands(name: str, x, g) -> tuple:
    """The storage of GPU parameter ``x`` and GPU gradient ``g``, after every check on them:
    both on the GPU, same shape, same float32 or float64 dtype, C-contiguous."""
    target, gd = data(x), data(g)
    if not on_device(target) and not on_device(gd):
        raise TypeError(f"{name}: a host parameter ({describe(x)}) among GPU parameters; "
                        "update host and GPU parameters in separate calls")
    if not on_device(target) or not on_device(gd):
        raise TypeError(
            f"{name}: the parameter ({describe(x)}) is {_where(x)} but the gradient "
            f"({describe(g)}) is {_where(g)}; move both with minigrad.gpu(...) or "
            "minigrad.cpu(...) (an optimiser step never copies between host and GPU)")
    dtype = device_dtype(target)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: a GPU parameter must be float32 or float64, got "
                        f"{describe(x)}")
    if _shape(gd) != _shape(target):
        raise ValueError(f"{name}: the gradient has shape {_shape(gd)} but the parameter "
                         f"({describe(x)}) has shape {_shape(target)}")
    if device_dtype(gd) != dtype:
        raise TypeError(f"{name}: the gradient has dtype {device_dtype(gd)} but the parameter "
                        f"({describe(x)}) has dtype {dtype}; convert one of them")
    for what, a in (("parameter", target), ("gradient", gd)):
        if not _c_contiguous(a):
            raise ValueError(f"{name}: the {what} ({describe(a)}) must be C-contiguous")
    return target, gd


# -- one parameter ---------------------------------------------------------------------------------

def _on_gpu(types: tuple, update: bool, flat_x, flat_d, hypers: list, arrays: list,
            _keeper) -> None:
    """One fused pass as one kernel launch, the hyperparameters as scalars of the dtype (one
    launch: no choice of threads to keep)."""
    kernel = fused_kernel(types, update, flat_x.size, target="cuda")
    cast = flat_x.dtype.type
    launch(kernel, flat_x.size, flat_x, flat_d, *map(cast, hypers), *arrays)


def _subtract(flat_x, flat_d) -> None:
    """``x -= d`` on flat views: the kernel of an empty chain of rules."""
    launch(fused_kernel((), True, flat_x.size, target="cuda"), flat_x.size, flat_x, flat_d)


def _step(passes: list, x, target, gd, update: bool):
    key = x if isinstance(x, Node) else target
    flat_x = flat_view(target)
    if update and len(passes) == 1 and isinstance(passes[0], list):
        _fused_pass(passes[0], key, flat_x, flat_view(gd), update=True, execute=_on_gpu)
        return x
    delta = _copy(gd) if update else gd
    flat_d = flat_view(delta)
    for p in passes:
        if isinstance(p, list):
            _fused_pass(p, key, flat_x, flat_d, update=False, execute=_on_gpu)
            continue
        result = p.apply_(x, delta)
        if result is not delta:
            result = data(result)
            if not on_device(result) or _shape(result) != _shape(delta):
                raise TypeError(
                    f"{type(p).__name__}.apply_ returned {describe(result)} for a GPU "
                    f"parameter; return a GPU array of shape {_shape(delta)} (for example Δ, "
                    "updated in place)")
            flat_d.copy_to_device(flat_view(result))
    if update:
        _subtract(flat_x, flat_d)
        return x
    return delta


def step(passes: list, x, g, update: bool, name: str):
    """``apply_``/``update_`` of the planned chain ``passes`` for one GPU parameter ``x``."""
    target, gd = operands(name, x, g)
    return _step(passes, x, target, gd, update)


def subtract(name: str, x, step):
    """``update_(x, x̄)`` on the GPU: ``x -= x̄`` in place; returns ``x``."""
    target, gd = operands(name, x, step)
    _subtract(flat_view(target), flat_view(gd))
    return x


# -- many parameters: one launch over flat buffers ------------------------------------------------

class DeviceFlatGroup(FlatGroup):
    """GPU parameters of one dtype re-pointed into one flat buffer (of their own library), with
    flat device buffers for the gradients and the state: :class:`minigrad.optimise.flat.FlatGroup`
    with its memory on the GPU and one kernel launch per step."""

    def _gather(self, params: list) -> tuple:
        cuda = cuda_module()
        sizes = [flat_view(p.data).size for p in params]
        starts = [0, *itertools.accumulate(sizes)]
        self.x = _empty(params[0].data, starts[-1])      # the parameters' library
        self.xv = flat_view(self.x)
        self.gv = cuda.device_array(starts[-1], dtype=self.xv.dtype)
        self.x_views, self.g_views = [], []
        for p, a, b in zip(params, starts[:-1], starts[1:], strict=True):
            self.xv[a:b].copy_to_device(flat_view(p.data))
            p.data = view = self.x[a:b].reshape(p.shape)
            self.x_views.append(view)
            self.g_views.append(self.gv[a:b])
        self.kernel = fused_kernel(self.types, True, starts[-1], target="cuda")
        return self.xv, starts

    @staticmethod
    def _fill(part, array) -> None:
        part.copy_to_device(flat_view(array))

    @staticmethod
    def _readable_where_they_lie(grads: list) -> list:
        return grads            # (_run copies them into the group's gradient buffer)

    def _run(self, hypers: list, grads: list) -> bool:
        for view, g in zip(self.g_views, grads, strict=True):
            view.copy_to_device(flat_view(g))
        cast = self.xv.dtype.type
        launch(self.kernel, self.xv.size, self.xv, self.gv, *map(cast, hypers),
               *self.state_arrays)
        return True


def update_params(opt, passes: list, ps, pairs: list, name: str):
    """``update_(opt, ps, gs)`` for GPU parameters: every pair is checked first; one kernel
    launch over flat buffers when the chain fuses into one pass, else parameter by
    parameter."""
    checked = [(p, *operands(name, p, gp)) for p, gp in pairs if gp is not None]
    if len(passes) == 1 and isinstance(passes[0], list) and update_flat(
            opt, passes[0], [(p, gd) for p, _, gd in checked], DeviceFlatGroup):
        return ps
    for p, target, gd in checked:
        _step(passes, p, target, gd, update=True)
    return ps


# -- validation against the CPU kernels (tests under the simulator; benchmarks/gpu.py) -----------

def stage_types() -> dict:
    """Every kernel stage type of minigrad by name: the classes with ``math`` and
    ``state_fill`` in :mod:`minigrad.optimise.rules` and :mod:`minigrad.mx` (found by looking,
    so new rules are covered without a list to update).

    >>> names = stage_types()
    >>> "Adam" in names and "ClipNorm" in names
    True
    """
    import importlib
    import inspect

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


def _hyper_count(stage) -> int:
    return stage.math.__code__.co_argcount - 2 - len(stage.state_fill)


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
        hypers = rng.uniform(0.05, 0.95, _hyper_count(stage)).astype(dtype)
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
    import minigrad as mg
    from minigrad.optimise import rules

    cuda = cuda_module()
    makers = {name: (lambda cls=cls: cls(0.5) if "thresh" in cls.__init__.__code__.co_varnames
                     else cls())
              for name, cls in stage_types().items()
              if not name.startswith("mx.") and issubclass(cls, rules.Rule)}
    makers["Optimiser(ClipNorm, AdamW, ExpDecay)"] = lambda: mg.Optimiser(
        rules.ClipNorm(0.5), mg.AdamW(0.01, decay=0.1), rules.ExpDecay(0.5, 0.5, 3))
    rng = np.random.default_rng(seed)
    errors = {}
    for name, make in makers.items():
        opt_cpu, opt_gpu = make(), make()
        x = rng.standard_normal(size).astype(dtype)
        x_gpu = cuda.to_device(x)
        for t in range(steps):
            g = rng.standard_normal(size).astype(dtype)
            if t % 2:       # apply_ then update_(x, Δ), alternating with the fused update_
                mg.update_(x, mg.apply_(opt_cpu, x, g.copy()))
                mg.update_(x_gpu, mg.apply_(opt_gpu, x_gpu, cuda.to_device(g)))
            else:
                mg.update_(opt_cpu, x, g)
                mg.update_(opt_gpu, x_gpu, cuda.to_device(g))
        errors[name] = float(np.abs(x_gpu.copy_to_host() - x).max() / np.abs(x).max())
    # Many parameters: one launch over flat buffers.
    shapes = [(3, 5), (5,), (2, 3), (2,)]
    host = [mg.param(rng.standard_normal(s).astype(dtype)) for s in shapes]
    device = [mg.Param(cuda.to_device(p.data)) for p in host]
    opt_cpu, opt_gpu = mg.Adam(0.01), mg.Adam(0.01)
    for _ in range(steps):
        gs = [rng.standard_normal(s).astype(dtype) for s in shapes]
        mg.update_(opt_cpu, host, dict(zip(host, gs, strict=True)))
        mg.update_(opt_gpu, device, dict(zip(device, map(cuda.to_device, gs), strict=True)))
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
    n_hypers = sum(_hyper_count(r) for r in rule_types)
    n_states = sum(len(r.state_fill) for r in rule_types)
    kernel = fused_kernel(tuple(rule_types), update, 0, target="cuda")
    signature = (array, array, *[scalar] * n_hypers, *[array] * n_states)
    code, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
    return code

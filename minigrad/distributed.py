"""Data-parallel training on MPI: Flux's distributed utilities in Python spelling.

Every rank (process) runs the same script on its own part of the data; before each step the
gradients are summed over the ranks and divided by their number, so every rank takes the same
step and the parameters stay bitwise equal.  Run a script with::

    mpiexec -n 2 python -m mpi4py train.py

``-m mpi4py`` makes an uncaught exception on one rank abort every rank (a plain ``python``
would leave the others waiting forever).  MPI comes from ``mpi4py`` (``pip install
"minigrad[mpi]"`` brings it with the MPICH wheel); this module imports it at the first call
that needs it, so ``import minigrad.distributed`` works without it and a call then names the
fix.  See ``docs/distributed.md`` for the semantics, the fault behaviour and the figures.

How a step communicates (:class:`DistributedOptimiser`): the gradients of
:func:`minigrad.gradient` lie in one flat buffer (``Grads.flat``, laid out like the
parameters' :class:`~minigrad.tracker.FlatBuffer`), so the whole sum is ONE in-place
``Allreduce`` over it (per ``bucket_bytes`` piece, by default the whole buffer), and the
``1/N`` is a first stage of the optimiser's fused kernel: no per-tensor call and no extra
pass over memory.  Before it, a 3-number ``Allreduce`` checks that every rank has the same
layout (a hash of the parameters' shapes and dtypes and the rule), so mismatched buffers are
never summed.

With ``DistributedOptimiser(opt, shard_state=True)`` (ZeRO-1) each rank keeps ``opt``'s state
for its own contiguous slice of that buffer (:func:`shard_bounds`): the sum is a
``Reduce_scatter`` (each rank gets its slice's sum), the kernels update the slice, and an
in-place ``Allgatherv`` brings every slice to every rank: on 2 ranks, bitwise the unsharded
step.  What needs more than a slice is put together across the ranks, bit for bit: each
parameter's norm for ``ClipNorm`` (from the ranks' sums of the norm's blocks, see
:class:`_Slices`), and an outermost ``ApplyIfFinite``'s decision (one flag, ``Allreduce``d).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import tempfile
from functools import partial

import numpy as np

from . import checkpoint
from .optimise import cpu
from .optimise.flat import flat_buffer
from .optimise.guard import ApplyIfFinite, all_finite
from .optimise.rules import AbstractOptimiser, NormClip, Optimiser, Rule
from .optimise.step import fused_passes, update_, update_pieces
from .tracker import Grads, Param, Params, _describe

__all__ = ["initialize", "local_rank", "total_workers", "bcast_", "allreduce_",
           "synchronize_", "DistributedOptimiser", "DistributedDataContainer", "save", "load",
           "LayoutMismatchError", "shard_bounds"]

_INSTALL = ('minigrad.distributed needs mpi4py: pip install "minigrad[mpi]" (mpi4py and the '
            "MPICH wheel), or build mpi4py against your cluster's MPI (see "
            "docs/distributed.md)")


def _mpi():
    """mpi4py's ``MPI`` module, imported at the first call that needs it (importing it starts
    MPI, which ``import minigrad`` must never do)."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(_INSTALL) from err
    return MPI


def _world():
    return _mpi().COMM_WORLD


def initialize() -> None:
    """Start MPI (Flux's ``DistributedUtils.initialize``).  Idempotent; the other functions
    of this module call it for you.  Without mpi4py it raises ``ImportError`` naming
    ``pip install "minigrad[mpi]"``.

    >>> import minigrad.distributed as dist
    >>> dist.initialize(); dist.total_workers()      # one process, started without mpiexec
    1
    """
    MPI = _mpi()
    if not MPI.Is_initialized():
        MPI.Init()


def local_rank() -> int:
    """This process's rank, ``0 .. total_workers() - 1``.

    >>> import minigrad.distributed as dist
    >>> dist.local_rank()
    0
    """
    return _world().Get_rank()


def total_workers() -> int:
    """The number of ranks in the job (``mpiexec -n N``; 1 for a plain ``python``).

    >>> import minigrad.distributed as dist
    >>> dist.total_workers()
    1
    """
    return _world().Get_size()


def _buffer(x, name: str) -> np.ndarray:
    """``x``'s storage as a contiguous, writable host array (what MPI reads and writes)."""
    a = x.data if isinstance(x, Param) else x
    if type(a) is not np.ndarray or not a.flags.c_contiguous or not a.flags.writeable:
        raise TypeError(f"{name}: expected a contiguous, writable NumPy array or trainable "
                        f"array on the host, got {_describe(x)}")
    return a


def bcast_(x, root: int = 0):
    """Overwrite array ``x`` (a NumPy array or trainable array, in place) with ``root``'s on
    every rank, with one buffer ``Bcast``; returns ``x``.

    >>> import numpy as np, minigrad.distributed as dist
    >>> dist.bcast_(np.arange(3.0), root=0)
    array([0., 1., 2.])
    """
    _world().Bcast(_buffer(x, "bcast_"), root=root)
    return x


def _op(op):
    MPI = _mpi()
    ops = {"+": MPI.SUM, "sum": MPI.SUM, "*": MPI.PROD, "prod": MPI.PROD, "max": MPI.MAX,
           "min": MPI.MIN, max: MPI.MAX, min: MPI.MIN, sum: MPI.SUM}
    if isinstance(op, MPI.Op):
        return op
    try:
        return ops[op]
    except (KeyError, TypeError):
        raise ValueError(f"allreduce_: unknown op {op!r}; use '+', '*', 'max', 'min', 'avg' "
                         "or an mpi4py MPI.Op") from None


def allreduce_(buf, op):
    """Combine array ``buf`` over all ranks, in place, with one buffer ``Allreduce``; returns
    ``buf``.  ``op``: ``'+'`` (or ``sum``), ``'*'``, ``'max'`` (or ``max``), ``'min'`` (or
    ``min``), ``'avg'`` (the sum divided by :func:`total_workers`), or an ``MPI.Op``.

    >>> import numpy as np, minigrad.distributed as dist
    >>> dist.allreduce_(np.array([1.0, 4.0]), "avg")     # one rank: unchanged
    array([1., 4.])
    """
    a = _buffer(buf, "allreduce_")
    comm = _world()
    comm.Allreduce(_mpi().IN_PLACE, a, op=_op("+" if op == "avg" else op))
    if op == "avg":
        a /= comm.Get_size()
    return buf


# -- layouts: what every rank must agree on before anything is summed or copied --------------

class LayoutMismatchError(ValueError):
    """Ranks whose parameters (names, shapes, dtypes) or optimisers differ: raised on every
    rank, naming the first difference, before anything is summed or copied.

    >>> issubclass(LayoutMismatchError, ValueError)
    True
    """


def _structure(opt) -> str:
    """``opt``'s chain as type names: ``Optimiser(ClipNorm, Adam)``, ``ApplyIfFinite(Adam)``."""
    if isinstance(opt, DistributedOptimiser):
        return f"DistributedOptimiser({_structure(opt.opt)})"
    if isinstance(opt, ApplyIfFinite):
        return f"ApplyIfFinite({_structure(opt.opt)})"
    if isinstance(opt, Optimiser):
        return f"Optimiser({', '.join(map(_structure, opt.os))})"
    return type(opt).__name__


def _layout(named: list, opt) -> list:
    """The lines every rank must agree on: the parameters and the optimiser's structure."""
    return [f"{len(named)} parameters",
            *(f"parameter {i} ({name}): shape {p.shape}, {p.dtype}"
              for i, (name, p) in enumerate(named)),
            f"optimiser {_structure(opt)}"]


def _agree(comm, layout: list, what: str) -> None:
    """Raise :class:`LayoutMismatchError` on every rank unless all ranks' ``layout`` is the
    same (a collective call: every rank gets every rank's layout, so all decide alike)."""
    layouts = comm.allgather(layout)    # (a few strings: the pickle-based call is right here)
    for rank, other in enumerate(layouts):
        if other == layouts[0]:
            continue
        for i in range(max(len(other), len(layouts[0]))):
            mine = layouts[0][i] if i < len(layouts[0]) else "nothing more"
            theirs = other[i] if i < len(other) else "nothing more"
            if mine != theirs:
                raise LayoutMismatchError(
                    f"{what}: rank {rank} has {theirs}, where rank 0 has {mine}; every rank "
                    "must build the same model and optimiser (nothing was summed or copied)")


def _hash(layout: list) -> int:
    """A 56-bit digest of ``layout`` (positive and exact in an int64 on every rank; Python's
    ``hash`` of a string differs between processes)."""
    digest = hashlib.blake2b("\n".join(layout).encode(), digest_size=7).digest()
    return int.from_bytes(digest, "little")


# -- moving whole states: parameters, optimiser state, checkpoints -----------------------------

def _share_file(comm, path: str | None, root: int) -> str:
    """The bytes of ``root``'s file ``path``, written to a temporary file on every rank (its
    path is returned; the caller removes it).  Two buffer ``Bcast`` calls: the size, then the
    bytes.  A file ``root`` cannot read raises on every rank."""
    size = np.zeros(1, np.int64)
    data = None
    if comm.Get_rank() == root:
        try:
            with open(path, "rb") as f:
                data = np.frombuffer(f.read(), np.uint8).copy()
            size[0] = data.size
        except OSError as err:
            size[0] = -1
            problem = f"{type(err).__name__}: {err}"
    comm.Bcast(size, root=root)
    if size[0] < 0:
        problem = comm.bcast(problem if comm.Get_rank() == root else None, root=root)
        raise OSError(f"rank {root} cannot read the checkpoint: {problem}")
    if data is None:
        data = np.empty(int(size[0]), np.uint8)
    comm.Bcast(data, root=root)
    fd, local = tempfile.mkstemp(suffix=".npz", prefix="minigrad-sync-")
    with os.fdopen(fd, "wb") as f:
        f.write(data.tobytes())
    return local


def synchronize_(model_or_params, opt=None, root: int = 0):
    """Make every rank's parameters, and ``opt``'s whole state (per-parameter arrays,
    scalars, hyperparameters, counters), equal to ``root``'s.  Returns ``model_or_params``.

    Call it once after building the model and optimiser, with the same structure on every
    rank: the layout (parameter names, shapes, dtypes and the optimiser's structure) is
    compared first, and ranks that differ raise :class:`LayoutMismatchError` on every rank,
    naming the first difference, before anything is copied.  The state travels as a
    checkpoint (:func:`minigrad.save` on ``root``, two buffer broadcasts, :func:`minigrad.load`
    elsewhere), so whatever a checkpoint restores bit for bit, this copies.

    >>> import minigrad as mg, minigrad.distributed as dist
    >>> m, opt = mg.Chain(mg.Dense(3, 2)), mg.Adam()
    >>> dist.synchronize_(m, opt) is m
    True
    """
    comm = _world()
    _agree(comm, _layout(checkpoint.named_params(model_or_params), opt), "synchronize_")
    if comm.Get_size() == 1:
        return model_or_params
    path = None
    with _whole_state(opt, model_or_params):
        if comm.Get_rank() == root:
            fd, path = tempfile.mkstemp(suffix=".npz", prefix="minigrad-sync-")
            os.close(fd)
            checkpoint.save(path, model_or_params, opt)
    try:
        local = _share_file(comm, path, root)
    finally:
        if path is not None:
            os.unlink(path)
    try:
        if comm.Get_rank() != root:
            with _checkpointing(opt):
                checkpoint.load(local, model_or_params, opt)
    finally:
        os.unlink(local)
    return model_or_params


def save(path, model, opt=None, *, extra=None, root: int = 0) -> None:
    """:func:`minigrad.save` on rank ``root`` only; every rank returns once the file is
    complete (a barrier), so a :func:`load` right after reads it.  Call it on every rank.

    >>> import os, tempfile, minigrad as mg, minigrad.distributed as dist
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> dist.save(path, {"W": mg.param([1.0, 2.0])}); os.path.exists(path)
    True
    """
    comm = _world()
    with _whole_state(opt, model):
        if comm.Get_rank() == root:
            checkpoint.save(path, model, opt, extra=extra)
    comm.Barrier()


def load(path, model, opt=None, *, root: int = 0):
    """:func:`minigrad.load` on every rank from the file that rank ``root`` reads (its bytes
    are broadcast, so the other ranks need not see ``path``); returns the ``extra`` data.
    Call it on every rank.

    >>> import os, tempfile, minigrad as mg, minigrad.distributed as dist
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> dist.save(path, {"W": mg.param([1.0, 2.0])}, extra={"step": 7})
    >>> W = mg.param([0.0, 0.0]); dist.load(path, {"W": W}), W
    ({'step': 7}, param([1., 2.]))
    """
    comm = _world()
    local = _share_file(comm, os.fspath(path), root)
    try:
        with _checkpointing(opt):
            return checkpoint.load(local, model, opt)
    finally:
        os.unlink(local)


# -- the optimiser ------------------------------------------------------------------------------

def shard_bounds(n: int, ranks: int) -> list:
    """Where each rank's slice of a flat buffer of ``n`` elements starts and ends with
    ``shard_state=True``: ``[0, e1, ..., n]``, rank ``r`` owning elements ``bounds[r]`` to
    ``bounds[r + 1]``.  Contiguous, in rank order, as even as possible: every rank gets
    ``n // ranks`` elements and the first ``n % ranks`` ranks one more.

    >>> shard_bounds(10, 2), shard_bounds(11, 2), shard_bounds(5, 3)
    ([0, 5, 10], [0, 6, 11], [0, 2, 4, 5])
    """
    base, extra = divmod(n, ranks)
    return [0, *itertools.accumulate(base + (r < extra) for r in range(ranks))]


class _Slices:
    """How the arrays of a flat buffer (``starts``: array ``j`` is elements ``starts[j]`` to
    ``starts[j + 1]``) lie across the ranks' slices (``bounds``, :func:`shard_bounds`), seen
    from rank ``rank``: its piece of each array, for the kernel, and the blocks of the
    arrays' norms (``block`` elements from each array's first, as
    :func:`minigrad.optimise.cpu.norms` defines them), for ClipNorm.

    Each block's parts are computed by one rank, its owner: the rank whose slice holds its
    first element.  A block that runs past its owner's slice ends in the next ranks' slices;
    each of them sends its head (its elements of a block that started before its slice), so
    the owner sums the whole block in the same order as one process, bit for bit.  The
    ranks' block parts, gathered in rank order, are the arrays' parts in order.

    >>> s = _Slices([0, 5, 12], [0, 6, 12], 1, 4)   # arrays of 5 and 7, split at 6, blocks of 4
    >>> s.pieces, s.owned.tolist(), s.heads.tolist()   # rank 1: a head of [6, 9) from block 2
    ([(0, 6, 1)], [0, 3, 4], [0, 3])
    """

    def __init__(self, starts, bounds, rank: int, block: int):
        starts, bounds = np.asarray(starts, np.int64), np.asarray(bounds, np.int64)
        self.rank, self.block = rank, block
        lo, hi = int(bounds[rank]), int(bounds[rank + 1])
        #: ``(start, stop, j)``: this rank's piece of array ``j``, in its slice's numbering.
        self.pieces = [(int(max(a, lo) - lo), int(min(b, hi) - lo), j)
                       for j, (a, b) in enumerate(zip(starts[:-1], starts[1:], strict=True))
                       if max(a, lo) < min(b, hi)]
        blocks = -(-np.diff(starts) // block)
        #: Array ``j``'s blocks are blocks ``first[j]`` to ``first[j + 1]``, in flat order.
        self.first = np.concatenate([[0], np.cumsum(blocks)])
        array = np.repeat(np.arange(blocks.size), blocks)
        begin = starts[:-1][array] + (np.arange(self.first[-1]) - self.first[:-1][array]) * block
        end = np.minimum(begin + block, starts[1:][array])
        #: Rank ``r`` owns blocks ``owned[r]`` to ``owned[r + 1]``: those starting in its slice.
        self.owned = np.searchsorted(begin, bounds)
        around = np.searchsorted(begin, bounds[:-1], "right") - 1   # the block of each first
        #: Each rank's head length (0 where its slice starts a block, or is empty).
        self.heads = np.array([
            min(b, end[g]) - a if g >= 0 and begin[g] < a < end[g] else 0
            for a, b, g in zip(bounds[:-1], bounds[1:], around, strict=True)], np.int64)
        # This rank's owned blocks as runs of whole blocks of one array (slice numbering), and
        # the one that runs past its slice (always its last).
        self.runs, self.cut = [], None
        o0, o1 = int(self.owned[rank]), int(self.owned[rank + 1])
        g = o0
        while g < o1:
            j = int(array[g])
            g1 = min(o1, int(self.first[j + 1]))
            whole = g1 - int(end[g1 - 1] > hi)
            if whole > g:
                self.runs.append((j, g - o0, whole - o0, int(begin[g]) - lo,
                                  int(end[whole - 1]) - lo))
            if whole < g1:
                self.cut = (j, whole - o0, int(begin[whole]) - lo, int(end[whole]) - hi)
            g = g1

    def _parts(self, part: np.ndarray, heads: np.ndarray, compute) -> np.ndarray:
        """This rank's owned blocks' parts, ``compute(view, j)`` giving one per block of a
        view of whole blocks of array ``j``: ``part`` is this rank's slice of the step,
        ``heads`` every rank's head, end to end."""
        out = np.zeros(int(self.owned[self.rank + 1] - self.owned[self.rank]))
        for j, k0, k1, a, b in self.runs:
            out[k0:k1] = compute(part[a:b], j)
        if self.cut is not None:
            # The rest of the block is the heads of the next ranks, which follow one another.
            j, k, a, rest = self.cut
            at = int(self.heads[:self.rank + 1].sum())
            out[k] = compute(np.concatenate([part[a:], heads[at:at + rest]]), j)[0]
        return out

    def norms(self, comm, delta: np.ndarray, p: float) -> list:
        """Every array's ``p``-norm (:func:`minigrad.optimise.cpu.norms`, bitwise the
        unsharded one) of the step whose slice on this rank is ``delta``, the same on every
        rank: an ``Allgatherv`` of the heads (when a block runs past a slice), then one of
        the block parts per round of :func:`~minigrad.optimise.cpu.norms`: the sums of
        squares for ``p = 2`` (then the largest elements and the scaled sums where squares
        overflow), the largest elements and the scaled sums for other ``p`` (``inf``: the
        largest elements only)."""
        heads = np.empty(int(self.heads.sum()), delta.dtype)
        if heads.size:
            comm.Allgatherv(delta[:self.heads[self.rank]],
                            [heads, (self.heads, np.cumsum(self.heads) - self.heads)])

        def gathered(compute) -> list:
            parts = np.empty(int(self.first[-1]))
            comm.Allgatherv(self._parts(delta, heads, compute),
                            [parts, (np.diff(self.owned), self.owned[:-1])])
            return [parts[a:b] for a, b in zip(self.first[:-1], self.first[1:], strict=True)]

        def sums(bigs: list) -> list:
            return gathered(lambda view, j: np.zeros(-(-view.size // self.block))
                            if bigs[j] is None else cpu.block_sums(view, p, bigs[j], self.block))

        return cpu.norms(p, len(self.first) - 1, sums,
                         lambda: gathered(lambda view, j: cpu.block_maxes(view, self.block)))


class _Average(Rule):
    """Multiply the step by ``factor`` (``1/N``): the first stage of a
    :class:`DistributedOptimiser`'s fused kernel, which turns the summed gradient into the
    mean with no pass of its own.

    >>> import numpy as np
    >>> _Average(0.5).apply_(np.zeros(2), np.array([2.0, 3.0]))
    array([1. , 1.5])
    """

    fields = (("factor", None, 1.0),)

    @staticmethod
    def math(d, x, factor):
        return d * factor

    def hypers(self, scalars, key, delta):
        return (self.factor,)


def _reached(grads: list, someone_missing: bool) -> np.ndarray:
    """Per parameter, whether some rank has its gradient (``grads`` being this rank's): a
    ``MAX`` ``Allreduce`` of flags when ``someone_missing`` (on every rank), else all ones."""
    reached = np.array([v is not None for v in grads], np.uint8)
    if someone_missing:
        _world().Allreduce(_mpi().IN_PLACE, reached, op=_mpi().MAX)
    return reached


def _check_shardable(opt, bucket_bytes) -> None:
    """Refuse what ``shard_state=True`` cannot do bit for bit like the unsharded step: a stage
    written in Python (it needs every parameter's whole step, where a rank runs the chain's
    kernels over its slice; an ``ApplyIfFinite`` is one unless it is outermost), a stage
    other than ClipNorm that needs a whole array's step, and ``bucket_bytes`` (the gradient
    goes in one ``Reduce_scatter``)."""
    if bucket_bytes is not None:
        raise ValueError("DistributedOptimiser: bucket_bytes splits the Allreduce; with "
                         "shard_state=True the gradient goes in one Reduce_scatter, so leave "
                         "bucket_bytes out")
    chain = Optimiser(_Average(1.0), opt.opt if type(opt) is ApplyIfFinite else opt)
    stages = chain.stages()
    fused = [rule for p in fused_passes(chain) for rule in p]
    for stage in stages:
        name = type(stage).__name__
        if not any(stage is rule for rule in fused):
            raise ValueError(
                f"DistributedOptimiser({_structure(opt)}, shard_state=True) is not supported: "
                f"{name} is a stage written in Python, which needs every parameter's whole "
                "step, and a sharded step runs the chain's kernels over this rank's slice "
                "(an ApplyIfFinite works outermost only: DistributedOptimiser(ApplyIfFinite("
                "...), shard_state=True)); use shard_state=False")
        if getattr(stage, "needs_whole_step", False) and not isinstance(stage, NormClip):
            raise ValueError(
                f"DistributedOptimiser({_structure(opt)}, shard_state=True) is not supported: "
                f"{name} needs each array's whole step, which no rank holds, and only "
                "ClipNorm's norms are computed across the ranks; use shard_state=False")


@contextlib.contextmanager
def _checkpointing(opt):
    """While open, ``opt`` (a sharded :class:`DistributedOptimiser`) may be saved or loaded:
    :func:`save` has gathered its state, :func:`load` and :func:`synchronize_` replace it on
    every rank (see ``DistributedOptimiser.state_dict``)."""
    if not isinstance(opt, DistributedOptimiser):
        yield
        return
    opt._whole = True
    try:
        yield
    finally:
        opt._whole = False


@contextlib.contextmanager
def _whole_state(opt, model):
    """While open, a :class:`DistributedOptimiser` ``opt`` with ``shard_state=True`` holds
    the whole state, as the unsharded one would: each state array of this rank's slice is
    gathered (a buffer ``Allgatherv``, on every rank) into one array over the whole flat
    buffer, and each parameter of ``model`` gets its part of it as its state, the slice's
    scalars with it.  On leaving, the slice's state is back as it was.  Anything else (and a
    sharded optimiser before its first step) passes through unchanged.  Call it on every
    rank."""
    sharded = isinstance(opt, DistributedOptimiser) and opt.shard_state
    if not sharded or opt._sharded is None:
        yield
        return
    buffer, bounds = opt._sharded[:2]
    shard, counts = opt._shard, np.diff(bounds)
    mine = {id(p): p for _, p in checkpoint.named_params(model)}
    if not all(i in mine for i in buffer.ids):
        raise ValueError(f"{len(set(buffer.ids) - set(mine))} of the {len(buffer.ids)} "
                         "parameters the sharded optimiser updates are not in the model "
                         "given; pass the model it trains")
    params = [mine[i] for i in buffer.ids]
    moved = []
    for rule in opt._rules():
        st = rule.state.get(shard)
        if st is None:
            continue
        wholes = []
        for a in st.arrays:
            whole = np.empty(buffer.data.size, a.dtype)
            _world().Allgatherv(a, [whole, (counts, bounds[:-1])])
            wholes.append(whole)
        del rule.state[shard]
        for p, a, b in zip(params, buffer.starts[:-1], buffer.starts[1:], strict=True):
            rule.state[p] = type(st)(tuple(w[a:b] for w in wholes), list(st.scalars), p.shape)
        moved.append((rule, st))
    try:
        with _checkpointing(opt):
            yield
    finally:
        for rule, st in moved:
            for p in params:
                del rule.state[p]
            rule.state[shard] = st


class DistributedOptimiser(AbstractOptimiser):
    """Wrap ``opt`` so that each step uses the gradient averaged over all ranks (Flux's
    ``DistributedOptimizer``).  ``DistributedOptimiser(opt, bucket_bytes=None,
    shard_state=False)``.

    ``update_(dopt, ps, gs)`` (what :func:`minigrad.train_` calls) sums ``gs`` over the ranks
    in place with one buffer ``Allreduce`` (``bucket_bytes``: the most bytes per call, the
    gradient then going in several pieces; default: all at once), then runs ``opt`` with a
    ``1/N`` stage fused in front of its first stage.  So every stage, ``ClipNorm`` and
    :class:`~minigrad.ApplyIfFinite` included, sees the averaged gradient, the same bits on
    every rank: a NaN on one rank is a NaN in the sum everywhere, and an ``ApplyIfFinite``
    inside skips the step on every rank.  Afterwards ``gs`` holds the sum over the ranks.

    * Chains go inside: ``DistributedOptimiser(Optimiser(ClipNorm(1.0), Adam()))``,
      ``DistributedOptimiser(ApplyIfFinite(Adam()))``.  The averaging must come before every
      stage, so a DistributedOptimiser refuses to be a stage of an ``Optimiser(...)``, to be
      wrapped by ``ApplyIfFinite`` (which would decide on one rank's gradient alone), and
      ``apply_`` (one parameter at a time).
    * A gradient that is ``None`` on some ranks counts as zeros there; one that is ``None``
      on every rank stays ``None`` and its parameter is left alone, as in one process.
    * Every step first checks with a 3-number ``Allreduce`` that all ranks have the same
      layout (parameters' shapes and dtypes, the optimiser's structure); ranks that differ
      raise :class:`LayoutMismatchError` on every rank and nothing is summed.
    * The parameters move into one flat buffer at the first step (as ``update_`` does), so
      later gradients land in one buffer and go in one call.  Host (NumPy) arrays only.
    * Checkpoints (:func:`save`, :func:`minigrad.save`) hold ``opt``'s state.

    ``shard_state=True`` (ZeRO-1): the same steps (bit for bit on 2 ranks; with more, MPI
    may order the sum differently), with each rank keeping ``opt``'s state for its own slice
    of the parameters' flat buffer only (rank ``r`` owns elements ``shard_bounds(n, N)[r]``
    to ``[r + 1]``), so the state costs ``1/N`` per rank.
    Each step is one ``Reduce_scatter`` of the flat gradient (each rank gets the sum of its
    slice), ``opt`` behind the ``1/N`` stage on that slice, and one in-place ``Allgatherv``
    of the parameters; ``gs`` is left as this rank's gradient.  Per-parameter scalars
    (Adam's ``βp``) advance alike on every rank.

    * ``ClipNorm`` (either kind, any ``p``) clips each parameter by the norm of its whole
      step, as unsharded: every rank sums the blocks of the norm
      (:func:`minigrad.optimise.cpu.norms`) that start in its slice, a block that a slice
      ends inside completed with the next rank's elements of it, and an ``Allgatherv`` of
      the block sums gives every rank every norm, bitwise the unsharded one (more rounds
      where squares overflow, and for ``p != 2``).  Its pass then runs piece by piece.
    * An outermost ``ApplyIfFinite`` decides on the summed gradient, as unsharded: each rank
      checks its slice, and a ``MAX`` ``Allreduce`` of one flag skips the step on every
      rank (no parameter, no state moves anywhere) when any slice holds a NaN or an
      infinity; with ``on_nonfinite="raise"`` every rank raises the same error.

    :func:`save` gathers the whole state first and writes the unsharded optimiser's file;
    :func:`load` and :func:`synchronize_` load the whole state and the next step keeps this
    rank's slice (``minigrad.save``/``load`` refuse a sharded optimiser that has state).  It
    refuses, when built, stages written in Python (an ``ApplyIfFinite`` inside a chain,
    ``AccumGrad``'s, your own), other rules that need a whole array's step, and
    ``bucket_bytes``; at the step, parameters of several dtypes and a gradient that is
    ``None`` on every rank.

    On one process (``total_workers() == 1``) it is ``opt`` with a ``×1`` stage, and the
    one rank's slice is everything:

    >>> import numpy as np, minigrad as mg, minigrad.distributed as dist
    >>> W = mg.param([1.0, 2.0])
    >>> dopt = dist.DistributedOptimiser(mg.Descent(0.1))
    >>> gs = mg.gradient(lambda: mg.sum(W * W), mg.Params([W]))
    >>> _ = mg.update_(dopt, mg.Params([W]), gs); W
    param([0.8, 1.6])
    >>> sharded = dist.DistributedOptimiser(mg.Descent(0.1), shard_state=True)
    >>> _ = mg.update_(sharded, mg.Params([W]), mg.gradient(lambda: mg.sum(W * W),
    ...                                                     mg.Params([W]))); W
    param([0.64, 1.28])
    >>> sharded
    DistributedOptimiser(Descent(eta=0.1), bucket_bytes=None, shard_state=True)
    >>> guarded = dist.DistributedOptimiser(mg.ApplyIfFinite(mg.Optimiser(
    ...     mg.ClipNorm(0.1), mg.Descent(1.0))), shard_state=True)
    >>> _ = mg.update_(guarded, mg.Params([W]), mg.gradient(lambda: mg.sum(W * W),
    ...                                                     mg.Params([W]))); W   # clipped
    param([0.59527864, 1.19055728])
    """

    def __init__(self, opt, bucket_bytes: int | None = None, shard_state: bool = False):
        if not isinstance(opt, AbstractOptimiser):
            raise TypeError(f"DistributedOptimiser: expected an optimiser to wrap, got {opt!r}")
        if isinstance(opt, DistributedOptimiser):
            raise TypeError("DistributedOptimiser: this optimiser averages already; wrap "
                            "the inner one once")
        if bucket_bytes is not None and (isinstance(bucket_bytes, bool) or not isinstance(
                bucket_bytes, (int, np.integer)) or bucket_bytes < 1):
            raise ValueError(f"DistributedOptimiser: bucket_bytes must be a positive number "
                             f"of bytes or None (the whole gradient), got {bucket_bytes!r}")
        if not isinstance(shard_state, bool):
            raise TypeError(f"DistributedOptimiser: shard_state must be True or False, got "
                            f"{shard_state!r}")
        if shard_state:
            _check_shardable(opt, bucket_bytes)
        self.opt = opt
        self.bucket_bytes = bucket_bytes
        self.shard_state = shard_state
        self._average = _Average(1.0 / total_workers())
        self._scaled = None         # Optimiser(self._average, <opt, or the guard's opt>)
        self._checked = None        # (buffer, structure, layout, digest), last hashed
        self._shard = None          # shard_state: this rank's slice, a trainable array
        self._sharded = None        # shard_state: (buffer, bounds, summed slice, _Slices)
        self._whole = False         # shard_state: the whole state is gathered (_whole_state)

    # A stage of a chain, or apply_, would average one array at a time.
    def stages(self) -> list:
        raise TypeError(
            "DistributedOptimiser must be the outermost optimiser, used as update_(dopt, ps, "
            "gs): it averages every gradient at once, before the first stage; put chains "
            "inside it, DistributedOptimiser(Optimiser(...)) or "
            "DistributedOptimiser(ApplyIfFinite(...))")

    #: ``ApplyIfFinite`` refuses to wrap an optimiser that communicates (see guard.py).
    collective = True

    def __getstate__(self) -> dict:
        """What ``copy`` and ``pickle`` keep: the wrapped optimiser and the settings; the
        scaled chain and the layout cache (which hold the parameters' flat buffer) are
        rebuilt at the next step."""
        return {**super().__getstate__(), "_scaled": None, "_checked": None,
                "_sharded": None}

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the wrapped optimiser (restored in place).  With
        ``shard_state=True`` this rank holds one slice of the state, so only this module's
        :func:`save` (which gathers the whole state first), :func:`load` and
        :func:`synchronize_`, called on every rank, take it; ``minigrad.save`` and
        ``minigrad.load`` refuse it once it has state."""
        if self.shard_state and not self._whole and self._shard is not None and any(
                self._shard in rule.state for rule in self._rules()):
            raise TypeError(
                "a DistributedOptimiser with shard_state=True holds only this rank's slice of "
                "the optimiser state: save and load it with minigrad.distributed.save and "
                "minigrad.distributed.load (called on every rank), which gather the whole "
                "state first")
        return {"opt": self.opt}

    def load_state_dict(self, state: dict) -> None:
        """Restore the wrapped optimiser; with ``shard_state=True`` its per-parameter state
        becomes this rank's slice at the next step."""
        self.opt = state["opt"]

    def __repr__(self) -> str:
        return (f"DistributedOptimiser({self.opt!r}, bucket_bytes={self.bucket_bytes}"
                f"{', shard_state=True' if self.shard_state else ''})")

    # -- the step ---------------------------------------------------------------------------------
    def _chain(self) -> tuple:
        """``(chain, guard)``: ``opt`` behind the ``1/N`` stage, and ``None``; or, for an
        outermost ``ApplyIfFinite`` (whose all-or-nothing check is over every parameter, so it
        decides before the chain runs), the optimiser it wraps behind the ``1/N`` stage, and
        the guard."""
        guard = self.opt if type(self.opt) is ApplyIfFinite else None
        inner = self.opt if guard is None else guard.opt
        if self._scaled is None or self._scaled.os[1] is not inner:
            # Kept from step to step: the flat group (the fused state) lives in it.
            self._scaled = Optimiser(self._average, inner)
        return self._scaled, guard

    def _rules(self) -> list:
        """The stages of the chain that runs after the sum (the holders of the state)."""
        return self._chain()[0].stages()

    def _runner(self):
        """What runs after the unsharded sum: the chain, behind a guard of the same setting
        as an outermost ``ApplyIfFinite``, its counters kept in the user's guard."""
        chain, guard = self._chain()
        if guard is None:
            return chain, None
        runner = ApplyIfFinite(chain, guard.on_nonfinite, model=guard.model)
        runner.skipped, runner.consecutive = guard.skipped, guard.consecutive
        return runner, guard

    def _digest(self, ps: Params, buffer) -> tuple:
        """(layout lines, digest) of ``ps`` under this optimiser, cached while the flat
        buffer and the optimiser's structure stay the same."""
        structure = _structure(self.opt)
        cached = self._checked
        if cached is not None and buffer is not None and cached[0] is buffer and (
                cached[1] == structure):
            return cached[2], cached[3]
        layout = [*_layout([(str(i), p) for i, p in enumerate(ps)], self.opt),
                  f"shard_state={self.shard_state}"]
        digest = _hash(layout)
        self._checked = (buffer, structure, layout, digest)
        return layout, digest

    def _allreduce(self, comm, flat: np.ndarray) -> None:
        MPI = _mpi()
        n = flat.size
        step = n if self.bucket_bytes is None else max(1, self.bucket_bytes // flat.itemsize)
        for a in range(0, n, step):
            comm.Allreduce(MPI.IN_PLACE, flat[a:a + step], op=MPI.SUM)

    def _guarded_update(self, x, g):
        """``update_(self, ps, gs)`` (called by :func:`minigrad.optimise.update_`)."""
        if not isinstance(x, (Params, list, tuple)) or not isinstance(g, Grads):
            raise TypeError(
                "update_(DistributedOptimiser, ...) takes the parameters and the Grads of "
                f"minigrad.gradient (update_(dopt, ps, gs)), got {_describe(x)} and "
                f"{_describe(g)}")
        ps = x if isinstance(x, Params) else Params(x)
        comm = _world()
        MPI = _mpi()
        buffer = g.buffer
        if buffer is None or type(g.flat) is not np.ndarray or not buffer.holds(ps):
            buffer = None       # (gathered below, which also refuses GPU parameters)
        layout, digest = self._digest(ps, buffer)
        grads = [g[p] for p in ps]
        # [digest, -digest, any None here] → max over ranks: [max, -min, any None anywhere].
        meta = np.array([digest, -digest, any(v is None for v in grads)], np.int64)
        comm.Allreduce(MPI.IN_PLACE, meta, op=MPI.MAX)
        if meta[0] != -meta[1]:
            _agree(comm, layout, "DistributedOptimiser")
        if self.shard_state:
            self._sharded_step(comm, ps, g, grads, buffer, bool(meta[2]))
            return x
        if buffer is not None:
            self._allreduce(comm, g.flat)
            flat, views = g.flat, None
        else:
            flat, buffer, views = self._summed(comm, ps, grads)
        if meta[2] or views is not None:
            self._fill(comm, ps, g, grads, views, flat, buffer, bool(meta[2]))
        runner, guard = self._runner()
        try:
            update_(runner, ps, g)
        finally:
            if guard is not None:
                guard.skipped, guard.consecutive = runner.skipped, runner.consecutive
        return x

    @staticmethod
    def _gathered(ps: Params, grads: list) -> tuple:
        """The gradients (zeros for ``None``) gathered into one array per dtype:
        ``(buffer, [(members, flat), ...])``, ``members`` the positions in ``ps`` of that
        dtype's parameters.  Parameters of one dtype move into a
        :class:`~minigrad.tracker.FlatBuffer` first (``buffer``, else ``None``; ``flat`` is
        then laid out alike), so that later gradients land in one buffer."""
        for p in ps:
            if type(p.data) is not np.ndarray:
                raise TypeError(f"DistributedOptimiser: {_describe(p)} is not on the host; "
                                "MPI sums host (NumPy) arrays only")
        dtypes = list(dict.fromkeys(p.dtype for p in ps))
        buffer = None
        if len(dtypes) == 1 and all(type(p) is Param for p in ps):
            buffer = flat_buffer(list(ps))
        flats = []
        for dtype in dtypes:
            members = [i for i, p in enumerate(ps) if p.dtype == dtype]
            parts = [np.zeros(ps[i].size, dtype) if grads[i] is None
                     else np.reshape(grads[i], -1) for i in members]
            flats.append((members, np.concatenate(parts).astype(dtype, copy=False)))
        return buffer, flats

    def _summed(self, comm, ps: Params, grads: list) -> tuple:
        """The gradients gathered (:meth:`_gathered`) and summed over the ranks:
        ``(flat, buffer, views)``, ``flat`` the summed buffer laid out like ``buffer`` (both
        ``None`` for several dtypes), ``views`` each parameter's summed gradient."""
        buffer, flats = self._gathered(ps, grads)
        views = [None] * len(ps)
        flat = None
        for members, summed in flats:
            self._allreduce(comm, summed)
            start = 0
            for i in members:
                views[i] = summed[start:start + ps[i].size].reshape(ps[i].shape)
                start += ps[i].size
            flat = summed
        return (flat, buffer, views) if buffer is not None else (None, None, views)

    def _sharded_step(self, comm, ps: Params, g: Grads, grads: list, buffer,
                      someone_missing: bool) -> None:
        """The step with ``shard_state=True``: one ``Reduce_scatter`` gives this rank the
        sum of its slice of the flat gradient, ``opt`` behind the ``1/N`` stage updates its
        slice of the parameters (its state covers that slice only), and one in-place
        ``Allgatherv`` brings every rank's slice to every rank.  ``g`` is left as it was."""
        MPI = _mpi()
        if someone_missing:
            reached = _reached(grads, True)
            if not reached.all():
                i = int(np.argmin(reached))
                raise ValueError(
                    f"DistributedOptimiser(shard_state=True): parameter {i} of {len(ps)} "
                    f"({_describe(ps[i])}) has no gradient on any rank; a sharded step updates "
                    "every parameter in one kernel (Adam's momentum would still move it), so "
                    "leave it out of the parameters you pass, or use shard_state=False")
        if buffer is None or someone_missing:
            buffer, flats = self._gathered(ps, grads)
            if buffer is None:
                raise TypeError("DistributedOptimiser(shard_state=True): the parameters must "
                                "be trainable arrays of one dtype (one flat buffer to split), "
                                f"got {sorted({str(p.dtype) for p in ps})}")
            flat = flats[0][1]
        else:
            flat = g.flat
        shard, bounds, summed = self._shard_of(comm, buffer)
        self._adopt(ps, bounds[comm.Get_rank()])
        counts = np.diff(bounds)
        comm.Reduce_scatter(flat, summed, recvcounts=counts, op=MPI.SUM)
        chain, guard = self._chain()
        if guard is not None and not self._finite_everywhere(comm, guard, ps, summed):
            return          # skipped on every rank: no parameter and no state changed anywhere
        update_pieces(chain, shard, summed, partial(self._clip_pieces, comm, ps))
        if guard is not None:
            guard.consecutive = 0
        comm.Allgatherv(MPI.IN_PLACE, [buffer.data, (counts, bounds[:-1])])

    def _finite_everywhere(self, comm, guard: ApplyIfFinite, ps: Params,
                           summed: np.ndarray) -> bool:
        """Whether the summed gradient, of which this rank holds ``summed``, is finite
        everywhere: one ``MAX`` ``Allreduce`` of "not here", so every rank decides alike, as
        the unsharded guard does on the whole sum.  If not, ``guard`` counts the skip, or
        (``on_nonfinite='raise'``) every rank raises naming the first such parameter, with its
        NaN and infinite values counted over the ranks (a ``SUM`` ``Allreduce``)."""
        MPI = _mpi()
        bad = np.array([not all_finite(summed)], np.uint8)
        comm.Allreduce(MPI.IN_PLACE, bad, op=MPI.MAX)
        if not bad[0]:
            return True
        if guard.on_nonfinite == "raise":
            counts = np.zeros((len(ps), 2), np.int64)
            for a, b, j in self._sharded[3].pieces:
                counts[j] = np.isnan(summed[a:b]).sum(), np.isinf(summed[a:b]).sum()
            comm.Allreduce(MPI.IN_PLACE, counts, op=MPI.SUM)
            j = int(np.flatnonzero(counts.any(axis=1))[0])
            guard.refuse(ps[j], f"parameter {j} of {len(ps)}", int(counts[j, 0]),
                         int(counts[j, 1]), ps[j].size)
        guard.skip()
        return False

    def _clip_pieces(self, comm, ps: Params, rule: NormClip, delta: np.ndarray) -> list:
        """``pieces_of`` for :func:`~minigrad.optimise.step.update_pieces` on this rank's
        slice, whose step so far is ``delta``: every parameter's norm, computed across the
        ranks (:class:`_Slices`), gives its hyperparameters, on every rank and in order (a
        refusal, ``ClipNorm(throw=True)``'s, names the same parameter everywhere); this rank's
        pieces get theirs."""
        slices = self._sharded[3]
        hypers = [rule.norm_hypers(norm, p)
                  for norm, p in zip(slices.norms(comm, delta, rule.p), ps, strict=True)]
        return [(a, b, hypers[j]) for a, b, j in slices.pieces]

    def _adopt(self, ps: Params, start: int) -> None:
        """Turn the wrapped rules' per-parameter state for ``ps`` (a checkpoint's, loaded by
        :func:`load` or :func:`synchronize_`) into the state of this rank's slice, which
        starts at element ``start`` of the flat buffer, and drop it: the checkpoint's
        scatter, which needs no communication (every rank loaded the whole file)."""
        shard = self._shard
        for rule in self._rules():
            if len(rule.state) == (shard in rule.state):
                continue        # (the steady state: the slice's state alone, or none)
            states = [rule.state.get(p) for p in ps]
            if all(st is None for st in states):
                continue
            if any(st is None for st in states) or any(
                    st.scalars != states[0].scalars for st in states):
                raise ValueError(
                    f"DistributedOptimiser(shard_state=True): {type(rule).__name__} has state "
                    "for some parameters only, or scalars that differ between them; a sharded "
                    "optimiser keeps one state for the whole flat buffer")
            rule.state[shard] = type(states[0])(
                tuple(np.concatenate([st.arrays[j] for st in states])[start:start + shard.size]
                      for j in range(len(states[0].arrays))),
                list(states[0].scalars), shard.shape)
            for p in ps:
                del rule.state[p]

    def _shard_of(self, comm, buffer) -> tuple:
        """``(shard, bounds, summed)`` for the flat buffer ``buffer``: this rank's slice of
        it as a trainable array (one kept from step to step, as the wrapped optimiser keys
        its state by it), :func:`shard_bounds`, and a buffer for the slice's summed
        gradient; ``self._sharded`` keeps them with the :class:`_Slices` of the buffer."""
        cached = self._sharded
        if cached is not None and cached[0] is buffer:
            return self._shard, cached[1], cached[2]
        bounds = shard_bounds(buffer.data.size, comm.Get_size())
        rank = comm.Get_rank()
        part = buffer.data[bounds[rank]:bounds[rank + 1]]
        if self._shard is None:
            self._shard = Param(part)
        elif self._shard.size != part.size:
            raise ValueError(
                f"DistributedOptimiser(shard_state=True): this rank's slice had "
                f"{self._shard.size} elements and would now have {part.size} (the parameters "
                "changed); its optimiser state is for the old slice: use a new "
                "DistributedOptimiser for new parameters")
        else:
            self._shard.data = part     # (the parameters moved to a new flat buffer)
        self._sharded = (buffer, bounds, np.empty_like(part),
                         _Slices(buffer.starts, bounds, rank, cpu.NORM_BLOCK))
        return self._shard, bounds, self._sharded[2]

    def _fill(self, comm, ps: Params, g: Grads, grads: list, views, flat, buffer,
              someone_missing: bool) -> None:
        """Point ``g`` at the summed gradients: a parameter some rank reached gets its part of
        the sum (zeros from the ranks it was ``None`` on), one no rank reached stays ``None``;
        ``g.flat``/``g.buffer`` then describe the summed buffer (when there is one)."""
        reached = _reached(grads, someone_missing)
        if views is None:
            starts = buffer.starts
            views = [flat[starts[i]:starts[i + 1]].reshape(p.shape) for i, p in enumerate(ps)]
        for p, view, anywhere in zip(ps, views, reached, strict=True):
            g[p] = view if anywhere else None
        g._land(flat, buffer)


# -- data ---------------------------------------------------------------------------------------

class DistributedDataContainer:
    """This rank's part of ``data`` (Flux's ``DistributedDataContainer``): a sequence of the
    items ``data[r], data[r + N], data[r + 2N], ...`` for rank ``r`` of ``N``.

    ``data`` is anything with ``len`` and integer indexing (a list of batches, a ``range``).
    Every rank gets ``len(data) // N`` items, so that every rank takes the same number of
    steps (a rank with one step more would wait for the others forever); the last
    ``len(data) % N`` items are left out, on every rank.  Step ``k`` of an ``N``-rank run
    thus uses items ``kN .. kN + N - 1``: the same items, in the same order, as one process
    that averages the gradients of ``N`` consecutive items per step.  Shuffle ``data`` with
    the same seed on every rank (a different seed each epoch leaves out different items).

    >>> import minigrad.distributed as dist
    >>> part = dist.DistributedDataContainer(list("abcde"))     # one rank: everything
    >>> len(part), list(part)
    (5, ['a', 'b', 'c', 'd', 'e'])
    """

    def __init__(self, data):
        if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
            raise TypeError("DistributedDataContainer: data must have len() and integer "
                            f"indexing (a list of batches, say), got {_describe(data)}")
        self.data = data
        self.rank, self.size = local_rank(), total_workers()

    def __len__(self) -> int:
        return len(self.data) // self.size

    def __getitem__(self, i: int):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} of this rank's {n}")
        return self.data[(i % n) * self.size + self.rank]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return (f"DistributedDataContainer(<{len(self)} of {len(self.data)} items: rank "
                f"{self.rank} of {self.size}>)")

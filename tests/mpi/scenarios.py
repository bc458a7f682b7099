"""Scenarios run by tests/test_distributed.py as ``mpiexec -n 2 python -m mpi4py
tests/mpi/scenarios.py NAME [ARGS]``.  Each prints ``rank R: ...`` lines that the test reads;
a failed check raises (and ``-m mpi4py`` then ends the job with a non-zero code)."""

from __future__ import annotations

import copy
import hashlib
import os
import sys
import time

import numpy as np

import minigrad as mg
import minigrad.distributed as dist
from minigrad.optimise import cpu, rules_extra

RANK, SIZE = dist.local_rank(), dist.total_workers()


def say(*args) -> None:
    # One write per line: the ranks share mpiexec's output, and separate writes interleave.
    sys.stdout.write(" ".join([f"rank {RANK}:", *map(str, args)]) + "\n")
    sys.stdout.flush()


def model(hidden: int = 16, dtype: str = "float32"):
    # The same seed on every rank: then synchronize_ has nothing to change, and the test of
    # synchronize_ below changes rank 1's values on purpose.
    rng = np.random.default_rng(0)
    m = mg.Chain(mg.Dense(8, hidden, mg.relu), mg.Dense(hidden, 4))
    for p in mg.params(m):
        p.data = (rng.standard_normal(p.shape).astype(np.float32) * 0.5).astype(dtype)
    return m


def batches(n: int, size: int = 16) -> list:
    """``n`` deterministic (x, y) half-batches."""
    rng = np.random.default_rng(1)
    return [(rng.standard_normal((8, size)).astype(np.float32),
             rng.standard_normal((4, size)).astype(np.float32)) for _ in range(n)]


def loss_of(m):
    return lambda x, y: mg.losses.mse(m(x), y)


def digest(ps) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(p.data).tobytes()
                                   for p in ps)).hexdigest()[:16]


def same_on_every_rank(ps, what: str) -> str:
    d = digest(ps)
    everyone = dist._world().allgather(d)
    if len(set(everyone)) != 1:
        raise AssertionError(f"{what}: parameters differ across ranks: {everyone}")
    return d


#: The first ClipNorm's threshold and p, by rule: the parameters' norms are 1.4 to 7, so
#: some parameters are clipped and others not.
CLIP = {"clip": (2.5, 2), "pclip": (2.0, 3)}


def rule(name: str):
    if name == "adam":
        return mg.Adam(0.01)
    if name == "clip":       # ClipNorm must see the averaged gradient
        return mg.Optimiser(mg.ClipNorm(CLIP[name][0]), mg.Adam(0.01))
    if name == "decay":
        return mg.Optimiser(mg.WeightDecay(0.1), mg.Adam(0.01))
    if name == "pclip":     # p-norms (3 and inf): two rounds of block parts; three passes
        return mg.Optimiser(mg.WeightDecay(0.1), rules_extra.ClipNorm(*CLIP[name]),
                            mg.Adam(0.01), rules_extra.ClipNorm(0.005, np.inf))
    raise ValueError(name)


def clipped(name: str, ps, gs) -> int:
    """How many parameters the first ClipNorm of ``rule(name)`` clips in the step that
    ``update_`` is about to take with this rank's gradients ``gs``."""
    if name not in CLIP:
        return 0
    average = [dist.allreduce_(np.array(gs[p]), "+") * p.dtype.type(1 / SIZE) for p in ps]
    if name == "pclip":     # WeightDecay comes first
        average = [a + p.dtype.type(0.1) * p.data for a, p in zip(average, ps, strict=True)]
    thresh, p = CLIP[name]
    return sum(cpu.pnorm(a, p) > thresh for a in average)


def equal(name: str, steps: str, bucket: str) -> None:
    """2 ranks with train_ against one process averaging the same two half-batches per step,
    bitwise; parameters equal across ranks after every step."""
    steps = int(steps)
    m = model()
    reference = copy.deepcopy(m)
    dist.synchronize_(m)
    data = batches(SIZE * steps)
    ps = mg.params(m)
    dopt = dist.DistributedOptimiser(rule(name),
                                     bucket_bytes=None if bucket == "none" else int(bucket))
    checked = []
    mg.train_(loss_of(m), ps, dist.DistributedDataContainer(data), dopt,
              cb=lambda: checked.append(same_on_every_rank(ps, f"step {len(checked) + 1}")))
    assert len(checked) == steps, checked
    if RANK == 0:
        # One process: the gradients of items kN .. kN+N-1, summed in rank order and halved.
        rps, ropt, rloss = mg.params(reference), rule(name), loss_of(reference)
        for k in range(steps):
            gs = [mg.gradient(lambda x=x, y=y: rloss(x, y), rps)
                  for x, y in data[k * SIZE:(k + 1) * SIZE]]
            for p in rps:
                total = gs[0][p].copy()
                for other in gs[1:]:
                    total += other[p]
                gs[0][p][...] = total * np.float32(1 / SIZE)
            mg.update_(ropt, rps, gs[0])
        assert digest(rps) == digest(ps), (digest(rps), digest(ps))
    say(f"equal {name} after {steps} steps, digest {digest(ps)}")


def none_gradients() -> None:
    """A gradient None on rank 1 only counts as zeros; None on every rank leaves the
    parameter (and the optimiser's state for it) alone."""
    W, b, unused = (mg.param(np.full(3, v, np.float32)) for v in (1.0, 2.0, 3.0))
    ps = mg.Params([W, b, unused])
    dopt = dist.DistributedOptimiser(mg.Descent(0.5))
    for _ in range(2):      # the first step gathers, the second uses the flat buffer
        if RANK == 0:
            gs = mg.gradient(lambda: mg.sum(W * W) + mg.sum(b), ps)    # W: 2W, b: 1
        else:
            gs = mg.gradient(lambda: mg.sum(3 * W), ps)                # W: 3, b: None
        assert gs[unused] is None
        before_W, before_b = W.data.copy(), b.data.copy()
        mg.update_(dopt, ps, gs)
        np.testing.assert_array_equal(W.data, before_W - 0.5 * (2 * before_W + 3) / 2)
        np.testing.assert_array_equal(b.data, before_b - 0.5 * (1 + 0) / 2)
        np.testing.assert_array_equal(unused.data, np.full(3, 3.0, np.float32))
        assert gs[unused] is None and unused not in dopt.opt.state
    same_on_every_rank(ps, "none")
    # Sharded: the same steps (the first gathers, the second finds b None on rank 1 again).
    sW, sb = mg.param(np.full(3, 1.0, np.float32)), mg.param(np.full(3, 2.0, np.float32))
    sps = mg.Params([sW, sb])
    sopt = dist.DistributedOptimiser(mg.Descent(0.5), shard_state=True)
    for _ in range(2):
        if RANK == 0:
            gs = mg.gradient(lambda: mg.sum(sW * sW) + mg.sum(sb), sps)
        else:
            gs = mg.gradient(lambda: mg.sum(3 * sW), sps)
        mg.update_(sopt, sps, gs)
    assert (sW.data.tolist(), sb.data.tolist()) == (W.data.tolist(), b.data.tolist())
    same_on_every_rank(sps, "none, sharded")
    say("none ok", W.data.tolist(), b.data.tolist())


def utilities() -> None:
    """bcast_, allreduce_, DistributedDataContainer's split, synchronize_ of values and state,
    and a model of two dtypes (one summed buffer per dtype), each against known values."""
    a = np.array([RANK + 1.0, -(RANK + 1.0)])
    for op, want in (("+", [3, -3]), ("avg", [1.5, -1.5]), ("max", [2, -1]), ("min", [1, -2]),
                     ("*", [2, 2])):
        got = dist.allreduce_(a.copy(), op)
        assert got.tolist() == want, (op, got)
    b = dist.bcast_(np.full(3, float(RANK)), root=1)
    assert b.tolist() == [1.0, 1.0, 1.0], b
    assert list(dist.DistributedDataContainer(range(7))) == [[0, 2, 4], [1, 3, 5]][RANK]

    # synchronize_: rank 1 starts from other values, another eta and its own Adam state.
    m = model()
    opt = mg.Adam(0.01)
    x, y = batches(2)[RANK]
    mg.update_(opt, mg.params(m), mg.gradient(lambda: loss_of(m)(x, y), mg.params(m)))
    if RANK == 1:
        for p in mg.params(m):
            p.data += 1
        opt.eta = 0.5
    state = lambda: [opt.state[p][i] for p in mg.params(m) for i in range(2)]  # noqa: E731
    root_values = dist._world().bcast((digest(mg.params(m)), digest(state()), opt.eta), root=0)
    dist.synchronize_(m, opt)
    assert (digest(mg.params(m)), digest(state()), opt.eta) == root_values
    assert opt.state[mg.params(m)[0]].scalars == [0.9 ** 2, 0.999 ** 2]

    # Two dtypes: each summed in its own buffer; Descent(1) steps by the mean gradient.
    W = mg.param(np.full(2, 1.0, np.float32))
    v = mg.param(np.full(3, 1.0, np.float64))
    ps = mg.Params([W, v])
    gs = mg.gradient(lambda: mg.sum(W * (RANK + 1.0)) + mg.sum(v * (RANK + 3.0)), ps)
    mg.update_(dist.DistributedOptimiser(mg.Descent(1.0)), ps, gs)
    assert W.data.tolist() == [-0.5, -0.5] and v.data.tolist() == [-2.5, -2.5, -2.5]
    say("utilities ok")


def nan_skips() -> None:
    """A NaN in rank 1's gradient at step 3 skips that step on both ranks."""
    m = model()
    ps = mg.params(m)
    guard = mg.ApplyIfFinite(mg.Adam(0.01))
    dopt = dist.DistributedOptimiser(guard)
    data = batches(SIZE * 5)
    part = dist.DistributedDataContainer(data)
    for k, (x, y) in enumerate(part):
        gs = mg.gradient(lambda x=x, y=y: loss_of(m)(x, y), ps)
        if k == 2 and RANK == 1:
            gs[ps[0]][0, 0] = np.nan
        before = digest(ps)
        mg.update_(dopt, ps, gs)
        assert (digest(ps) == before) == (k == 2), k
        same_on_every_rank(ps, f"step {k + 1}")
    assert (guard.skipped, guard.consecutive) == (1, 0), (guard.skipped, guard.consecutive)
    say(f"skipped {guard.skipped} of {len(part)}")


def sharded_guard(steps: str) -> None:
    """``DistributedOptimiser(ApplyIfFinite(Optimiser(ClipNorm, Adam)), shard_state=True)``
    against the unsharded one: a NaN that rank 1 puts into an element of rank 0's slice (step
    2), and an inf that rank 0 puts into rank 1's (step 4), skip those steps on both ranks
    (each rank alone sees nothing wrong in its own slice of the sum); bitwise equal
    parameters, counters and Adam state after every step.  Then ``on_nonfinite='raise'``:
    both ranks raise the same error, naming the parameter and the values over both ranks."""
    steps = int(steps)
    m, u = model(), model()
    ps, ups = mg.params(m), mg.params(u)
    n = sum(p.size for p in ps)
    bounds = dist.shard_bounds(n, SIZE)

    def chain(net):
        return mg.ApplyIfFinite(mg.Optimiser(mg.ClipNorm(0.05), mg.Adam(0.01)), model=net)

    sopt = dist.DistributedOptimiser(chain(m), shard_state=True)
    uopt = dist.DistributedOptimiser(chain(u))
    part = dist.DistributedDataContainer(batches(SIZE * steps))
    # The last parameter lies in rank 1's slice, the first one's first element in rank 0's.
    assert 0 < bounds[1] <= n - ps[-1].size, bounds
    bad = {1: (1, 0, np.nan), 3: (0, len(ps) - 1, np.inf)}   # step: rank, parameter, value
    for k, (x, y) in enumerate(part):
        sgs = mg.gradient(lambda x=x, y=y: loss_of(m)(x, y), ps)
        ugs = mg.gradient(lambda x=x, y=y: loss_of(u)(x, y), ups)
        if k in bad and bad[k][0] == RANK:
            j = bad[k][1]
            sgs[ps[j]].reshape(-1)[0] = bad[k][2]
            ugs[ups[j]].reshape(-1)[0] = bad[k][2]
        before = digest(ps)
        mg.update_(sopt, ps, sgs)
        mg.update_(uopt, ups, ugs)
        d = same_on_every_rank(ps, f"guarded step {k + 1}")
        assert d == digest(ups), f"step {k + 1}: sharded {d}, unsharded {digest(ups)}"
        assert (d == before) == (k in bad), f"step {k + 1}: skipped {d == before}"
        counters = (sopt.opt.skipped, sopt.opt.consecutive)
        assert counters == (uopt.opt.skipped, uopt.opt.consecutive), counters
    adam = sopt._rules()[-1]
    [state] = adam.state.values()
    mine = bounds[RANK + 1] - bounds[RANK]
    assert [a.size for a in state.arrays] == [mine, mine], [a.size for a in state.arrays]
    taken = steps - len(bad)
    # Adam's βp advanced once per step taken, as unsharded: the skipped steps left it alone.
    assert state.scalars == uopt._rules()[-1].state[ups[0]].scalars, state.scalars
    assert np.allclose(state.scalars, [0.9 ** (taken + 1), 0.999 ** (taken + 1)]), taken
    # on_nonfinite="raise": the same refusal on both ranks, nothing changed.
    errors = []
    x, y = part[0]
    for opt, net, label in ((sopt, m, "sharded"), (uopt, u, "unsharded")):
        opt.opt.on_nonfinite = "raise"
        params = mg.params(net)
        gs = mg.gradient(lambda net=net: loss_of(net)(x, y), params)
        if RANK == 1:
            gs[params[0]].reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
        before = digest(params)
        try:
            mg.update_(opt, params, gs)
        except mg.NonFiniteGradientError as err:
            assert digest(params) == before, f"{label}: a parameter changed"
            errors.append(str(err))
        else:
            raise AssertionError(f"{label}: no NonFiniteGradientError")
    assert errors[0] == errors[1], errors
    say(f"sharded guard skipped {sopt.opt.skipped} of {steps}, consecutive "
        f"{sopt.opt.consecutive}, state {mine} of {n} per moment, digest {d}; {errors[0]}")


def mismatch(where: str) -> None:
    """Ranks with different models: LayoutMismatchError on every rank, at synchronize_ or at
    the first step (equal element counts: (4, 6) against (6, 4))."""
    shape = (4, 6) if RANK == 0 else (6, 4)
    W = mg.param(np.ones(shape, np.float32))
    b = mg.param(np.ones(4, np.float32))
    ps = mg.Params([W, b])
    try:
        if where == "synchronize":
            dist.synchronize_(ps, mg.Adam())
        else:
            dopt = dist.DistributedOptimiser(mg.Adam())
            gs = mg.gradient(lambda: mg.sum(W) + mg.sum(b), ps)
            mg.update_(dopt, ps, gs)
    except dist.LayoutMismatchError as err:
        assert np.all(W.data == 1), "a parameter changed"
        say(f"LayoutMismatchError: {err}")
        return
    raise AssertionError("no LayoutMismatchError")


def fault(how: str) -> None:
    """Rank 1 fails at its third step; rank 0 would wait in the next Allreduce."""
    m = model()
    ps = mg.params(m)
    dopt = dist.DistributedOptimiser(mg.Adam(0.01))
    for k, (x, y) in enumerate(dist.DistributedDataContainer(batches(SIZE * 1000))):
        if k == 2 and RANK == 1:
            print(f"FAULT {how} at {time.time():.3f}", file=sys.stderr, flush=True)
            if how == "raise":
                raise RuntimeError("a failure on rank 1")
            if how == "exit":
                sys.exit(3)
            if how == "kill":
                os.kill(os.getpid(), 9)
            if how == "hang":
                time.sleep(3600)
        mg.update_(dopt, ps, mg.gradient(lambda x=x, y=y: loss_of(m)(x, y), ps))
    raise AssertionError("the loop ended")


def resume(phase: str, path: str, steps: str) -> None:
    """``full``: ``steps`` steps, a checkpoint (rank 0) after half of them.  ``resume``: load
    it on every rank and take the second half.  Both print the final digest."""
    steps = int(steps)
    half = steps // 2
    m = model()
    ps = mg.params(m)
    dopt = dist.DistributedOptimiser(mg.Optimiser(mg.ExpDecay(0.5, 0.5, 3, 1e-4), mg.Adam()))
    dist.synchronize_(m, dopt)
    part = dist.DistributedDataContainer(batches(SIZE * steps))
    start = 0
    if phase == "resume":
        start = dist.load(path, m, dopt)["step"]
        assert start == half, start
    for k in range(start, steps):
        x, y = part[k]
        mg.update_(dopt, ps, mg.gradient(lambda x=x, y=y: loss_of(m)(x, y), ps))
        if phase == "full" and k + 1 == half:
            dist.save(path, m, dopt, extra={"step": half})
    say(f"{phase} digest {same_on_every_rank(ps, phase)}")


def sharded(name: str, steps: str, hidden: str, folder: str, block: str = "0",
            dtype: str = "float32") -> None:
    """``shard_state=True`` against the unsharded DistributedOptimiser on the same data:
    bitwise equal parameters after every step, equal on both ranks; each rank's optimiser
    state covers its slice only.  Halfway, both save a checkpoint (the same file), the
    sharded one is synchronize_d (gathered, loaded, scattered); at the end a fresh sharded
    optimiser loads the checkpoint and retakes the second half, bitwise.  ``block``: the
    norm's block size for this run (0: the default), small so that ClipNorm's parameters
    span several blocks and the shard bound cuts one.  ``dtype``: the parameters' (float64
    keeps ClipNorm's scale to the last bit of the norm)."""
    steps, hidden = int(steps), int(hidden)
    if int(block):
        cpu.NORM_BLOCK = int(block)
    half = steps // 2
    m, u = model(hidden, dtype), model(hidden, dtype)
    ps, ups = mg.params(m), mg.params(u)
    n = sum(p.size for p in ps)
    bounds = dist.shard_bounds(n, SIZE)
    sopt = dist.DistributedOptimiser(rule(name), shard_state=True)
    uopt = dist.DistributedOptimiser(rule(name))
    part = dist.DistributedDataContainer(batches(SIZE * steps))
    paths = {kind: os.path.join(folder, f"{kind}.npz") for kind in ("sharded", "unsharded")}
    clips = 0
    for k, (x, y) in enumerate(part):
        mg.update_(sopt, ps, mg.gradient(lambda x=x, y=y: loss_of(m)(x, y), ps))
        ugs = mg.gradient(lambda x=x, y=y: loss_of(u)(x, y), ups)
        clips += clipped(name, ups, ugs)
        mg.update_(uopt, ups, ugs)
        d = same_on_every_rank(ps, f"sharded step {k + 1}")
        assert d == digest(ups), f"step {k + 1}: sharded {d}, unsharded {digest(ups)}"
        if k + 1 == half:
            dist.save(paths["sharded"], m, sopt, extra={"step": half})
            dist.save(paths["unsharded"], u, uopt, extra={"step": half})
            dist.synchronize_(m, sopt)
    # The state: one entry per rule, for this rank's slice; none for the model's parameters.
    stages = sopt._scaled.stages()
    mine = bounds[RANK + 1] - bounds[RANK]
    sizes = sorted({a.size for r in stages for st in r.state.values() for a in st.arrays})
    assert sizes == [mine], (sizes, mine)
    assert not any(p in r.state for r in stages for p in ps)
    # Adam's βp: as unsharded, and the same on every rank.
    scalars = stages[-1].state[sopt._shard].scalars
    assert scalars == uopt._scaled.stages()[-1].state[ups[0]].scalars, scalars
    assert len(set(map(tuple, dist._world().allgather(scalars)))) == 1
    held = sum(a.size for r in stages for st in r.state.values() for a in st.arrays)
    whole = sum(a.size for r in uopt._scaled.stages() for st in r.state.values()
                for a in st.arrays)
    if RANK == 0:
        files = [np.load(paths[kind]) for kind in ("sharded", "unsharded")]
        assert files[0].files == files[1].files, [f.files for f in files]
        for key in files[0].files:
            np.testing.assert_array_equal(files[0][key], files[1][key], err_msg=key)
    # Resume: a fresh model and sharded optimiser from the (sharded) checkpoint.
    r = model(hidden, dtype)
    rps, ropt = mg.params(r), dist.DistributedOptimiser(rule(name), shard_state=True)
    assert dist.load(paths["sharded"], r, ropt)["step"] == half
    for k in range(half, steps):
        x, y = part[k]
        mg.update_(ropt, rps, mg.gradient(lambda x=x, y=y: loss_of(r)(x, y), rps))
    assert same_on_every_rank(rps, "resumed") == d, "the resumed run differs"
    # Where the bound cuts: inside which parameter, how far into its block of the norm.
    starts = np.cumsum([0] + [p.size for p in ps])
    j = int(np.searchsorted(starts, bounds[1], "right")) - 1
    at = bounds[1] - starts[j]
    say(f"sharded {name}: {steps} steps of {n} elements, slice {bounds[RANK]}:"
        f"{bounds[RANK + 1]}, state {held} of {whole}, clipped {clips}, bound in parameter "
        f"{j} at {at} of {ps[j].size}, {at % cpu.NORM_BLOCK} into a block of "
        f"{cpu.NORM_BLOCK}, digest {d}")

if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])

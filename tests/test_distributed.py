"""minigrad.distributed: 2-rank jobs (``mpiexec -n 2 python -m mpi4py tests/mpi/scenarios.py``)
checked against one process, plus what must hold without MPI.

Skipped where mpi4py or mpiexec is missing, unless ``MINIGRAD_REQUIRE_MPI=1`` (set by
``.ci/run``), which turns the skip into a failure so CI never silently leaves them out.
Each rank runs with one thread (two ranks share the machine's cores).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "tests" / "mpi" / "scenarios.py"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}


def _mpiexec() -> str | None:
    """The mpiexec next to this interpreter (the MPICH wheel's), else the one on PATH."""
    return (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
            or shutil.which("mpiexec"))


@pytest.fixture
def mpirun():
    """``mpirun(*args, timeout=60, flags=())``: run the scenario on 2 ranks; returns
    ``(returncode, output, end time)``."""
    missing = ("mpi4py is not installed" if importlib.util.find_spec("mpi4py") is None
               else "no mpiexec found" if _mpiexec() is None else None)
    if missing:
        message = f'{missing}: pip install -e ".[mpi]"'
        if os.environ.get("MINIGRAD_REQUIRE_MPI") == "1":
            pytest.fail(f"MINIGRAD_REQUIRE_MPI=1 but {message}")
        pytest.skip(message)

    def run(*args, timeout: float = 60, flags: tuple = ()):
        command = [_mpiexec(), *flags, "-n", "2", sys.executable, "-m", "mpi4py",
                   str(SCENARIOS), *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **ONE_THREAD}, cwd=ROOT)
        return done.returncode, done.stdout + done.stderr, time.time()
    return run


def _lines(output: str, pattern: str) -> dict:
    """``{rank: rest of the line}`` for the lines ``rank R: <pattern>...``."""
    return {int(m[1]): m[2] for m in re.finditer(rf"rank (\d): ({pattern}.*)", output)}


# -- 2 ranks against one process ------------------------------------------------------------

@pytest.mark.parametrize("rule, steps, bucket", [
    ("adam", 50, "none"),       # Adam, 50 steps, one Allreduce per step
    ("clip", 20, "none"),       # Optimiser(ClipNorm, Adam): the norm of the averaged gradient
    ("decay", 20, "100"),       # Optimiser(WeightDecay, Adam), gradients in 100-byte buckets
])
def test_two_ranks_equal_one_process_bitwise(mpirun, rule, steps, bucket):
    # The scenario asserts, on rank 0, that train_ with the DistributedOptimiser gives the
    # parameters, bit for bit, of one process that averages the two half-batches of each step,
    # and, after every step, that both ranks' parameters are equal.
    rc, out, _ = mpirun("equal", rule, steps, bucket)
    assert rc == 0, out
    done = _lines(out, f"equal {rule} after {steps} steps")
    assert sorted(done) == [0, 1], out
    assert done[0] == done[1]


@pytest.mark.parametrize("rule, steps, hidden, block, dtype, elements, slices", [
    ("adam", 25, 15, 0, "float32", 199, ["0:100, state 200", "100:199, state 198"]),  # uneven
    ("decay", 20, 16, 0, "float32", 212, ["0:106, state 212", "106:212, state 212"]),
    # Optimiser(ClipNorm, Adam): each parameter one block of the norm, the first one's cut
    # by the bound (rank 1 sends rank 0 its 20 elements of it) ...
    ("clip", 20, 15, 0, "float32", 199, ["0:100, state 200", "100:199, state 198"]),
    # ... and blocks of 16: the first parameter's 8 blocks split 6 + 1 cut + 1, the others
    # several blocks each; in float64 too, where the scale keeps every bit of the norm.
    ("clip", 20, 16, 16, "float32", 212, ["0:106, state 212", "106:212, state 212"]),
    ("clip", 20, 16, 16, "float64", 212, ["0:106, state 212", "106:212, state 212"]),
    # WeightDecay, ClipNorm(p=3), Adam, ClipNorm(p=inf): three passes, two ClipNorms, each
    # norm in two rounds (the largest element first).
    ("pclip", 12, 16, 16, "float64", 212, ["0:106, state 212", "106:212, state 212"]),
])
def test_sharded_state_is_bitwise_equal_to_unsharded(mpirun, tmp_path, rule, steps, hidden,
                                                      block, dtype, elements, slices):
    # The scenario asserts after every step that the shard_state=True parameters equal, bit
    # for bit, those of the unsharded DistributedOptimiser (itself equal to one process, see
    # above) and are equal on both ranks; that each rank's state covers its slice only and
    # Adam's βp match; that the checkpoint saved halfway holds what the unsharded one holds
    # (synchronize_ halfway changes nothing); and that a fresh sharded optimiser loading it
    # retakes the second half bit for bit.
    rc, out, _ = mpirun("sharded", rule, steps, hidden, tmp_path, block, dtype)
    assert rc == 0, out
    done = _lines(out, f"sharded {rule}: {steps} steps of {elements} elements")
    assert sorted(done) == [0, 1], out
    for rank in (0, 1):
        # Adam keeps 2 arrays per element: this rank's slice twice, of 2 x 199 (or 2 x 212).
        assert f"slice {slices[rank]} of {2 * elements}," in done[rank], done
    assert done[0].split()[-1] == done[1].split()[-1]
    if rule != "adam" and rule != "decay":
        # The first ClipNorm clipped some of the 4 parameters' steps, not all; the bound cut
        # the first parameter (8 x hidden weights) inside a block of the norm.
        clips = int(re.search(r"clipped (\d+),", done[0])[1])
        assert 0 < clips < 4 * steps, done[0]
        cut = (f"bound in parameter 0 at {slices[1].split(':')[0]} of {8 * hidden}, "
               f"{int(slices[1].split(':')[0]) % (block or 65536)} into a block of "
               f"{block or 65536},")
        assert cut in done[0], done[0]


def test_sharded_guard_decides_on_every_rank_alike(mpirun):
    # DistributedOptimiser(ApplyIfFinite(Optimiser(ClipNorm, Adam)), shard_state=True) against
    # the unsharded one: at step 2 rank 1 puts a NaN into its gradient of an element that
    # rank 0's slice holds, at step 4 rank 0 an inf into rank 1's, so each time one rank's
    # slice of the sum is finite; both ranks skip both steps.  The scenario asserts bitwise
    # equal parameters, counters and Adam state (its βp advanced 4 times) after every step,
    # each rank's state its slice only, and that with on_nonfinite="raise" both ranks raise
    # what the unsharded guard raises, changing nothing.
    rc, out, _ = mpirun("sharded_guard", 6)
    assert rc == 0, out
    done = _lines(out, "sharded guard skipped")
    assert sorted(done) == [0, 1] and done[0] == done[1], out
    assert done[0].startswith("sharded guard skipped 2 of 6, consecutive 0, state 106 of 212 "
                              "per moment"), done[0]
    assert ("ApplyIfFinite: the gradient of layers.0.weight (a param of dtype float32 and "
            "shape (16, 8)) has 1 NaN and 2 infinite value(s) of 128; no parameter was "
            "updated") in done[0], done[0]


def test_two_rank_utilities(mpirun):
    # bcast_, allreduce_ (each op), DistributedDataContainer on 7 items, synchronize_ of
    # parameters, Adam state and eta, and a float32 + float64 model: see scenarios.utilities.
    rc, out, _ = mpirun("utilities")
    assert rc == 0, out
    assert sorted(_lines(out, "utilities ok")) == [0, 1], out


def test_none_gradient_counts_as_zeros(mpirun):
    rc, out, _ = mpirun("none_gradients")
    assert rc == 0, out
    assert sorted(_lines(out, "none ok")) == [0, 1], out


def test_nan_on_one_rank_skips_the_step_on_every_rank(mpirun):
    rc, out, _ = mpirun("nan_skips")
    assert rc == 0, out
    assert _lines(out, "skipped") == {0: "skipped 1 of 5", 1: "skipped 1 of 5"}, out


@pytest.mark.parametrize("where", ["synchronize", "step"])
def test_layout_mismatch_raises_on_every_rank(mpirun, where):
    rc, out, _ = mpirun("mismatch", where)
    assert rc == 0, out
    errors = _lines(out, "LayoutMismatchError")
    assert sorted(errors) == [0, 1], out
    assert errors[0] == errors[1]
    assert "rank 1 has parameter 0 (0): shape (6, 4), float32, where rank 0 has parameter 0 " \
           "(0): shape (4, 6), float32" in errors[0]


def test_resumed_run_continues_bit_for_bit(mpirun, tmp_path):
    path = tmp_path / "ckpt.npz"
    rc, out, _ = mpirun("resume", "full", path, 10)
    assert rc == 0, out
    full = _lines(out, "full digest")
    rc, out, _ = mpirun("resume", "resume", path, 10)
    assert rc == 0, out
    resumed = _lines(out, "resume digest")
    assert sorted(full) == sorted(resumed) == [0, 1], out
    assert full[0].split()[-1] == resumed[0].split()[-1] == resumed[1].split()[-1]


# -- faults: the whole job ends within 5 s of a rank's failure, with a non-zero code ---------

def _fault_time(output: str) -> float:
    return float(re.search(r"FAULT \w+ at ([\d.]+)", output)[1])


@pytest.mark.parametrize("how, code, names_rank", [
    ("raise", 1, "RuntimeError: a failure on rank 1"),
    ("exit", 3, "(rank 1 in comm 0)"),
    ("kill", 9, "Exit codes: [{host}] 0,9"),  # MPICH's -print-all-exitcodes: rank order
])
def test_a_failing_rank_ends_the_job(mpirun, how, code, names_rank):
    rc, out, end = mpirun("fault", how, timeout=30, flags=("-print-all-exitcodes",))
    assert rc == code, out
    assert end - _fault_time(out) < 5, out
    if "{host}" in names_rank:
        host = re.search(r"Exit codes: \[([^\]]+)\]", out)[1]
        names_rank = names_rank.format(host=host)
    assert names_rank in out, out
    if how != "kill":
        assert "rank 1" in out


def test_a_hung_rank_is_bounded_by_mpiexec_timeout(mpirun, monkeypatch):
    monkeypatch.setenv("MPIEXEC_TIMEOUT", "4")
    rc, out, end = mpirun("fault", "hang", timeout=30)
    assert rc != 0, out
    assert "APPLICATION TIMED OUT" in out
    assert end - _fault_time(out) < 6, out


# -- one process, no mpiexec -----------------------------------------------------------------

def test_without_mpi4py_import_works_and_first_use_names_the_fix():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import minigrad, minigrad.distributed as dist\n"
            "try:\n    dist.total_workers()\n"
            "except ImportError as err:\n    print('ERROR', err)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert 'ERROR minigrad.distributed needs mpi4py: pip install "minigrad[mpi]"' in done.stdout


def test_import_does_not_start_mpi():
    code = ("import sys, minigrad, minigrad.distributed\n"
            "print(sorted(m for m in sys.modules if m.startswith('mpi4py.MPI')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.fixture
def dist(mpirun):
    import minigrad.distributed as dist
    return dist


def test_one_process_allreduce_and_data(dist):
    a = np.array([1.0, -2.0])
    for op in ("+", "max", "min", "*", "avg", sum, max, min):
        assert dist.allreduce_(a, op) is a
        np.testing.assert_array_equal(a, [1.0, -2.0])
    with pytest.raises(ValueError, match="unknown op 'mean'"):
        dist.allreduce_(a, "mean")
    with pytest.raises(TypeError, match="contiguous, writable NumPy array"):
        dist.bcast_(np.zeros((3, 2))[:, 0])
    part = dist.DistributedDataContainer(range(5))
    assert (len(part), list(part), part[-1]) == (5, [0, 1, 2, 3, 4], 4)
    with pytest.raises(IndexError):
        part[5]


def test_distributed_optimiser_refuses_misuse(dist):
    import minigrad as mg
    dopt = dist.DistributedOptimiser(mg.Adam())
    with pytest.raises(TypeError, match="must be the outermost optimiser"):
        mg.update_(mg.Optimiser(mg.WeightDecay(), dopt), mg.param([1.0]), np.ones(1))
    with pytest.raises(TypeError, match="must be the outermost optimiser"):
        mg.apply_(dopt, mg.param([1.0]), np.ones(1))
    with pytest.raises(TypeError, match=r"put the guard inside: DistributedOptimiser"):
        mg.ApplyIfFinite(dopt)
    with pytest.raises(TypeError, match="takes the parameters and the Grads"):
        mg.update_(dopt, mg.param([1.0]), np.ones(1))
    with pytest.raises(ValueError, match="bucket_bytes must be a positive number"):
        dist.DistributedOptimiser(mg.Adam(), bucket_bytes=0)


def test_shard_state_refuses_what_it_cannot_do_bitwise(dist):
    import minigrad as mg
    from minigrad.optimise import rules_extra
    # Taken: ClipNorm (either kind, any p) anywhere, an outermost ApplyIfFinite.
    dist.DistributedOptimiser(mg.ApplyIfFinite(mg.Optimiser(
        mg.WeightDecay(), mg.ClipNorm(1.0), mg.Adam(), rules_extra.ClipNorm(1.0, np.inf))),
        shard_state=True)
    with pytest.raises(ValueError, match=r"DistributedOptimiser\(Optimiser\(ApplyIfFinite\("
                                         r"Adam\)\), shard_state=True\) is not supported: "
                                         r"ApplyIfFinite is a stage written in Python.*works "
                                         r"outermost only"):
        dist.DistributedOptimiser(mg.Optimiser(mg.ApplyIfFinite(mg.Adam())), shard_state=True)
    with pytest.raises(ValueError, match="AccumGrad.* is a stage written in Python"):
        dist.DistributedOptimiser(mg.Optimiser(rules_extra.AccumGrad(2), mg.Adam()),
                                  shard_state=True)

    class Normalise(mg.Descent):            # a rule of its own that needs the whole step
        needs_whole_step = True
    with pytest.raises(ValueError, match="Normalise needs each array's whole step, which no "
                                         "rank holds, and only ClipNorm's norms"):
        dist.DistributedOptimiser(mg.Optimiser(Normalise(), mg.Adam()), shard_state=True)
    with pytest.raises(ValueError, match="leave bucket_bytes out"):
        dist.DistributedOptimiser(mg.Adam(), bucket_bytes=100, shard_state=True)
    with pytest.raises(TypeError, match="shard_state must be True or False"):
        dist.DistributedOptimiser(mg.Adam(), shard_state=1)
    W, unused = mg.param(np.ones(3)), mg.param(np.ones(2))
    ps = mg.Params([W, unused])
    sopt = dist.DistributedOptimiser(mg.Adam(0.1), shard_state=True)
    with pytest.raises(ValueError, match=r"parameter 1 of 2 .* has no gradient on any rank"):
        mg.update_(sopt, ps, mg.gradient(lambda: mg.sum(W), ps))
    np.testing.assert_array_equal(W.data, np.ones(3))       # nothing moved


def test_one_process_sharded_checkpoint_is_the_unsharded_one(dist, tmp_path):
    import minigrad as mg
    models, opts = [], []
    for shard_state in (False, True):
        m = {"W": mg.param(np.arange(5, dtype=np.float32)), "b": mg.param(np.ones(2, np.float32))}
        ps = mg.params(m)
        dopt = dist.DistributedOptimiser(mg.Adam(0.1), shard_state=shard_state)
        for _ in range(3):
            mg.update_(dopt, ps, mg.gradient(lambda m=m: mg.sum(m["W"] * m["W"]) + mg.sum(
                3 * m["b"]), ps))
        dist.save(tmp_path / f"{shard_state}.npz", m, dopt)
        models.append(m), opts.append(dopt)
    unsharded, sharded = (np.load(tmp_path / f"{s}.npz") for s in (False, True))
    assert unsharded.files == sharded.files and len(sharded.files) == 7    # 2 params, 4 state
    for key in sharded.files:
        np.testing.assert_array_equal(unsharded[key], sharded[key], err_msg=key)
    # The slice's state is back after the save: 2 arrays of 7, and βp after 3 steps.
    sopt, W = opts[1], models[1]["W"]
    [st] = sopt.opt.state.values()
    assert [a.size for a in st.arrays] == [7, 7]
    assert st.scalars == opts[0].opt.state[models[0]["W"]].scalars == pytest.approx(
        [0.9 ** 4, 0.999 ** 4])
    with pytest.raises(TypeError, match="save and load it with minigrad.distributed.save"):
        mg.save(tmp_path / "plain.npz", models[1], sopt)
    assert not (tmp_path / "plain.npz").exists()
    # Loading scatters at the next step: a fresh sharded optimiser continues like the first.
    m2 = {"W": mg.param(np.zeros(5, np.float32)), "b": mg.param(np.zeros(2, np.float32))}
    sopt2 = dist.DistributedOptimiser(mg.Adam(), shard_state=True)
    dist.load(tmp_path / "False.npz", m2, sopt2)
    for m, dopt in ((models[1], sopt), (m2, sopt2)):
        ps = mg.params(m)
        mg.update_(dopt, ps, mg.gradient(lambda m=m: mg.sum(m["W"]) + mg.sum(m["b"]), ps))
    np.testing.assert_array_equal(m2["W"].data, W.data)
    assert m2["W"] not in sopt2.opt.state and len(sopt2.opt.state) == 1     # the slice's


def test_one_process_step_takes_the_summed_gradients_as_they_lie(dist, monkeypatch):
    """After the all-reduce, the summed flat gradient goes to the one kernel call over the flat
    buffers (no gather into a scratch buffer): at the first step, whose gradients the optimiser
    gathered into a new buffer, and at the next ones, which landed there."""
    import minigrad as mg
    from minigrad.optimise import step
    steady = []
    real = step.steady_step
    monkeypatch.setattr(step, "steady_step", lambda *a: steady.append(real(*a)) or steady[-1])
    W, b = mg.param(np.arange(5, dtype=np.float32)), mg.param(np.ones(2, np.float32))
    ps = mg.Params([W, b])
    dopt = dist.DistributedOptimiser(mg.Adam(0.1))
    for _ in range(3):
        mg.update_(dopt, ps, mg.gradient(lambda: mg.sum(W * W) + mg.sum(3 * b), ps))
    assert steady == [True, True, True]


def test_one_process_sharded_step_is_the_unsharded_step(dist):
    # One rank owns the whole buffer: the same bits as without sharding, state of all 7.
    import minigrad as mg
    results = []
    for shard_state in (False, True):
        W, b = mg.param(np.arange(5, dtype=np.float32)), mg.param(np.ones(2, np.float32))
        ps = mg.Params([W, b])
        dopt = dist.DistributedOptimiser(mg.Optimiser(mg.WeightDecay(0.1), mg.Adam(0.1)),
                                         shard_state=shard_state)
        for _ in range(3):
            mg.update_(dopt, ps, mg.gradient(lambda W=W, b=b: mg.sum(W * W) + mg.sum(3 * b),
                                             ps))
        results.append(np.concatenate([W.data, b.data]))
    np.testing.assert_array_equal(results[0], results[1])
    assert dist.shard_bounds(7, 1) == [0, 7] and dopt._shard.size == 7
    assert repr(dopt).endswith("shard_state=True)")


def test_one_process_sharded_guard_and_clipnorm_are_the_unsharded_ones(dist, tmp_path):
    # One rank runs the sharded guard's and ClipNorm's collective paths (the flag, the norms
    # put together from the block parts): the same bits, counters, state and checkpoint as
    # unsharded, both parameters clipped (gradient norms 14.8 and 4.2 against 1), an inf
    # skipping step 2; a fresh sharded optimiser continues from the checkpoint alike.
    import minigrad as mg

    def build(shard_state):
        m = {"W": mg.param(np.arange(6, dtype=np.float32).reshape(2, 3)),
             "b": mg.param(np.ones(2, np.float32))}
        guard = mg.ApplyIfFinite(mg.Optimiser(mg.ClipNorm(1.0), mg.Adam(0.1)), model=m)
        return m, dist.DistributedOptimiser(guard, shard_state=shard_state)

    def step(m, dopt, bad=None):
        ps = mg.params(m)
        gs = mg.gradient(lambda: mg.sum(m["W"] * m["W"]) + mg.sum(3 * m["b"]), ps)
        if bad is not None:
            gs[m["b"]][1] = bad
        mg.update_(dopt, ps, gs)

    runs = [build(False), build(True)]
    for m, dopt in runs:
        for k in range(4):
            step(m, dopt, np.inf if k == 1 else None)
        dist.save(tmp_path / f"{dopt.shard_state}.npz", m, dopt)
    (um, u), (sm, s) = runs
    for key in um:
        np.testing.assert_array_equal(um[key].data, sm[key].data)
    assert (s.opt.skipped, s.opt.consecutive) == (u.opt.skipped, u.opt.consecutive) == (1, 0)
    assert not np.array_equal(um["W"].data, build(False)[0]["W"].data)
    files = [np.load(tmp_path / f"{shard}.npz") for shard in (False, True)]
    assert files[0].files == files[1].files
    for key in files[0].files:
        np.testing.assert_array_equal(files[0][key], files[1][key], err_msg=key)
    # The clipped Adam step: each parameter moves by its norm-1 share of the first step.
    m2, s2 = build(True)
    dist.load(tmp_path / "False.npz", m2, s2)
    assert s2.opt.skipped == 1
    for m, dopt in ((um, u), (m2, s2)):
        step(m, dopt)
    for key in um:
        np.testing.assert_array_equal(um[key].data, m2[key].data)
    # on_nonfinite="raise": the unsharded guard's error, nothing changed.
    errors = []
    for m, dopt in ((um, u), (m2, s2)):
        dopt.opt.on_nonfinite = "raise"
        before = [p.data.copy() for p in mg.params(m)]
        with pytest.raises(mg.NonFiniteGradientError) as err:
            step(m, dopt, np.nan)
        assert all(np.array_equal(a, p.data) for a, p in zip(before, mg.params(m), strict=True))
        errors.append(str(err.value))
    assert errors[0] == errors[1] and errors[0].startswith(
        "ApplyIfFinite: the gradient of b (a param of dtype float32 and shape (2,)) has 1 NaN")


def test_one_process_checkpoint_holds_the_wrapped_state(dist, tmp_path):
    import minigrad as mg
    W = mg.param(np.arange(3, dtype=np.float32))
    ps = mg.Params([W])
    dopt = dist.DistributedOptimiser(mg.ApplyIfFinite(mg.Adam(0.1)))
    for g in ([1.0, 2.0, 3.0], [np.nan, 0.0, 0.0], [1.0, 1.0, 1.0]):
        gs = mg.Grads(ps)
        gs[W] = np.array(g, np.float32)
        mg.update_(dopt, ps, gs)
    assert dopt.opt.skipped == 1 and dopt.opt.consecutive == 0
    dist.save(tmp_path / "c.npz", {"W": W}, dopt)
    W2 = mg.param(np.zeros(3, np.float32))
    dopt2 = dist.DistributedOptimiser(mg.ApplyIfFinite(mg.Adam()))
    dist.load(tmp_path / "c.npz", {"W": W2}, dopt2)
    assert dopt2.opt.skipped == 1 and dopt2.opt.opt.eta == 0.1
    np.testing.assert_array_equal(W2.data, W.data)
    np.testing.assert_array_equal(dopt2.opt.opt.state[W2][0], dopt.opt.opt.state[W][0])


def test_the_main_job_reaches_one_process_accuracy_on_two_ranks(mpirun, capsys):
    """``mpiexec -n 2 python -m mpi4py examples/classify_digits.py --distributed``: rank 0
    alone prints, and the CNN reaches the held-out accuracy of one process (20 epochs, seed
    0; each 2-rank step averages two batches, so the runs are not bitwise alike)."""
    pytest.importorskip("sklearn")
    command = [_mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py",
               "examples/classify_digits.py", "--distributed", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **ONE_THREAD}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [s for s in done.stdout.splitlines() if s.startswith("held-out accuracy")]
    two_ranks = float(line.split()[2].rstrip("%")) / 100
    from minigrad.demo import train
    one = train(quiet=True)["accuracy"]
    capsys.readouterr()
    assert two_ranks >= 0.98 and abs(two_ranks - one) <= 0.01, (two_ranks, one)

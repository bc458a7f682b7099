"""The host's one definition of a norm (``minigrad.optimise.cpu.norms``), which ClipNorm uses:
float64 sums of fixed blocks, each in a fixed order, so that a norm put together from parts
computed elsewhere (the ranks of a sharded step) is bitwise the norm of the whole.

* the parts do not depend on where a block lies in memory, and the fast loop (``p = 2``,
  unscaled) adds in the same order as the general one;
* the norm is accurate (float64 accumulation, also for float32 arrays) and survives
  overflowing squares; NaN and inf elements give NaN and inf;
* ``minigrad.distributed``'s sharded norms, with 2 to 5 ranks played by threads, give every
  array's norm bitwise, whatever the blocks, the bounds and ``p``.
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import pytest

import minigrad as mg
import minigrad.distributed as dist
from minigrad.optimise import cpu, rules_extra

PS = [2, 1, 3, math.inf]


def exact(a, p) -> float:
    """The p-norm in long double, for accuracy checks."""
    a = np.abs(np.asarray(a, np.longdouble)).reshape(-1)
    if p == math.inf:
        return float(a.max()) if a.size else 0.0
    return float(np.sum(a ** p) ** (np.longdouble(1) / p))


@pytest.fixture
def block(monkeypatch):
    """Blocks of 16 elements (and the default back afterwards)."""
    monkeypatch.setattr(cpu, "NORM_BLOCK", 16)
    return 16


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_parts_do_not_depend_on_where_the_block_lies(dtype, block):
    a = np.random.default_rng(0).standard_normal(100).astype(dtype)
    whole = cpu.block_sums(a)
    assert whole.size == 7 and whole.dtype == np.float64
    np.testing.assert_array_equal(cpu.block_sums(a[32:]), whole[2:])       # a view, moved
    np.testing.assert_array_equal(cpu.block_sums(a[16:32].copy()), whole[1:2])
    # The fast loop (p = 2, big = 1) adds a² in the order of the general one: scaling by a
    # power of two is exact, so both give the same bits.
    np.testing.assert_array_equal(cpu.block_sums(a * 4, 2, 4.0), whole)
    assert cpu.block_maxes(a).tolist() == [np.abs(a[s:s + 16]).max() for s in range(0, 100, 16)]


def _transcribed(a, block, lanes=cpu.NORM_LANES) -> np.ndarray:
    """The block sums of a² as the definition says, in NumPy: element i of a block in lane
    i mod lanes (each lane added in element order), then the lanes added pairwise."""
    sums = []
    for start in range(0, a.size, block):
        part = a[start:start + block].astype(np.float64)
        acc = np.zeros(lanes)
        for row in range(0, part.size, lanes):
            chunk = part[row:row + lanes]
            acc[:chunk.size] += chunk * chunk
        while acc.size > 1:
            acc = acc[:acc.size // 2] + acc[acc.size // 2:]
        sums.append(acc[0])
    return np.array(sums)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_and_multi_threaded_block_sums_are_the_definition(dtype):
    # Over the threading threshold the blocks are shared among threads: the same bits, which
    # are those of the definition written out in NumPy.
    a = np.random.default_rng(1).standard_normal((1 << 19) + 4099).astype(dtype)
    sums = cpu.block_sums(a)
    serial = np.empty_like(sums)
    cpu.block_kernel(dtype, False)(a, cpu.NORM_BLOCK, 2.0, 1.0, serial)
    assert sums.tobytes() == serial.tobytes()
    assert sums.tobytes() == _transcribed(a, cpu.NORM_BLOCK).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 300])
def test_norm_is_accurate(dtype, p, size, block):
    a = (np.random.default_rng(size).standard_normal(size) * 3).astype(dtype)
    assert cpu.pnorm(a, p) == pytest.approx(exact(a, p), rel=1e-14, abs=0)
    assert cpu.pnorm(a.reshape(1, -1), p) == cpu.pnorm(a, p)


def test_float32_squares_add_up_in_float64():
    a = np.array([4096.0, 1.0], np.float32)     # 2²⁴ + 1: no float32 holds it
    assert float(np.linalg.norm(a)) == 4096.0
    assert cpu.l2norm(a) == math.sqrt(2 ** 24 + 1)
    assert cpu.l2norm(np.array([3, 4])) == 5.0 and cpu.l2norm(np.array([3, 4], np.float16)) == 5


@pytest.mark.parametrize("p", PS)
def test_norm_survives_overflow_and_keeps_nan_and_inf(p, block):
    big = np.full(40, 1e300) * np.random.default_rng(1).uniform(0.5, 1, 40)
    assert cpu.pnorm(big, p) == pytest.approx(exact(big, p), rel=1e-14)
    one_block = np.zeros(64)
    one_block[::16] = 1.2e154       # each block's sum is finite, their total is not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu.pnorm(one_block, p) == pytest.approx(exact(one_block, p), rel=1e-14)
    for a, want in (([1e300, np.inf, 1.0], math.inf), ([1e300, np.nan, 1.0], math.nan),
                    ([np.inf, np.nan], math.nan), ([0.0, -0.0], 0.0)):
        got = cpu.pnorm(np.array(a), p)
        assert got == want or (math.isnan(want) and math.isnan(got)), (a, got)


def test_clipnorm_scales_by_this_norm():
    g = np.random.default_rng(2).standard_normal(70000).astype(np.float32)   # two blocks
    norm = cpu.l2norm(g)
    assert abs(norm - exact(g, 2)) <= 1e-12 * norm
    step = mg.apply_(mg.ClipNorm(1.0), np.zeros_like(g), g.copy())
    np.testing.assert_array_equal(step, g * np.float32(1.0 / norm))
    step = mg.apply_(rules_extra.ClipNorm(1.0, 3), np.zeros_like(g), g.copy())
    np.testing.assert_array_equal(step, g * np.float32(1.0 / cpu.pnorm(g, 3)))


class _World:
    """``size`` ranks played by threads of this process, for the ``Allgatherv`` calls of a
    sharded norm."""

    def __init__(self, size: int):
        self.size, self.sent = size, [None] * size
        self.barrier = threading.Barrier(size, timeout=60)

    def comm(self, rank: int):
        world = self

        class Comm:
            def Allgatherv(self, sendbuf, recv):
                out, (counts, displs) = recv
                world.sent[rank] = np.array(sendbuf)
                world.barrier.wait()
                for r in range(world.size):
                    assert world.sent[r].size == counts[r]
                    out[displs[r]:displs[r] + counts[r]] = world.sent[r]
                world.barrier.wait()
        return Comm()


def sharded_norms(sizes: list, ranks: int, delta: np.ndarray, p: float, block: int) -> list:
    """Every rank's list of the arrays' norms, each rank holding its slice of ``delta``."""
    starts = np.cumsum([0, *sizes]).tolist()
    bounds = dist.shard_bounds(starts[-1], ranks)
    world, results = _World(ranks), [None] * ranks

    def work(r):
        part = delta[bounds[r]:bounds[r + 1]].copy()
        results[r] = dist._Slices(starts, bounds, r, block).norms(world.comm(r), part, p)

    threads = [threading.Thread(target=work, args=(r,)) for r in range(ranks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("ranks", [2, 3, 5])
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("sizes", [[100], [7, 0, 33, 16, 1, 50], [3, 2], [40, 40, 41]])
def test_sharded_norms_are_bitwise_the_norms_of_the_whole(ranks, p, sizes, block):
    # Blocks of 16: bounds cut blocks, slices smaller than a block (a block then spans three
    # ranks), empty slices ([3, 2] on 5 ranks: one element each) and empty arrays.
    rng = np.random.default_rng(ranks)
    for dtype in (np.float32, np.float64):
        delta = rng.standard_normal(sum(sizes)).astype(dtype)
        starts = np.cumsum([0, *sizes])
        want = [cpu.pnorm(delta[a:b], p) for a, b in zip(starts[:-1], starts[1:], strict=True)]
        for got in sharded_norms(sizes, ranks, delta, p, block):
            assert got == want
    # Squares that overflow float64 (p = 2: a second and third round) and a NaN.
    delta = rng.uniform(0.5, 1, sum(sizes)) * 1e300
    delta[-1] = np.nan
    want = [cpu.pnorm(delta[a:b], p) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    for got in sharded_norms(sizes, ranks, delta, p, block):
        assert np.array_equal(got, want, equal_nan=True)


def test_slices_of_a_buffer():
    # Arrays of 5, 0 and 7 elements on 3 ranks (4 elements each), blocks of 2 from each
    # array's first element: rank 1's slice 4:8 starts a block ([4, 5), array 0's last) and
    # ends inside one ([7, 9) of array 2), so rank 2's slice starts with a head of 1 element,
    # which rank 1, the block's owner, gets.
    s = [dist._Slices([0, 5, 5, 12], [0, 4, 8, 12], r, 2) for r in range(3)]
    assert [x.pieces for x in s] == [[(0, 4, 0)], [(0, 1, 0), (1, 4, 2)], [(0, 4, 2)]]
    assert s[0].owned.tolist() == [0, 2, 5, 7] and s[0].first.tolist() == [0, 3, 3, 7]
    assert s[0].heads.tolist() == [0, 0, 1]
    assert s[1].runs == [(0, 0, 1, 0, 1), (2, 1, 2, 1, 3)] and s[1].cut == (2, 2, 3, 1)
    assert s[2].runs == [(2, 0, 2, 1, 4)] and s[2].cut is None

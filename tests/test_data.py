"""DataLoader, onehotbatch, onecold (MLUtils semantics: observations on the last axis), and the
``rng`` keyword of minigrad's random constructors."""

import numpy as np
import pytest

import minigrad as mg
from minigrad.dataloader import DataLoader


def test_batches_along_the_last_axis():
    x = np.arange(30.0).reshape(3, 10)
    batches = list(DataLoader(x, batchsize=3))
    assert [b.shape for b in batches] == [(3, 3)] * 3 + [(3, 1)]
    np.testing.assert_array_equal(np.concatenate(batches, axis=1), x)
    assert len(DataLoader(x, batchsize=3)) == 4
    assert len(DataLoader(x, batchsize=3, partial=False)) == 3
    assert [b.shape for b in DataLoader(x, batchsize=3, partial=False)] == [(3, 3)] * 3
    assert [b.shape for b in DataLoader(x, batchsize=20)] == [(3, 10)]
    assert list(DataLoader(x, batchsize=20, partial=False)) == []
    assert [b.shape for b in DataLoader(x)] == [(3, 1)] * 10      # Flux's default batchsize 1


def test_tuples_give_tuples_that_train_splats():
    x, y = np.arange(12.0).reshape(2, 6), np.arange(6)
    for xb, yb in DataLoader((x, y), batchsize=4, shuffle=True, rng=1):
        np.testing.assert_array_equal(xb[0], yb)                # pairs stay together
        np.testing.assert_array_equal(xb[1], yb + 6)
    seen = []
    mg.train_(lambda xb, yb: seen.append(yb.size) or 0.0, mg.Params([]),
              DataLoader((x, y), batchsize=4), mg.Descent())
    assert seen == [4, 2]


def test_shuffle_reshuffles_each_epoch_reproducibly():
    y = np.arange(100)
    loader = DataLoader(y, batchsize=100, shuffle=True, rng=42)
    first, second = next(iter(loader)), next(iter(loader))
    assert sorted(first) == list(range(100)) and not np.array_equal(first, second)
    again = DataLoader(y, batchsize=100, shuffle=True, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(next(iter(again)), first)
    np.testing.assert_array_equal(next(iter(again)), second)
    np.random.seed(7)
    a = next(iter(DataLoader(y, batchsize=100, shuffle=True)))
    np.random.seed(7)
    np.testing.assert_array_equal(a, np.random.permutation(100))   # the global state by default
    np.testing.assert_array_equal(next(iter(DataLoader(y, batchsize=100))), y)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"data\[1\] has 5 .*x\.T"):
        DataLoader((np.zeros((2, 6)), np.zeros(5)))
    with pytest.raises(ValueError, match="batchsize must be a positive integer"):
        DataLoader(np.zeros(5), batchsize=0)
    with pytest.raises(ValueError, match="scalar"):
        DataLoader(np.float64(1.0))


def test_onehotbatch_and_onecold():
    y = mg.onehotbatch([1, 0, 2, 1], range(3))
    np.testing.assert_array_equal(y, [[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 1, 0]])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(mg.onecold(y), [1, 0, 2, 1])
    assert mg.onehotbatch(np.array([[0, 1], [1, 1]]), [0, 1]).shape == (2, 2, 2)
    assert mg.onecold(np.array([0.1, 0.8, 0.1]), "abc") == "b"
    np.testing.assert_array_equal(mg.onehotbatch(["x", 5], ["x", 5, "z"], default="z").T,
                                  [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(mg.onehotbatch(7, range(3), default=0), [1, 0, 0])
    with pytest.raises(ValueError, match=r"label 7 is not among the classes"):
        mg.onehotbatch([0, 7], range(3))
    with pytest.raises(ValueError, match="repeated"):
        mg.onehotbatch([0], [0, 0])
    with pytest.raises(ValueError, match="3 classes on its first axis but 2"):
        mg.onecold(np.eye(3), "ab")


def test_onecold_of_a_tracked_value():
    W = mg.param(np.eye(3))
    seen = []
    mg.gradient(lambda: seen.append(mg.onecold(W @ np.eye(3)[:, [2, 0]])) or mg.sum(W),
                mg.params(W))
    np.testing.assert_array_equal(seen[0], [2, 0])


def test_rand_and_randn_take_an_rng():
    np.testing.assert_array_equal(mg.rand(2, 3, rng=5), np.random.default_rng(5).random((2, 3)))
    np.testing.assert_array_equal(mg.randn(np.float32, 4, rng=5),
                                  np.random.default_rng(5).standard_normal(4).astype(np.float32))
    np.random.seed(1)
    a = mg.rand(3)
    np.random.seed(1)
    np.testing.assert_array_equal(a, np.random.random_sample(3))     # default unchanged

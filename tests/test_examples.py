"""The README's main job, examples/classify_digits.py, trains a real classifier."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "classify_digits.py"


def _example():
    spec = importlib.util.spec_from_file_location("classify_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_cnn_reaches_98_percent_held_out(tmp_path, capsys):
    pytest.importorskip("sklearn")
    picture = tmp_path / "loss.png"
    result = _example().main(["--plot", str(picture)])
    out = capsys.readouterr()
    assert result["accuracy"] >= 0.98
    assert f"held-out accuracy: {result['accuracy']:.2%}" in out.out
    assert "Conv((3, 3), (1, 16))" in out.out
    # 20 epoch lines, and the progress line (step, loss, rate) on stderr
    assert sum(line.startswith("epoch ") for line in out.out.splitlines()) == 20
    assert len(result["accuracies"]) == 20 and result["accuracies"][-1] == result["accuracy"]
    assert "steps/s" in out.err and "loss" in out.err
    # the loss goes down over training
    assert result["losses"][-1] < 0.2 * result["losses"][0]
    if importlib.util.find_spec("matplotlib"):
        assert picture.stat().st_size > 1000
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_digits_held_out_split_is_disjoint():
    pytest.importorskip("sklearn")
    x_train, y_train, x_test, y_test = _example().load(seed=0)
    assert x_train.shape == (64, y_train.size) and x_test.shape == (64, y_test.size)
    assert y_train.size + y_test.size == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    # no test image appears among the training images
    train_rows = {row.tobytes() for row in x_train.T}
    overlap = sum(row.tobytes() in train_rows for row in x_test.T)
    assert overlap <= 5  # a few digits in the data set are exact duplicates of each other
    assert np.bincount(y_test, minlength=10).min() > 20


def test_the_mlp_stays_an_option(capsys):
    pytest.importorskip("sklearn")
    result = _example().main(["--model", "mlp", "--quiet"])
    assert result["accuracy"] >= 0.95 and len(result["losses"]) == 30
    assert "30 epochs" in capsys.readouterr().out


def test_images_keep_the_pixels_in_flux_layout():
    """images() turns row-major features into (width, height, 1, n): column c, row r."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    module = _example()
    x_train, _, _, _ = module.load(seed=0)
    digits = load_digits()
    first = np.flatnonzero((digits.data / 16.0 == x_train[:, 0].astype(np.float64)).all(axis=1))
    img = module.images(x_train)[:, :, 0, 0]
    np.testing.assert_allclose(img, digits.images[first[0]].T / 16.0, rtol=1e-6)

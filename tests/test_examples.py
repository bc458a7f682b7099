"""The README's main job, examples/classify_digits.py, trains a real classifier."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "classify_digits.py"


def _example():
    spec = importlib.util.spec_from_file_location("classify_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_classifier_reaches_95_percent_held_out(tmp_path, capsys):
    pytest.importorskip("sklearn")
    picture = tmp_path / "loss.png"
    result = _example().main(["--plot", str(picture)])
    out = capsys.readouterr()
    assert result["accuracy"] >= 0.95
    assert f"held-out accuracy: {result['accuracy']:.2%}" in out.out
    # 30 epoch lines, and the progress line (step, loss, rate) on stderr
    assert sum(line.startswith("epoch ") for line in out.out.splitlines()) == 30
    assert "steps/s" in out.err and "loss" in out.err
    # the loss goes down over training
    assert result["losses"][-1] < 0.2 * result["losses"][0]
    if importlib.util.find_spec("matplotlib"):
        assert picture.stat().st_size > 1000
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_digits_held_out_split_is_disjoint():
    pytest.importorskip("sklearn")
    import numpy as np
    x_train, y_train, x_test, y_test = _example().load(seed=0)
    assert x_train.shape == (64, y_train.size) and x_test.shape == (64, y_test.size)
    assert y_train.size + y_test.size == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    # no test image appears among the training images
    train_rows = {row.tobytes() for row in x_train.T}
    overlap = sum(row.tobytes() in train_rows for row in x_test.T)
    assert overlap <= 5  # a few digits in the data set are exact duplicates of each other
    assert np.bincount(y_test, minlength=10).min() > 20

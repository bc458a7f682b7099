"""The rough edges a newcomer hit in the first hour (issue 22), each pinned by a test."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad.cli import main as cli
from minigrad.optimise.train import _Progress

ROOT = Path(__file__).resolve().parents[1]


# -- a stable σ ----------------------------------------------------------------------------------

def test_sigmoid_keeps_its_precision_far_out():
    """σ(-40) = e⁻⁴⁰/(1 + e⁻⁴⁰) ≈ 4.2e-18: log σ(-40) is -40, not -inf."""
    assert float(mg.log(mg.σ(-40.0))) == pytest.approx(-40.0, rel=1e-15)
    x = np.array([-700.0, -300.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0])
    with np.errstate(over="ignore"):
        expected = 1 / (1 + np.exp(-x))           # the definition
    np.testing.assert_allclose(mg.σ(x), expected, rtol=1e-15)
    assert mg.σ(-1000.0) == 0.0 and mg.σ(1000.0) == 1.0
    np.testing.assert_allclose(np.log(mg.σ(x[:4])), -np.logaddexp(0, -x[:4]), rtol=1e-15)
    x32 = np.array([-80.0, -40.0, 0.0, 40.0], np.float32)
    y32 = mg.σ(x32)
    assert y32.dtype == np.float32 and (y32[:2] > 0).all()
    # The fused Dense activation goes through the same formula.
    layer = mg.Dense(1, 1, mg.σ, init=lambda *s: np.ones(s, np.float64))
    assert np.log(layer(np.array([-40.0]))) == pytest.approx(-40.0, rel=1e-15)
    # The gradient σ(1 - σ) at -40: ≈ 4.2e-18, not 0.
    W = mg.param([-40.0])
    assert mg.gradient(lambda: mg.sum(mg.σ(W)), mg.params(W))[W][0] == pytest.approx(
        np.exp(-40.0), rel=1e-9)


# -- the progress line ---------------------------------------------------------------------------

def _screen(written: str) -> str:
    """What a terminal shows after ``written``: each carriage return goes back to column 0 and
    the text after it overwrites the line, character by character."""
    line = ""
    for chunk in written.split("\r"):
        chunk = chunk.split("\n")[0]
        line = chunk + line[len(chunk):]
    return line


def test_a_shorter_progress_line_leaves_nothing_of_the_longer_one(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress = _Progress(total=None)
    progress.start -= 1.0                     # one second in: a four-digit rate
    progress.show(999, 1.23456789e-05)
    long_line = _screen(err.getvalue())
    assert long_line.startswith("step 1000  loss 1.23457e-05  1,000 steps/s")
    progress.start -= 99.0                    # a shorter line: smaller rate, shorter loss
    progress.show(9, 0.5, final=True)
    assert _screen(err.getvalue()).rstrip() == "step 10  loss 0.5  0 steps/s"


# -- error hints ---------------------------------------------------------------------------------

def test_train_with_a_model_instead_of_its_parameters_says_params():
    m = mg.Chain(mg.Dense(2, 2))
    for model in (m, m[0]):
        with pytest.raises(TypeError, match=r"for a model, pass mg\.params\(model\)"):
            mg.train_(lambda x, y: 0.0, model, [(1, 2)], mg.Descent())


def test_train_explains_how_items_reach_the_loss():
    ps = mg.params(mg.Dense(2, 2))
    with pytest.raises(TypeError, match=r"a tuple of 2, unpacked into 2 arguments.*signature "
                                        r"\(x\)"):
        mg.train_(lambda x: 0.0, ps, [(1, 2)], mg.Descent())
    with pytest.raises(TypeError, match=r"not a tuple, passed as one argument.*\(x, y\)"):
        mg.train_(lambda x, y: 0.0, ps, [np.zeros(2)], mg.Descent())

    def inner_error(x, y):                     # a TypeError inside the loss is left alone
        return len(5)

    with pytest.raises(TypeError, match="has no len"):
        mg.train_(inner_error, ps, [(1, 2)], mg.Descent())


def test_integer_labels_given_to_a_one_hot_loss_point_to_onehotbatch():
    logits, labels = np.zeros((10, 5)), np.arange(5)
    for loss in (mg.losses.logitcrossentropy, mg.losses.crossentropy):
        with pytest.raises(ValueError, match=r"minigrad\.onehotbatch\(y, range\(10\)\)"):
            loss(logits, labels)
    with pytest.raises(ValueError, match=r"they must match$"):       # no hint for other cases
        mg.losses.mse(np.zeros(3), np.zeros(4))


# -- examples, command line, repository ----------------------------------------------------------

def test_playground_example_without_matplotlib_exits_cleanly(monkeypatch, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("playground_example",
                                                  ROOT / "examples" / "playground.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)     # as if not installed
    with pytest.raises(SystemExit) as info:
        module.main(["--problems", "beale", "--rules", "Adam", "--steps", "5", "--out",
                     "never.png"])
    assert info.value.code == 1
    assert "needs matplotlib: pip install matplotlib" in capsys.readouterr().err


def test_compare_says_adadelta_has_no_learning_rate(capsys):
    assert cli(["compare", "--rules", "AdaDelta,Adam", "--steps", "20"]) == 0
    assert "AdaDelta has no learning rate: its 'rate' is its ϵ" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs git and a checkout")
def test_pictures_written_in_the_repository_root_are_ignored():
    def ignored(path):
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert ignored("loss.png") and ignored("playground.png")
    assert not ignored("docs/playground.png")


def test_readme_says_how_long_the_tests_take_and_how_to_run_the_quick_part():
    readme = (ROOT / "README.md").read_text()
    assert '-m "not slow"' in readme and "minutes" in readme


def test_quickstart_points_to_the_main_job():
    text = (ROOT / "docs" / "quickstart.md").read_text()
    assert "examples/classify_digits.py" in text and "the main example" not in text

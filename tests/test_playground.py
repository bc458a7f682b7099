"""The optimiser playground: the picture the docs show is drawn again here, and its numbers hold.

``examples/playground.py`` runs every rule on Rosenbrock and Beale at the figure's tuned
rates and saves the picture; this test draws it into a temporary folder (the committed copy is
``docs/playground.png``) and checks what the picture shows: Adam reaches Rosenbrock's minimum,
no rule blows up at its tuned rate, and the rates are the ones ``tune`` picks.
"""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import playground as pg

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("playground_example",
                                                  ROOT / "examples" / "playground.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_the_picture_is_drawn_and_shows_what_the_docs_say(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "playground.png"
    runs = _example().main(["--out", str(out)])
    printed = capsys.readouterr().out
    assert f"picture saved to {out}" in printed
    # The picture: a real PNG of the same size as the one the docs show.
    assert out.stat().st_size > 100_000
    assert _png_size(out) == _png_size(ROOT / "docs" / "playground.png")

    rosen = {r.rule: r for r in runs["rosenbrock"]}
    beale = {r.rule: r for r in runs["beale"]}
    assert set(rosen) == set(beale) == set(pg.RULES) and len(pg.RULES) == 14
    for results in (rosen, beale):
        for r in results.values():
            assert not r.diverged and r.path.shape == (1001, 2), r.rule
            assert r.losses[-1] < r.losses[0], r.rule          # every rule makes progress
    # Adam, at the figure's rate, reaches Rosenbrock's minimum (1, 1) within 1000 steps.
    adam = rosen["Adam"]
    assert adam.rate == pg.PROBLEMS["rosenbrock"].rates["Adam"] == 0.5
    assert np.allclose(adam.final, [1.0, 1.0], atol=1e-5) and adam.losses[-1] < 1e-10
    assert adam.settled(1e-3) < 400
    # ... and Beale's (3, 0.5), as do most rules there.
    assert np.allclose(beale["Adam"].final, [3.0, 0.5], atol=1e-8)
    assert sum(r.settled(1e-3) is not None for r in beale.values()) >= 11
    # Plain descent is still walking Rosenbrock's valley at the end; momentum is not.
    assert rosen["Descent"].losses[-1] > 0.03 and rosen["Momentum"].losses[-1] < 1e-6
    # The tables name every rule.
    assert all(name in printed for name in pg.RULES)


def test_the_figure_rates_are_what_tune_picks():
    problem = pg.PROBLEMS["beale"]
    # the stored rate beats its neighbours on the grid (the full grid: minigrad.playground.GRID)
    assert pg.tune("Nesterov", problem, grid=(0.002, 0.005, 0.01)) == problem.rates["Nesterov"]
    assert problem.rates["Nesterov"] == 0.005


def test_run_follows_update_and_stops_on_divergence():
    r = pg.run("Descent", "rosenbrock", steps=1, rate=1e-3)
    grad = np.array([-2 * (1 - -1.2) - 400 * -1.2 * (1 - 1.44), 200 * (1 - 1.44)])
    assert np.allclose(r.path[1], np.array([-1.2, 1.0]) - 1e-3 * grad)
    blown = pg.run("Descent", "rosenbrock", rate=0.1)
    assert blown.diverged and len(blown.path) < 1001 and "diverged" in pg.table([blown])
    chain = pg.run(mg.Optimiser(mg.ClipNorm(1.0), mg.Descent(0.01)), "rosenbrock", steps=5)
    assert chain.rule == "ClipNorm+Descent" and not chain.diverged


def test_bad_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown rule 'Adamm'.*Adam"):
        pg.run("Adamm", "beale", steps=1)
    with pytest.raises(ValueError, match="unknown rule"):
        pg.compare("beale", ["Adam", "SGDD"], steps=1)


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    results = pg.compare("beale", ["Adam"], steps=2)
    with pytest.raises(ModuleNotFoundError, match="pip install matplotlib"):
        pg.plot(results, str(tmp_path / "x.png"))


def test_import_minigrad_stays_light():
    """``import minigrad`` loads neither matplotlib nor the command line and its helpers."""
    code = ("import sys, minigrad\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m in "
            "('minigrad.cli', 'minigrad.playground', 'minigrad.demo', 'minigrad.bench', "
            "'sklearn')]\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"

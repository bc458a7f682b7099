"""The command line: ``python -m minigrad`` / ``minigrad`` with ``demo``, ``compare``, ``bench``.

Each command runs here with small sizes, through ``minigrad.cli.main`` (the function the
``minigrad`` script calls) and once through ``python -m minigrad`` in a fresh process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minigrad as mg
from minigrad.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_python_dash_m_minigrad_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "minigrad", "--help"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("demo", "compare", "bench"):
        assert command in out.stdout
    assert "usage: python -m minigrad" in out.stdout


def test_the_minigrad_script_is_declared():
    tomllib = pytest.importorskip("tomllib")                # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"minigrad": "minigrad.cli:main"}


@pytest.mark.parametrize("command, words", [
    ("demo", ["--model", "--epochs", "--seed", "--plot", "--quiet", "digits", "CNN"]),
    ("compare", ["--problem", "--rules", "--steps", "--lr", "--plot", "rosenbrock", "beale"]),
    ("bench", ["--size", "--rules", "--dtype", "--rounds", "memory traffic"]),
])
def test_each_command_has_help(command, words, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in words:
        assert word in text, (command, word)


def test_demo_help_prints_single_percent_signs(capsys):
    """argparse does not %-format a description: '25%%' there was printed as is."""
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "25% held out" in " ".join(out.split()) and "%%" not in out


def test_no_command_or_a_bad_one_is_a_usage_error(capsys):
    for argv in ([], ["train"], ["compare", "--rules", "Adam,Adamm"], ["bench", "--rules", "X"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
    assert "unknown rule(s) Adamm" in capsys.readouterr().err


def test_demo_trains_and_reports_the_held_out_accuracy(tmp_path, capsys):
    pytest.importorskip("sklearn")
    picture = tmp_path / "loss.png"
    assert main(["demo", "--epochs", "2", "--plot", str(picture)]) == 0
    out = capsys.readouterr()
    assert sum(line.startswith("epoch ") for line in out.out.splitlines()) == 2
    accuracy = float(re.search(r"held-out accuracy: ([\d.]+)% on 449 images", out.out)[1])
    assert accuracy > 85
    assert "steps/s" in out.err                       # the progress line
    if "loss curve saved" in out.out:                 # matplotlib installed
        assert picture.read_bytes()[:4] == b"\x89PNG"


def test_compare_prints_a_table_and_saves_a_plot(tmp_path, capsys):
    picture = tmp_path / "beale.png"
    argv = ["compare", "--problem", "beale", "--rules", "Adam,Nesterov,Descent", "--plot",
            str(picture)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "beale: start (1.0, 1.5), minimum (3.0, 0.5), 1000 steps of each rule"
    assert lines[1].split()[:3] == ["rule", "rate", "final"]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert list(rows) == ["Adam", "Nesterov", "Descent"]            # best final loss first
    assert rows["Adam"][1] == "0.5" and rows["Adam"][3:5] == ["(3.000,", "0.500)"]
    assert rows["Descent"][-2:] == ["step", "282"]
    if "picture saved" in lines[-1]:
        assert picture.read_bytes()[:4] == b"\x89PNG"


def test_compare_with_one_rate_for_all(capsys):
    assert main(["compare", "--rules", "Adam,Momentum", "--steps", "50", "--lr", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "50 steps of each rule at learning rate 0.001" in out
    assert re.search(r"^Adam\s+0\.001\s", out, re.M) and re.search(r"^Momentum\s+0\.001\s", out,
                                                                      re.M)


def test_bench_measures_kernels_against_the_bound(capsys):
    argv = ["bench", "--size", "2e4", "--rules", "Descent,Adam", "--rounds", "3", "--calls", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ")
    assert "20,000 float32 parameters" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("Descent", "Adam")}
    assert rows["Descent"][1] == "12" and rows["Adam"][1] == "28"      # bytes per parameter
    for row in rows.values():
        ms, bound_ms, ratio = float(row[2]), float(row[4]), float(row[7])
        assert ms > 0 and bound_ms > 0 and ratio == pytest.approx(ms / bound_ms, rel=0.02)


def test_precompile_fills_the_cache_that_a_later_process_loads(tmp_path):
    """``python -m minigrad precompile`` compiles every built-in rule's kernel (serial and
    multi-threaded) and the norm's; a later process then loads Adam's from the cache instead
    of compiling."""
    env = {**os.environ, "MINIGRAD_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "minigrad", "precompile", "--dtypes", "float32"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    count = 2 * len(mg.optimise.rules.builtin_rules()) + 2      # (+ the norm's, serial and not)
    assert out.stdout.startswith(f"{count} kernels ready in {tmp_path}")
    script = ("import numpy as np, minigrad as mg; from minigrad.optimise import kernels; "
              "p = mg.param(np.ones(3, np.float32)); mg.update_(mg.Adam(), p, p.data.copy()); "
              "print(sum(sum(k.stats.cache_hits.values()) for k in kernels._kernels.values()))")
    later = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, timeout=300)
    assert later.returncode == 0 and later.stdout.split() == ["1"], later.stderr

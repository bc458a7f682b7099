"""Each seed example has a script in examples/ that runs and prints what the seed claims."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("seed_*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_a_script_for_seeds_001_to_003():
    names = {p.name[:8] for p in SCRIPTS}
    assert {"seed_001", "seed_002", "seed_003"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_seed_script_runs(script: Path, capsys):
    module = _load(script)
    if inspect.signature(module.main).parameters:           # an argparse main(argv)
        text = script.read_text()
        args = ["--seed", "18"] if "--seed" in text else []
        module.main(args + (["--steps", "2000"] if "--steps" in text else []))
    else:
        module.main()
    assert capsys.readouterr().out.strip()


def test_seed_003_script_shows_the_loss_going_down(capsys):
    losses = _load(EXAMPLES / "seed_003_tracker_optimisers.py").main(["--seed", "18"])
    assert 2.5 < losses["start"] < 3.5                                       # "~ 3"
    assert losses["start"] > losses["plain"] > losses["descent"] > losses["adam"]
    out = capsys.readouterr().out
    assert re.search(r"loss at the start:\s+3\.02", out)


def test_seed_001_script_prints_every_section(capsys):
    """Every section of seed 001 runs; the page's claims come out as the docs pages state."""
    _load(EXAMPLES / "seed_001_optimisers.py").main(["--seed", "18", "--steps", "5000"])
    out = capsys.readouterr().out
    sections = re.findall(r"^== (.+) ==$", out, re.M)
    assert sections == ["Opening", "Optimiser Reference", "Optimiser Interface",
                        "Composing Optimisers", "Scheduling Optimisers", "Decays",
                        "Gradient Clipping"]

    def claim(text):                                        # what the script got for a claim
        return re.search(r"^  " + re.escape(text) + r": (.+)$", out, re.M)[1]

    assert claim("l = loss(x, y) # ~ 3") == "3.02"                          # docs/optimisers.md
    assert claim("update!(p, η * grads[p]): our loss should go down").endswith("(down)")
    assert claim("update!(Descent(0.1), p, grads[p]): the same step as the plain loop"
                 ).startswith("yes")
    assert 2 < float(claim("loss(rand(10)) # around 9")) < 20
    assert float(claim("loss(rand(10)) # around 0.9, after 5000 (the page: 10^5) steps")) < 0.01
    assert "changed at steps [1000, 2000, 3000, 4000], ends at 0.0001" in out
    assert claim("Stateful + next!: the same 100 values") == "yes"
    differences = re.findall(r"max difference (\S+)$", out, re.M)
    assert len(differences) == 4 and all(float(d) < 1e-12 for d in differences)

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
        module.main(["--seed", "18"] if "--seed" in script.read_text() else [])
    else:
        module.main()
    assert capsys.readouterr().out.strip()


def test_seed_003_script_shows_the_loss_going_down(capsys):
    losses = _load(EXAMPLES / "seed_003_tracker_optimisers.py").main(["--seed", "18"])
    assert 2.5 < losses["start"] < 3.5                                       # "~ 3"
    assert losses["start"] > losses["plain"] > losses["descent"] > losses["adam"]
    out = capsys.readouterr().out
    assert re.search(r"loss at the start:\s+3\.02", out)

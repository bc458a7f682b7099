"""Every docstring example in minigrad must stay true.

Each module of the package (found by walking it, so new modules are covered without touching
this file) is imported and run through :func:`doctest.testmod` with ``ELLIPSIS`` and
``NORMALIZE_WHITESPACE``; any failing example fails the test with doctest's own report.
Importing a module must not fail either (the CPU path never needs a GPU).
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import importlib.util
import io
import os
import pkgutil

import pytest

import minigrad

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

MODULES = ["minigrad"] + sorted(
    info.name for info in pkgutil.walk_packages(minigrad.__path__, prefix="minigrad.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    if (name == "minigrad.distributed" and importlib.util.find_spec("mpi4py") is None
            and os.environ.get("MINIGRAD_REQUIRE_MPI") != "1"):
        pytest.skip('its examples call MPI: pip install -e ".[mpi]"')
    module = importlib.import_module(name)
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        result = doctest.testmod(module, optionflags=FLAGS, report=True)
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} docstring examples in {name} failed:\n"
        + report.getvalue()
    )


def test_the_package_has_docstring_examples() -> None:
    finder = doctest.DocTestFinder()
    total = sum(
        len(test.examples)
        for name in MODULES
        for test in finder.find(importlib.import_module(name))
    )
    assert total >= 20, f"only {total} docstring examples in minigrad"

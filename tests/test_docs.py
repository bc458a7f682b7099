"""The documentation is a test suite: every ```python block of every page must run.

Each page (``docs/*.md`` and ``README.md``) is executed like a notebook: its ```python blocks
run in page order, in one namespace per page, so a later block sees the names an earlier
block defined.  Pages state their claims as plain ``assert`` lines, so a claim that stops
being true fails here, naming the page, the block number and the line.

Options after ``python`` on the opening fence line:

* ``no-run``: the block is shown but never executed (use sparingly: output-only or
  illustrative fragments).
* ``needs=NAME[,NAME...]``: run the block only once every ``NAME`` exists under
  ``minigrad`` (``needs=Descent``, ``needs=optimise.train_``); until then it is reported as
  skipped.  This lets a page show an API that is planned, and starts testing it the day it
  lands.

Any other option is an error, so a typo cannot silently switch a block off.
"""

from __future__ import annotations

import importlib
import re
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_OPTIONS = ("no-run", "needs=")


class DocBlockError(AssertionError):
    """A documentation block failed: the message names the page, block number and line."""


@dataclass
class Block:
    page: Path
    number: int        # 1-based, counting the page's ```python blocks only
    line: int          # 1-based line of the block's first code line in the page
    options: tuple
    code: str

    @property
    def where(self) -> str:
        return f"{_display(self.page)}, python block {self.number} (line {self.line})"


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def python_blocks(page: Path) -> list[Block]:
    """The ```python blocks of ``page``, in order, with their options checked."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        start = i
        i += 1
        body = []
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (closing and closing["fence"][0] == fence[0]
                    and len(closing["fence"]) >= len(fence) and not closing["info"].strip()):
                break
            body.append(lines[i])
            i += 1
        else:
            raise DocBlockError(f"{_display(page)}: the code fence opened on line {start + 1} "
                                "is never closed")
        i += 1
        words = info.split()
        if not words or words[0] != "python":
            continue
        options = tuple(words[1:])
        for option in options:
            if not (option == "no-run" or option.startswith("needs=")):
                raise DocBlockError(
                    f"{_display(page)}, line {start + 1}: unknown block option {option!r} "
                    f"(known: {', '.join(_OPTIONS)})")
        blocks.append(Block(page, len(blocks) + 1, start + 2, options,
                            textwrap.dedent("\n".join(body))))
    return blocks


def _resolve(name: str) -> bool:
    """Whether ``minigrad.<name>`` exists (attribute or submodule)."""
    obj = importlib.import_module("minigrad")
    path = "minigrad"
    for part in name.split("."):
        path += "." + part
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(path)
        except ImportError:
            return False
    return True


def skip_reason(block: Block) -> str | None:
    """Why ``block`` is not run, or ``None`` when it runs."""
    for option in block.options:
        if option == "no-run":
            return "marked no-run"
        if option.startswith("needs="):
            missing = [n for n in option[len("needs="):].split(",") if n and not _resolve(n)]
            if missing:
                return "needs minigrad." + ", minigrad.".join(missing) + " (not there yet)"
    return None


def _failing_line(block: Block, err: BaseException) -> str:
    """The page lines (with their text) on the way to ``err``, outermost call first."""
    filename = str(block.page)
    page_lines = block.page.read_text(encoding="utf-8").splitlines()
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
    return "".join(f"\n  line {f.lineno}: {page_lines[f.lineno - 1].strip()}" for f in frames)


def run_page(page: Path) -> list[tuple[Block, str]]:
    """Run the python blocks of ``page`` in order in one fresh namespace.

    Returns ``(block, outcome)`` pairs, ``outcome`` being ``"ran"`` or ``"skipped: why"``.
    The first failing block raises :class:`DocBlockError` naming the page, the block number
    and the failing line; later blocks are not run (they usually depend on it).
    """
    namespace: dict = {"__name__": f"__docs_{page.stem}__"}
    results = []
    for block in python_blocks(page):
        reason = skip_reason(block)
        if reason:
            results.append((block, f"skipped: {reason}"))
            continue
        # Pad with blank lines so tracebacks give line numbers of the page itself.
        source = "\n" * (block.line - 1) + block.code
        try:
            exec(compile(source, str(block.page), "exec"), namespace)
        except Exception as err:
            detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            raise DocBlockError(
                f"{block.where} failed: {detail}{_failing_line(block, err)}") from err
        results.append((block, "ran"))
    return results


# -- the pages -----------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=[_display(p) for p in PAGES])
def test_page(page: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    results = run_page(page)
    for block, outcome in results:
        if outcome != "ran":
            print(f"{block.where}: {outcome}")      # shown by pytest -rA
    assert any(outcome == "ran" for _, outcome in results), f"{_display(page)} ran no code"


def test_docs_pages_exist() -> None:
    names = {p.name for p in DOCS.glob("*.md")}
    expected = {"index.md", "quickstart.md", "autograd.md", "layers_losses.md", "seeds.md",
                "julia_names.md",
                # seed 001's sections, a page each; seed 003's page; the playground
                "optimisers.md", "optimiser_interface.md", "composing.md", "scheduling.md",
                "decays.md", "clipping.md", "tracker_optimisers.md", "playground.md"}
    assert expected <= names, f"missing docs pages: {sorted(expected - names)}"


def test_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"


_LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)#\s]+)(#[^)]*)?\)")


_CODE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$|`[^`\n]*`", re.M | re.S)


@pytest.mark.parametrize("page", PAGES, ids=[_display(p) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    text = _CODE.sub("", page.read_text(encoding="utf-8"))     # links in code are not links
    broken = [target for target, _ in _LINK.findall(text)
              if not (page.parent / target).exists()]
    assert not broken, f"{_display(page)} links to missing files: {broken}"


def test_no_run_is_rare() -> None:
    blocks = [b for p in PAGES for b in python_blocks(p)]
    silenced = [b.where for b in blocks if "no-run" in b.options]
    assert len(silenced) <= max(2, len(blocks) // 10), f"too many no-run blocks: {silenced}"


# -- the harness itself --------------------------------------------------------------------------

def _page(tmp_path: Path, text: str, name: str = "page.md") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_harness_fails_on_a_broken_claim(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        # A page with a false claim

        ```python
        x = 1 + 1
        ```

        Some prose, then a claim that is wrong:

        ```python
        y = x * 3
        assert y == 7
        ```
        """)
    with pytest.raises(DocBlockError) as info:
        run_page(page)
    message = str(info.value)
    assert "page.md" in message
    assert "python block 2" in message
    assert "line 11: assert y == 7" in message
    assert isinstance(info.value.__cause__, AssertionError)


def test_harness_names_the_block_of_any_error(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        ```python
        import math
        ```
        ```python
        math.sqrt(-1)
        ```
        """)
    with pytest.raises(DocBlockError, match=r"python block 2 \(line 5\) failed: ValueError"):
        run_page(page)


def test_harness_shares_one_namespace_per_page(tmp_path: Path) -> None:
    first = _page(tmp_path, """\
        ```python
        shared = 41
        ```
        ```python
        shared += 1
        assert shared == 42
        ```
        """, "first.md")
    second = _page(tmp_path, """\
        ```python
        assert "shared" not in globals()
        ```
        """, "second.md")
    assert [o for _, o in run_page(first)] == ["ran", "ran"]
    assert [o for _, o in run_page(second)] == ["ran"]


def test_harness_skips_no_run_needs_and_other_languages(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        ```julia
        this is not python
        ```
        ```bash
        exit 1
        ```
        ```python no-run
        raise RuntimeError("never run")
        ```
        ```python needs=SomethingNotInMinigrad
        raise RuntimeError("never run either")
        ```
        ```python needs=Dense,tracker.back_
        import minigrad as mg
        assert mg.Dense
        ```
        """)
    outcomes = [o for _, o in run_page(page)]
    assert outcomes == ["skipped: marked no-run",
                        "skipped: needs minigrad.SomethingNotInMinigrad (not there yet)",
                        "ran"]


def test_harness_rejects_unknown_options_and_open_fences(tmp_path: Path) -> None:
    typo = _page(tmp_path, "```python norun\nraise SystemExit\n```\n", "typo.md")
    with pytest.raises(DocBlockError, match="unknown block option 'norun'"):
        run_page(typo)
    unclosed = _page(tmp_path, "text\n```python\nx = 1\n", "open.md")
    with pytest.raises(DocBlockError, match="opened on line 2 is never closed"):
        run_page(unclosed)


def test_a_real_page_with_a_broken_claim_fails(tmp_path: Path) -> None:
    """Seed 003's page claims the starting loss is 3.02 with its seed; the same page claiming
    9.99 must fail, naming the page, the block and the line of the claim."""
    page = DOCS / "tracker_optimisers.md"
    text = page.read_text(encoding="utf-8")
    claim = "abs(l - 3.02) < 0.005"
    assert text.count(claim) == 1
    broken = _page(tmp_path, text.replace(claim, "abs(l - 9.99) < 0.005"),
                   "tracker_optimisers.md")
    with pytest.raises(DocBlockError) as info:
        run_page(broken)
    message = str(info.value)
    assert "tracker_optimisers.md, python block 1" in message
    assert "failed: AssertionError" in message and "abs(l - 9.99) < 0.005" in message


"""Every ```python block of README.md and docs/ runs on its own, as a reader would paste it.

Each block runs in a fresh namespace, in a temporary working directory (snippets that save
files write there), after the file's *preamble* when the file declares one. Markers in the
markdown (HTML comments, invisible when rendered), on the line right before a block:

- ``<!-- preamble -->``: the block runs first for every later block of the same file (a
  page that says "every example below runs after this preamble").
- ``<!-- needs: cuda -->``: the block runs only where a GPU is (marked ``gpu``).
- ``<!-- not run: REASON -->``: the block is skipped, with the reason in the report.
- ``<!-- shorten -->``: a full training run (minutes): it runs with every ``range(...)``
  cut to its first two items and a literal ``epochs=N`` set to 1. Every line still runs,
  with real data, shapes and APIs; what the full-length runs reach is checked by the slow
  tests of the recipes (tests/test_models_*.py) and recorded in docs/models/. Even cut,
  these take seconds to a minute each, so they run with the slow tests (`make test-slow`).

Every other block runs exactly as printed, asserts included.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*(preamble|shorten|needs:\s*cuda|not run:(.*?))\s*-->\s*$")


def _blocks(path: Path):
    """(line, code, marker, reason) for each python block of ``path``."""
    text = path.read_text()
    out = []
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARKER.search(before)
        kind = None if mark is None else mark.group(1).split(":")[0].strip()
        reason = mark.group(2).strip() if mark is not None and mark.group(2) else ""
        out.append((line, m.group(1), kind, reason))
    return out


class _Shorten(ast.NodeTransformer):
    """A literal ``epochs=N`` becomes ``epochs=1`` (``range`` is cut in the namespace)."""

    def visit_Call(self, node):
        self.generic_visit(node)
        for kw in node.keywords:
            if (kw.arg == "epochs" and isinstance(kw.value, ast.Constant)
                    and isinstance(kw.value.value, int) and kw.value.value > 1):
                kw.value = ast.Constant(1)
        return node


def _short_range(*args):
    return range(*args)[:2]


def _compile(code: str, name: str, shorten: bool):
    tree = ast.parse(code, name)
    if shorten:
        tree = ast.fix_missing_locations(_Shorten().visit(tree))
    return compile(tree, name, "exec")


def _cases():
    cases = []
    for path in FILES:
        preambles = []
        for line, code, kind, reason in _blocks(path):
            name = f"{path.relative_to(ROOT)}:{line}"
            marks = []
            if kind == "not run":
                marks.append(pytest.mark.skip(reason=f"{name}: not run: {reason}"))
            elif kind == "needs":
                marks.append(pytest.mark.gpu)
            elif kind == "shorten":
                marks.append(pytest.mark.slow)
            cases.append(pytest.param(name, code, tuple(preambles), kind == "shorten",
                                      marks=marks, id=name))
            if kind == "preamble":
                preambles.append(code)
    return cases


CASES = _cases()


def test_docs_have_python_examples():
    # guards the collection itself: a broken pattern would silently test nothing
    assert len(CASES) >= 40, [c.id for c in CASES]


@pytest.mark.parametrize("name,code,preambles,shorten", CASES)
def test_doc_example_runs_on_its_own(name, code, preambles, shorten, tmp_path, monkeypatch):
    import pydl

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__doc_example__"}
    if shorten:
        namespace["range"] = _short_range
    pydl.manual_seed(0)
    for pre in preambles:
        exec(_compile(pre, name + " (preamble)", False), namespace)
    exec(_compile(code, name, shorten), namespace)

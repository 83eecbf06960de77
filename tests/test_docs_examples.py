"""Every Python example in README.md and docs/ runs, and no doc links outside the repository.

The convention (also in docs/contributing-docs.md):

* Every block fenced as ```` ```python ```` runs; other languages (``sh``, ``text``,
  ``json``, ``ts``) do not. Blocks of one file run in order, in one namespace, from the
  repository root, so a later block may use what an earlier one defined.
* They run against the real Redis server of the test session (``REDIS_URL``) on a channel
  of their own (``MEDIA_PROGRESS_CHANNEL_NAME``), so ``ProgressPublisher()`` works as
  written. Every ``ProgressPublisher`` left in the namespace is closed at the end.
* A top-level ``test_*`` function a block defines is called right after it, with the
  fixtures ``monkeypatch``, ``progress_events`` and ``tmp_path`` by parameter name.
* An HTML comment on the line just before the fence changes that block:
  ``<!-- docs-example: module NAME -->`` runs it as module NAME (later blocks
  ``import NAME``); ``<!-- docs-example: skip REASON -->`` does not run it (for an
  example that needs something the suite cannot give it: a relay, a browser...), and a
  reason is required.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from progress_sdk import ProgressPublisher
from progress_sdk.testing import CapturingPublisher

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARKER = re.compile(r"<!--\s*docs-example:\s*(\w+)\s*(.*?)\s*-->\s*$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")

pytestmark = pytest.mark.redis


@dataclass(frozen=True)
class Block:
    """One ```python block of a document."""

    path: Path
    line: int
    code: str
    marker: str | None
    argument: str


def blocks_of(path: Path) -> list[Block]:
    """The python blocks of ``path``, with the marker comment just before each."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        line = text.count("\n", 0, match.start()) + 2
        found.append(Block(path, line, match.group(1), marker and marker.group(1),
                           marker.group(2) if marker else ""))
    return found


def _call_tests(namespace: dict[str, Any], before: set[str], tmp_path: Path) -> None:
    for name, value in list(namespace.items()):
        if name in before or not name.startswith("test_") or not callable(value):
            continue
        with pytest.MonkeyPatch.context() as monkeypatch:
            fixtures = {"monkeypatch": monkeypatch, "progress_events": CapturingPublisher(),
                        "tmp_path": tmp_path}
            params = inspect.signature(value).parameters
            value(**{p: fixtures[p] for p in params})


def _run_block(block: Block, namespace: dict[str, Any], tmp_path: Path) -> None:
    path = block.path
    where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{block.line}"
    code = compile(block.code, where, "exec")
    if block.marker == "module":
        module = types.ModuleType(block.argument)
        sys.modules[block.argument] = module
        exec(code, module.__dict__)
        namespace[block.argument] = module
        return
    before = set(namespace)
    exec(code, namespace)
    _call_tests(namespace, before, tmp_path)


@pytest.fixture
def docs_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The examples' world: the repo as cwd, the test Redis, a channel of their own."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("MEDIA_PROGRESS_CHANNEL_NAME", f"docs-examples-{uuid.uuid4().hex}")
    monkeypatch.delenv("PROGRESS_SDK_STRICT", raising=False)
    modules = set(sys.modules)
    yield
    for name in set(sys.modules) - modules:
        if isinstance(sys.modules[name], types.ModuleType) and not getattr(
            sys.modules[name], "__file__", None
        ):
            del sys.modules[name]


@pytest.mark.parametrize("path", [p for p in DOCS if blocks_of(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_run(path: Path, docs_env: None, tmp_path: Path) -> None:
    """Each ```python block of the document runs, in order, in one namespace."""
    namespace: dict[str, Any] = {"__name__": f"docs_example_{path.stem}"}
    try:
        for block in blocks_of(path):
            if block.marker == "skip":
                assert block.argument, f"{block.path}:{block.line}: a skip needs a reason"
                continue
            _run_block(block, namespace, tmp_path)
    finally:
        _close_publishers(namespace)


def _close_publishers(namespace: dict[str, Any]) -> None:
    values = list(namespace.values())
    for module in [v for v in values if isinstance(v, types.ModuleType)]:
        values.extend(vars(module).values())
    for value in values:
        if isinstance(value, ProgressPublisher):
            value.close(2)


def test_markers_are_known() -> None:
    """A mistyped marker would silently run or skip a block: only module and skip exist."""
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for marker in re.findall(r"<!--\s*docs-example:\s*(\w+)", text):
            assert marker in ("module", "skip"), f"{path}: unknown docs-example marker {marker}"


def test_the_runner_finds_the_examples() -> None:
    """The README and the publisher guide have examples, so an empty match is a bug here."""
    assert blocks_of(ROOT / "README.md")
    assert len(blocks_of(ROOT / "docs" / "publisher.md")) >= 5


def test_a_failing_example_fails(tmp_path: Path, docs_env: None) -> None:
    """The runner reports an example that raises, naming the document and line."""
    doc = tmp_path / "bad.md"
    doc.write_text("text\n\n```python\nx = 1\n```\n\n```python\nraise_if_no_face()\n```\n")
    namespace: dict[str, Any] = {}
    blocks = blocks_of(doc)
    assert [b.line for b in blocks] == [4, 8]
    _run_block(blocks[0], namespace, tmp_path)
    with pytest.raises(NameError) as info:
        _run_block(Block(doc, blocks[1].line, blocks[1].code, None, ""), namespace, tmp_path)
    assert str(info.traceback[-1].path) == f"{doc}:8"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository(path: Path) -> None:
    """Relative links resolve to files of the repository; none climbs out of it."""
    for target in _LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(ROOT.resolve()), f"{path.name} links outside: {target}"
        assert resolved.exists(), f"{path.name} links to a missing file: {target}"

"""One table of event types: every other module's vocabulary is read from
``progress_sdk.event_types``, so an event type is spelled there and nowhere else in the
SDK or the simulator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from progress_sdk import EventType, event_json_schema
from progress_sdk.event_types import (
    ALL_EVENT_NAMES,
    COMPLETED_ALIAS,
    EVENT_TYPES,
    MEDIA_EVENT_NAMES,
    MEDIA_TERMINAL_NAMES,
    MODEL_EVENT_NAMES,
    MODEL_TERMINAL_NAMES,
    PHASE_EVENT_NAMES,
    PROGRESS_EVENT_NAMES,
)

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "progress_sdk" / "event_types.py"
NAMES = {*EVENT_TYPES, COMPLETED_ALIAS}


def spelled_names(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every string constant in ``path`` that is an event type's name.

    Prose that mentions a type (docstrings, comments, messages) is not a constant equal to
    the name, so only code that keys, compares or builds by a type's name is counted.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES
    ]


def test_the_scan_finds_a_spelled_name(tmp_path: Path) -> None:
    """The check below can fail: a module that spells a type is caught, prose is not."""
    module = tmp_path / "m.py"
    module.write_text(
        '"""Ends with PROCESSING_FAILED."""\n'
        'x = event == "PROCESSING_FAILED"\n'
        'y = {"ANALYSIS_COMPLETE": 1}\n'
        'z = f"{event} is not PROCESSING_STARTED"\n',
        encoding="utf-8",
    )
    assert spelled_names(module) == [(2, "PROCESSING_FAILED"), (3, COMPLETED_ALIAS)]
    assert spelled_names(TABLE), "the table itself spells every type"


@pytest.mark.parametrize("package", ["progress_sdk", "simulator"])
def test_an_event_type_is_spelled_only_in_the_table(package: str) -> None:
    """A new event type is one row of event_types, not an edit in every module that
    knows about types (the rules, the schema, tracking, snapshot, buffer, simulator)."""
    found = {
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != TABLE
        for line, name in spelled_names(path)
    }
    assert not found, "spell these via progress_sdk.event_types:\n" + "\n".join(sorted(found))


def test_the_enum_is_the_table() -> None:
    """EventType's members are the table's rows, in the table's order."""
    assert [e.value for e in EventType] == list(EVENT_TYPES)
    assert {e.name for e in EventType} == ALL_EVENT_NAMES
    for e in EventType:
        assert e.row is EVENT_TYPES[e.value]


def test_the_sets_partition_the_table() -> None:
    """Every type is a media or a model event; progress and phase events are model events,
    terminal events are one of each."""
    assert MEDIA_EVENT_NAMES | MODEL_EVENT_NAMES == ALL_EVENT_NAMES
    assert not MEDIA_EVENT_NAMES & MODEL_EVENT_NAMES
    assert PROGRESS_EVENT_NAMES | PHASE_EVENT_NAMES <= MODEL_EVENT_NAMES
    assert not PROGRESS_EVENT_NAMES & PHASE_EVENT_NAMES
    assert MEDIA_TERMINAL_NAMES <= MEDIA_EVENT_NAMES
    assert MODEL_TERMINAL_NAMES <= MODEL_EVENT_NAMES
    assert len(MEDIA_TERMINAL_NAMES) == len(MODEL_TERMINAL_NAMES) == 2


def test_each_row_carries_what_its_kind_needs() -> None:
    """A progress row has the tracking API's words and the panel's stage; a phase row its
    message; failures are terminal; a terminal row outranks every non-terminal one of its
    kind in the buffer."""
    for row in EVENT_TYPES.values():
        if row.kind == "progress":
            assert row.verb and row.unit and row.stage and row.overflow_rank == 0, row
        if row.phase is not None:
            assert row.verb and row.kind == "model", row
        if row.failure:
            assert row.terminal, row
        if row.terminal and row.kind == "model":
            assert row.status and row.overflow_rank == 2, row
        if row.kind == "media":
            assert row.overflow_rank >= 3, row


def test_the_schema_has_one_variant_per_row() -> None:
    """The JSON Schema's (and so the TypeScript types') variants follow the table."""
    schema = event_json_schema()
    titles = [ref["$ref"].rsplit("/", 1)[1] for ref in schema["oneOf"]]
    assert titles == [row.title for row in EVENT_TYPES.values()]
    for row in EVENT_TYPES.values():
        event = schema["$defs"][row.title]["properties"]["event"]
        assert row.name in event.get("enum", [event.get("const")])

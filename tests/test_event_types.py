"""One table of event types: every other module's vocabulary is read from
``progress_sdk.event_types``, so an event type is spelled there and nowhere else in the
SDK or the simulator."""

from __future__ import annotations

from progress_sdk import EventType, event_json_schema
from progress_sdk.event_types import (
    ALL_EVENT_NAMES,
    EVENT_TYPES,
    MEDIA_EVENT_NAMES,
    MEDIA_TERMINAL_NAMES,
    MODEL_EVENT_NAMES,
    MODEL_TERMINAL_NAMES,
    PHASE_EVENT_NAMES,
    PROGRESS_EVENT_NAMES,
)


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

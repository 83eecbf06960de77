"""The committed JSON Schema matches the event model, and `progress-sim schema` prints it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from progress_sdk import EventType, InvalidEventError, event_json_schema, parse_event
from simulator.cli import cli

SCHEMA_FILE = Path(__file__).parent.parent / "docs" / "schema" / "progress-event.v1.json"
FIXTURES = Path(__file__).parent / "fixtures"


def test_committed_schema_matches_the_model() -> None:
    """docs/schema/progress-event.v1.json is event_json_schema(); regenerate it if not."""
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == event_json_schema(), (
        "the event model changed: run `progress-sim schema > docs/schema/progress-event.v1.json`"
    )


def test_schema_command_prints_the_committed_schema() -> None:
    """`progress-sim schema` prints exactly the committed schema."""
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(SCHEMA_FILE.read_text())


def test_every_variant_requires_the_v1_envelope_and_data() -> None:
    """Each event type's variant requires what a v1 producer sends, data included."""
    schema = event_json_schema()
    for ref in schema["oneOf"]:
        variant = schema["$defs"][ref["$ref"].split("/")[-1]]
        assert {"media_id", "user_id", "event", "message", "data", "schema_version", "seq",
                "source", "timestamp"} <= set(variant["required"])


def test_one_variant_per_event_type_discriminated_by_event() -> None:
    """oneOf lists exactly one variant per EventType, each fixing `event`."""
    schema = event_json_schema()
    names = []
    for ref in schema["oneOf"]:
        event = schema["$defs"][ref["$ref"].split("/")[-1]]["properties"]["event"]
        names.extend(event.get("enum", [event.get("const")]))
    assert sorted(names) == sorted([*(e.value for e in EventType), "ANALYSIS_COMPLETE"])


def _strict_events() -> list[dict[str, Any]]:
    events = []
    for path in sorted(FIXTURES.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            if line.strip():
                try:
                    parse_event(line, strict=True)
                except InvalidEventError:
                    continue
                events.append(json.loads(line))
    return events


def test_sample_streams_match_exactly_one_variant() -> None:
    """Every strict v1 event of tests/fixtures validates against the schema (oneOf)."""
    validator = Draft202012Validator(event_json_schema())
    events = _strict_events()
    assert len(events) > 100
    for event in events:
        errors = list(validator.iter_errors(event))
        assert not errors, (event, errors[0].message)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"data": None}, "data is required"),
        ({"event": "ANALYSIS_FAILED", "data": {"model_name": "M"}}, "error_message"),
        ({"event": "FRAME_ANALYSIS_PROGRESS", "data": {"model_name": "M", "progress": 1}},
         "total"),
        ({"event": "ANALYSIS_STARTED", "data": {}}, "model_name"),
    ],
)
def test_the_schema_refuses_what_the_validator_refuses(change: dict[str, Any], why: str) -> None:
    """A missing data object or a per-type required data field fails the schema."""
    event = {"media_id": "m1", "user_id": "u1", "event": "PROCESSING_STARTED",
             "message": "m", "data": {}, "schema_version": 1, "seq": 1, "source": "s",
             "timestamp": "2026-11-26T05:00:00.123456Z", **change}
    event = {k: v for k, v in event.items() if v is not None}
    assert not Draft202012Validator(event_json_schema()).is_valid(event), why

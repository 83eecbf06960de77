"""The committed JSON Schema matches the event model, and `progress-sim schema` prints it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from progress_sdk import event_json_schema
from simulator.cli import cli

SCHEMA_FILE = Path(__file__).parent.parent / "docs" / "schema" / "progress-event.v1.json"


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


def test_schema_requires_the_v1_envelope() -> None:
    """The published schema requires what a v1 producer sends, envelope included."""
    required = set(event_json_schema()["required"])
    assert {"media_id", "user_id", "event", "message", "schema_version", "seq", "source",
            "timestamp"} <= required

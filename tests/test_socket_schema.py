"""The Python relay's socket payloads against docs/schema/socket-events.v1.json, the source
the browser package's types are generated from (clients/js; its side of the drift check is
in test_js_client.py). Every payload the relay emits for the sample streams validates, has
every required field and no field the schema does not name; a snapshot has exactly the
schema's fields. Issue #19."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from progress_sdk.snapshot import apply_event
from simulator.relay.routing import EventRouter
from simulator.relay.stats import RelayStats

ROOT = Path(__file__).parent.parent
SOCKET = json.loads((ROOT / "docs" / "schema" / "socket-events.v1.json").read_text())
CHANNEL = json.loads((ROOT / "docs" / "schema" / "progress-event.v1.json").read_text())
DEFINITION = {
    "progress_update": "ProgressUpdateEnvelope", "media_update": "MediaUpdate",
    "processing_error": "ProcessingError", "progress_snapshot": "ProgressSnapshot",
}  # fmt: skip
# progress_update's event and data are the channel event's (checked against its schema).
CARRIED = {"progress_update": {"event", "data"}}


def problems(name: str, payload: dict[str, Any]) -> list[str]:
    """What is wrong with one payload of socket event ``name``, by the socket schema."""
    definition = SOCKET["$defs"][DEFINITION[name]]
    validator = Draft202012Validator({**definition, "$defs": SOCKET["$defs"]})
    found = [f"{name}: {error.message}" for error in validator.iter_errors(payload)]
    unknown = set(payload) - set(definition["properties"]) - CARRIED.get(name, set())
    found += [f"{name}: {key!r} is not in the schema" for key in sorted(unknown)]
    return found


def sample_streams() -> list[list[dict[str, Any]]]:
    """Every JSON object of each sample stream (valid or not: the relay decides)."""
    streams = []
    for path in sorted((ROOT / "tests" / "fixtures").glob("*.ndjson")):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        streams.append([obj for obj in lines if isinstance(obj, dict)])
    return streams


def test_every_payload_the_relay_emits_matches_the_socket_schema() -> None:
    """The relay's emits for the sample streams: each payload valid, no unknown field, and
    each progress_update's event/data a valid channel event by the channel schema."""
    channel = Draft202012Validator(CHANNEL)
    seen: set[str] = set()
    found: list[str] = []
    for stream in sample_streams():
        found += relay_problems(stream, channel, seen)
    assert seen == {"progress_update", "media_update", "processing_error"}
    assert found == []


def relay_problems(stream: list[dict[str, Any]], channel: Draft202012Validator,
                   seen: set[str]) -> list[str]:
    """What is wrong with the payloads one relay emits for ``stream``."""
    router = EventRouter(RelayStats())  # one per stream: the streams share media ids
    found: list[str] = []
    for obj in stream:
        routed = router.route(json.dumps(obj))
        if routed is None:
            continue
        for name, payload in routed.emits:
            seen.add(name)
            found += problems(name, payload)
        if channel.is_valid(obj):  # a strict v1 event: its camelCase copy carries it whole
            update = routed.emits[0][1]
            assert channel.is_valid({**obj, "event": update["event"], "data": update["data"]})
    return found


def test_a_snapshot_has_exactly_the_schemas_fields() -> None:
    """MediaSnapshot.to_client() for every sample media: valid, and its fields and its
    models' fields are the schema's, no more and no fewer."""
    snapshots: list[Any] = []
    for stream in sample_streams():
        by_media: dict[str, Any] = {}
        for obj in stream:
            if isinstance(obj.get("media_id"), str):
                by_media[obj["media_id"]] = apply_event(by_media.get(obj["media_id"]), obj, 1.0)
        snapshots += by_media.values()
    assert len(snapshots) > 5
    media_fields = set(SOCKET["$defs"]["ProgressSnapshot"]["properties"])
    model_fields = set(SOCKET["$defs"]["ModelSnapshot"]["properties"])
    for snap in snapshots:
        payload = snap.to_client()
        assert problems("progress_snapshot", payload) == []
        assert set(payload) == media_fields
        for model in payload["models"]:
            assert set(model) == model_fields


def test_the_check_names_a_field_the_schema_does_not_have() -> None:
    """A payload with a field of its own, or without a required one, is reported."""
    payload = {"mediaId": "m1", "filename": None, "error": "boom", "code": 7}
    assert problems("processing_error", payload) == [
        "processing_error: Additional properties are not allowed ('code' was unexpected)",
        "processing_error: 'code' is not in the schema",
    ]
    assert problems("media_update", {"id": "m1"})  # required fields missing

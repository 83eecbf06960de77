"""The published JSON Schema of a v1 event: one variant per event type.

Committed at ``docs/schema/progress-event.v1.json`` (``progress-sim schema`` prints it) and
turned into the TypeScript types ``@progress-sdk/client`` exports
(``clients/js/src/generated/channel.ts``). A top-level ``oneOf`` discriminated by the
``event`` constant gives each event type its own ``data`` shape, so a TypeScript consumer
that narrows on ``event`` gets ``data.progress: number`` on a progress event and
``data.error_message: string`` on a failure, not one object of optional fields.

Field types and bounds come from the pydantic models in ``progress_sdk.events`` (one
source); which ``data`` fields each event type requires follows the contract (and
``progress_sdk._rules.check_data``). The schema describes what a v1 producer sends, so the
envelope (``schema_version``, ``seq``, ``source``, ``timestamp``) and ``data`` are required.
Lifecycle rules (ordering, seq) are the validator's, not the schema's.
"""

from __future__ import annotations

from typing import Any

from . import defaults as d
from .event_types import (
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    COMPLETED_ALIAS,
    EVENT_TYPES,
    PROCESSING_FAILED,
    EventTypeRow,
)
from .events import EventData, ProgressEvent

__all__ = ["event_json_schema"]

SCHEMA_ID = "https://progress-sdk.invalid/schema/progress-event.v1.json"

# data shape → (required fields, optional fields, description)
_DATA_SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "MediaData": ((), ("filename", "details"), "data of a media event."),
    "MediaFailedData": (
        ("error_message",), ("filename", "details"), f"data of {PROCESSING_FAILED}.",
    ),
    "ModelData": (
        ("model_name",), ("phase", "details"),
        "data of a model event without progress (queued, started, a phase step).",
    ),
    "ProgressData": (
        ("model_name", "progress", "total"), ("phase", "details"),
        "data of a *_PROGRESS event: 0 <= progress <= total, total > 0.",
    ),
    "CompletedData": (
        ("model_name",), ("prediction", "confidence", "phase", "details"),
        f"data of {ANALYSIS_COMPLETED}: the model's verdict.",
    ),
    "ModelFailedData": (
        ("model_name", "error_message"), ("phase", "details"),
        f"data of {ANALYSIS_FAILED}: error_message is shown to the user.",
    ),
}



def _data_shape(row: EventTypeRow) -> str:
    """The ``data`` shape of an event type's variant, from its row."""
    if row.kind == "media":
        return "MediaFailedData" if row.failure else "MediaData"
    if row.kind == "progress":
        return "ProgressData"
    if row.failure:
        return "ModelFailedData"
    return "CompletedData" if row.terminal else "ModelData"


_ENVELOPE_REQUIRED = ("media_id", "user_id", "message", *("schema_version", "seq", "source",
                                                           "timestamp"))


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A property schema without pydantic's ``null`` branch and ``default: null``.

    On the wire an absent field is left out, never ``null``.
    """
    out = {k: v for k, v in prop.items() if k not in ("anyOf", "default", "title")}
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        out.update(branches[0])
    elif branches:
        out["anyOf"] = branches
    if out.get("additionalProperties") == {"$ref": "#/$defs/JsonValue"}:
        out["additionalProperties"] = {"$ref": "#/$defs/JsonValue"}
    return out


def _data_def(required: tuple[str, ...], optional: tuple[str, ...], text: str,
              fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"The {text} Other keys are kept and forwarded (any JSON).",
        "properties": {name: _not_null(fields[name]) for name in (*required, *optional)},
        "required": list(required),
        "additionalProperties": {"$ref": "#/$defs/JsonValue"},
    }


def _variant(event: str, title: str, shape: str, envelope: dict[str, Any]) -> dict[str, Any]:
    names = [event, COMPLETED_ALIAS] if event == ANALYSIS_COMPLETED else [event]
    event_schema: dict[str, Any] = {"enum": names} if len(names) > 1 else {"const": event}
    if len(names) > 1:
        event_schema["description"] = (
            "ANALYSIS_COMPLETE is a read-side alias sent by some existing producers; "
            "this SDK never emits it."
        )
    return {
        "type": "object",
        "title": title,
        "description": f"One {event} event.",
        "properties": {
            **envelope,
            "event": event_schema,
            "data": {"$ref": f"#/$defs/{shape}"},
        },
        "required": sorted({*_ENVELOPE_REQUIRED, "event", "data"}),
    }


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of a v1 event, as committed at docs/schema/progress-event.v1.json."""
    model = ProgressEvent.model_json_schema(mode="validation")
    data_fields = EventData.model_json_schema(mode="validation")["properties"]
    envelope = {
        name: _not_null(prop)
        for name, prop in model["properties"].items()
        if name not in ("event", "data")
    }
    defs: dict[str, Any] = {
        "JsonValue": {
            "description": "Any JSON value.",
            "anyOf": [
                {"type": "null"},
                {"type": "boolean"},
                {"type": "number"},
                {"type": "string"},
                {"type": "array", "items": {"$ref": "#/$defs/JsonValue"}},
                {"type": "object", "additionalProperties": {"$ref": "#/$defs/JsonValue"}},
            ],
        },
        **{
            shape: _data_def(required, optional, text, data_fields)
            for shape, (required, optional, text) in _DATA_SHAPES.items()
        },
        **{
            row.title: _variant(row.name, row.title, _data_shape(row), envelope)
            for row in EVENT_TYPES.values()
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "ProgressEvent",
        "description": (
            "One progress event on the media-progress-events Redis channel (contract v1), "
            "one variant per event type, told apart by `event`. A whole serialised event "
            f"is at most {d.MAX_EVENT_BYTES} bytes. Lifecycle rules (ordering, seq) are "
            "checked by progress_sdk.contract, not by this schema."
        ),
        "oneOf": [{"$ref": f"#/$defs/{row.title}"} for row in EVENT_TYPES.values()],
        "$defs": defs,
    }

"""The v1 progress event: typed models, serialisation and parsing.

``ProgressEvent`` is what travels on the ``media-progress-events`` channel (see
docs/contract.md). Constructing one validates every contract rule and raises
``InvalidEventError`` naming each field and rule broken. ``parse_event`` reads a message
from any producer, leniently by default (other producers omit the v1 envelope fields) or
strictly; ``ProgressEvent.to_json_bytes`` serialises one for the wire. The published JSON Schema
(one variant per event type) is built from these models by ``progress_sdk.schema``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictFloat,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from . import _rules
from . import defaults as d
from ._free_json import check_free_json, has_free_json
from ._timestamps import parse_timestamp
from .event_types import COMPLETED_ALIAS, EventType, normalize_event_name
from .exceptions import InvalidEventError, Problem

__all__ = [
    "EventData",
    "EventType",
    "ProgressEvent",
    "parse_event",
]


def _normalise_event(value: Any) -> Any:
    return normalize_event_name(value) if isinstance(value, str) else value


_EventField = Annotated[
    EventType,
    BeforeValidator(_normalise_event),
    WithJsonSchema(
        {
            "type": "string",
            "enum": [*(e.value for e in EventType), COMPLETED_ALIAS],
            "description": "Event type. ANALYSIS_COMPLETE is a read-side alias of "
            "ANALYSIS_COMPLETED sent by some existing producers; this SDK never emits it.",
        }
    ),
]

_NonEmpty = r"\S"


def _iso_timestamp(value: Any) -> Any:
    # Pydantic alone also reads Unix times ("1700000000", 1700000000) and its own
    # variants of ISO 8601; the wire format is ISO 8601 as parse_timestamp reads
    # it, the same rule check_event applies.
    if value is None or isinstance(value, datetime):
        return value
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        raise ValueError(
            f"{str(value)[:64]!r} is not ISO 8601; send e.g. 2026-11-26T05:00:00.123456Z"
        )
    return parsed


def _exact_int(value: Any) -> Any:
    # Literal[1] alone accepts True and 1.0, which compare equal to 1 (even in strict
    # mode); on the wire they are not the integer 1, and _rules.check_event refuses them.
    if value is not None and type(value) is not int:
        raise ValueError(f"must be the integer {d.SCHEMA_VERSION}, got {value!r}")
    return value


class EventData(BaseModel):
    """The ``data`` object: everything the UI sees besides the message.

    Unknown keys are kept (other producers send them, and the relay forwards ``data``
    whole); they must be JSON.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, JsonValue] = Field(init=False)

    model_name: str | None = Field(
        None,
        min_length=1,
        max_length=d.MAX_MODEL_NAME_CHARS,
        pattern=_NonEmpty,
        description="Model this event is about; required on model-level events. The UI "
        "ignores names containing 'worker' or 'backend'.",
    )
    progress: StrictInt | None = Field(
        None, ge=0, le=d.MAX_JSON_INT, description="Units done, 0 <= progress <= total."
    )
    total: StrictInt | None = Field(
        None, gt=0, le=d.MAX_JSON_INT, description="Units in all, > 0."
    )
    phase: str | None = Field(
        None,
        min_length=1,
        max_length=d.MAX_PHASE_CHARS,
        pattern=_NonEmpty,
        description="Short machine-readable stage name.",
    )
    details: dict[str, JsonValue] | None = Field(None, description="Free JSON object.")
    prediction: str | None = Field(
        None,
        min_length=1,
        max_length=d.MAX_PREDICTION_CHARS,
        pattern=_NonEmpty,
        description='Verdict on ANALYSIS_COMPLETED, e.g. "FAKE" or "REAL".',
    )
    confidence: StrictFloat | None = Field(  # strict: not true, not "0.5"
        None, ge=0.0, le=1.0, allow_inf_nan=False, description="Confidence in 0..1."
    )
    error_message: str | None = Field(
        None,
        min_length=1,
        max_length=d.MAX_ERROR_MESSAGE_CHARS,
        pattern=_NonEmpty,
        description="Required on ANALYSIS_FAILED and PROCESSING_FAILED; the UI shows it.",
    )
    filename: str | None = Field(
        None,
        min_length=1,
        max_length=d.MAX_FILENAME_CHARS,
        pattern=_NonEmpty,
        description="Recommended on PROCESSING_STARTED; shown in the panel title.",
    )


class ProgressEvent(BaseModel):
    """One v1 progress event.

    ``schema_version``, ``seq``, ``source`` and ``timestamp`` may be left out when
    building an event for ``ProgressPublisher.emit``: the publisher fills them in.
    """

    model_config = ConfigDict(frozen=True)

    media_id: str = Field(
        min_length=1,
        max_length=d.MAX_MEDIA_ID_CHARS,
        pattern=_NonEmpty,
        description="The media this event is about.",
    )
    user_id: str = Field(
        min_length=1,
        max_length=d.MAX_USER_ID_CHARS,
        pattern=_NonEmpty,
        description="Owner of the media; the relay routes by it and drops events without it.",
    )
    event: _EventField
    message: str = Field(
        max_length=d.MAX_MESSAGE_CHARS,
        description="Human-readable text, shown to the user as text (never HTML).",
    )
    data: EventData = Field(default_factory=EventData)
    schema_version: Annotated[Literal[1] | None, BeforeValidator(_exact_int)] = Field(
        None, description="Always 1 for this contract."
    )
    seq: StrictInt | None = Field(
        None,
        ge=1,
        le=d.MAX_JSON_INT,
        description="Strictly increasing per (source, media_id); a gap is loss.",
    )
    source: str | None = Field(
        None,
        min_length=1,
        max_length=d.MAX_SOURCE_CHARS,
        pattern=_NonEmpty,
        description="One publisher instance, e.g. host:pid:random.",
    )
    timestamp: Annotated[AwareDatetime | None, BeforeValidator(_iso_timestamp)] = Field(
        None, description="ISO 8601 UTC time of emit, e.g. 2026-11-26T05:00:00.123456Z."
    )
    run_id: str | None = Field(
        None,
        min_length=1,
        max_length=d.MAX_RUN_ID_CHARS,
        pattern=_NonEmpty,
        description="One analysis run of a media (a media can be re-analysed).",
    )

    def __init__(self, **fields: Any) -> None:
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            raise _as_invalid_event(exc, fields.get("event")) from None

    @model_validator(mode="after")
    def _check_contract_rules(self) -> ProgressEvent:
        # Field types and bounds are declared above (they also make the JSON Schema);
        # the per-type rules live in _rules, shared with the hot paths.
        problems: list[Problem] = []
        data = self.data.model_dump(exclude_none=True)
        _rules.check_data(self.event.value, data, problems)
        if not problems and has_free_json(data):
            check_free_json(self.to_wire_dict(), problems)
        if problems:
            raise InvalidEventError(problems, event_type=self.event.value)
        return self

    def to_wire_dict(self) -> dict[str, Any]:
        """The event as the JSON object that goes on the wire (``None`` fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json_bytes(self) -> bytes:
        """Serialise for the wire: compact UTF-8 JSON, ``None`` fields left out."""
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def model_name(self) -> str | None:
        """Shortcut for ``data.model_name``."""
        return self.data.model_name


def _as_invalid_event(exc: ValidationError, event: object) -> InvalidEventError:
    problems: list[Problem] = []
    for err in exc.errors():
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, InvalidEventError):
            problems.extend(inner.problems)
            continue
        field = ".".join(str(part) for part in err["loc"]) or "$"
        problems.append(Problem(field, err["type"], err["msg"]))
    return InvalidEventError(problems, event_type=str(event) if event is not None else None)


def parse_event(raw: bytes | str | dict[str, Any], *, strict: bool = False) -> ProgressEvent:
    """Parse one message from the channel into a ``ProgressEvent``.

    ``strict`` requires the v1 envelope; lenient (the default) accepts producers that
    omit it. Raises ``InvalidEventError`` for anything else, naming every problem.
    """
    if isinstance(raw, dict):
        obj: Any = raw
    else:
        if len(raw) > d.MAX_EVENT_BYTES:
            raise InvalidEventError(
                [
                    Problem(
                        "$",
                        "max_size",
                        f"the event is {len(raw)} bytes, at most {d.MAX_EVENT_BYTES} allowed",
                    )
                ]
            )
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEventError([Problem("$", "json", f"not valid JSON: {exc}")]) from None
    event, problems = _rules.check_event(obj, strict=strict)
    if problems:
        raise InvalidEventError(problems, event_type=event)
    return ProgressEvent.model_validate(obj)


def format_timestamp(epoch_seconds: float) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``, as the contract's example shows."""
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

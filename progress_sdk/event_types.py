"""The v1 event types: the one table every other module derives its vocabulary from.

Each row says what one event type is: its kind (about the whole media, about one model,
or a model's progress), whether it ends a run and whether it is a failure, the phase the
tracking API gives it, the words of the tracking API's messages, the model row status
it sets, the stage its progress bar shows, its JSON Schema variant's title and its
overflow rank in the publisher's buffer. ``EventType``, the contract rules' sets
(``_rules``), the JSON Schema's variants (``schema``, and through the schema the
TypeScript types), the tracking and snapshot tables, the buffer's ranks and the
simulator's sets are all read from here, so that an event type is spelled in this module
only (a test holds every other module in ``progress_sdk/`` and ``simulator/`` to that).

The plain-string constants (``PROCESSING_STARTED`` ...) are what code compares with on
the hot paths: comparing with a plain ``str`` costs ~28 ns, with the ``EventType`` member
(an enum attribute lookup) ~150 ns, measured on the 2-core CI box (Python 3.11).

>>> from progress_sdk.event_types import EVENT_TYPES, MEDIA_TERMINAL_NAMES
>>> sorted(MEDIA_TERMINAL_NAMES)
['PROCESSING_COMPLETED', 'PROCESSING_FAILED']
>>> EVENT_TYPES["WINDOW_PROCESSING_PROGRESS"].unit
'windows'
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

from .exceptions import InvalidEventError, Problem

__all__ = [
    "ALL_EVENT_NAMES",
    "ANALYSIS_COMPLETED",
    "ANALYSIS_FAILED",
    "ANALYSIS_QUEUED",
    "ANALYSIS_STARTED",
    "AUDIO_EXTRACTION_COMPLETE",
    "AUDIO_EXTRACTION_START",
    "COMPLETED_ALIAS",
    "EVENT_TYPES",
    "FAILURE_EVENT_NAMES",
    "FRAME_ANALYSIS_PROGRESS",
    "MEDIA_EVENT_NAMES",
    "MEDIA_TERMINAL_NAMES",
    "MODEL_EVENT_NAMES",
    "MODEL_TERMINAL_NAMES",
    "PHASE_EVENT_NAMES",
    "PROCESSING_COMPLETED",
    "PROCESSING_FAILED",
    "PROCESSING_STARTED",
    "PROGRESS_EVENT_NAMES",
    "SPECTROGRAM_GENERATION_COMPLETE",
    "SPECTROGRAM_GENERATION_START",
    "VISUALIZATION_GENERATION_PROGRESS",
    "WINDOW_PROCESSING_PROGRESS",
    "EventType",
    "EventTypeRow",
    "Kind",
    "normalize_event_name",
]

Kind = Literal["media", "model", "progress"]

PROCESSING_STARTED: Final = "PROCESSING_STARTED"
PROCESSING_COMPLETED: Final = "PROCESSING_COMPLETED"
PROCESSING_FAILED: Final = "PROCESSING_FAILED"
ANALYSIS_QUEUED: Final = "ANALYSIS_QUEUED"
ANALYSIS_STARTED: Final = "ANALYSIS_STARTED"
FRAME_ANALYSIS_PROGRESS: Final = "FRAME_ANALYSIS_PROGRESS"
WINDOW_PROCESSING_PROGRESS: Final = "WINDOW_PROCESSING_PROGRESS"
VISUALIZATION_GENERATION_PROGRESS: Final = "VISUALIZATION_GENERATION_PROGRESS"
AUDIO_EXTRACTION_START: Final = "AUDIO_EXTRACTION_START"
AUDIO_EXTRACTION_COMPLETE: Final = "AUDIO_EXTRACTION_COMPLETE"
SPECTROGRAM_GENERATION_START: Final = "SPECTROGRAM_GENERATION_START"
SPECTROGRAM_GENERATION_COMPLETE: Final = "SPECTROGRAM_GENERATION_COMPLETE"
ANALYSIS_COMPLETED: Final = "ANALYSIS_COMPLETED"
ANALYSIS_FAILED: Final = "ANALYSIS_FAILED"

COMPLETED_ALIAS: Final = "ANALYSIS_COMPLETE"
"""A read-side alias of ``ANALYSIS_COMPLETED`` sent by some existing producers; this SDK
never emits it."""


@dataclass(frozen=True)
class EventTypeRow:
    """One event type and everything the SDK and the simulator treat it by."""

    name: str
    kind: Kind
    """``media`` (PROCESSING_*: the whole media), ``model`` (needs ``data.model_name``) or
    ``progress`` (a model event carrying ``data.progress``/``data.total``)."""
    terminal: bool = False
    """Ends the media's run (a media event) or the model's attempt (a model event)."""
    failure: bool = False
    """A failure: ``data.error_message`` is required and shown to the user."""
    phase: str | None = None
    """The ``data.phase`` a phase step carries (``ModelRun.step``); readers use it when
    another producer leaves ``data.phase`` out. Set exactly on the phase events."""
    verb: str | None = None
    """The tracking API's message: ``<verb> <progress>/<total> <unit>`` for a progress
    event, the whole message for a phase step."""
    unit: str | None = None
    """What a progress event counts, in the tracking API's messages."""
    stage: str | None = None
    """What the simulator panel's bar says it measures when ``data.phase`` is absent."""
    status: str | None = None
    """The model row's status after this event (snapshot and panel)."""
    overflow_rank: int = 1
    """The buffer's overflow rank (see ``_buffer``): an event of the lowest rank present
    is evicted first. Progress 0, other lifecycle events 1, a model's terminal event 2,
    PROCESSING_STARTED 3, a media's terminal event 5 (4 is the buffer's own, for the end
    of a media whose start it lost)."""

    @property
    def title(self) -> str:
        """The JSON Schema variant's title, which the TypeScript types are named after:
        ``ProcessingStartedEvent`` for ``PROCESSING_STARTED``."""
        return "".join(word.capitalize() for word in self.name.split("_")) + "Event"

    @property
    def is_model(self) -> bool:
        """A model event (progress included): it needs ``data.model_name``."""
        return self.kind != "media"


_ROWS = (
    EventTypeRow(PROCESSING_STARTED, "media", overflow_rank=3),
    EventTypeRow(PROCESSING_COMPLETED, "media", terminal=True, overflow_rank=5),
    EventTypeRow(PROCESSING_FAILED, "media", terminal=True, failure=True, overflow_rank=5),
    EventTypeRow(ANALYSIS_QUEUED, "model", status="queued"),
    EventTypeRow(ANALYSIS_STARTED, "model", status="analyzing"),
    EventTypeRow(FRAME_ANALYSIS_PROGRESS, "progress", verb="Analyzed", unit="frames",
                 stage="frames", overflow_rank=0),
    EventTypeRow(WINDOW_PROCESSING_PROGRESS, "progress", verb="Processed", unit="windows",
                 stage="windows", overflow_rank=0),
    EventTypeRow(VISUALIZATION_GENERATION_PROGRESS, "progress",
                 verb="Generated visualization", unit="steps", stage="visualization",
                 overflow_rank=0),
    EventTypeRow(AUDIO_EXTRACTION_START, "model", phase="audio_extraction",
                 verb="Extracting audio"),
    EventTypeRow(AUDIO_EXTRACTION_COMPLETE, "model", phase="audio_extraction",
                 verb="Audio extracted"),
    EventTypeRow(SPECTROGRAM_GENERATION_START, "model", phase="spectrogram_generation",
                 verb="Generating spectrogram"),
    EventTypeRow(SPECTROGRAM_GENERATION_COMPLETE, "model", phase="spectrogram_generation",
                 verb="Spectrogram generated"),
    EventTypeRow(ANALYSIS_COMPLETED, "model", terminal=True, status="completed",
                 overflow_rank=2),
    EventTypeRow(ANALYSIS_FAILED, "model", terminal=True, failure=True, status="failed",
                 overflow_rank=2),
)

EVENT_TYPES: Final[dict[str, EventTypeRow]] = {row.name: row for row in _ROWS}
"""Every v1 event type's row, by name, in the contract's order."""


def _names(*, kind: tuple[Kind, ...] = ("media", "model", "progress"), terminal: bool | None
           = None, failure: bool | None = None, phase: bool | None = None) -> frozenset[str]:
    return frozenset(
        row.name
        for row in _ROWS
        if row.kind in kind
        and (terminal is None or row.terminal == terminal)
        and (failure is None or row.failure == failure)
        and (phase is None or (row.phase is not None) == phase)
    )


ALL_EVENT_NAMES: Final = _names()
MEDIA_EVENT_NAMES: Final = _names(kind=("media",))
MODEL_EVENT_NAMES: Final = _names(kind=("model", "progress"))
PROGRESS_EVENT_NAMES: Final = _names(kind=("progress",))
PHASE_EVENT_NAMES: Final = _names(phase=True)
FAILURE_EVENT_NAMES: Final = _names(failure=True)
MEDIA_TERMINAL_NAMES: Final = _names(kind=("media",), terminal=True)
MODEL_TERMINAL_NAMES: Final = _names(kind=("model", "progress"), terminal=True)


class EventType(str, Enum):
    """Every v1 event type. ``ANALYSIS_COMPLETE`` is read as ``ANALYSIS_COMPLETED``.

    Its members are the rows of ``EVENT_TYPES``, a test holds them equal (mypy and
    editors see the members only when they are written out). ``progress_sdk.events``
    re-exports it.
    """

    PROCESSING_STARTED = PROCESSING_STARTED
    PROCESSING_COMPLETED = PROCESSING_COMPLETED
    PROCESSING_FAILED = PROCESSING_FAILED
    ANALYSIS_QUEUED = ANALYSIS_QUEUED
    ANALYSIS_STARTED = ANALYSIS_STARTED
    FRAME_ANALYSIS_PROGRESS = FRAME_ANALYSIS_PROGRESS
    WINDOW_PROCESSING_PROGRESS = WINDOW_PROCESSING_PROGRESS
    VISUALIZATION_GENERATION_PROGRESS = VISUALIZATION_GENERATION_PROGRESS
    AUDIO_EXTRACTION_START = AUDIO_EXTRACTION_START
    AUDIO_EXTRACTION_COMPLETE = AUDIO_EXTRACTION_COMPLETE
    SPECTROGRAM_GENERATION_START = SPECTROGRAM_GENERATION_START
    SPECTROGRAM_GENERATION_COMPLETE = SPECTROGRAM_GENERATION_COMPLETE
    ANALYSIS_COMPLETED = ANALYSIS_COMPLETED
    ANALYSIS_FAILED = ANALYSIS_FAILED

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | EventType) -> EventType:
        """Return the event type for ``value``, accepting the read-side alias."""
        if isinstance(value, EventType):
            return value
        try:
            return cls(normalize_event_name(value))
        except ValueError:
            raise InvalidEventError(
                [
                    Problem(
                        "event",
                        "known_type",
                        f"unknown event type {value!r}; expected one of "
                        + ", ".join(sorted(ALL_EVENT_NAMES)),
                    )
                ]
            ) from None

    @property
    def row(self) -> EventTypeRow:
        """This type's row of ``EVENT_TYPES``."""
        return EVENT_TYPES[self.value]

    @property
    def is_media_event(self) -> bool:
        """True for PROCESSING_* events, which are about the whole media."""
        return self.value in MEDIA_EVENT_NAMES

    @property
    def is_model_event(self) -> bool:
        """True for events about one model; they need ``data.model_name``."""
        return self.value in MODEL_EVENT_NAMES

    @property
    def is_progress(self) -> bool:
        """True for the *_PROGRESS events, which carry progress/total and may be coalesced."""
        return self.value in PROGRESS_EVENT_NAMES


def normalize_event_name(value: str) -> str:
    """Map the read-side alias ``ANALYSIS_COMPLETE`` onto ``ANALYSIS_COMPLETED``."""
    return ANALYSIS_COMPLETED if value == COMPLETED_ALIAS else value

"""The snapshot's model: ``MediaSnapshot`` and its ``ModelSnapshot`` rows, and how a
client payload (``progress_snapshot``) and a row's JSON read and write them."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import defaults as d
from .._wire import encode_json

__all__ = [
    "COMPLETED",
    "FAILED",
    "MEDIA_TERMINAL",
    "MODEL_FIELDS",
    "RUNNING",
    "MediaSnapshot",
    "ModelSnapshot",
    "int_or_none",
    "number_or_none",
    "text_or_none",
]

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
MEDIA_TERMINAL = frozenset({COMPLETED, FAILED})

# A row's fields in its ``model:{name}`` JSON.
MODEL_FIELDS = (
    "status", "progress", "total", "phase", "prediction", "confidence", "error",
    "eta_seconds", "updated_at", "owner",
)  # fmt: skip


@dataclass(slots=True)
class ModelSnapshot:
    """One model's row: ``status`` is queued, analyzing, completed or failed."""

    status: str = "queued"
    progress: int | None = None
    total: int | None = None
    phase: str | None = None
    prediction: str | None = None
    confidence: float | None = None
    error: str | None = None
    eta_seconds: float | None = None
    """From ``data.details.eta_seconds`` when the worker reports it."""
    updated_at: float = 0.0
    owner: str | None = None
    """The publisher (liveness id) that wrote this row last: models of one media may run
    in several workers at once (RQ's per-model layout), each vouching for its own."""

    def to_json(self) -> str:
        """Compact JSON for the ``model:{name}`` hash field (``None`` left out)."""
        fields = {k: v for k in MODEL_FIELDS if (v := getattr(self, k)) is not None}
        return encode_json(fields).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> ModelSnapshot | None:
        """Read a ``model:{name}`` field back; None when it is not one."""
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(obj, dict):
            return None
        known = {k: v for k, v in obj.items() if k in MODEL_FIELDS}
        try:
            return cls(**known)
        except TypeError:
            return None

    def to_client(self, model_name: str) -> dict[str, Any]:
        """camelCase, as the relay sends it inside ``progress_snapshot``."""
        return {
            "modelName": model_name,
            "status": self.status,
            "progress": self.progress,
            "total": self.total,
            "phase": self.phase,
            "prediction": self.prediction,
            "confidence": self.confidence,
            "error": self.error,
            "etaSeconds": self.eta_seconds,
        }


@dataclass(slots=True)
class MediaSnapshot:
    """One media's current state; ``status`` is running, completed or failed."""

    media_id: str
    user_id: str | None = None
    status: str = RUNNING
    filename: str | None = None
    run_id: str | None = None
    error: str | None = None
    seq: int | None = None
    """The last ``seq`` applied (of ``source``)."""
    source: str | None = None
    seqs: dict[str, int] = field(default_factory=dict)
    """The last ``seq`` applied per source: a relay drops live events at or below it."""
    updated_at: float = 0.0
    started_at: float | None = None
    models: dict[str, ModelSnapshot] = field(default_factory=dict)
    channel: str | None = None
    """The channel the media's events went to (the sweeper publishes its failures there)."""
    owner: str | None = None
    """The publisher whose liveness key vouches for this media's worker (empty or None:
    none, e.g. waiting on a queue; see ``progress_sdk.liveness``)."""
    alive_at: float | None = None
    """When the owner last confirmed the media (epoch seconds, the owner's clock): its
    liveness guard before events that follow a long silence."""
    swept: str | None = None
    """Why a sweeper ended this run (``owner_gone``, ``stuck``, ``stale``); None when its
    worker ended it. The owner's later events of the run are withheld (fencing)."""
    owner_alive: bool | None = None
    """Whether one of its owners (``owners_of``) held its liveness key when the reader
    checked (``read_user`` does); None: not checked, or no owner. Not stored."""

    @property
    def terminal(self) -> bool:
        """True once PROCESSING_COMPLETED or PROCESSING_FAILED was applied."""
        return self.status in MEDIA_TERMINAL

    def covers(self, event: Mapping[str, Any]) -> bool:
        """True when ``event`` (a decoded wire event) is already part of this snapshot."""
        seq, source = event.get("seq"), event.get("source")
        if type(seq) is not int or type(source) is not str:
            return False
        last = self.seqs.get(source)
        return last is not None and seq <= last

    @classmethod
    def from_client(cls, payload: Mapping[str, Any]) -> MediaSnapshot:
        """Read a ``progress_snapshot`` payload back (what a client received)."""
        models = {
            str(m.get("modelName")): ModelSnapshot(
                status=m.get("status") or "queued", progress=int_or_none(m.get("progress")),
                total=int_or_none(m.get("total")), phase=text_or_none(m.get("phase")),
                prediction=text_or_none(m.get("prediction")),
                confidence=number_or_none(m.get("confidence")), error=text_or_none(m.get("error")),
                eta_seconds=number_or_none(m.get("etaSeconds")),
            )
            for m in payload.get("models") or () if isinstance(m, Mapping)
        }  # fmt: skip
        seqs = payload.get("seqs")
        return cls(
            str(payload.get("mediaId")), user_id=text_or_none(payload.get("userId")),
            status=payload.get("status") or RUNNING, filename=text_or_none(payload.get("filename")),
            run_id=text_or_none(payload.get("runId")), error=text_or_none(payload.get("error")),
            seq=int_or_none(payload.get("seq")), source=text_or_none(payload.get("source")),
            seqs={k: v for k, v in seqs.items() if type(v) is int}
            if isinstance(seqs, Mapping) else {},
            models=models,
        )  # fmt: skip

    def to_client(self) -> dict[str, Any]:
        """The ``progress_snapshot`` payload: camelCase like ``progress_update``."""
        return {
            "mediaId": self.media_id,
            "userId": self.user_id,
            "status": self.status,
            "filename": self.filename,
            "runId": self.run_id,
            "error": self.error,
            "seq": self.seq,
            "source": self.source,
            "seqs": dict(self.seqs),
            "updatedAt": _iso(self.updated_at),
            "quietSeconds": self.quiet_seconds(),
            "ownerAlive": self.owner_alive,
            "models": [m.to_client(name) for name, m in self.models.items()],
        }

    def quiet_seconds(self, now: float | None = None) -> int | None:
        """Whole seconds without news, for a running media quiet for at least
        ``QUIET_AFTER`` ("no update for N s"); None otherwise. A state, not a failure:
        the sweeper fails a media only when its owner is gone (or ``stuck_after``)."""
        if self.terminal or not self.updated_at:
            return None
        last = max(self.updated_at, self.alive_at or 0.0)
        quiet = (time.time() if now is None else now) - last
        return int(quiet) if quiet >= d.QUIET_AFTER else None


def _iso(epoch: float) -> str:
    # events.format_timestamp's format, without importing pydantic for it.
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def text_or_none(value: object) -> str | None:
    """A non-empty str, else None."""
    return value if type(value) is str and value else None


def int_or_none(value: object) -> int | None:
    """An int (not a bool), else None."""
    return value if type(value) is int else None


def number_or_none(value: object) -> float | None:
    """A finite int or float as a float, else None."""
    if type(value) in (int, float) and math.isfinite(value):  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    return None

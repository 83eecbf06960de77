"""The current state of each in-flight media, kept in Redis beside the pub/sub stream.

Pub/sub is fire-and-forget: a browser that connects mid-job sees nothing until the next
event. So the publisher also keeps a compact snapshot of each media it reports on (media
status; per model status, progress/total, phase, result or error; the last ``seq`` per
source; updated-at) and an index of each user's media, written in the same pipeline as the
publish. A relay sends it to a socket on connect (``progress_snapshot``) and then live
events with a higher ``seq``; a sweeper finds media whose worker stopped reporting.

This module is pure: ``apply_event`` folds an event into a ``MediaSnapshot``;
``SnapshotTracker`` remembers the snapshots one publisher is writing and turns each batch's
changes into Redis commands (one key each, so a Redis Cluster can route them);
``parse_snapshot`` reads a hash back. The readers (``read_media``, ``read_user``) are the
only functions doing I/O.

Key layout (``defaults.py``): ``{prefix}media:{media_id}`` is a hash with one field per
media attribute (``status``, ``user_id``, ``filename``, ``run_id``, ``error``, ``seq``,
``source``, ``updated_at``, ``started_at``, ``owner``, ``alive_at``, ``swept``), one
``seq:{source}`` per publisher and one ``model:{name}`` (compact JSON) per model;
``{prefix}user:{user_id}`` and ``{prefix}inflight`` are sorted sets of media ids scored
by updated-at (milliseconds). ``owner`` names the publisher whose liveness key
(``{prefix}alive:{owner}``, ``progress_sdk.liveness``) says the media's worker is alive;
empty while the media waits on a queue (no model analyzing, one queued).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import math
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from . import defaults as d
from ._wire import encode_json
from .event_types import (
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    ANALYSIS_QUEUED,
    ANALYSIS_STARTED,
    EVENT_TYPES,
    MEDIA_EVENT_NAMES,
    MEDIA_TERMINAL_NAMES,
    MODEL_EVENT_NAMES,
    PROCESSING_COMPLETED,
    PROCESSING_STARTED,
    normalize_event_name,
)
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .liveness import Liveness

__all__ = [
    "MediaSnapshot",
    "ModelSnapshot",
    "SnapshotConfig",
    "SnapshotHook",
    "SnapshotKeys",
    "SnapshotTracker",
    "apply_event",
    "copy_snapshot",
    "fold_event",
    "media_fields",
    "owner_of",
    "owners_of",
    "parse_snapshot",
    "progress_commands",
    "read_media",
    "read_recent_async",
    "read_user",
    "read_user_async",
    "write_commands",
]

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
MEDIA_TERMINAL = frozenset({COMPLETED, FAILED})

_MODEL_STATUS = {row.name: row.status for row in EVENT_TYPES.values() if row.status is not None}
assert set(_MODEL_STATUS.values()) >= {COMPLETED, FAILED}
# The tracking API's phase names for the phase events (tracking.ModelRun.step), used when
# another producer leaves data.phase out.
_PHASE_OF = {row.name: row.phase for row in EVENT_TYPES.values() if row.phase is not None}

@dataclass(frozen=True)
class SnapshotKeys:
    """Where snapshots live in Redis: every key under one prefix (``defaults.py``)."""

    prefix: str = d.DEFAULT_SNAPSHOT_PREFIX

    @classmethod
    def from_env(cls, prefix: str | None = None) -> SnapshotKeys:
        """An explicit prefix, else ``PROGRESS_SNAPSHOT_PREFIX``, else ``progress:``."""
        chosen = prefix if prefix is not None else os.environ.get(d.ENV_SNAPSHOT_PREFIX)
        return cls(d.DEFAULT_SNAPSHOT_PREFIX if chosen is None else chosen)

    def media(self, media_id: str) -> str:
        """The hash holding one media's snapshot."""
        return d.SNAPSHOT_MEDIA_KEY.format(prefix=self.prefix, media_id=media_id)

    def user(self, user_id: str) -> str:
        """The sorted set of one user's media with a snapshot."""
        return d.SNAPSHOT_USER_KEY.format(prefix=self.prefix, user_id=user_id)

    @property
    def inflight(self) -> str:
        """The sorted set of media without a terminal event, scored by updated-at."""
        return d.SNAPSHOT_INFLIGHT_KEY.format(prefix=self.prefix)

    @property
    def sweeper_lease(self) -> str:
        """The key whose holder is the one sweeper allowed to act."""
        return d.SWEEPER_LEASE_KEY.format(prefix=self.prefix)

    def alive(self, owner: str) -> str:
        """The liveness key of one publisher (``progress_sdk.liveness``)."""
        return d.LIVENESS_KEY.format(prefix=self.prefix, owner=owner)


def _liveness_ttl_from_env() -> float | None:
    raw = os.environ.get(d.ENV_LIVENESS_TTL, "").strip().lower()
    if not raw:
        return d.DEFAULT_LIVENESS_TTL
    if raw in ("0", "off", "false", "no"):
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{d.ENV_LIVENESS_TTL} must be a number of seconds or 'off', got {raw!r}"
        ) from None


@dataclass(frozen=True)
class SnapshotConfig:
    """Whether and how a publisher keeps snapshots."""

    keys: SnapshotKeys = field(default_factory=SnapshotKeys.from_env)
    ttl: float = d.DEFAULT_SNAPSHOT_TTL
    """Seconds a finished media's snapshot stays after its terminal event."""
    inflight_ttl: float = d.DEFAULT_SNAPSHOT_INFLIGHT_TTL
    """Seconds an in-flight snapshot stays after its last write (no sweeper running)."""
    liveness_ttl: float | None = field(default_factory=_liveness_ttl_from_env)
    """Seconds a publisher's liveness key lives without a refresh (refreshed three times
    as often); ``None``: no liveness, the snapshots record no owner and the sweeper fails
    their media after ``stale_after`` of silence. Default: ``PROGRESS_SDK_LIVENESS_TTL``
    (``0``/``off``: none), else 10 s."""

    @property
    def refresh_every(self) -> float:
        """Seconds between two writes of a running media's expiry by one publisher (a
        tenth of ``inflight_ttl``, at most a minute): not every batch, which would cost
        Redis a command per media and batch. The expiry written is ``inflight_ttl`` plus
        this, so a snapshot still stays at least ``inflight_ttl`` after its last write."""
        return min(self.inflight_ttl / 10, d.SNAPSHOT_EXPIRY_REFRESH_MAX)

    @property
    def inflight_expiry_ms(self) -> str:
        """The expiry written for a running media, in milliseconds (a command argument)."""
        return str(max(1, int((self.inflight_ttl + self.refresh_every) * 1000)))

    def __post_init__(self) -> None:
        names = ("ttl", "inflight_ttl") if self.liveness_ttl is None else (
            "ttl", "inflight_ttl", "liveness_ttl")
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(
                    f"snapshot {name} must be a positive number of seconds, got {value!r}"
                )


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
        fields = {k: v for k in _MODEL_FIELDS if (v := getattr(self, k)) is not None}
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
        known = {k: v for k, v in obj.items() if k in _MODEL_FIELDS}
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
                status=m.get("status") or "queued", progress=_int(m.get("progress")),
                total=_int(m.get("total")), phase=_text(m.get("phase")),
                prediction=_text(m.get("prediction")),
                confidence=_number(m.get("confidence")), error=_text(m.get("error")),
                eta_seconds=_number(m.get("etaSeconds")),
            )
            for m in payload.get("models") or () if isinstance(m, Mapping)
        }  # fmt: skip
        seqs = payload.get("seqs")
        return cls(
            str(payload.get("mediaId")), user_id=_text(payload.get("userId")),
            status=payload.get("status") or RUNNING, filename=_text(payload.get("filename")),
            run_id=_text(payload.get("runId")), error=_text(payload.get("error")),
            seq=_int(payload.get("seq")), source=_text(payload.get("source")),
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


def _text(value: object) -> str | None:
    return value if type(value) is str and value else None


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def _number(value: object) -> float | None:
    if type(value) in (int, float) and math.isfinite(value):  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    return None


def apply_event(
    state: MediaSnapshot | None, event: Mapping[str, Any], now: float
) -> MediaSnapshot:
    """Fold one decoded wire event into a copy of ``state`` (None: no snapshot yet).

    Lenient like the UI: fields of the wrong type are ignored, names are normalised
    (``ANALYSIS_COMPLETE``), a ``PROCESSING_STARTED`` after a terminal event starts a
    fresh snapshot (a re-analysis). The caller checked that ``event`` has a ``media_id``.
    """
    return fold_event(copy_snapshot(state) if state is not None else None, event, now)


def copy_snapshot(state: MediaSnapshot) -> MediaSnapshot:
    """A copy that shares nothing mutable with ``state``."""
    return replace(
        state, seqs=dict(state.seqs), models={k: replace(m) for k, m in state.models.items()}
    )


def fold_event(
    state: MediaSnapshot | None,
    event: Mapping[str, Any],
    now: float,
    seq: int | None = None,
    source: str | None = None,
) -> MediaSnapshot:
    """``apply_event`` in place (the publisher's hot path): returns ``state`` changed, or
    a new snapshot for a first event or a new run. ``seq``/``source``, when given, stand
    for the event's own (the publisher numbers events outside their fields)."""
    name = event.get("event")
    name = normalize_event_name(name) if type(name) is str else ""
    data = event.get("data")
    data = data if type(data) is dict or isinstance(data, Mapping) else {}  # ABC check: slow
    if state is None or (name == PROCESSING_STARTED and state.status != RUNNING):
        state = MediaSnapshot(str(event.get("media_id")), started_at=now)
    state.updated_at = now
    user_id, run_id = event.get("user_id"), event.get("run_id")
    if type(user_id) is str and user_id:
        state.user_id = user_id
    if type(run_id) is str and run_id:
        state.run_id = run_id
    if seq is None:
        seq, source = _int(event.get("seq")), _text(event.get("source"))
    if seq is not None and source:
        state.seq, state.source = seq, source
        state.seqs[source] = seq
    if name in MEDIA_EVENT_NAMES:
        _fold_media(state, name, data, event)
    elif name in MODEL_EVENT_NAMES:
        model = data.get("model_name")
        if type(model) is str and model:
            row = state.models.get(model)
            if row is None or (name in _ATTEMPT_STARTS and _retried(data)):
                # A retried job's next attempt starts the model over (contract, rule 2).
                row = state.models[model] = ModelSnapshot()
            _fold_model(row, name, data, now)
    return state


def _fold_media(
    state: MediaSnapshot, name: str, data: Mapping[str, Any], event: Mapping[str, Any]
) -> None:
    if name == PROCESSING_STARTED:
        if not state.filename:
            state.filename = _text(data.get("filename"))
    elif name == PROCESSING_COMPLETED:
        state.status = COMPLETED
    else:
        state.status = FAILED
        state.error = _text(data.get("error_message")) or _text(event.get("message")) or "failed"


_ATTEMPT_STARTS = frozenset({ANALYSIS_QUEUED, ANALYSIS_STARTED})


def _retried(data: Mapping[str, Any]) -> bool:
    details = data.get("details")
    attempt = details.get("attempt") if isinstance(details, Mapping) else None
    return type(attempt) is int and attempt > 1


def _fold_model(row: ModelSnapshot, name: str, data: Mapping[str, Any], now: float) -> None:
    row.updated_at = now
    status = _MODEL_STATUS.get(name)
    if status is not None:
        row.status = status
    elif row.status == "queued":
        row.status = "analyzing"  # joined late: its ANALYSIS_STARTED went by
    phase = data.get("phase")
    phase = phase if type(phase) is str and phase else _PHASE_OF.get(name)
    if phase is not None:
        row.phase = phase
    progress, total = data.get("progress"), data.get("total")
    if type(progress) is int and type(total) is int and total > 0:
        row.progress, row.total = min(max(progress, 0), total), total
    details = data.get("details")
    if details is not None and (type(details) is dict or isinstance(details, Mapping)):
        eta = _number(details.get("eta_seconds"))
        if eta is not None:
            row.eta_seconds = max(eta, 0.0)
    if name == ANALYSIS_COMPLETED:
        row.prediction = _text(data.get("prediction"))
        row.confidence = _number(data.get("confidence"))
        row.eta_seconds = None
        if row.total is not None:
            row.progress = row.total
    elif name == ANALYSIS_FAILED:
        row.error = _text(data.get("error_message")) or "failed"
        row.eta_seconds = None


# -- hash fields ------------------------------------------------------------------------

_MODEL_FIELDS = (
    "status", "progress", "total", "phase", "prediction", "confidence", "error",
    "eta_seconds", "updated_at", "owner",
)  # fmt: skip
_MEDIA_TEXT_FIELDS = (
    "user_id", "status", "filename", "run_id", "error", "source", "channel", "owner", "swept",
)  # fmt: skip
_MODEL_PREFIX = "model:"
_SEQ_PREFIX = "seq:"


def media_fields(state: MediaSnapshot, models: Iterable[str] | None = None) -> dict[str, str]:
    """The hash fields for ``state``: the media's, every source's seq, and ``models``
    (every model when None). A writer sends only what changed since its last write."""
    fields: dict[str, str] = {
        name: value
        for name in _MEDIA_TEXT_FIELDS
        if (value := getattr(state, name)) is not None
    }
    fields["updated_at"] = repr(state.updated_at)
    if state.seq is not None:
        fields["seq"] = str(state.seq)
    if state.started_at is not None:
        fields["started_at"] = repr(state.started_at)
    if state.alive_at is not None:
        fields["alive_at"] = repr(state.alive_at)
    for source, seq in state.seqs.items():
        fields[_SEQ_PREFIX + source] = str(seq)
    names = state.models if models is None else models
    for name in names:
        fields[_MODEL_PREFIX + name] = state.models[name].to_json()
    return fields


def _progress_fields(state: MediaSnapshot, models: Iterable[str]) -> dict[str, str]:
    fields = {"updated_at": repr(state.updated_at)}
    if state.owner is not None:
        fields["owner"] = state.owner
    if state.seq is not None and state.source is not None:
        fields["seq"] = str(state.seq)
        fields["source"] = state.source
        fields[_SEQ_PREFIX + state.source] = str(state.seq)
    for name in models:
        fields[_MODEL_PREFIX + name] = state.models[name].to_json()
    return fields


def parse_snapshot(
    media_id: str, fields: Mapping[Any, Any]
) -> MediaSnapshot | None:
    """Read a media hash (as HGETALL returns it) back; None when it is empty or not one."""
    text = {_decode(k): _decode(v) for k, v in fields.items()}
    if not text or "status" not in text:
        return None
    models: dict[str, ModelSnapshot] = {}
    seqs: dict[str, int] = {}
    for key, value in text.items():
        if key.startswith(_MODEL_PREFIX):
            row = ModelSnapshot.from_json(value)
            if row is not None:
                models[key[len(_MODEL_PREFIX) :]] = row
        elif key.startswith(_SEQ_PREFIX) and value.isdigit():
            seqs[key[len(_SEQ_PREFIX) :]] = int(value)
    seq = text.get("seq", "")
    return MediaSnapshot(
        media_id,
        user_id=text.get("user_id"),
        status=text["status"],
        filename=text.get("filename"),
        run_id=text.get("run_id"),
        error=text.get("error"),
        seq=int(seq) if seq.isdigit() else None,
        source=text.get("source"),
        seqs=seqs,
        updated_at=_float(text.get("updated_at")) or 0.0,
        started_at=_float(text.get("started_at")),
        channel=text.get("channel"),
        owner=text.get("owner") or None,
        alive_at=_float(text.get("alive_at")),
        swept=text.get("swept") or None,
        models=dict(sorted(models.items(), key=lambda item: item[1].updated_at)),
    )


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# -- writing ------------------------------------------------------------------------------

# The hash's write, for a media's first write, its media-level events and its end. The
# hash and its expiry change together, and a write that arrives after a terminal state (a
# worker that resumed after the sweeper gave up on it) is refused. A new run (fresh
# start) replaces the hash whatever it holds: the run before may have ended in the same
# batch, its end never written, and its model rows are not the new run's. The indexes
# are written by commands of their own (``write_commands``): each command touches one
# key, so a Redis Cluster can route it to its key's master (a script's keys must share a
# slot). KEYS: media hash. ARGV: expiry (ms), fresh start (0/1), then field/value pairs.
WRITE_SCRIPT = """
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
else
  local status = redis.call('HGET', KEYS[1], 'status')
  if status and status ~= 'running' then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


WRITE_SCRIPT_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()
# Once per batch instead of the script's text in every call: a no-op for Redis when the
# script is cached, and it makes the batch's EVALSHA calls work after a Redis restart. It
# has no key: on a cluster it runs on every master the batch's writes go to.
LOAD_COMMAND = ("SCRIPT", "LOAD", WRITE_SCRIPT)


def write_commands(
    state: MediaSnapshot,
    config: SnapshotConfig,
    *,
    models: Iterable[str] | None = None,
    fresh: bool = False,
) -> list[tuple[str, ...]]:
    """The commands writing all of ``state`` (rows: only ``models``, when given) to Redis:
    the hash (``EVALSHA``; ``LOAD_COMMAND`` must run before it on the same connection),
    then the in-flight index, then the user's index. The indexes are written even when the
    hash's write is refused: a finished media put back in the in-flight index is dropped
    by the sweeper's next look at it, and a reader fetches each indexed media's hash."""
    indexes = _IndexWrites(config)
    indexes.whole(state)
    return [_script_write(state, config, models, fresh), *indexes.commands()]


def _script_write(
    state: MediaSnapshot, config: SnapshotConfig, models: Iterable[str] | None, fresh: bool
) -> tuple[str, ...]:
    expiry = str(max(1, int(config.ttl * 1000))) if state.terminal else config.inflight_expiry_ms
    pairs = [part for item in media_fields(state, models).items() for part in item]
    return (
        "EVALSHA", WRITE_SCRIPT_SHA, "1", config.keys.media(state.media_id),
        expiry, "1" if fresh else "0", *pairs,
    )  # fmt: skip


class _IndexWrites:
    """A batch's index updates, one command per key and kind (a Redis command costs
    about as much as its first member): the in-flight index gains the media written
    whole, loses the finished ones and rescores (``XX``: never re-adds) the others; each
    user's index gains its media written whole and has its expiry pushed back."""

    def __init__(self, config: SnapshotConfig) -> None:
        self.keys = config.keys
        self.index_ttl = str(int(max(config.ttl, config.inflight_ttl) * 1000))
        self.added: list[str] = []
        self.removed: list[str] = []
        self.rescored: list[str] = []
        self.users: dict[str, list[str]] = {}

    def whole(self, state: MediaSnapshot) -> None:
        """``state`` was written whole (the script)."""
        score = _score(state)
        if state.terminal:
            self.removed.append(state.media_id)
        else:
            self.added += (score, state.media_id)
        if state.user_id:
            user = self.users.setdefault(self.keys.user(state.user_id), [])
            user += (score, state.media_id)

    def commands(self) -> list[tuple[str, ...]]:
        """The writes, after the hashes': a reader drops an indexed media with no hash."""
        inflight = self.keys.inflight
        commands: list[tuple[str, ...]] = []
        if self.removed:
            commands.append(("ZREM", inflight, *self.removed))
        if self.added:
            commands.append(("ZADD", inflight, *self.added))
        if self.rescored:
            commands.append(("ZADD", inflight, "XX", *self.rescored))
        for key, pairs in self.users.items():
            commands += (("ZADD", key, *pairs), ("PEXPIRE", key, self.index_ttl))
        return commands


def progress_commands(
    state: MediaSnapshot, config: SnapshotConfig, models: Iterable[str]
) -> list[tuple[str | bytes, ...]]:
    """The plain commands for a running media whose writer wrote it whole before: its
    updated-at, seq and changed rows, its expiry, its in-flight score. A fifth of the
    script's cost in Redis. ``ZADD XX`` cannot put back a media the sweeper took out, and
    the status is not written, so a worker that resumes cannot reopen a failed media.
    (A tracker writes the expiry only every ``config.refresh_every`` seconds and the
    scores of a batch's media in one ``ZADD``.)"""
    key = config.keys.media(state.media_id)
    return [
        _progress_hset(key, state, models),
        ("PEXPIRE", key, config.inflight_expiry_ms),
        ("ZADD", config.keys.inflight, "XX", _score(state), state.media_id),
    ]


def _progress_hset(key: str, state: MediaSnapshot, models: Iterable[str]) -> tuple[str, ...]:
    fields = _progress_fields(state, models)
    return ("HSET", key, *(part for item in fields.items() for part in item))


def _score(state: MediaSnapshot) -> str:
    return str(int(state.updated_at * 1000))


def _supersedes(later: Mapping[str, Any], earlier: Mapping[str, Any]) -> bool:
    """Whether folding ``earlier`` and then ``later`` (the next event of the same media)
    into an existing snapshot gives what folding ``later`` alone gives: both are the same
    model event with the same ids and the same data (numbers of the same types: the fold
    reads ``1`` and ``True`` differently), except a progress value ``later`` replaces.
    Folding a model event twice with the same data changes nothing more than once."""
    name = earlier.get("event")
    if later.get("event") != name or name not in MODEL_EVENT_NAMES:
        return False
    old, new = earlier.get("data"), later.get("data")
    if type(old) is not dict or type(new) is not dict:
        return False
    if old == new:
        if type(old.get("progress")) is not type(new.get("progress")):
            return False
    elif not _progress_replaced(old, new):
        return False
    return (
        _alike(old, new)
        and type(later.get("seq")) is int
        and later.get("source") == earlier.get("source")
        and later.get("user_id") == earlier.get("user_id")
        and later.get("run_id") == earlier.get("run_id")
    )


def _progress_replaced(old: dict[str, Any], new: dict[str, Any]) -> bool:
    # The data differ in their progress value alone, and the later one's counts.
    progress, total = new.get("progress"), new.get("total")
    if type(progress) is not int or type(total) is not int or total <= 0:
        return False
    return old.keys() == new.keys() and all(
        value == new[key] for key, value in old.items() if key != "progress"
    )


def _alike(old: dict[str, Any], new: dict[str, Any]) -> bool:
    # Equal data whose numbers the fold reads the same way (1, 1.0 and True are equal;
    # a confidence is set from the last completion whatever it is).
    if type(old.get("total")) is not type(new.get("total")):
        return False
    details = old.get("details")
    if type(details) is dict:
        eta = details.get("eta_seconds")
        if type(eta) is not type(new["details"].get("eta_seconds")):
            return False
    return True


@dataclass
class _Pending:
    models: set[str] = field(default_factory=set)
    fresh: bool = False
    full: bool = False
    """Write every field: a media-level event, or the first write of this tracker."""


class SnapshotTracker:
    """The snapshots one publisher writes: apply each sent event, then take the commands.

    Not thread-safe: the sender thread owns it. Finished media are forgotten once their
    terminal state is taken; at most ``max_media`` in-flight media are remembered (least
    recently updated first out; a forgotten one starts again from its next event, which
    still updates its hash field by field).
    """

    def __init__(
        self, config: SnapshotConfig, *, channel: str | Callable[[str], str] | None = None,
        max_media: int = d.MAX_REMEMBERED_MEDIA, clock: Callable[[], float] = time.monotonic,
        owner: str | None = None,
    ) -> None:
        self.config = config
        self.channel = channel
        """The channel the events go to, or media_id -> its shard channel."""
        self.owner = owner
        """The liveness id written as each media's ``owner`` (None: none written)."""
        self._max_media = max_media
        self._clock = clock
        self._states: OrderedDict[str, MediaSnapshot] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self._expiry_due: dict[str, float] = {}  # media_id -> when its expiry is written next

    def apply(
        self, event: Mapping[str, Any], now: float, seq: int | None = None,
        source: str | None = None,
    ) -> None:
        """Fold one event that is about to be published into its media's snapshot
        (``seq``/``source`` stand for the event's own when given)."""
        media_id = event.get("media_id")
        if type(media_id) is not str or not media_id:
            return
        previous = self._states.pop(media_id, None)
        was_open = previous is not None and previous.status == RUNNING
        state = fold_event(previous, event, now, seq, source)
        state.channel = self.channel(media_id) if callable(self.channel) else self.channel
        if self.owner is not None:
            state.owner = owner_of(state, self.owner)
        self._states[media_id] = state
        if len(self._states) > self._max_media:
            evicted, _ = self._states.popitem(last=False)
            self._pending.pop(evicted, None)
            self._expiry_due.pop(evicted, None)
        pending = self._pending.get(media_id)
        if pending is None:
            pending = self._pending[media_id] = _Pending()
        # Only a new run may replace a finished snapshot in Redis (see WRITE_SCRIPT).
        if event.get("event") == PROCESSING_STARTED and not was_open:
            pending.fresh = True
        if state is not previous:
            pending.models.clear()  # a new run: the rows of the one before are not its
        if previous is None or event.get("event") in MEDIA_EVENT_NAMES:
            pending.full = True
        data = event.get("data")
        model = data.get("model_name") if isinstance(data, Mapping) else None
        if type(model) is str and model in state.models:
            pending.models.add(model)

    def apply_batch(
        self, events: Iterable[Mapping[str, Any]], epoch: Callable[[Mapping[str, Any]], float]
    ) -> None:
        """``apply`` for each of a batch's decoded wire events, in order (they carry their
        own ``seq`` and ``source``; ``epoch`` reads an event's time): the same snapshots
        and pending writes, with the per-event bookkeeping done once per media (a batch
        is hundreds of events over a few media). Recency counts per batch.

        Each media's latest event waits until the next one shows whether it is needed: an
        event that the next one of its media repeats (``_supersedes``) changes nothing
        that one does not, and is not folded."""
        touched: dict[str, MediaSnapshot] = {}
        latest: dict[str, Mapping[str, Any]] = {}
        for event in events:
            media_id = event.get("media_id")
            if type(media_id) is not str or not media_id:
                continue
            before = latest.get(media_id)
            latest[media_id] = event
            if before is not None and not (
                _supersedes(event, before) and (media_id in touched or media_id in self._states)
            ):
                self._fold(touched, media_id, before, epoch(before))
        for media_id, event in latest.items():
            self._fold(touched, media_id, event, epoch(event))
        self._settle(touched)

    def _fold(
        self, touched: dict[str, MediaSnapshot], media_id: str, event: Mapping[str, Any],
        now: float,
    ) -> None:
        # apply()'s work on the state and its pending write, but for recency and bound.
        previous = touched.get(media_id) or self._states.pop(media_id, None)
        state = touched[media_id] = fold_event(previous, event, now)
        pending = self._pending.get(media_id)
        if pending is None:
            pending = self._pending[media_id] = _Pending()
        name = event.get("event")
        if previous is None or name in MEDIA_EVENT_NAMES:
            pending.full = True
            if name == PROCESSING_STARTED and (previous is None or previous.terminal):
                pending.fresh = True
        if state is not previous:
            pending.models.clear()
        data = event.get("data")
        model = data.get("model_name") if isinstance(data, dict) else None
        if type(model) is str and model in state.models:
            pending.models.add(model)

    def _settle(self, touched: dict[str, MediaSnapshot]) -> None:
        # What apply() does per event, once per media: channel, recency, the bound.
        states, channel, owner = self._states, self.channel, self.owner
        for media_id, state in touched.items():
            state.channel = channel(media_id) if callable(channel) else channel
            if owner is not None:
                state.owner = owner_of(state, owner)
            states[media_id] = state
        while len(states) > self._max_media:
            evicted, _ = states.popitem(last=False)
            self._pending.pop(evicted, None)
            self._expiry_due.pop(evicted, None)

    def take_commands(self) -> list[tuple[str | bytes, ...]]:
        """The writes for every media changed since the last call: the script
        (``LOAD_COMMAND`` first, then ``write_commands``) for a first write, a
        media-level event or the end; otherwise ``progress_commands``, with the expiry
        only when due (``SnapshotConfig.refresh_every``); then the indexes' updates, one
        command per key and kind. Finished media are forgotten."""
        commands: list[tuple[str | bytes, ...]] = []
        indexes = _IndexWrites(self.config)
        now, refresh_every = self._clock(), self.config.refresh_every
        due = self._expiry_due
        owner = self.owner
        for media_id, pending in self._pending.items():
            state = self._states.get(media_id)
            if state is None:
                continue
            if owner is not None:
                for name in pending.models:
                    state.models[name].owner = owner
            if pending.full or state.terminal:
                commands.append(_script_write(state, self.config, pending.models, pending.fresh))
                indexes.whole(state)
                if state.terminal:
                    del self._states[media_id]
                    due.pop(media_id, None)
                else:
                    due[media_id] = now + refresh_every
                continue
            key = self.config.keys.media(media_id)
            commands.append(_progress_hset(key, state, pending.models))
            if now >= due.get(media_id, now):
                commands.append(("PEXPIRE", key, self.config.inflight_expiry_ms))
                due[media_id] = now + refresh_every
            indexes.rescored += (_score(state), media_id)
        self._pending.clear()
        if any(command[0] == "EVALSHA" for command in commands):
            commands.insert(0, LOAD_COMMAND)
        return commands + indexes.commands()

    def __len__(self) -> int:
        return len(self._states)


def owners_of(state: MediaSnapshot) -> set[str]:
    """The publishers vouching for a running media: the owners of its rows analyzing, or
    else the media's owner (none: it waits on a queue, or no liveness). The sweeper fails
    the media for a gone owner only when every one of them is gone."""
    rows = {row.owner for row in state.models.values() if row.status == "analyzing" and row.owner}
    if rows:
        return rows
    return {state.owner} if state.owner else set()


def owner_of(state: MediaSnapshot, owner: str) -> str:
    """``owner``, unless the media waits on a queue: no model analyzing and one queued
    (RQ's per-model layout between two model jobs, or just enqueued). Then no process
    vouches for it (empty): a worker that picks a model up becomes its owner."""
    waiting = False
    for row in state.models.values():
        if row.status == "analyzing":
            return owner
        waiting = waiting or row.status == "queued"
    return "" if waiting else owner


class SnapshotHook:
    """The publisher's snapshot writer (``ProgressPublisher(snapshots=...)``): folds each
    batch into its media's snapshots and returns the writes for the same pipeline.

    It reads the events back from their wire bytes (``orjson``, on the sender thread), so
    the publisher's buffer keeps no fields dict per event for it: a buffered event costs
    the same memory, and the garbage collector the same walks, with snapshots on or off.

    With ``liveness`` (``progress_sdk.liveness``), each media records its owner, and the
    events of runs a sweeper ended are withheld: ``take_withheld`` gives their positions
    in the batch last seen, and they are neither folded nor written.
    """

    def __init__(
        self, config: SnapshotConfig, channel: str | Callable[[str], str] | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.tracker = SnapshotTracker(
            config, channel=channel, owner=liveness.owner if liveness is not None else None
        )
        self.liveness = liveness
        self._epoch = _WireClock()
        self._withheld: list[int] = []

    def __call__(self, payloads: Sequence[bytes]) -> list[tuple[str | bytes, ...]]:
        """``payloads``: a batch's wire events about to be published, in order."""
        liveness = self.liveness
        if liveness is None:
            self.tracker.apply_batch(_decoded(payloads), self._epoch)
            return self.tracker.take_commands()
        events = [_decode_one(payload) for payload in payloads]
        withheld = self._withheld = liveness.withheld(events)
        if withheld:
            gone = set(withheld)
            events = [e for i, e in enumerate(events) if i not in gone]
        kept = [e for e in events if e is not None]
        self.tracker.apply_batch(kept, self._epoch)
        commands = self.tracker.take_commands()
        liveness.wrote(self._written(kept))
        liveness.open = len(self.tracker)
        return commands

    def take_withheld(self) -> list[int]:
        """Positions, in the batch last given, of events that must not go out."""
        withheld, self._withheld = self._withheld, []
        return withheld

    def _written(self, events: list[dict[str, Any]]) -> Iterator[tuple[str, float, bool]]:
        last = {event.get("media_id"): event for event in events}
        for media_id, event in last.items():
            if type(media_id) is str:
                terminal = event.get("event") in MEDIA_TERMINAL_NAMES
                yield media_id, self._epoch(event), terminal


def _decode_one(payload: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return event if type(event) is dict else None


def _decoded(payloads: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    # One at a time: each dict is freed once folded, so a batch of them never adds up to
    # a garbage collection.
    loads = orjson.loads
    for payload in payloads:
        try:
            event = loads(payload)
        except orjson.JSONDecodeError:
            continue  # not one of the publisher's own events: nothing to fold
        if type(event) is dict:
            yield event


class _WireClock:
    """A wire ``timestamp`` (``_wire.TimestampFormatter``'s ``...T12:00:00.123456Z``) back
    to epoch seconds: the seconds part is parsed once per second, as it was formatted."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._prefix = ""
        self._second = 0

    def __call__(self, event: Mapping[str, Any]) -> float:
        stamp = event.get("timestamp")
        if type(stamp) is not str or len(stamp) != 27:
            return time.time()
        prefix = stamp[:19]
        try:
            if prefix != self._prefix:
                parsed = datetime.strptime(prefix, "%Y-%m-%dT%H:%M:%S")
                self._second = calendar.timegm(parsed.timetuple())
                self._prefix = prefix
            # One division of integers, as datetime.timestamp() rounds it.
            return (self._second * 1_000_000 + int(stamp[20:26])) / 1_000_000
        except ValueError:
            return time.time()


# -- reading ------------------------------------------------------------------------------


class _SyncRedis(Protocol):
    def hgetall(self, name: str) -> Any: ...
    def zrange(self, name: str, start: int, end: int) -> Any: ...
    def pipeline(self, transaction: bool = ...) -> Any: ...
    def exists(self, *names: str) -> Any: ...


def read_media(client: _SyncRedis, keys: SnapshotKeys, media_id: str) -> MediaSnapshot | None:
    """One media's snapshot, or None when it has none (never started, or expired)."""
    return parse_snapshot(media_id, client.hgetall(keys.media(media_id)))


def read_user(client: _SyncRedis, keys: SnapshotKeys, user_id: str) -> list[MediaSnapshot]:
    """Every snapshot of one user, oldest update first (in-flight and recently finished).

    Index entries whose snapshot expired are removed on the way.
    """
    members = [_decode(m) for m in client.zrange(keys.user(user_id), 0, -1)]
    if not members:
        return []
    pipe = client.pipeline(transaction=False)
    for media_id in members:
        pipe.hgetall(keys.media(media_id))
    snapshots, gone = _collect(members, pipe.execute())
    if gone:
        client.zrem(keys.user(user_id), *gone)  # type: ignore[attr-defined]
    owners = _owners(snapshots)
    if owners:
        pipe = client.pipeline(transaction=False)
        for owner in owners:
            pipe.exists(keys.alive(owner))
        _mark_owners(snapshots, owners, pipe.execute())
    return snapshots


async def read_user_async(client: Any, keys: SnapshotKeys, user_id: str) -> list[MediaSnapshot]:
    """``read_user`` for a ``redis.asyncio`` client."""
    members = [_decode(m) for m in await client.zrange(keys.user(user_id), 0, -1)]
    return await _read_async(client, keys, user_id, members)


async def read_recent_async(
    client: Any, keys: SnapshotKeys, user_id: str, limit: int, chunk: int
) -> AsyncIterator[list[MediaSnapshot]]:
    """The ``limit`` most recently updated snapshots of ``user_id``, newest first, read
    ``chunk`` hashes (one pipeline, then one for their owners' liveness keys) at a time,
    so a reader never holds them all at once (the relay's catch-up and resync). Each is
    read as ``read_user_async`` reads it: expired index entries removed, ``owner_alive``
    set."""
    members = await client.zrevrange(keys.user(user_id), 0, limit - 1)
    ids = [_decode(m) for m in members]
    for start in range(0, len(ids), chunk):
        yield await _read_async(client, keys, user_id, ids[start:start + chunk])


async def _read_async(
    client: Any, keys: SnapshotKeys, user_id: str, members: list[str]
) -> list[MediaSnapshot]:
    """The snapshots of ``members`` (in their order), their owners marked alive or not."""
    if not members:
        return []
    pipe = client.pipeline(transaction=False)
    for media_id in members:
        pipe.hgetall(keys.media(media_id))
    snapshots, gone = _collect(members, await pipe.execute())
    if gone:
        await client.zrem(keys.user(user_id), *gone)
    owners = _owners(snapshots)
    if owners:
        pipe = client.pipeline(transaction=False)
        for owner in owners:
            pipe.exists(keys.alive(owner))
        _mark_owners(snapshots, owners, await pipe.execute())
    return snapshots


def _owners(snapshots: list[MediaSnapshot]) -> list[str]:
    return list(dict.fromkeys(
        owner for s in snapshots if not s.terminal for owner in owners_of(s)))


def _mark_owners(snapshots: list[MediaSnapshot], owners: list[str], replies: list[Any]) -> None:
    """Set ``owner_alive`` (the readers check each running media's owners' keys)."""
    alive = {owner for owner, n in zip(owners, replies, strict=True) if n}
    for snapshot in snapshots:
        mine = owners_of(snapshot) if not snapshot.terminal else set()
        if mine:
            snapshot.owner_alive = bool(mine & alive)


def _collect(
    members: list[str], replies: list[Any]
) -> tuple[list[MediaSnapshot], list[str]]:
    snapshots, gone = [], []
    for media_id, fields in zip(members, replies, strict=True):
        snapshot = parse_snapshot(media_id, fields)
        if snapshot is None:
            gone.append(media_id)
        else:
            snapshots.append(snapshot)
    return snapshots, gone

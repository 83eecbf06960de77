"""The snapshot's Redis hash: the fields written for a ``MediaSnapshot`` and the
snapshot read back from them (``parse_snapshot``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._model import MediaSnapshot, ModelSnapshot

__all__ = ["decode_text", "media_fields", "parse_snapshot", "progress_fields"]

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


def progress_fields(state: MediaSnapshot, models: Iterable[str]) -> dict[str, str]:
    """The fields a running media's progress write sets: updated-at, owner, seq and
    ``models``' rows."""
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
    text = {decode_text(k): decode_text(v) for k, v in fields.items()}
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


def decode_text(value: bytes | str) -> str:
    """A reply's bytes as text (invalid UTF-8 replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

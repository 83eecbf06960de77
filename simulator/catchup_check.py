"""The late-joiner check of ``progress-sim e2e``: catch-up gives the same panel, no gap, no dup.

A socket that connects mid-run gets ``progress_snapshot`` per in-flight media and then
live ``progress_update`` events. It is right when (1) every snapshot came before every
live event, (2) per media and source, the live events it got continue the snapshot's
``seq`` with no gap and no repeat, and (3) folding snapshots and live events gives the
same panel (media status; per model status, progress/total, phase, result or error) as a
socket of the same user that was connected from the start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from progress_sdk.snapshot import MediaSnapshot, apply_event

__all__ = ["check_late_join", "panel_rows", "panel_state"]

Panel = dict[str, MediaSnapshot]


def _wire(update: Mapping[str, Any]) -> dict[str, Any]:
    """A ``progress_update`` payload back in wire (snake_case) form."""
    return {
        "media_id": update.get("mediaId"), "user_id": update.get("userId"),
        "event": update.get("event"), "message": update.get("message"),
        "data": update.get("data") or {}, "seq": update.get("seq"),
        "source": update.get("source"), "run_id": update.get("runId"),
    }  # fmt: skip


def panel_state(received: Iterable[tuple[str, Any]]) -> Panel:
    """The panel a socket ends with, from what it received as (socket event, payload)."""
    panel: Panel = {}
    for name, payload in received:
        if not isinstance(payload, Mapping):
            continue
        if name == "progress_snapshot":
            snapshot = MediaSnapshot.from_client(payload)
            panel[snapshot.media_id] = snapshot
        elif name == "progress_update" and isinstance(payload.get("mediaId"), str):
            event = _wire(payload)
            known = panel.get(event["media_id"])
            if known is None or not known.covers(event):
                panel[event["media_id"]] = apply_event(known, event, 0.0)
    return panel


def panel_rows(panel: Panel) -> dict[str, tuple[Any, ...]]:
    """What a person sees of a panel: media status and each row, without timestamps."""
    return {
        media_id: (
            snap.status, snap.error,
            tuple(sorted(
                (name, m.status, m.progress, m.total, m.phase, m.prediction, m.confidence,
                 m.error)
                for name, m in snap.models.items()
            )),
        )
        for media_id, snap in panel.items()
    }  # fmt: skip


def check_late_join(
    early: list[tuple[str, Any]], late: list[tuple[str, Any]], label: str
) -> list[str]:
    """Faults of the late socket ``label`` against a socket connected from the start."""
    faults: list[str] = []
    names = [name for name, _ in late]
    if "progress_snapshot" in names and "progress_update" in names:
        last_snapshot = len(names) - 1 - names[::-1].index("progress_snapshot")
        if last_snapshot > names.index("progress_update"):
            faults.append(f"{label}: a progress_snapshot came after a live progress_update")
    faults.extend(_sequence_faults(late, label))
    want, got = panel_rows(panel_state(early)), panel_rows(panel_state(late))
    for media_id in sorted(set(want) | set(got)):
        if want.get(media_id) != got.get(media_id):
            faults.append(
                f"{label}: media {media_id} ends as {got.get(media_id)} but a socket "
                f"connected from the start shows {want.get(media_id)}"
            )
    return faults


def _sequence_faults(late: list[tuple[str, Any]], label: str) -> list[str]:
    faults: list[str] = []
    last: dict[tuple[str, str], int] = {}
    for name, payload in late:
        if not isinstance(payload, Mapping):
            continue
        if name == "progress_snapshot":
            for source, seq in (payload.get("seqs") or {}).items():
                last[(str(payload.get("mediaId")), source)] = seq
        elif name == "progress_update":
            seq, source = payload.get("seq"), payload.get("source")
            if type(seq) is not int or type(source) is not str:
                continue
            key = (str(payload.get("mediaId")), source)
            expected = last.get(key, 0) + 1
            if seq != expected:
                what = "a repeat" if seq < expected else f"a gap of {seq - expected}"
                faults.append(f"{label}: media {key[0]} source {source}: seq {seq} after "
                              f"{expected - 1} is {what}")
            last[key] = max(seq, last.get(key, 0))
    return faults

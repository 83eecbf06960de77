"""The straightforward snapshot fold the tests hold the writer to: one event at a time.

``SnapshotTracker.apply_batch`` folds a batch with shortcuts (an event that the next one
of its media repeats is not folded; the bookkeeping is done once per media). Given one
event, it takes none of them: each event is folded and recorded in order, which is what
``fold_each`` does. The tests also use it to put a tracker in a known state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from progress_sdk.snapshot import SnapshotTracker


def fold_each(tracker: SnapshotTracker, event: Mapping[str, Any], now: float) -> None:
    """Fold one decoded event into ``tracker``'s snapshots as of ``now`` (epoch seconds)."""
    tracker.apply_batch([event], lambda _event: now)

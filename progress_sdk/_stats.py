"""PublisherStats: what a publisher did, as ``ProgressPublisher.stats()`` reports it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PublisherStats"]


@dataclass(frozen=True)
class PublisherStats:
    """A snapshot of what the publisher did. Counters are totals since creation."""

    accepted: int
    """Events emit() accepted (each later published, coalesced or dropped), and lost
    terminal events queued again (``terminals_resent``)."""
    published: int
    """Events Redis confirmed as published."""
    coalesced: int
    """Progress events replaced by a newer value of the same model before sending."""
    dropped: Mapping[str, int]
    """Events lost, by reason: ``buffer_full`` and ``evicted`` (no room), ``delivery_unknown``
    (no reply in time), ``closed`` (still buffered when close() gave up), ``rejected`` (Redis
    answered with a final error, e.g. an ACL),
    ``unserialisable`` (data changed after emit), ``sender_error`` (an unexpected error)."""
    queued: int
    """Events waiting to be sent now (held progress values included)."""
    reconnects: int
    """New connections after the first (each master's first, on a cluster): after a
    restart, a cut connection or a failed batch, whether or not a batch failed first."""
    connected: bool
    """Whether the last attempt to reach Redis succeeded."""
    last_error: str | None
    """The last delivery error, password-free."""
    no_subscribers: int
    """Events published while nobody was subscribed to the channel (not lost by us)."""
    forgiven: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Bad progress data the tracking API repaired or skipped instead of raising, by kind
    (``progress_range``, ``progress_type``, ``total_changed``...; see ``strict``)."""
    extra_failed: int = 0
    """Extra commands written with the events that failed: snapshot writes or a batch
    hook's commands that Redis refused (WRONGTYPE, OOM, NOPERM...) or that a lost
    connection cut off. The events are not affected; the first failure of each kind is
    logged."""
    terminals_lost: int = 0
    """Media terminal events a full buffer gave up although the media's
    ``PROCESSING_STARTED`` went out or was on its way (a panel is open). Only when every
    waiting event was such a terminal event (more media ended during an outage than
    ``buffer_size`` holds); also counted in ``dropped`` and logged (once). Not lost for
    good: each is kept aside and queued again, byte for byte, once the buffer has room.
    Always ``terminals_resent + terminals_waiting + terminals_abandoned``."""
    terminals_resent: int = 0
    """Lost terminal events queued again (same bytes, same ``seq``): once the buffer had
    room, or right before their media's next run started. Also counted in ``accepted``."""
    terminals_waiting: int = 0
    """Now: lost terminal events kept aside, waiting for room in the buffer."""
    terminals_abandoned: int = 0
    """Lost terminal events that will not be sent: past the bound on what is kept aside
    (``MAX_LOST_TERMINAL_BYTES``, 16 MiB), or still waiting when ``close()`` gave up.
    Each is a panel left open while the worker lives; logged (once)."""
    fenced_runs: int = 0
    """Media runs a sweeper ended while this publisher was still reporting them (taken
    for dead or stuck; ``progress_sdk.liveness``): their later events are withheld and
    counted as ``dropped["fenced"]``."""
    sender_wakeups: int = 0
    """Times an event (or a ``flush()``) woke the idle sender thread. Each wake-up costs
    the job's thread a few microseconds (waking a thread on another core: ~5 µs on the
    2-core test machine, docs/benchmarks.md) and the interpreter lock while the sender
    takes its batch. A progress value that replaces a waiting one, or is held behind an
    earlier deadline (``min_progress_interval``), does not wake it: with the defaults, a
    loop reporting every step wakes it tens of times per 10,000 calls
    (``benchmarks/publisher_core_bench.py``)."""

    @property
    def dropped_total(self) -> int:
        """All dropped events, whatever the reason."""
        return sum(self.dropped.values())

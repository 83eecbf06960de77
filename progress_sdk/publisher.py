"""ProgressPublisher: hand events to a background sender, never wait on delivery.

The front (``emit``, the tracking API's ``accept``, ``flush``, ``close``, ``stats``) runs
on the job's threads: it validates, then hands the event to the buffer
(``progress_sdk._buffer``) under a lock held for a few dict and deque operations. One
named daemon thread, the sender (``progress_sdk._sender``), drains the buffer in batches,
serialises (``progress_sdk._wire``) and publishes through ``RedisTransport``. Nothing
the sender does can raise into job code; what goes wrong is counted in ``stats()`` and
logged once per outage.

The front also keeps the registry of live publishers that forks and interpreter exit
need: a forked child starts its publishers afresh, and exit flushes them, bounded.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import random
import secrets
import socket
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from . import defaults as d
from ._buffer import Entry, EventBuffer
from ._sender import BatchHook, Sender
from ._validate import validated_fields
from ._wire import WireEncoder
from .cluster import client_for, transport_for
from .event_types import PROCESSING_STARTED
from .events import ProgressEvent
from .exceptions import (
    ConfigurationError,
    InvalidEventError,
    Problem,
    PublisherClosedError,
    RedisUnavailableError,
)
from .failures import ErrorMessages
from .liveness import Liveness
from .redis_urls import mask_url
from .sharding import resolve_shards, router
from .snapshot import SnapshotConfig, SnapshotHook
from .tracking import MediaRun, fail_open_runs, inside_a_run
from .transport import ConnectFailed, Transport

__all__ = ["ProgressPublisher", "PublisherStats"]

logger = logging.getLogger("progress_sdk")

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

    @property
    def dropped_total(self) -> int:
        """All dropped events, whatever the reason."""
        return sum(self.dropped.values())


def _default_source() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(16):04x}"


def _check_settings(
    channel: object, buffer_size: object, batch_size: object, source: object
) -> None:
    if not isinstance(channel, str) or not channel:
        raise ConfigurationError(f"channel must be a non-empty string, got {channel!r}")
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
        raise ConfigurationError(f"buffer_size must be an integer >= 1, got {buffer_size!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if source is not None and (
        not isinstance(source, str) or not source.strip() or len(source) > d.MAX_SOURCE_CHARS
    ):
        raise ConfigurationError(
            f"source must be a non-empty string of at most {d.MAX_SOURCE_CHARS} "
            f"characters, got {source!r}"
        )


def _snapshot_config(snapshots: SnapshotConfig | bool | None) -> SnapshotConfig | None:
    if snapshots is None:
        snapshots = os.environ.get(d.ENV_SNAPSHOTS, "").strip().lower() not in (
            "0", "false", "off", "no",
        )
    if isinstance(snapshots, SnapshotConfig):
        return snapshots
    if snapshots is True:
        return SnapshotConfig()
    if snapshots is False:
        return None
    raise ConfigurationError(
        f"snapshots must be a SnapshotConfig, True or False, got {snapshots!r}"
    )


def _liveness_client(target: object) -> Callable[[], Any]:
    """Makes the client of the liveness key and guards (on the sender thread). Never on a
    pool the job's code shares: the sender may hold the pool's lock when a worker forks
    (RQ's work horse), and the child would then wait on it forever."""
    if isinstance(target, str):
        return lambda: client_for(target, socket_timeout=d.SOCKET_TIMEOUT)
    pool = target.connection_pool if isinstance(target, redis.Redis) else target
    if isinstance(pool, redis.ConnectionPool):
        return lambda: redis.Redis(connection_pool=type(pool)(
            connection_class=pool.connection_class, **pool.connection_kwargs))
    return lambda: target  # a RedisCluster client


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a number {bound}, got {value!r}")


# Weak, so that a publisher nobody uses is collected; one whose sender thread runs stays
# here anyway, as the thread keeps it alive (Sender's keep_alive) until close() ends it.
_live_publishers: weakref.WeakSet[ProgressPublisher] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for publisher in list(_live_publishers):
        publisher._after_fork_in_child()


def _flush_at_exit() -> None:
    # Bounded: a dead Redis must not hold the process at exit for more than a moment.
    deadline = time.monotonic() + d.DEFAULT_ATEXIT_FLUSH_TIMEOUT
    for publisher in list(_live_publishers):
        publisher._flush_at_exit(max(0.0, deadline - time.monotonic()))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
atexit.register(_flush_at_exit)


class ProgressPublisher:
    """Publishes progress events to Redis pub/sub from a background thread.

    ``redis`` is a URL, a ``redis.Redis`` client (fakeredis works), a
    ``redis.ConnectionPool`` or a ``redis.RedisCluster`` client; ``None`` reads
    ``REDIS_URL``, else uses ``redis://127.0.0.1:6379/0``. A URL of a Redis Cluster node
    is recognised (on the sender thread) and events then go out with sharded pub/sub
    (``SPUBLISH``; docs/cluster.md). ``channel`` likewise reads
    ``MEDIA_PROGRESS_CHANNEL_NAME``, else ``media-progress-events``. ``shards`` (``None``:
    ``MEDIA_PROGRESS_SHARDS``, else 1) spreads media over ``channel:0`` ..
    ``channel:<shards-1>`` by a stable hash of ``media_id`` (``progress_sdk.sharding``);
    1 keeps every event on ``channel``.

    ``emit`` and the tracking API (``media()``) never block on the network and never
    raise because of Redis; invalid events given to ``emit`` raise ``InvalidEventError``.

    ``strict`` (``None``: the environment variable ``PROGRESS_SDK_STRICT=1``, else off)
    decides what the tracking API does with bad progress data once a run started: off,
    it repairs or skips it, logs each kind once and counts it in ``stats().forgiven``; on,
    it raises ``InvalidEventError`` (the testing helpers are strict by default).
    ``error_messages`` maps exception types to the text users read when a model or media
    fails (``progress_sdk.failures``).

    ``fail_runs_left_open`` (on by default): ``close()`` and the exit hook end every media
    run job code left open with ``PROCESSING_FAILED`` (``tracking.fail_open_runs``), so
    no panel stays open; off only for simulating workers that crash.

    ``snapshots`` keeps the current state of each media in Redis for relays and the
    sweeper (``progress_sdk.snapshot``), written in the same pipeline as each batch: a
    ``SnapshotConfig``, ``True`` for the defaults, ``False`` for none; ``None`` reads
    ``PROGRESS_SDK_SNAPSHOTS`` (``0``/``false``/``off``: none), else the defaults.

    ``batch_hook`` (advanced) returns extra Redis commands to write in the same pipeline
    as each batch, after its PUBLISH commands (see ``progress_sdk._sender.BatchHook``).

    ``transport`` (tests, and destinations other than Redis) replaces the Redis
    connection: any ``progress_sdk.transport.Transport``, such as
    ``progress_sdk.testing.CapturingTransport``, which keeps what it is given. ``redis``
    is then ignored, and so is liveness (it needs a Redis client).
    """

    def __init__(
        self,
        redis: str | redis.Redis | redis.ConnectionPool | redis.RedisCluster | None = None,
        channel: str | None = None,
        *,
        shards: int | None = None,
        buffer_size: int = d.DEFAULT_BUFFER_SIZE,
        min_progress_interval: float = d.DEFAULT_MIN_PROGRESS_INTERVAL,
        batch_size: int = d.DEFAULT_BATCH_SIZE,
        source: str | None = None,
        finish_flush_timeout: float = d.DEFAULT_FINISH_FLUSH_TIMEOUT,
        fail_runs_left_open: bool = True,
        strict: bool | None = None,
        error_messages: ErrorMessages | None = None,
        batch_hook: BatchHook | None = None,
        snapshots: SnapshotConfig | bool | None = None,
        transport: Transport | None = None,
    ) -> None:
        target = (
            redis if redis is not None else os.environ.get(d.ENV_REDIS_URL) or d.DEFAULT_REDIS_URL
        )
        channel = (
            channel if channel is not None else (os.environ.get(d.ENV_CHANNEL) or d.DEFAULT_CHANNEL)
        )
        _check_settings(channel, buffer_size, batch_size, source)
        _check_positive("min_progress_interval", min_progress_interval, allow_zero=True)
        _check_positive("finish_flush_timeout", finish_flush_timeout, allow_zero=True)
        self.shards = resolve_shards(shards)
        self._transport: Transport = (
            transport if transport is not None else transport_for(target, channel)
        )
        # Liveness needs a client of the same Redis; a transport given here has none.
        self._liveness_client = None if transport is not None else _liveness_client(target)
        self.channel = channel
        self.buffer_size = buffer_size
        self.min_progress_interval = float(min_progress_interval)
        self.batch_size = batch_size
        self.finish_flush_timeout = float(finish_flush_timeout)
        self.fail_runs_left_open = fail_runs_left_open
        self.batch_hook = batch_hook
        self.snapshots = _snapshot_config(snapshots)
        self._explicit_source = source
        self.strict = (
            strict if strict is not None else os.environ.get(d.ENV_STRICT, "") in ("1", "true")
        )
        self.error_messages: ErrorMessages = dict(error_messages or {})
        # close() first refuses new media runs (closing), fails the runs left open, then
        # refuses everything (closed). ``_close_started``: a close() is past that point.
        self._closing = False
        self._closed = False
        self._close_started = False
        self._close_result = False
        # Set when the first close() has decided its result: later calls wait for it.
        self._close_done = threading.Event()
        self._init_state()
        _live_publishers.add(self)

    def _init_state(self) -> None:
        """(Re)create everything the sender thread and the front share."""
        self._pid = os.getpid()
        # A forked child numbers each media from 1 again: it gets a source of its own.
        source = self.source = self._instance_source()
        # Re-entrant so that a signal handler on a thread inside emit() can read stats();
        # close() and flush() see _held_here() and do not wait there (see close()).
        self._lock = threading.RLock()
        # Wakes flush() waiters when work settles; guards the buffer and the counters.
        self._settled = threading.Condition(self._lock)
        self._accepted = 0
        self._forgiven: Counter[str] = Counter()
        self._terminal_loss_logged = False
        self._abandon_logged = False
        route = router(self.channel, self.shards)
        # A batch hook is given each event's fields: then they are kept after serialising;
        # a hook and shard routing need each event's media_id: then every event keeps its
        # Entry (otherwise a lifecycle event is kept as its bytes alone). Snapshots read
        # the events back from their bytes and need neither.
        self._keep_fields = self.batch_hook is not None
        self._buffer = EventBuffer(
            self.buffer_size,
            self.min_progress_interval,
            keep_entries=self._keep_fields or route is not None,
        )
        self._encoder = WireEncoder(source)
        self._liveness = self._new_liveness(source)
        hook = None
        if self.snapshots is not None:
            # A fresh hook per sender, so a forked child starts without its parent's.
            hook = SnapshotHook(
                self.snapshots,
                self.channel if route is None else lambda media_id: route(media_id).decode(),
                self._liveness,
            )
            if hasattr(self._transport, "on_new_server"):
                # A server that lost its data gets every snapshot whole again.
                self._transport.on_new_server = hook.rewrite_commands
        self._sender = Sender(
            self._buffer,
            self._settled,
            self._transport,
            self._encoder,
            batch_size=self.batch_size,
            name=f"progress-sdk-sender-{self.channel}",
            source=source,
            batch_hook=self.batch_hook,
            wire_hook=hook,
            route=route,
            keep_alive=self,
            liveness=self._liveness,
            withheld=hook.take_withheld if hook is not None and self._liveness else None,
        )

    def _new_liveness(self, source: str) -> Liveness | None:
        config = self.snapshots
        if config is None or config.liveness_ttl is None or self._liveness_client is None:
            return None
        return Liveness(source, config.keys.alive(source), config.keys.media,
                        config.liveness_ttl, self._liveness_client)

    def _instance_source(self) -> str:
        """The ``source`` of this publisher's events: unique to the instance and the
        process, since each numbers every media from 1 (contract rule 6). An explicit
        ``source=`` is its readable first part, followed by a random one: a worker
        restarted under the same name must not repeat the seq numbers its previous
        process sent, or consumers drop the new run's events as repeats of (source,
        media_id, seq), as the relay does."""
        if self._explicit_source is None:
            return _default_source()
        suffix = f":{secrets.token_hex(4)}"
        return self._explicit_source[: d.MAX_SOURCE_CHARS - len(suffix)] + suffix

    def _after_fork_in_child(self) -> None:
        # The child gets a fresh buffer, lock, thread and connection. The parent's
        # pending events stay the parent's: sending them here too would duplicate them.
        self._transport.after_fork_in_child()
        self._init_state()

    def __repr__(self) -> str:
        return (
            f"ProgressPublisher(redis={self._transport.description!r}, "
            f"channel={self.channel!r}, source={self.source!r}, closed={self._closed})"
        )

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    # -- the front: runs on job threads -----------------------------------------

    def emit(self, event: ProgressEvent | Mapping[str, Any]) -> None:
        """Accept one event for delivery; returns at once.

        ``event`` is a ``ProgressEvent`` or a dict of its wire fields. The publisher sets
        ``schema_version``, ``seq``, ``source`` and ``timestamp``; leave them out.
        Raises ``InvalidEventError`` for an event that breaks the contract.
        """
        self.accept(validated_fields(event))

    def media(
        self,
        media_id: str,
        user_id: str,
        *,
        filename: str | None = None,
        run_id: str | None = None,
        message: str | None = None,
    ) -> MediaRun:
        """Track one analysis run of a media; see ``progress_sdk.tracking``."""
        return MediaRun(self, media_id, user_id, filename=filename, run_id=run_id, message=message)

    def accept(self, fields: dict[str, Any]) -> None:
        """Queue one event's validated wire fields (no envelope); the ``EventSink`` side
        of the tracking API. Job code calls ``emit()``, which validates first.

        A lifecycle event is serialised here, on the caller's thread: what goes out is
        the event as it is now, whatever its caller does to its dicts later. A progress
        event is serialised when the sender takes it (most are replaced before that):
        nested data its caller changes meanwhile changes what goes out, and data that is
        no longer JSON then drops it (counted as ``dropped["unserialisable"]``).
        """
        try:
            entry = self._new_entry(fields)
        except (TypeError, ValueError, RecursionError) as exc:
            problem = Problem("$", "json", f"must be JSON-serialisable: {exc}")
            raise InvalidEventError([problem], event_type=str(fields.get("event"))) from None
        self._accept_entry(entry)

    def _new_entry(self, fields: dict[str, Any]) -> Entry:
        """Serialise an event, on the caller's thread and outside the lock."""
        if self._pid != os.getpid():  # backstop if at-fork hooks did not run
            self._after_fork_in_child()
        entry = Entry(fields, time.time())
        if entry.progress_key is None:
            entry.serialise(self._encoder, keep=self._keep_fields)
        return entry

    def _accept_entry(self, entry: Entry) -> None:
        sender = self._sender
        with self._lock:
            # Checked under the lock: a close() racing this emit either sees the event
            # (and sends or counts it) or makes this emit raise.
            if self._closing:
                self._refuse_if_closing(entry.event)
            self._accepted += 1
            # An event that only replaces or is held behind an earlier deadline leaves
            # the sender asleep: waking it costs the job the interpreter lock. Woken
            # under the lock, so that a signal handler interrupting this never finds
            # the wakeup's own lock taken by its thread (close() would wait on it).
            if self._buffer.accept(entry) and sender.idle:
                sender.wakeup.set()
            self._ensure_sender_locked()
            lost_terminal = self._buffer.last_terminal_lost
            abandoned = self._buffer.lost.last_abandoned
        if lost_terminal is not None and not self._terminal_loss_logged:
            self._log_terminal_loss(lost_terminal)
        if abandoned is not None and not self._abandon_logged:
            self._log_abandoned(abandoned)

    def _log_terminal_loss(self, media_id: str) -> None:
        self._terminal_loss_logged = True
        logger.warning(
            "progress_sdk: the terminal event of media %r did not fit: the buffer "
            "(buffer_size=%d) held nothing but terminal events of media on screen. It is "
            "kept aside and sent again, same seq, once the buffer has room. Counted in "
            "stats().terminals_lost and terminals_resent (logged once); a larger "
            "buffer_size rides out a longer outage.",
            media_id,
            self.buffer_size,
        )

    def _log_abandoned(self, media_id: str) -> None:
        self._abandon_logged = True
        logger.error(
            "progress_sdk: the terminal event of media %r was lost for good: the buffer "
            "was full of terminal events and so was the room kept for them beside it "
            "(%d bytes), so its panel may stay open. Counted in "
            "stats().terminals_abandoned (logged once).",
            media_id,
            self._buffer.lost.max_bytes,
        )

    def _refuse_if_closing(self, event: str) -> None:
        """Raise PublisherClosedError for an event close() no longer takes. While close()
        fails the runs left open, their events still go in, but a new run's
        PROCESSING_STARTED does not: close() would not see that run, and its terminal
        event would be refused (a panel that never ends). Once closed, nothing goes in.
        Called under the lock that orders accepting with close() (testing: its own)."""
        if self._closed or (self._closing and event == PROCESSING_STARTED):
            raise PublisherClosedError(
                "emit() after close(): create a new ProgressPublisher, or emit before closing"
            )

    def _ensure_sender_locked(self) -> bool:
        """Start the sender thread if work waits and it is not running (the first event,
        or the thread ended on a bug: what it left queued must still go out). Not once
        close() stopped it. Returns whether the thread runs now."""
        sender = self._sender
        if sender.running:
            return True
        if sender.stop.is_set() or not self._buffer.queued:
            return False
        sender.start()
        return True

    # -- flush, close, stats ------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted before this call is published or dropped.

        Held progress values are sent at once. Returns True if they all were before
        ``timeout`` seconds (None: no limit). Events that other threads emit meanwhile
        are not waited for.
        """
        return self._wait_settled(timeout, stall_after=None)

    def _wait_settled(self, timeout: float | None, *, stall_after: float | None) -> bool:
        """flush(); with ``stall_after``, give up once the publish call under way has
        moved no byte that long (a frozen server; see ``Sender.stalled``)."""
        if self._held_here():
            return False  # a signal handler interrupting emit(): see close()
        deadline = None if timeout is None else time.monotonic() + timeout
        sender = self._sender
        buffer = self._buffer
        with self._lock:
            target = buffer.flush_target()
            if not buffer.unsettled(target):
                return True
            sender.flushers += 1
            if sender.idle:
                sender.wakeup.set()
            # Restarted once per call: a thread that dies again is not restarted in a loop.
            restarts = 1
            try:
                while buffer.unsettled(target):
                    if not sender.running:
                        if not restarts or not self._ensure_sender_locked():
                            return False
                        restarts -= 1
                    if stall_after is not None and (
                        sender.stalled(stall_after) or sender.known_down()
                    ):
                        return False  # Redis stalled or down meanwhile: stop waiting
                    remaining = 0.5 if deadline is None else deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    # Bounded, so that a sender that ended or stalled is noticed.
                    slice_ = 0.5 if stall_after is None else stall_after / 2
                    self._settled.wait(min(remaining, slice_))
                return True
            finally:
                sender.flushers -= 1

    def close(self, timeout: float = d.DEFAULT_CLOSE_TIMEOUT) -> bool:
        """Send what is buffered (for up to ``timeout`` seconds), stop the sender, disconnect.

        Returns True when nothing accepted was lost. Events still buffered when the
        timeout passes are counted as ``dropped["closed"]``. Idempotent: a later call
        returns the first call's result, waiting (up to its own ``timeout``) for the first
        call to finish; False if it has not.

        Called from a signal handler that interrupted this publisher's own lock or one
        of its media runs on the same thread (inside ``emit()``, or a run's change such
        as its end), it cannot wait: it refuses new media runs from then on and returns
        False at once; a later ``close()`` or the exit hook finishes.
        """
        if self._held_here() or inside_a_run(self):
            self._closing = True
            return False
        with self._lock:
            first = not self._close_started
            self._close_started = self._closing = True
        if not first:
            return self._close_done.wait(timeout) and self._close_result
        try:
            self._end_runs_left_open()
            delivered = self._stop_sending(timeout)
            self._transport.close()
            _live_publishers.discard(self)
            with self._lock:
                lost = {k: n for k, n in self._dropped_locked().items() if k != "fenced"}
                self._close_result = delivered and not lost
        finally:
            self._close_done.set()
        return self._close_result

    def _end_runs_left_open(self) -> None:
        """close()'s first step, while new runs are refused: the runs left open end with
        PROCESSING_FAILED; then nothing more is accepted."""
        if self.fail_runs_left_open:
            fail_open_runs(self, "the worker stopped before this media's analysis finished")
        with self._lock:
            self._closed = True
            self._sender.closing = True

    def _held_here(self) -> bool:
        """Whether this thread holds the lock: a signal handler interrupted it there."""
        # RLock._is_owned is what threading.Condition itself asks; typeshed omits it.
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]

    def _stop_sending(self, timeout: float) -> bool:
        """close()'s delivery part: flush, stop the thread, and count what is left as
        dropped["closed"]. True when everything was delivered (or dropped and counted
        before)."""
        sender = self._sender
        sender.wakeup.set()
        deadline = time.monotonic() + timeout
        # flush() restarts a sender that died with work queued. A slice of the budget is
        # kept for stopping the thread: close() must return within its timeout even when
        # Redis is down.
        delivered = self.flush(max(0.0, timeout * 0.9 - 0.05))
        sender.stop.set()
        sender.wakeup.set()
        sender.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            # Whatever still waits (not sent in time, or behind a sender that died) is
            # counted, never left queued; a batch still in flight is the thread's to count.
            if self._buffer.drain():
                delivered = False
            self._settled.notify_all()
        return delivered

    def __enter__(self) -> ProgressPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run_swept(self, media_id: str) -> bool:
        """Whether a sweeper ended the current run of ``media_id`` while this publisher
        was reporting it (its further events are withheld): the job may stop working on
        it. Learnt when the run's next events are about to go out."""
        live = self._liveness
        return live is not None and live.is_fenced(media_id)

    def run_ended(self) -> None:
        """Called by a media run's terminal event: wait, bounded, for delivery.

        The process may end right after the job with os._exit (RQ's work horse does, and
        it may have created this publisher itself, so no fork hook knows), which skips
        atexit and would lose the run's last events. With Redis up this costs well under
        a millisecond once per run; while Redis is known to be down it costs nothing.
        """
        timeout = self.finish_flush_timeout
        if timeout <= 0 or self._pid != os.getpid():
            return
        sender = self._sender
        with self._lock:
            known_down = sender.known_down()
        # A server that takes our bytes but does not answer (frozen, overloaded) costs
        # each run at most STALL_NOTICE: then, and while it lasts, runs do not wait.
        if not known_down and not sender.stalled(d.STALL_NOTICE):
            self._wait_settled(timeout, stall_after=d.STALL_NOTICE)

    def count_forgiven(self, kind: str) -> int:
        """Count one repair of bad progress data (the ``EventSink`` side of the tracking
        API); returns the kind's new total."""
        with self._lock:
            self._forgiven[kind] += 1
            return self._forgiven[kind]

    def _flush_at_exit(self, timeout: float) -> None:
        if not self._close_started and self._pid == os.getpid():
            # As close() does first: daemon threads still run job code during exit, and a
            # run they started after the open runs were failed would never end.
            with self._lock:
                self._closing = True
            if self.fail_runs_left_open:
                fail_open_runs(self, "the worker exited before this media's analysis finished")
            self.flush(timeout)

    def _dropped_locked(self) -> dict[str, int]:
        return dict(self._buffer.dropped + self._sender.dropped)

    def stats(self) -> PublisherStats:
        """A consistent snapshot of the counters (best effort in a signal handler that
        interrupted ``emit()``: an event may be counted as accepted and not yet queued)."""
        sender = self._sender
        with self._lock:
            return PublisherStats(
                accepted=self._accepted + self._buffer.lost.resent,
                published=sender.published,
                coalesced=self._buffer.coalesced,
                dropped=self._dropped_locked(),
                queued=self._buffer.queued,
                reconnects=sender.reconnects,
                connected=sender.connected,
                last_error=sender.last_error,
                no_subscribers=sender.no_subscribers,
                forgiven=dict(self._forgiven),
                extra_failed=sender.extra_failed,
                terminals_lost=self._buffer.terminals_lost,
                terminals_resent=self._buffer.lost.resent,
                terminals_waiting=len(self._buffer.lost),
                terminals_abandoned=self._buffer.lost.abandoned,
                fenced_runs=self._liveness.fenced_runs if self._liveness is not None else 0,
            )

    def check_connection(self, timeout: float = d.CONNECT_TIMEOUT) -> None:
        """Connect and PING Redis from the calling thread (the one call that does I/O).

        For start-up checks and CLIs; raises ``RedisUnavailableError`` with one clear
        line. Job code does not need it: emit() works with Redis down.
        """
        try:
            self._transport.check()
        except ConnectFailed as exc:
            raise RedisUnavailableError(
                f"cannot reach Redis at {self._transport.description}: {mask_url(str(exc))}"
            ) from None

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

import logging
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis

from . import defaults as d
from ._closing import Closing, live_publishers
from ._entry import Entry
from ._pipeline import PipelineConfig, build_pipeline, liveness_client
from ._sender import BatchHook
from ._settings import check_positive, check_settings, default_source, snapshot_config
from ._stats import PublisherStats
from ._validate import validated_fields
from .cluster import transport_for
from .events import ProgressEvent
from .exceptions import (
    InvalidEventError,
    Problem,
    RedisUnavailableError,
)
from .failures import ErrorMessages
from .redis_urls import mask_url
from .sharding import resolve_shards, resolve_user_channels
from .snapshot import SnapshotConfig
from .tracking import MediaRun
from .transport import ConnectFailed, Transport

__all__ = ["ProgressPublisher", "PublisherStats"]

logger = logging.getLogger("progress_sdk")

class ProgressPublisher(Closing):
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

    ``user_channels`` (``None``: ``MEDIA_PROGRESS_USER_CHANNELS``, else off) also sends
    each event to ``<channel>:user:<user_id>``, for relays run with ``--user-channels``
    (docs/relay.md); ``contract_channel`` (``None``: ``MEDIA_PROGRESS_CONTRACT_CHANNEL``,
    else on) keeps ``channel`` (or the shards) too, in the same pipeline.

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
        user_channels: bool | None = None,
        contract_channel: bool | None = None,
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
        check_settings(channel, buffer_size, batch_size, source)
        check_positive("min_progress_interval", min_progress_interval, allow_zero=True)
        check_positive("finish_flush_timeout", finish_flush_timeout, allow_zero=True)
        self.shards = resolve_shards(shards)
        self.user_channels = resolve_user_channels(user_channels, contract_channel)
        self._transport: Transport = (
            transport if transport is not None else transport_for(target, channel)
        )
        self.channel = channel
        self.buffer_size = buffer_size
        self.min_progress_interval = float(min_progress_interval)
        self.batch_size = batch_size
        self.finish_flush_timeout = float(finish_flush_timeout)
        self.fail_runs_left_open = fail_runs_left_open
        self.batch_hook = batch_hook
        self.snapshots = snapshot_config(snapshots)
        self._pipeline_config = PipelineConfig(
            self._transport, channel, self.shards, buffer_size, self.min_progress_interval,
            batch_size, batch_hook, self.snapshots,
            # Liveness needs a client of the same Redis; a transport given here has none.
            None if transport is not None else liveness_client(target),
            self.user_channels,
        )
        self._explicit_source = source
        self.strict = (
            strict if strict is not None else os.environ.get(d.ENV_STRICT, "") in ("1", "true")
        )
        self.error_messages: ErrorMessages = dict(error_messages or {})
        self._init_closing()
        self._init_state()
        live_publishers.add(self)

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
        parts = build_pipeline(self._pipeline_config, source, self._settled, keep_alive=self)
        self._keep_fields = parts.keep_fields
        self._buffer = parts.buffer
        self._encoder = parts.encoder
        self._liveness = parts.liveness
        self._sender = parts.sender

    def _instance_source(self) -> str:
        """The ``source`` of this publisher's events: unique to the instance and the
        process, since each numbers every media from 1 (contract rule 6). An explicit
        ``source=`` is its readable first part, followed by a random one: a worker
        restarted under the same name must not repeat the seq numbers its previous
        process sent, or consumers drop the new run's events as repeats of (source,
        media_id, seq), as the relay does."""
        if self._explicit_source is None:
            return default_source()
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
            # the sender asleep (see Sender.wake_if_idle).
            if self._buffer.accept(entry):
                sender.wake_if_idle()
            sender.ensure_running()
            lost_terminal = self._buffer.lost.last_kept
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

    # -- stats ---------------------------------------------------------------------

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

    def count_forgiven(self, kind: str) -> int:
        """Count one repair of bad progress data (the ``EventSink`` side of the tracking
        API); returns the kind's new total."""
        with self._lock:
            self._forgiven[kind] += 1
            return self._forgiven[kind]

    def stats(self) -> PublisherStats:
        """A consistent snapshot of the counters (best effort in a signal handler that
        interrupted ``emit()``: an event may be counted as accepted and not yet queued)."""
        with self._lock:
            sent = self._sender.counters()
            return PublisherStats(
                accepted=self._accepted + self._buffer.lost.resent,
                published=sent.published,
                coalesced=self._buffer.coalesced,
                dropped=dict(self._buffer.dropped + sent.dropped),
                queued=self._buffer.queued,
                reconnects=sent.reconnects,
                connected=sent.connected,
                last_error=sent.last_error,
                no_subscribers=sent.no_subscribers,
                forgiven=dict(self._forgiven),
                extra_failed=sent.extra_failed,
                terminals_lost=self._buffer.lost.kept,
                terminals_resent=self._buffer.lost.resent,
                terminals_waiting=len(self._buffer.lost),
                terminals_abandoned=self._buffer.lost.abandoned,
                fenced_runs=self._liveness.fenced_runs if self._liveness is not None else 0,
                sender_wakeups=sent.wakeups,
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

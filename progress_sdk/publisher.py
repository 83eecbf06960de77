"""ProgressPublisher: hand events to a background sender, never wait on delivery.

The front (``emit`` and the tracking API) runs on the job's threads: it validates, then
appends to a bounded buffer under a lock held for a few dict and deque operations. One
named daemon thread, the sender, drains the buffer in batches, serialises, and publishes
through ``RedisTransport``. Nothing the sender does can raise into job code; what goes
wrong is counted in ``stats()`` and logged once per outage.

Ordering and sequence numbers: events leave in the order they were accepted, except that
a progress event still waiting in the buffer is replaced in place by a newer one of the
same (media, run, model, event type) when nothing else of that model was accepted after
it, so lifecycle events keep their place relative to the progress around them. ``seq`` is
assigned when an event leaves the buffer, so replaced (coalesced) events leave no gap;
an event dropped for lack of room carries its number away with it, which consumers see
as a gap, i.e. as loss.
"""

from __future__ import annotations

import atexit
import dataclasses
import heapq
import itertools
import json
import logging
import os
import random
import re
import socket
import threading
import time
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from . import _rules
from . import defaults as d
from .events import ProgressEvent
from .exceptions import (
    ConfigurationError,
    InvalidEventError,
    Problem,
    PublisherClosedError,
    RedisUnavailableError,
)
from .failures import ErrorMessages
from .tracking import MediaRun
from .transport import (
    ConnectFailed,
    DeliveryUnknown,
    RedisTransport,
    Rejected,
    Transport,
    mask_url,
)

logger = logging.getLogger("progress_sdk")

__all__ = ["ProgressPublisher", "PublisherStats"]

_MODEL_TERMINALS = frozenset({"ANALYSIS_COMPLETED", "ANALYSIS_FAILED"})
_MEDIA_TERMINALS = frozenset({"PROCESSING_COMPLETED", "PROCESSING_FAILED"})
_PROGRESS = _rules.PROGRESS_EVENT_NAMES
_ENVELOPE_KEYS = ("schema_version", "seq", "source", "timestamp")
_MODEL_EVENTS = _rules.MODEL_EVENT_NAMES
_SURROGATE = re.compile("[\ud800-\udfff]")

# _Entry.state: waiting in the buffer; taken by the sender (numbered); evicted (a gap);
# published or dropped. flush() waits for entries to be _DEAD or _DONE.
_QUEUED, _TAKEN, _DEAD, _DONE = 0, 1, 2, 3


@dataclass(frozen=True)
class PublisherStats:
    """A snapshot of what the publisher did. Counters are totals since creation."""

    accepted: int
    """Events emit() accepted (each later published, coalesced or dropped)."""
    published: int
    """Events Redis confirmed as published."""
    coalesced: int
    """Progress events replaced by a newer value of the same model before sending."""
    dropped: Mapping[str, int]
    """Events lost, by reason: ``buffer_full`` and ``evicted`` (no room), ``delivery_unknown``
    (no reply in time), ``closed`` (still buffered when close() gave up), ``rejected`` (Redis
    answered with an error, e.g. an ACL),
    ``unserialisable`` (data changed after emit), ``sender_error`` (an unexpected error)."""
    queued: int
    """Events waiting to be sent now (held progress values included)."""
    reconnects: int
    """Connections re-established after a failure."""
    connected: bool
    """Whether the last attempt to reach Redis succeeded."""
    last_error: str | None
    """The last delivery error, password-free."""
    no_subscribers: int
    """Events published while nobody was subscribed to the channel (not lost by us)."""
    forgiven: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Bad progress data the tracking API repaired or skipped instead of raising, by kind
    (``progress_range``, ``progress_type``, ``total_changed``...; see ``strict``)."""

    @property
    def dropped_total(self) -> int:
        """All dropped events, whatever the reason."""
        return sum(self.dropped.values())


class _Entry:
    """One accepted event on its way out. Mutable so a newer progress value can take
    an older one's place in the buffer."""

    __slots__ = ("fields", "media_id", "model_key", "progress_key", "skip", "state", "ts", "wire")

    def __init__(
        self,
        fields: dict[str, Any],
        ts: float,
        model_key: tuple[str, str | None, str] | None,
        progress_key: tuple[str, str | None, str, str] | None,
    ) -> None:
        self.fields = fields
        self.ts = ts
        self.media_id: str = fields["media_id"]
        self.model_key = model_key
        self.progress_key = progress_key
        self.skip = 0  # seq numbers of dropped events that stood just before this one
        self.state = _QUEUED
        self.wire: bytes | None = None


class _TimestampFormatter:
    """ISO 8601 UTC with microseconds; the seconds part is formatted once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ts: float) -> str:
        second = int(ts)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        micros = int((ts - second) * 1_000_000)
        return f"{self._prefix}.{min(micros, 999_999):06d}Z"


def _default_source() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(16):04x}"


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a number {bound}, got {value!r}")


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

    ``redis`` is a URL, a ``redis.Redis`` client (fakeredis works) or a
    ``redis.ConnectionPool``; ``None`` reads ``REDIS_URL``, else uses
    ``redis://127.0.0.1:6379/0``. ``channel`` likewise reads
    ``MEDIA_PROGRESS_CHANNEL_NAME``, else ``media-progress-events``.

    ``emit`` and the tracking API (``media()``) never block on the network and never
    raise because of Redis; invalid events given to ``emit`` raise ``InvalidEventError``.

    ``strict`` (``None``: the environment variable ``PROGRESS_SDK_STRICT=1``, else off)
    decides what the tracking API does with bad progress data once a run started: off,
    it repairs or skips it, logs each kind once and counts it in ``stats().forgiven``; on,
    it raises ``InvalidEventError`` (the testing helpers are strict by default).
    ``error_messages`` maps exception types to the text users read when a model or media
    fails (``progress_sdk.failures``).
    """

    def __init__(
        self,
        redis: str | redis.Redis | redis.ConnectionPool | None = None,
        channel: str | None = None,
        *,
        buffer_size: int = d.DEFAULT_BUFFER_SIZE,
        min_progress_interval: float = d.DEFAULT_MIN_PROGRESS_INTERVAL,
        batch_size: int = d.DEFAULT_BATCH_SIZE,
        source: str | None = None,
        finish_flush_timeout: float = d.DEFAULT_FINISH_FLUSH_TIMEOUT,
        strict: bool | None = None,
        error_messages: ErrorMessages | None = None,
        _transport: Transport | None = None,
    ) -> None:
        target = (
            redis if redis is not None else os.environ.get(d.ENV_REDIS_URL) or d.DEFAULT_REDIS_URL
        )
        channel = (
            channel if channel is not None else (os.environ.get(d.ENV_CHANNEL) or d.DEFAULT_CHANNEL)
        )
        if not isinstance(channel, str) or not channel:
            raise ConfigurationError(f"channel must be a non-empty string, got {channel!r}")
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ConfigurationError(f"buffer_size must be an integer >= 1, got {buffer_size!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        _check_positive("min_progress_interval", min_progress_interval, allow_zero=True)
        _check_positive("finish_flush_timeout", finish_flush_timeout, allow_zero=True)
        if source is not None and (
            not isinstance(source, str) or not source.strip() or len(source) > d.MAX_SOURCE_CHARS
        ):
            raise ConfigurationError(
                f"source must be a non-empty string of at most {d.MAX_SOURCE_CHARS} "
                f"characters, got {source!r}"
            )

        self._transport: Transport = (
            _transport if _transport is not None else RedisTransport(target, channel)
        )
        self.channel = channel
        self.buffer_size = buffer_size
        self.min_progress_interval = float(min_progress_interval)
        self.batch_size = batch_size
        self.finish_flush_timeout = float(finish_flush_timeout)
        self._explicit_source = source
        self.strict = (
            strict if strict is not None else os.environ.get(d.ENV_STRICT, "") in ("1", "true")
        )
        self.error_messages: ErrorMessages = dict(error_messages or {})
        self._closed = False
        self._close_result = True
        self._init_state()
        _live_publishers.add(self)

    # -- state ------------------------------------------------------------------

    def _init_state(self, *, forked: bool = False) -> None:
        """(Re)create everything the sender thread and the front share."""
        self._pid = os.getpid()
        source = self._explicit_source or _default_source()
        if forked and self._explicit_source:
            # The child numbers each media from 1 again: under the parent's source that
            # would repeat seq values (contract rule 6), so it becomes a source of its own.
            suffix = f":{self._pid}"
            source = source[: d.MAX_SOURCE_CHARS - len(suffix)] + suffix
        self.source = source
        self._source_json = json.dumps(self.source)
        self._lock = threading.Lock()
        # Wakes the idle sender. Set after the front has released _lock: a sender woken
        # while the emitting thread still held _lock would take the GIL, block on _lock,
        # and hand both back and forth, costing that emit() tens of microseconds.
        self._wakeup = threading.Event()
        # Wakes flush() waiters when work settles.
        self._settled_cv = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._queue: deque[_Entry] = deque()
        self._live = 0  # entries in _queue that are not dead
        self._progress_fifo: deque[_Entry] = deque()  # eviction candidates, oldest first
        self._pending: dict[tuple[str, str | None, str, str], _Entry] = {}
        self._last_of_model: dict[tuple[str, str | None, str], _Entry] = {}
        self._held: dict[tuple[str, str | None, str, str], _Entry] = {}
        self._deadlines: list[tuple[float, int, tuple[str, str | None, str, str]]] = []
        self._tiebreak = itertools.count()
        self._last_progress_at: dict[tuple[str, str | None, str, str], float] = {}
        self._gap_before_next: dict[str, int] = {}
        self._carry: dict[str, int] = {}
        self._seq: OrderedDict[str, int] = OrderedDict()
        self._sender_idle = False
        self._flushers = 0  # flush() calls waiting: held progress goes out at once
        self._thread: threading.Thread | None = None
        self._accepted = 0
        self._published = 0
        self._coalesced = 0
        self._dropped: Counter[str] = Counter()
        self._reconnects = 0
        self._connected = False
        self._last_error: str | None = None
        self._no_subscribers = 0
        self._forgiven: Counter[str] = Counter()
        self._rejections_logged: set[str] = set()
        self._in_flight: list[_Entry] = []  # the batch being sent
        self._format_ts = _TimestampFormatter()

    def _after_fork_in_child(self) -> None:
        # The child gets a fresh buffer, lock, thread and connection. The parent's
        # pending events stay the parent's: sending them here too would duplicate them.
        self._transport.after_fork_in_child()
        self._init_state(forked=True)

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
        if isinstance(event, ProgressEvent):
            fields = event.to_wire_dict()
            problems: list[Problem] = []
        elif isinstance(event, Mapping):
            fields = dict(event)
            _, problems = _rules.check_event(fields, strict=False)
            if not problems:
                # The event is sent later, from another thread: a caller reusing its
                # data dict must not change what goes out.
                fields["data"] = dict(fields["data"])
            if not problems and _rules.has_free_json(fields.get("data") or {}):
                _rules.check_json_size(fields, problems)
        else:
            raise InvalidEventError(
                [
                    Problem(
                        "$",
                        "type",
                        f"emit() takes a ProgressEvent or a dict, got {type(event).__name__}",
                    )
                ]
            )
        for key in _ENVELOPE_KEYS:
            if key in fields:
                problems.append(
                    Problem(
                        key,
                        "publisher_owned",
                        "is set by the publisher; leave it out of emitted events",
                    )
                )
        if problems:
            raise InvalidEventError(problems, event_type=str(fields.get("event")))
        fields["event"] = _rules.normalize_event_name(fields["event"])
        self._accept(fields)

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

    def _accept(self, fields: dict[str, Any]) -> None:
        """Queue validated wire fields (no envelope). The hot path: keep it short."""
        if self._pid != os.getpid():  # backstop if at-fork hooks did not run
            self._after_fork_in_child()
        now = time.time()
        event = fields["event"]
        data = fields["data"]
        model = data.get("model_name")
        model_key = (
            (fields["media_id"], fields.get("run_id"), model)
            if model and event in _MODEL_EVENTS
            else None
        )
        progress_key = (*model_key, event) if model_key and event in _PROGRESS else None
        entry = _Entry(fields, now, model_key, progress_key)
        with self._lock:
            # Checked under the lock: a close() racing this emit either sees the event
            # (and sends or counts it) or makes this emit raise.
            if self._closed:
                raise PublisherClosedError(
                    "emit() after close(): create a new ProgressPublisher, or emit before closing"
                )
            self._accepted += 1
            if progress_key is not None:
                self._accept_progress_locked(entry, progress_key)
            else:
                self._accept_lifecycle_locked(entry, event)
            wake = self._sender_idle
            if self._thread is None:
                self._start_sender_locked()
        if wake:
            self._wakeup.set()

    def _accept_progress_locked(self, entry: _Entry, key: tuple[str, str | None, str, str]) -> None:
        held = self._held.get(key)
        if held is not None:
            held.fields, held.ts = entry.fields, entry.ts
            self._coalesced += 1
            return
        pending = self._pending.get(key)
        if pending is not None and self._last_of_model.get(entry.model_key) is pending:  # type: ignore[arg-type]
            pending.fields, pending.ts = entry.fields, entry.ts
            self._coalesced += 1
            return
        if self.min_progress_interval > 0:
            mono = time.monotonic()
            last = self._last_progress_at.get(key)
            if last is not None and mono - last < self.min_progress_interval:
                # Too soon after the last update of this model: hold the value; newer
                # ones replace it, and the latest goes out when the interval is over.
                self._held[key] = entry
                deadline = last + self.min_progress_interval
                # An idle sender is woken by _accept to wait for this new deadline.
                heapq.heappush(self._deadlines, (deadline, next(self._tiebreak), key))
                return
            self._last_progress_at[key] = mono
        self._enqueue_locked(entry)

    def _accept_lifecycle_locked(self, entry: _Entry, event: str) -> None:
        model_key = entry.model_key
        if model_key is not None:
            # Held progress of this model goes out first, so it keeps its place before
            # the lifecycle event (and the model's final numbers are delivered).
            if self._held:
                for progress_event in _PROGRESS:
                    held = self._held.pop((*model_key, progress_event), None)
                    if held is not None:
                        self._enqueue_locked(held)
            if event in _MODEL_TERMINALS and self._last_progress_at:
                for progress_event in _PROGRESS:
                    self._last_progress_at.pop((*model_key, progress_event), None)
        elif event in _MEDIA_TERMINALS and (self._held or self._last_progress_at):
            media_id = entry.media_id
            for key in [k for k in self._held if k[0] == media_id]:
                self._enqueue_locked(self._held.pop(key))
            for key in [k for k in self._last_progress_at if k[0] == media_id]:
                del self._last_progress_at[key]
        self._enqueue_locked(entry)

    def _enqueue_locked(self, entry: _Entry) -> None:
        # In-flight events count: a batch that fails to send comes back to the buffer.
        if self._live + len(self._in_flight) >= self.buffer_size and not self._make_room_locked(
            entry
        ):
            return
        gap = self._gap_before_next.pop(entry.media_id, 0) if self._gap_before_next else 0
        entry.skip = gap
        self._queue.append(entry)
        self._live += 1
        if entry.model_key is not None:
            self._last_of_model[entry.model_key] = entry
        if entry.progress_key is not None:
            self._pending[entry.progress_key] = entry
            self._progress_fifo.append(entry)

    def _make_room_locked(self, entry: _Entry) -> bool:
        """Buffer full: drop progress before lifecycle. False if ``entry`` is dropped."""
        if entry.progress_key is None:
            fifo = self._progress_fifo
            while fifo:
                victim = fifo.popleft()
                if victim.state != _QUEUED:
                    continue
                victim.state = _DEAD
                self._live -= 1
                self._dropped["evicted"] += 1
                if self._pending.get(victim.progress_key) is victim:  # type: ignore[arg-type]
                    del self._pending[victim.progress_key]  # type: ignore[arg-type]
                return True
        # Nothing to evict (or a progress event itself): the newcomer is dropped. Its
        # seq number goes with it, so the media's next event shows the gap.
        self._dropped["buffer_full"] += 1
        self._gap_before_next[entry.media_id] = self._gap_before_next.get(entry.media_id, 0) + 1
        self._settled_cv.notify_all()
        return False

    # -- the sender thread -------------------------------------------------------

    def _start_sender_locked(self) -> None:
        self._thread = threading.Thread(
            target=self._run_sender, name=f"progress-sdk-sender-{self.channel}", daemon=True
        )
        self._thread.start()

    def _run_sender(self) -> None:
        backoff = d.RECONNECT_BACKOFF_INITIAL
        outage_started: float | None = None
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                payloads = self._encode_batch(batch)
                if not payloads:
                    continue
                try:
                    receivers = self._transport.publish(payloads)
                except Rejected as exc:
                    # Sending again cannot help (an ACL, a read-only replica): count the
                    # refused events, say so once per reason, and go on with the rest.
                    error = mask_url(str(exc))
                    if error not in self._rejections_logged:
                        self._rejections_logged.add(error)
                        logger.error(
                            "progress_sdk: Redis at %s refused %d event(s) (%s); refused "
                            "events are counted as dropped (rejected).",
                            self._transport.description,
                            exc.rejected,
                            error,
                        )
                    self._settle(batch, len(batch) - exc.rejected, exc.rejected, "rejected")
                    with self._lock:
                        self._last_error = error
                    continue
                except Exception as exc:
                    if not isinstance(exc, (ConnectFailed, DeliveryUnknown)):
                        # A bug, or an error nobody foresaw: lose this batch, not the
                        # sender. Counted, logged with its traceback, and sending goes on.
                        logger.exception(
                            "progress_sdk: unexpected error sending %d event(s); they are "
                            "counted as dropped (sender_error) and sending continues",
                            len(batch),
                        )
                        self._settle(
                            batch, 0, len(batch), "sender_error", error=mask_url(repr(exc))
                        )
                        continue
                    error = mask_url(str(exc))
                    if isinstance(exc, DeliveryUnknown):
                        done = exc.confirmed
                        # Replies read: published, or refused (an ACL) and so dropped.
                        self._settle(
                            batch[:done], done - exc.rejected, exc.rejected, "rejected", error=error
                        )
                        if not exc.retry:
                            lost = len(batch) - done
                            logger.warning(
                                "progress_sdk: no reply from %s (%s); %d event(s) of unknown "
                                "fate counted as dropped (pub/sub is at-most-once).",
                                self._transport.description,
                                error,
                                lost,
                            )
                            self._settle(batch[done:], 0, lost, "delivery_unknown", error=error)
                            continue
                        batch = batch[done:]
                    self._requeue(batch)
                    if outage_started is None:
                        outage_started = time.monotonic()
                        logger.warning(
                            "progress_sdk: Redis unreachable at %s (%s); buffering events and "
                            "retrying with backoff. Job code is not affected.",
                            self._transport.description,
                            error,
                        )
                    with self._lock:
                        self._connected = False
                        self._last_error = error
                    if self._stop.wait(backoff * random.uniform(0.5, 1.0)):
                        self._drain_after_close()
                        return
                    backoff = min(backoff * 2, d.RECONNECT_BACKOFF_MAX)
                    continue
                if outage_started is not None:
                    logger.warning(
                        "progress_sdk: Redis at %s reachable again after %.1f s; buffered "
                        "events are being delivered.",
                        self._transport.description,
                        time.monotonic() - outage_started,
                    )
                    with self._lock:
                        self._reconnects += 1
                    outage_started = None
                backoff = d.RECONNECT_BACKOFF_INITIAL
                self._settle(batch, len(batch), 0, "", connected=True)
                if receivers < len(batch):
                    # Cheap signal, not exact: receivers is summed over the batch.
                    with self._lock:
                        self._no_subscribers += len(batch) - min(receivers, len(batch))
        except BaseException:  # pragma: no cover - a bug outside a batch; never reach job code
            logger.exception("progress_sdk: sender thread failed; events are no longer sent")
            with self._lock:
                self._last_error = "sender thread failed (see log)"
        finally:
            if self._stop.is_set():
                # close() gave up waiting for this thread (a slow Redis): the connection
                # it may have opened since is released here, not left behind.
                self._transport.close()

    def _next_batch(self) -> list[_Entry] | None:
        """Wait for work; take up to batch_size entries and number them. None: stop."""
        while True:
            with self._lock:
                now = time.monotonic()
                if self._deadlines:
                    self._release_held_locked(now, everything=self._flushers > 0 or self._closed)
                if self._live:
                    self._sender_idle = False
                    return self._take_batch_locked()
                if self._closed:
                    return None
                timeout = self._deadlines[0][0] - now if self._deadlines else None
                # Cleared under _lock: an event accepted from here on sees the sender
                # idle and sets _wakeup; one accepted before is seen in _live above.
                self._sender_idle = True
                self._wakeup.clear()
            self._wakeup.wait(timeout)

    def _take_batch_locked(self) -> list[_Entry]:
        """Take up to batch_size waiting entries and number them (under _lock)."""
        batch: list[_Entry] = []
        queue = self._queue
        while queue and len(batch) < self.batch_size:
            entry = queue.popleft()
            media_id = entry.media_id
            if entry.state == _DEAD:
                # Its number is skipped so consumers see the eviction as a gap.
                self._carry[media_id] = self._carry.get(media_id, 0) + 1 + entry.skip
                continue
            self._live -= 1
            entry.state = _TAKEN
            if entry.model_key is not None and self._last_of_model.get(entry.model_key) is entry:
                del self._last_of_model[entry.model_key]
            if entry.progress_key is not None and self._pending.get(entry.progress_key) is entry:
                del self._pending[entry.progress_key]
            if entry.wire is None:
                skip = entry.skip + (self._carry.pop(media_id, 0) if self._carry else 0)
                seq = self._seq.get(media_id, 0) + 1 + skip
                self._seq[media_id] = seq
                self._seq.move_to_end(media_id)
                if len(self._seq) > d.MAX_REMEMBERED_MEDIA:
                    self._seq.popitem(last=False)
                entry.fields["seq"] = seq
            batch.append(entry)
        fifo = self._progress_fifo
        # Progress entries leave the buffer in the order they entered it, so the
        # ones just taken sit at the head of the eviction list.
        while fifo and fifo[0].state != _QUEUED:
            fifo.popleft()
        self._in_flight = batch
        return batch

    def _release_held_locked(self, now: float, *, everything: bool) -> None:
        deadlines = self._deadlines
        while deadlines and (everything or deadlines[0][0] <= now):
            _, _, key = heapq.heappop(deadlines)
            entry = self._held.pop(key, None)
            if entry is None:
                continue  # already released by a lifecycle event of its model
            self._last_progress_at[key] = now
            self._enqueue_locked(entry)

    def _encode_batch(self, batch: list[_Entry]) -> list[bytes]:
        """Serialise a batch, in place; an event that cannot be serialised is dropped
        alone (its data was changed after emit() checked it), and its seq shows the gap."""
        payloads: list[bytes] = []
        kept: list[_Entry] = []
        for entry in batch:
            try:
                payloads.append(self._encode(entry))
            except (TypeError, ValueError) as exc:
                logger.error(
                    "progress_sdk: dropped a %s event of media %r that is no longer "
                    "JSON-serialisable (was its data changed after emit()?): %s",
                    entry.fields.get("event"),
                    entry.media_id,
                    exc,
                )
                with self._lock:
                    self._dropped["unserialisable"] += 1
                    entry.state = _DONE
                    self._settled_cv.notify_all()
            else:
                kept.append(entry)
        batch[:] = kept
        return payloads

    def _encode(self, entry: _Entry) -> bytes:
        if entry.wire is None:
            fields = entry.fields
            seq = fields.pop("seq")
            body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
            # The envelope is appended as text: cheaper than a second dict and dumps.
            text = (
                f'{body[:-1]},"schema_version":1,"seq":{seq},"source":{self._source_json},'
                f'"timestamp":"{self._format_ts(entry.ts)}"}}'
            )
            try:
                entry.wire = text.encode()
            except UnicodeEncodeError:
                # A lone surrogate (say, from a badly decoded filename) is no UTF-8, and
                # strict parsers (orjson) refuse even its \u escape: send U+FFFD instead.
                entry.wire = _SURROGATE.sub("\ufffd", text).encode()
        return entry.wire

    def _requeue(self, batch: list[_Entry]) -> None:
        with self._lock:
            # Already numbered and serialised: they go out first, unchanged, once
            # Redis answers. Not put back in _pending: nothing may replace them now.
            self._queue.extendleft(reversed(batch))
            self._live += len(batch)
            self._in_flight = []

    def _settle(
        self,
        entries: list[_Entry],
        published: int,
        dropped: int,
        reason: str,
        *,
        error: str | None = None,
        connected: bool = False,
    ) -> None:
        """Record the fate of ``entries``: each of them was published or dropped."""
        with self._lock:
            for entry in entries:
                entry.state = _DONE
            self._published += published
            if dropped:
                self._dropped[reason] += dropped
            if connected:
                self._connected = True
            if error is not None:
                self._connected = False
                self._last_error = error
            self._in_flight = []
            self._settled_cv.notify_all()

    def _drain_after_close(self) -> None:
        with self._lock:
            lost = self._live + len(self._held)
            if lost:
                self._dropped["closed"] += lost
            for entry in (*self._queue, *self._held.values()):
                entry.state = _DONE
            self._queue.clear()
            self._held.clear()
            self._deadlines.clear()
            self._live = 0
            self._settled_cv.notify_all()

    # -- flush, close, stats ------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted before this call is published or dropped.

        Held progress values are sent at once. Returns True if they all were before
        ``timeout`` seconds (None: no limit). Events that other threads emit meanwhile
        are not waited for.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            # The entries that stand for every event accepted so far. A newer progress
            # value may replace one's fields later: it then goes out with it, which is
            # fine. Entries mostly settle in this order, so one pass over the list does.
            waiting = [
                *self._in_flight,
                *(e for e in self._queue if e.state != _DEAD),
                *self._held.values(),
            ]
            i = 0
            self._flushers += 1
            if self._sender_idle:
                self._wakeup.set()
            try:
                while True:
                    while i < len(waiting) and waiting[i].state >= _DEAD:
                        i += 1
                    if i == len(waiting):
                        return True
                    if self._thread is None or not self._thread.is_alive():
                        return False
                    remaining = 0.5 if deadline is None else deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    # Bounded, so that a sender that died is noticed (is_alive above).
                    self._settled_cv.wait(min(remaining, 0.5))
            finally:
                self._flushers -= 1

    def close(self, timeout: float = d.DEFAULT_CLOSE_TIMEOUT) -> bool:
        """Send what is buffered (for up to ``timeout`` seconds), stop the sender, disconnect.

        Idempotent: later calls return the first call's result at once. Returns True when
        nothing accepted was lost. Events still buffered when the timeout passes are
        counted as ``dropped["closed"]``.
        """
        with self._lock:
            if self._closed:
                return self._close_result
            self._closed = True
            thread = self._thread
        self._wakeup.set()
        deadline = time.monotonic() + timeout
        delivered = True
        if thread is not None and thread.is_alive():
            # Keep a slice of the budget for stopping the thread: close() must return
            # within its timeout even when Redis is down.
            delivered = self.flush(max(0.0, timeout * 0.9 - 0.05))
            self._stop.set()
            self._wakeup.set()
            thread.join(max(0.0, deadline - time.monotonic()))
            if not delivered:
                self._drain_after_close()
        self._transport.close()
        _live_publishers.discard(self)
        with self._lock:
            self._close_result = delivered and not self._dropped
            return self._close_result

    def __enter__(self) -> ProgressPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _flush_after_run(self) -> None:
        """Called by a media run's terminal event: wait, bounded, for delivery.

        The process may end right after the job with os._exit (RQ's work horse does, and
        it may have created this publisher itself, so no fork hook knows), which skips
        atexit and would lose the run's last events. With Redis up this costs well under
        a millisecond once per run; while Redis is known to be down it costs nothing.
        """
        timeout = self.finish_flush_timeout
        if timeout <= 0 or self._pid != os.getpid():
            return
        with self._lock:
            known_down = not self._connected and self._last_error is not None
        if not known_down:
            self.flush(timeout)

    def _count_forgiven(self, kind: str) -> int:
        """Count one repair of bad progress data (tracking); returns the kind's new total."""
        with self._lock:
            self._forgiven[kind] += 1
            return self._forgiven[kind]

    def _flush_at_exit(self, timeout: float) -> None:
        if not self._closed and self._pid == os.getpid():
            self.flush(timeout)

    def stats(self) -> PublisherStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return PublisherStats(
                accepted=self._accepted,
                published=self._published,
                coalesced=self._coalesced,
                dropped=dict(self._dropped),
                queued=self._live + len(self._held) + len(self._in_flight),
                reconnects=self._reconnects,
                connected=self._connected,
                last_error=self._last_error,
                no_subscribers=self._no_subscribers,
                forgiven=dict(self._forgiven),
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

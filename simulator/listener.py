"""The subscriber side: take messages off the channel and make sense of them.

``Observer`` handles one raw message at a time, from any producer: it filters (by user,
media or publisher ``source``), counts event types, measures delivery latency from the
event's ``timestamp``, feeds the lifecycle validator and the panel state, and hands each
kept message to an output callback (NDJSON, plain lines, a recording). A subscription
(``subscribe``: one server, or sharded pub/sub on a Redis Cluster) pumps messages into an
observer until it is stopped, a count is reached or a timeout passes. ``run``, ``listen``
and ``record`` all sit on these two.
"""

from __future__ import annotations

import json
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timezone
from typing import Any, cast

import redis

from progress_sdk.cluster import is_cluster
from progress_sdk.contract import Finding, LifecycleValidator, Report

from .cluster_subscription import ClusterSubscription
from .panel import PanelState
from .pumping import Polled, pump_messages

__all__ = [
    "ChannelSubscription",
    "Observer",
    "Subscription",
    "latency_percentiles",
    "plain_line",
    "subscribe",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Observer:
    """Digest raw channel messages; thread-safe for one feeding thread and many readers.

    ``source`` keeps only events of that publisher (the simulator's own, when other
    producers share the channel); ``users``/``media`` keep only those ids. ``on_event``
    gets (raw payload, decoded event or None when it is not JSON) for each kept message;
    ``on_finding`` gets each violation the validator reports as it happens.
    """

    def __init__(
        self,
        *,
        validator: LifecycleValidator | None = None,
        panel: PanelState | None = None,
        on_event: Callable[[bytes, dict[str, Any] | None], None] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        source: str | None = None,
        users: Collection[str] = (),
        media: Collection[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.validator = validator
        self.panel = panel
        self._on_event = on_event
        self._on_finding = on_finding
        self._source = source
        self._users = frozenset(users)
        self._media = frozenset(media)
        self._clock = clock
        self.received = 0
        """Messages kept (after filtering)."""
        self.ignored = 0
        """Messages filtered out."""
        self.counts: Counter[str] = Counter()
        self.latencies = array("d")
        """Seconds from each event's timestamp to its arrival here."""
        self.violations = 0
        self._second_cache: dict[str, float] = {}
        self._started = time.monotonic()

    def handle(self, payload: bytes) -> bool:
        """Digest one message; returns whether it passed the filters."""
        arrived = self._clock()
        try:
            event = json.loads(payload)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            if self._source is not None or self._users or self._media:
                self.ignored += 1
                return False
            event = None
        elif not self._wanted(event):
            self.ignored += 1
            return False
        self.received += 1
        if event is not None:
            name = event.get("event")
            self.counts[name if type(name) is str else "?"] += 1
            stamp = event.get("timestamp")
            if type(stamp) is str:
                sent = self._epoch(stamp)
                if sent is not None:
                    self.latencies.append(arrived - sent)
        if self.validator is not None:
            findings = self.validator.feed(event if event is not None else payload)
            for finding in findings:
                if finding.kind == "violation":
                    self.violations += 1
                    if self._on_finding is not None:
                        self._on_finding(finding)
        if self.panel is not None and event is not None:
            self.panel.feed(event)
        if self._on_event is not None:
            self._on_event(payload, event)
        return True

    def _wanted(self, event: dict[str, Any]) -> bool:
        if self._source is not None and event.get("source") != self._source:
            return False
        if self._users and event.get("user_id") not in self._users:
            return False
        return not (self._media and event.get("media_id") not in self._media)

    def _epoch(self, stamp: str) -> float | None:
        # The SDK writes 2026-11-26T05:00:00.123456Z; the whole-second part is parsed
        # once per second and cached, so measuring every event stays cheap.
        if len(stamp) == 27 and stamp[19] == "." and stamp[26] == "Z":
            base = self._second_cache.get(stamp[:19])
            if base is None:
                try:
                    base = datetime.fromisoformat(stamp[:19]).replace(
                        tzinfo=timezone.utc
                    ).timestamp()
                except ValueError:
                    return None
                if len(self._second_cache) > 4096:
                    self._second_cache.clear()
                self._second_cache[stamp[:19]] = base
            try:
                return base + int(stamp[20:26]) / 1e6
            except ValueError:
                return None
        try:
            parsed = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith("Z") else stamp)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return None
        return (parsed - _EPOCH).total_seconds()

    def report(self) -> Report | None:
        """The validator's report so far (None without a validator)."""
        return self.validator.finish() if self.validator is not None else None

    def rate(self) -> float:
        """Messages kept per second since this observer was made."""
        return self.received / max(time.monotonic() - self._started, 1e-9)


def latency_percentiles(samples: array[float], *quantiles: float) -> list[float]:
    """The given quantiles (0..1) of ``samples``; empty list when there are none."""
    if not samples:
        return []
    ordered = sorted(samples)
    top = len(ordered) - 1
    return [ordered[min(top, max(0, round(q * top)))] for q in quantiles]


def plain_line(event: dict[str, Any] | None, payload: bytes) -> str:
    """One readable line for a message (what non-terminal output prints)."""
    if event is None:
        return f"(not a JSON object) {payload[:200]!r}"
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    parts = [
        str(event.get("user_id", "-")),
        str(event.get("media_id", "-")),
        f"{event.get('event', '?')!s:<33}",
    ]
    model = data.get("model_name")
    message = event.get("message")
    error = data.get("error_message")
    # A failure line shows the error, not the message: the model must then be named
    # here even when the message began with it (ANALYSIS_FAILED's "M failed: ...").
    shown = message if not error and isinstance(message, str) else ""
    if model and not shown.startswith(str(model)):
        parts.append(str(model))
    if "progress" in data and "total" in data:
        parts.append(f"{data['progress']}/{data['total']}")
    if error:
        parts.append(f"error: {error}")
    elif message:
        parts.append(f"- {message}")
    return " ".join(parts)


def _poll() -> float:
    return 0.1


class Subscription:
    """A pub/sub subscription to one or more channels of one server, pumped into a handler.

    ``open()`` returns once Redis has confirmed every subscription, so a publisher started
    afterwards loses nothing. Works with ``redis.Redis`` and ``fakeredis.FakeRedis``;
    with ``owns_client`` ``close()`` closes the client too.
    """

    def __init__(
        self, client: redis.Redis, channel: str | Sequence[str], *, owns_client: bool = False
    ) -> None:
        self.client = client
        self.channels = [channel] if isinstance(channel, str) else list(dict.fromkeys(channel))
        self.channel = self.channels[0]
        self._owns_client = owns_client
        self._pubsub: Any = None

    def open(self, timeout: float = 5.0) -> Subscription:
        """Subscribe and wait for the confirmations; raises redis errors unchanged."""
        # redis 5's pubsub() has no annotations (an untyped call under strict mypy), redis 8's
        # has: through Any, both versions check clean.
        pubsub = cast(Any, self.client).pubsub()
        pubsub.subscribe(*self.channels)
        deadline = time.monotonic() + timeout
        confirmed = 0
        while confirmed < len(self.channels):
            message = pubsub.get_message(timeout=0.1)
            if message is not None and message.get("type") == "subscribe":
                confirmed += 1
            if time.monotonic() > deadline:
                pubsub.close()
                raise redis.TimeoutError(f"no subscription confirmation within {timeout} s")
        self._pubsub = pubsub
        return self

    def pump(
        self,
        handle: Callable[[bytes], bool],
        *,
        stop: threading.Event | None = None,
        count: int | None = None,
        timeout: float | None = None,
        idle: Callable[[], bool] | None = None,
    ) -> int:
        """Feed messages to ``handle`` until ``stop`` is set, ``count`` messages were kept,
        or ``timeout`` seconds passed; ``idle`` is asked after each quiet poll whether to
        stop. Returns the number kept."""
        assert self._pubsub is not None, "open() first"
        return pump_messages(self._receive, handle, stop, count, timeout, idle, _poll)

    def _receive(self, wait: float) -> bytes | str | Polled:
        message = self._pubsub.get_message(timeout=wait)
        if message is None:
            return Polled.QUIET
        if message.get("type") != "message":
            return Polled.OTHER
        data: bytes | str = message["data"]
        return data

    def close(self) -> None:
        """Unsubscribe and release the connection (and the client, if owned)."""
        try:
            if self._pubsub is not None:
                self._pubsub.close()
        finally:
            self._pubsub = None
            if self._owns_client:
                self.client.close()


ChannelSubscription = Subscription | ClusterSubscription
"""Either kind: both have ``open``, ``pump`` and ``close``."""


def subscribe(url: str, channels: Sequence[str], timeout: float = 5.0) -> ChannelSubscription:
    """Subscribe to ``channels`` at ``url`` and wait for the confirmations: with sharded
    pub/sub on every master concerned when ``url`` names a Redis Cluster node (detected),
    else on the one server. Raises redis errors (and ``ConfigurationError`` for a bad URL).
    """
    if is_cluster(url, timeout=min(timeout, 2.0)):
        return ClusterSubscription(url, channels).open(timeout)
    client = redis.Redis.from_url(url, socket_connect_timeout=2.0)
    try:
        return Subscription(client, channels, owns_client=True).open(timeout)
    except BaseException:
        client.close()
        raise

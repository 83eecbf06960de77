"""``progress-sim e2e``: prove a relay right or wrong from the outside.

``run_e2e`` connects Socket.IO clients as several users (spread over one or more relay
URLs, several sockets per user, plus a bystander user who owns no media), subscribes to
the channel itself as ground truth, runs a simulation through the SDK (or only listens
while another producer runs), and hands both sides to ``simulator.delivery`` for the
verdict: every event of a user at every socket of that user and no other, in order,
once; and the worker → browser latency. Works against any relay that follows the
contract, the product's Node.js relay included.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from redis.exceptions import RedisError

from progress_sdk import ProgressPublisher
from progress_sdk import defaults as d
from progress_sdk.contract import check_event
from progress_sdk.sharding import subscribed_channels
from progress_sdk.transport import mask_url

from .catalog import PRESETS
from .catchup_check import check_late_join
from .delivery import DeliveryReport, Received, SocketLog, TruthEvent, check_deliveries
from .listener import latency_percentiles
from .relay.auth import sign_token
from .relay.routing import RepeatFilter
from .relay.subscriber import PubSubLike, open_detected_pubsub
from .runner import Simulation, SimulationConfig
from .sentinels import Sentinels

__all__ = ["E2EConfig", "E2EResult", "E2ESetupError", "run_e2e"]

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    import json

    _loads = json.loads

# How long after the last event the sockets may stay quiet before what has not arrived
# counts as lost, and (listening only: otherwise sentinel events tell, simulator.sentinels)
# how long after everything arrived to wait for duplicates.
DEFAULT_SETTLE_SECONDS = 5.0
_DUPLICATE_WINDOW = 0.5
# The late socket joins after this many of its user's events: mid-run for a usual media.
_LATE_AFTER_EVENTS = 20
# Seconds to wait for every early socket's `caught_up` before simulating (a relay with
# catch-up says it within milliseconds; a relay without never does).
_CAUGHT_UP_WAIT = 3.0


class E2ESetupError(Exception):
    """The check could not run (relay or Redis unreachable, a token refused)."""


@dataclass(frozen=True)
class E2EConfig:
    """What to connect to and what to run."""

    relay_urls: tuple[str, ...]
    jwt_secret: str = field(repr=False)
    redis_url: str = field(default=d.DEFAULT_REDIS_URL, repr=False)
    channel: str = d.DEFAULT_CHANNEL
    shards: int = d.DEFAULT_SHARDS
    """The simulation spreads media over this many shard channels; the ground truth
    subscribes to all of them (progress_sdk.sharding)."""
    user_claim: str = "userId"
    users: int = 3
    sockets_per_user: int = 2
    media: int = 6
    models: tuple[str, ...] = PRESETS["all"]
    speed: float = 0.0
    seed: int = 1
    fail_rate: float = 0.2
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    listen_seconds: float | None = None
    """Listen this long to another producer instead of simulating."""
    watch_users: tuple[str, ...] = ()
    """With ``listen_seconds``: the users whose events to check."""
    on_listening: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    """With ``listen_seconds``: called (on the check's event loop) once every socket is
    connected and caught up and the listening time starts; the events published after it
    are judged. Lets a producer start then rather than after a guessed delay."""
    connect_timeout: float = 10.0
    late_join: bool = True
    """While simulating, connect one more socket mid-run and check its catch-up
    (``simulator.catchup_check``): snapshots first, no gap or repeat, same final panel."""

    def __post_init__(self) -> None:
        if not self.relay_urls:
            raise ValueError("give at least one relay URL")
        if self.listen_seconds is not None and not self.watch_users:
            raise ValueError("listening to another producer needs the user ids to watch")
        if self.users < 1 or self.sockets_per_user < 1 or self.media < 1:
            raise ValueError("users, sockets per user and media must be >= 1")


@dataclass
class E2EResult:
    """The verdict and what led to it."""

    config: E2EConfig
    users: list[str]
    report: DeliveryReport
    published: int | None
    """Events the simulation's publisher got into Redis (None when only listening)."""
    seconds: float
    late_join: list[str] | None = None
    """Faults of the socket that joined mid-run (None: not checked)."""

    @property
    def ok(self) -> bool:
        """The relay delivered everything right, and the check saw events at all."""
        return self.report.ok and self.report.events > 0 and not self.late_join

    def latency_ms(self) -> tuple[float, float] | None:
        """Worker → socket latency p50 and p99 in milliseconds."""
        pct = latency_percentiles(array("d", self.report.latencies), 0.5, 0.99)
        return (pct[0] * 1000, pct[1] * 1000) if pct else None

    def to_text(self) -> str:
        """The report for people."""
        rep = self.report
        lines = [
            f"e2e against {', '.join(self.config.relay_urls)}: {len(self.users)} users, "
            f"{rep.sockets} sockets, {rep.events:,} events on the channel in "
            f"{self.seconds:.1f} s",
            f"  deliveries: {rep.deliveries:,} progress_update received, "
            f"{rep.expected_deliveries:,} expected",
        ]
        latency = self.latency_ms()
        if latency is not None:
            lines.append(f"  latency worker → socket: p50 {latency[0]:.1f} ms, "
                         f"p99 {latency[1]:.1f} ms")
        if self.late_join is not None:
            lines.append("  late joiner: " + ("OK: snapshots first, then live events with "
                         "no gap or repeat, same final panel as a socket there from the start"
                         if not self.late_join else f"BROKEN: {len(self.late_join)} faults"))
            lines.extend(f"    {fault}" for fault in self.late_join[:10])
        if rep.events == 0:
            lines.append("  verdict: NOTHING CHECKED: no event for the checked users was "
                         "seen on the channel")
        elif rep.ok:
            lines.append("  verdict: OK: every event reached every socket of its user and "
                         "no other, in order, once")
        else:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(rep.fault_counts.items()))
            lines.append(f"  verdict: BROKEN: {counts}")
            lines.extend(f"    {fault}" for fault in rep.faults[:20])
            if len(rep.faults) > 20:
                lines.append(f"    … and {len(rep.faults) - 20} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        rep, latency = self.report, self.latency_ms()
        return {
            "ok": self.ok,
            "relay_urls": list(self.config.relay_urls),
            "users": self.users,
            "sockets": rep.sockets,
            "events": rep.events,
            "published": self.published,
            "deliveries": rep.deliveries,
            "expected_deliveries": rep.expected_deliveries,
            "latency_ms": None if latency is None else
            {"p50": round(latency[0], 3), "p99": round(latency[1], 3)},
            "faults": dict(rep.fault_counts),
            "late_join_faults": self.late_join,
            "fault_messages": [str(f) for f in rep.faults[:1000]],
            "seconds": round(self.seconds, 3),
        }


class _Probe:
    """One Socket.IO client, logging every event it receives."""

    def __init__(self, log: SocketLog, url: str) -> None:
        self.log = log
        self.url = url
        self.client = socketio.AsyncClient(reconnection=False)
        self.refusal: str | None = None
        self.caught_up = asyncio.Event()
        self.client.on("*", self._any)
        self.client.on("connect_error", self._refused)

    async def _any(self, name: str, payload: Any = None) -> None:
        if name == "caught_up":  # the reference relay's "live from here on"
            self.caught_up.set()
            return
        self.log.received.append(Received(name, payload, time.time()))

    async def _refused(self, data: Any = None) -> None:
        self.refusal = data.get("message") if isinstance(data, dict) else str(data)

    async def connect(self, token: str, timeout: float) -> None:
        try:
            await self.client.connect(
                self.url, auth={"token": token}, transports=["websocket"], wait_timeout=timeout
            )
        except socketio.exceptions.ConnectionError as exc:
            why = self.refusal or str(exc)
            raise E2ESetupError(f"{self.log.label} could not connect: {why}") from None


class _Truth:
    """The channel as a plain subscriber sees it: the checked users' valid events."""

    def __init__(self, redis_url: str, channels: list[str], users: set[str],
                 sentinels: Sentinels | None = None) -> None:
        self._open = open_detected_pubsub(redis_url)  # one server or a Redis Cluster
        self._sentinels = sentinels
        self._pubsub: PubSubLike | None = None
        self._channels = channels
        self._users = users
        self.events: list[TruthEvent] = []
        # A publisher's resend after a reset is one event, not two, for the UI too.
        self._repeats = RepeatFilter()
        self.recording = True
        """Off while the check is not watching (listening: before the sockets are up,
        after the listening time)."""

    async def open(self) -> None:
        self._pubsub = await self._open()
        await self._pubsub.subscribe(*self._channels)
        while True:
            message = await self._pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                return

    async def pump(self) -> None:
        assert self._pubsub is not None, "open() first"
        while True:
            message = await self._pubsub.get_message(timeout=1.0)
            if message is None or message["type"] != "message" or not self.recording:
                continue
            try:
                obj = _loads(message["data"])
            except ValueError:
                continue
            if not isinstance(obj, dict) or obj.get("user_id") not in self._users:
                continue
            if self._sentinels is not None and self._sentinels.is_sentinel(obj):
                self._sentinels.seen_on_channel.add(str(obj["media_id"]))
                continue
            # Only what the contract asks a relay to forward: valid events, once.
            if check_event(obj)[1] or self._repeats.is_repeat(obj):
                continue
            self.events.append(TruthEvent(len(self.events) + 1, obj))

    async def close(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()


async def run_e2e(config: E2EConfig) -> E2EResult:
    """Run the check; raises ``E2ESetupError`` when it cannot run at all."""
    began = time.monotonic()
    tag = secrets.token_hex(3)
    prefix = f"e2e-{tag}-user-"
    if config.listen_seconds is not None:
        users = list(config.watch_users)
    else:
        users = [f"{prefix}{i}" for i in range(1, config.users + 1)]
        # A user who owns no media: a relay that broadcasts shows up here.
        users.append(f"e2e-{tag}-bystander")
    channels = subscribed_channels(config.channel, config.shards)
    listening = config.listen_seconds is not None
    # Real users' panels would show a sentinel: listening keeps the duplicate window.
    sentinels = None if listening else Sentinels(tag, users, channels)
    truth = _Truth(config.redis_url, channels, set(users), sentinels)
    try:
        await truth.open()
    except (RedisError, OSError) as exc:
        await truth.close()
        raise E2ESetupError(f"cannot reach Redis at {mask_url(config.redis_url)}: "
                            f"{mask_url(str(exc))}") from None
    probes = _probes(config, users)
    truth.recording = not listening
    pump = asyncio.create_task(truth.pump())
    published: int | None = None
    late: _Probe | None = None
    try:
        await _connect_all(config, probes)
        if config.listen_seconds is not None:
            truth.recording = True
            if config.on_listening is not None:
                config.on_listening()
            await asyncio.sleep(config.listen_seconds)
            truth.recording = False
        else:
            simulation = asyncio.ensure_future(asyncio.to_thread(_simulate, config, prefix))
            if config.late_join:
                late = await _join_late(config, truth, users[0], simulation)
            published = await simulation
        # The late socket is not waited for: it never gets the events its snapshots
        # cover, and it is served by the same relay as the others.
        await _settle(truth, probes, config, sentinels, late)
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await asyncio.gather(*(p.client.disconnect() for p in [*probes, *([late] if late else [])]),
                             return_exceptions=True)
        await truth.close()
    if sentinels is not None:  # the sockets are closed: nothing arrives after this
        sentinels.strip(p.log for p in [*probes, *([late] if late else [])])
    report = check_deliveries(
        truth.events, [p.log for p in probes], whole_stream=not listening,
        per_media_order=config.shards > 1,
    )
    late_faults = None
    if late is not None:
        early = next(p for p in probes if p.log.user_id == users[0])
        late_faults = check_late_join(_pairs(early), _pairs(late), late.log.label)
    return E2EResult(config, users, report, published, time.monotonic() - began, late_faults)


def _pairs(probe: _Probe) -> list[tuple[str, Any]]:
    return [(r.name, r.payload) for r in probe.log.received]


async def _join_late(
    config: E2EConfig, truth: _Truth, user: str, simulation: asyncio.Future[int]
) -> _Probe | None:
    """Connect one more socket of ``user`` once a few of its events went by."""
    while not simulation.done():
        if sum(1 for e in truth.events if e.user_id == user) >= _LATE_AFTER_EVENTS:
            probe = _Probe(SocketLog(user, f"late socket of user {user}"),
                           config.relay_urls[-1])
            token = sign_token(config.jwt_secret, user, claim=config.user_claim)
            await probe.connect(token, config.connect_timeout)
            return probe
        await asyncio.sleep(0.01)
    return None  # the run was over before the user had enough events: nothing to check


def _probes(config: E2EConfig, users: list[str]) -> list[_Probe]:
    probes: list[_Probe] = []
    urls = config.relay_urls
    for user in users:
        for index in range(config.sockets_per_user):
            # Spread each user's sockets over the relays, so each relay serves the user.
            url = urls[index % len(urls)]
            probes.append(_Probe(SocketLog(user, f"socket {index + 1} of user {user} at {url}"),
                                 url))
    return probes


async def _connect_all(config: E2EConfig, probes: list[_Probe]) -> None:
    async def connect(probe: _Probe) -> None:
        token = sign_token(config.jwt_secret, probe.log.user_id, claim=config.user_claim)
        await probe.connect(token, config.connect_timeout)

    results = await asyncio.gather(*(connect(p) for p in probes), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    # The reference relay catches a socket up after acknowledging its connect and then
    # says `caught_up`; events published before that may reach the socket inside a
    # snapshot rather than live. A relay that never says it (the product's) costs the
    # check this wait once.
    waits = [asyncio.create_task(p.caught_up.wait()) for p in probes]
    await asyncio.wait(waits, timeout=_CAUGHT_UP_WAIT)
    for wait in waits:
        wait.cancel()


def _simulate(config: E2EConfig, prefix: str) -> int:
    sim = SimulationConfig(
        models=config.models, seed=config.seed, media=config.media, users=config.users,
        concurrency=min(config.media, 4), speed=config.speed, fail_rate=config.fail_rate,
        user_prefix=prefix, id_salt=prefix,
    )
    publisher = ProgressPublisher(
        config.redis_url, config.channel, shards=config.shards, finish_flush_timeout=0
    )
    try:
        publisher.check_connection()
        Simulation(publisher, sim).run()
    finally:
        publisher.close(timeout=30.0)
    return publisher.stats().published


async def _late_caught_up(late: _Probe, probes: list[_Probe], config: E2EConfig) -> None:
    # The late socket mostly joins near the end of the run, so the sentinels went out
    # while it was still being caught up, and a relay slowed down (a loaded machine: its
    # catch-up reads Redis, then sends) had settle_seconds of quiet to finish: its socket
    # was judged with half its snapshots or none. A relay that says `caught_up` (the early
    # sockets got it) is waited for until it says it to the late socket too, as long as a
    # connect may take; the socket is then in the live stream and gets the sentinels.
    if any(p.caught_up.is_set() for p in probes):
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(late.caught_up.wait(), config.connect_timeout)


async def _settle(truth: _Truth, probes: list[_Probe], config: E2EConfig,
                  sentinels: Sentinels | None, late: _Probe | None) -> None:
    # Simulating (the run is over): done once every socket and the ground truth have the
    # sentinels published now, after everything else (simulator.sentinels); what is
    # missing then is lost, whatever the machine's load. Listening: once every socket has
    # as many progress_update events as the channel carried for its user, then a short
    # wait for duplicates. Either way, also done when nothing new arrived for
    # settle_seconds (a relay that stopped forwarding: the rest is lost).
    logs = [p.log for p in [*probes, *([late] if late else [])]]
    if sentinels is not None:
        if late is not None:
            await _late_caught_up(late, probes, config)
        await asyncio.to_thread(sentinels.publish, config.redis_url)

    def arrived() -> int:
        return sum(len(log.received) for log in logs) + len(truth.events)

    last, quiet_since = -1, time.monotonic()
    while True:
        if sentinels is not None:
            if sentinels.complete(logs):
                return
        elif _each_has_its_users_events(truth, probes):
            await asyncio.sleep(_DUPLICATE_WINDOW)
            return
        now, count = time.monotonic(), arrived()
        if count != last:
            last, quiet_since = count, now
        elif now - quiet_since > config.settle_seconds:
            return
        await asyncio.sleep(0.05)


def _each_has_its_users_events(truth: _Truth, probes: list[_Probe]) -> bool:
    per_user: dict[str, int] = {}
    for event in truth.events:
        per_user[event.user_id] = per_user.get(event.user_id, 0) + 1
    return all(len(p.log.updates()) >= per_user.get(p.log.user_id, 0) for p in probes)

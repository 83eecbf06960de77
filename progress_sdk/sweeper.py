"""The dead-worker sweeper: media whose worker is gone get their terminal event.

A running media is failed when (``progress_sdk.liveness``):

- its snapshot names owners (the publishers reporting its models: ``owners_of``) and
  every one's liveness key is gone, and it has been quiet for ``SWEEP_OWNER_GRACE``
  (5 s): the worker died. Silence alone
  never fails a media whose owner is alive, however long its step;
- it has been quiet for ``stuck_after`` seconds, when that opt-in setting is given
  (``swept="stuck"``): a live worker that stopped making progress, failed explicitly;
- its snapshot names no owner (a producer without liveness, or a media waiting on a
  queue) and it has been quiet for ``stale_after`` seconds (300 s), as before liveness.

"Quiet" counts from the snapshot's updated-at, or its ``alive_at`` when the owner confirmed
it later. The media gets ``ANALYSIS_FAILED`` for each model still running and
then ``PROCESSING_FAILED`` ("the worker stopped reporting"): rule 5 allows
``PROCESSING_COMPLETED`` only when the job finished, so a job that stopped always fails,
even with some models completed. The panel then closes with a visible error instead of
staying open forever. The events go to the channel the media's own events went to
(recorded in its snapshot), else to the sweeper's ``channel``.

Any number of sweepers may run (every relay node, ``progress-sim sweep``): a lease in Redis
(``SET NX PX``, renewed by its holder) lets one act at a time, and each media is failed by
one script that checks the snapshot is still running and unchanged (updated-at and
``alive_at`` as read), that its owner's key is still gone, writes the terminal state
(marked ``swept`` with the reason: the owner's later events of the run are withheld, see
``progress_sdk.liveness``) and publishes the events atomically, so the failure events
never go out twice, and a worker that reported again in the meantime is left alone.

On a Redis Cluster the claim and the publish cannot be one script (the keys and the
channel live on different masters), nor can the owner's key be checked inside the claim
(it lives on another slot): it is checked just before, and a worker that comes back in
between is fenced by its guard (``liveness.GUARD_SCRIPT``), not by the claim. The claim
also records the events in the media's
hash as a pending publish, and the media stays in the in-flight index until they are out.
A sweeper that dies (or loses its connection) between its claim and its publishes leaves
that record behind: the next sweep finds the media still indexed, terminal, with a publish
pending for more than ``republish_after`` seconds, and publishes the very same events
again (same ``source`` and ``seq``, so a consumer that got some of them drops the repeats).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from . import _rules
from . import defaults as d
from .event_types import ANALYSIS_FAILED, PROCESSING_FAILED
from .events import format_timestamp
from .exceptions import ConfigurationError
from .liveness import owners_alive
from .sharding import user_channel
from .snapshot import (
    MediaSnapshot,
    SnapshotConfig,
    SnapshotKeys,
    apply_event,
    media_fields,
    owners_of,
    parse_snapshot,
)

__all__ = ["SweepResult", "Sweeper"]

logger = logging.getLogger("progress_sdk.sweeper")

# KEYS: lease. ARGV: token, lease (ms). Renews only the caller's own lease.
_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: media hash, in-flight index, user index (or ''), then the owners' liveness keys
# (none: not a dead owner's media). ARGV: updated_at and alive_at as read, channel, expiry (ms),
# media id, score (ms), number of events n, the user's channel (or ''), the n events,
# field/value pairs.
# The snapshot is written before the events go out, as the publisher does, so a relay that
# reads it after subscribing misses nothing (docs/relay.md).
_FAIL_SCRIPT = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if (redis.call('HGET', KEYS[1], 'updated_at') or '') ~= ARGV[1] then return 0 end
if (redis.call('HGET', KEYS[1], 'alive_at') or '') ~= ARGV[2] then return 0 end
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
local n = tonumber(ARGV[7])
redis.call('HSET', KEYS[1], unpack(ARGV, 9 + n))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[5])
if KEYS[3] ~= '' then redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5]) end
for i = 9, 8 + n do
  redis.call('PUBLISH', ARGV[3], ARGV[i])
  if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[8], ARGV[i]) end
end
return n
"""
# On a Redis Cluster the keys live on different masters and the events go out with
# SPUBLISH (consumers subscribe to shard channels), so the work is split: this script (one
# key) is the compare-and-set that lets one sweeper fail a media, then the user index is
# written, the events published, and the media taken out of the in-flight index, in that
# order. The field/value pairs include the pending publish (_PENDING, _PENDING_AT), so a
# claim whose publishes never happened can be found and completed by a later sweep.
# KEYS: media hash. ARGV: updated_at and alive_at as read, expiry (ms), field/value pairs.
_CLAIM_SCRIPT = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if (redis.call('HGET', KEYS[1], 'updated_at') or '') ~= ARGV[1] then return 0 end
if (redis.call('HGET', KEYS[1], 'alive_at') or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: media hash. ARGV: field, its value as read, new value. Lets one sweeper at a time
# take over a pending publish: the new value restarts its grace period.
_RETAKE_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
# Hash fields of a claimed media whose failure events may not have gone out yet: the
# channel and the events, as JSON, and when the claim (or the last retry) was made (ms).
_PENDING = "sweep_pending"
_PENDING_AT = "sweep_pending_at"

_BATCH = 100
# Why a sweeper ends a run (the snapshot's ``swept`` field).
OWNER_GONE, STUCK, STALE = "owner_gone", "stuck", "stale"


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: ``leader`` is False when another sweeper holds the lease."""

    leader: bool
    failed: tuple[str, ...] = ()
    """media_id of each media this sweep failed."""
    events: int = 0
    """Events published (ANALYSIS_FAILED and PROCESSING_FAILED)."""
    skipped: tuple[str, ...] = field(default=())
    """Stale candidates left alone: they changed meanwhile or finished."""
    republished: tuple[str, ...] = field(default=())
    """media_id of each media whose failure a sweeper claimed on a cluster but may not
    have published (it died or lost Redis in between): its events were published again."""
    stuck: tuple[str, ...] = field(default=())
    """Those of ``failed`` whose worker was alive: failed by ``stuck_after``."""

    def notices(self) -> list[tuple[int, str]]:
        """What this sweep did, a line per media, with its logging level: what the CLI
        prints and the sweepers (``Sweeper.run``, the relay's) log."""
        lines = [(logging.INFO, f"failed {media_id}: " + (
                     "no update for stuck_after, its worker alive" if media_id in self.stuck
                     else d.SWEEP_ERROR_MESSAGE))
                 for media_id in self.failed]
        lines += [(logging.WARNING, f"published the failure of {media_id} again: the "
                   "sweeper that claimed it stopped before publishing")
                  for media_id in self.republished]
        return lines


class Sweeper:
    """Fails media whose snapshot went stale; see the module docstring.

    ``sweep()`` runs one pass (taking or renewing the lease first); ``run()`` repeats it
    until ``stop`` is set and then releases the lease.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        channel: str = d.DEFAULT_CHANNEL,
        config: SnapshotConfig | None = None,
        stale_after: float = d.DEFAULT_SWEEP_STALE_AFTER,
        lease: float = d.DEFAULT_SWEEP_LEASE,
        source: str | None = None,
        republish_after: float = d.DEFAULT_SWEEP_REPUBLISH_AFTER,
        stuck_after: float | None = None,
    ) -> None:
        for name, value in (("stale_after", stale_after), ("lease", lease),
                            ("republish_after", republish_after)):
            if not value > 0:
                raise ConfigurationError(f"sweeper {name} must be > 0 seconds, got {value!r}")
        if stuck_after is not None and not stuck_after >= d.MIN_STUCK_AFTER:
            raise ConfigurationError(
                f"sweeper stuck_after must be at least {d.MIN_STUCK_AFTER:g} seconds (a "
                f"live worker's guard needs the room), got {stuck_after!r}"
            )
        self.stuck_after = None if stuck_after is None else float(stuck_after)
        self.client = client
        self.channel = channel
        self.config = config or SnapshotConfig()
        self.stale_after = float(stale_after)
        self.lease = float(lease)
        self.republish_after = float(republish_after)
        self.source = source or (
            f"sweeper:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self._token = uuid.uuid4().hex
        self._seqs: OrderedDict[str, int] = OrderedDict()
        self._renew = client.register_script(_RENEW_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)
        self._fail = client.register_script(_FAIL_SCRIPT)
        self._claim = client.register_script(_CLAIM_SCRIPT)
        self._retake = client.register_script(_RETAKE_SCRIPT)
        self._on_cluster = isinstance(client, redis.RedisCluster)

    @property
    def keys(self) -> SnapshotKeys:
        """The key layout swept."""
        return self.config.keys

    def hold_lease(self) -> bool:
        """Take the lease, or renew it when this sweeper holds it; True when it does."""
        key, ms = self.keys.sweeper_lease, max(1, int(self.lease * 1000))
        if self.client.set(key, self._token, nx=True, px=ms):
            return True
        return bool(self._renew(keys=[key], args=[self._token, ms]))

    def release_lease(self) -> None:
        """Give the lease up (another sweeper takes over at its next pass)."""
        self._release(keys=[self.keys.sweeper_lease], args=[self._token])

    def sweep(self, now: float | None = None) -> SweepResult:
        """One pass: fail every in-flight media whose owner is gone (or that is stuck or
        stale, see the module docstring), if this sweeper holds the lease."""
        if not self.hold_lease():
            return SweepResult(leader=False)
        at = time.time() if now is None else now
        quiet = min(self.stale_after, d.SWEEP_OWNER_GRACE, self.stuck_after or math.inf)
        cutoff = int((at - quiet) * 1000)
        done: dict[str, list[str]] = {"failed": [], "skipped": [], "republished": [],
                                      "stuck": []}
        events, start = 0, 0
        while True:
            # Every quiet media is looked at, a page at a time: live quiet ones stay
            # indexed at the front, and must not hide a dead worker's behind them.
            page = [_text(raw) for raw in self.client.zrangebyscore(
                self.keys.inflight, "-inf", cutoff, start, _BATCH)]
            outcomes = self._sweep_page(page, at) if page else []
            for media_id, (outcome, published) in zip(page, outcomes, strict=True):
                if outcome == "stuck":
                    done["failed"].append(media_id)
                if outcome != "alive":
                    done[outcome].append(media_id)
                events += published
            if len(page) < _BATCH:
                break
            start += sum(1 for outcome, _ in outcomes if outcome == "alive")  # still indexed
        return SweepResult(True, tuple(done["failed"]), events, tuple(done["skipped"]),
                           tuple(done["republished"]), tuple(done["stuck"]))

    def _sweep_page(self, page: list[str], now: float) -> list[tuple[str, int]]:
        """Each media's outcome: "failed", "stuck" (failed, its worker alive), "skipped",
        "republished" or "alive" (left alone, still indexed), and the events published."""
        pipe = self.client.pipeline(transaction=False)
        for media_id in page:
            pipe.hgetall(self.keys.media(media_id))
        replies = pipe.execute()
        snapshots = [parse_snapshot(m, f) for m, f in zip(page, replies, strict=True)]
        alive = owners_alive(self.client, self.keys, (
            owner for s in snapshots if s is not None and not s.terminal
            for owner in owners_of(s)))
        return [self._consider(s, f, alive, now) if s is not None else self._gone(m)
                for m, s, f in zip(page, snapshots, replies, strict=True)]

    def reason(self, snapshot: MediaSnapshot, owners_alive: bool | None, now: float) -> str | None:
        """Why ``snapshot`` (running) is to be failed now, or None: ``owner_gone``,
        ``stuck`` or ``stale`` (see the module docstring). ``owners_alive``: whether any
        of its owners (``owners_of``) holds its liveness key (None: it has none)."""
        last = max(snapshot.updated_at, snapshot.alive_at or 0.0)
        if owners_alive is not None:
            if not owners_alive and last < now - d.SWEEP_OWNER_GRACE:
                return OWNER_GONE
        elif last < now - self.stale_after:
            return STALE
        if self.stuck_after is not None and last < now - self.stuck_after:
            return STUCK
        return None

    def _gone(self, media_id: str) -> tuple[str, int]:
        # Expired but still indexed: nothing to announce.
        self.client.zrem(self.keys.inflight, media_id)
        return "skipped", 0

    def _consider(
        self, snapshot: MediaSnapshot, fields: Mapping[Any, Any], alive: Mapping[str, bool],
        now: float,
    ) -> tuple[str, int]:
        if snapshot.terminal:
            if _field(fields, _PENDING):
                return self._republish(snapshot, fields, now)
            return self._gone(snapshot.media_id)  # finished but still indexed
        owners = owners_of(snapshot)
        reason = self.reason(snapshot, any(alive.get(o) for o in owners) if owners else None, now)
        if reason is None:
            return "alive", 0
        return self._fail_media(snapshot, fields, reason, now)

    def run(self, stop: threading.Event, interval: float = d.DEFAULT_SWEEP_INTERVAL) -> None:
        """Sweep every ``interval`` seconds until ``stop`` is set; Redis errors are logged."""
        try:
            while not stop.is_set():
                try:
                    result = self.sweep()
                except redis.RedisError as exc:
                    logger.warning("sweeper: Redis error, retrying: %s", type(exc).__name__)
                else:
                    for level, line in result.notices():
                        logger.log(level, "sweeper: %s", line)
                stop.wait(interval)
        finally:
            with contextlib.suppress(redis.RedisError):  # else it expires by itself
                self.release_lease()

    def _fail_media(
        self, snapshot: MediaSnapshot, fields: Mapping[Any, Any], reason: str, now: float
    ) -> tuple[str, int]:
        """Fail one media: ("failed" | "stuck" | "skipped", events published)."""
        media_id = snapshot.media_id
        failure = self._failure_events(snapshot, reason, now)
        if failure is None:
            self.client.zrem(self.keys.inflight, media_id)
            return "skipped", 0
        payloads, final = failure
        read = (_field(fields, "updated_at") or "", _field(fields, "alive_at") or "")
        channel = snapshot.channel or self.channel
        owner_keys = ([self.keys.alive(o) for o in sorted(owners_of(snapshot))]
                      if reason == OWNER_GONE else [])
        if self._on_cluster:
            if any(self.client.exists(key) for key in owner_keys):
                return "skipped", 0  # came back since the page was read
            published = self._fail_on_cluster(final, read, channel, payloads, now)
        else:
            ttl = max(1, int(self.config.ttl * 1000))
            pairs = [part for pair in media_fields(final).items() for part in pair]
            args: list[Any] = [*read, channel, ttl, media_id, int(now * 1000),
                               len(payloads), self._user_channel(final), *payloads, *pairs]
            user_key = self.keys.user(final.user_id) if final.user_id else ""
            keys = [self.keys.media(media_id), self.keys.inflight, user_key, *owner_keys]
            published = int(self._fail(keys=keys, args=args))
        if not published:
            return "skipped", 0
        return ("stuck" if reason == STUCK else "failed"), published

    def _fail_on_cluster(
        self, final: MediaSnapshot, read: tuple[str, str], channel: str, payloads: list[bytes],
        now: float,
    ) -> int:
        media_id = final.media_id
        ttl = max(1, int(self.config.ttl * 1000))
        pending = json.dumps({"channel": channel, "events": [p.decode() for p in payloads]})
        fields = {**media_fields(final), _PENDING: pending, _PENDING_AT: str(int(now * 1000))}
        pairs = [part for pair in fields.items() for part in pair]
        if not self._claim(keys=[self.keys.media(media_id)], args=[*read, ttl, *pairs]):
            return 0
        self._publish_claimed(final, channel, payloads)
        return len(payloads)

    def _publish_claimed(self, final: MediaSnapshot, channel: str, payloads: list[bytes]) -> None:
        """Index, publish, then clear the pending record and the in-flight entry: until
        the last step a later sweep finds the media and publishes again."""
        media_id = final.media_id
        if final.user_id:
            self.client.zadd(self.keys.user(final.user_id),
                             {media_id: int(final.updated_at * 1000)})
        mine = self._user_channel(final)
        for payload in payloads:
            for name in (channel, mine) if mine else (channel,):
                if self._on_cluster:
                    self.client.spublish(name, payload)
                else:
                    self.client.publish(name, payload)
        self.client.hdel(self.keys.media(media_id), _PENDING, _PENDING_AT)
        self.client.zrem(self.keys.inflight, media_id)

    def _user_channel(self, final: MediaSnapshot) -> str:
        """The media's user's channel (``sharding.user_channel``), or '' without a user:
        a failure goes there too, for relays on user channels (a PUBLISH with no
        subscriber where there are none)."""
        return user_channel(self.channel, final.user_id) if final.user_id else ""

    def _republish(
        self, final: MediaSnapshot, fields: Mapping[Any, Any], now: float
    ) -> tuple[str, int]:
        """Publish again the failure a sweeper claimed and may not have published, once
        its grace period is over (a live claimer is done within it)."""
        claimed_at = _field(fields, _PENDING_AT) or ""
        age = now - int(claimed_at) / 1000 if claimed_at.isdigit() else float("inf")
        if age < self.republish_after:
            return "skipped", 0
        key = self.keys.media(final.media_id)
        if not self._retake(keys=[key], args=[_PENDING_AT, claimed_at, int(now * 1000)]):
            return "skipped", 0  # another sweeper took it over just now
        try:
            pending = json.loads(_field(fields, _PENDING) or "")
            channel = str(pending["channel"])
            payloads = [str(event).encode() for event in pending["events"]]
        except (ValueError, KeyError, TypeError):
            logger.warning("sweeper: unreadable pending publish for media %s; dropped",
                           final.media_id)
            self.client.hdel(key, _PENDING, _PENDING_AT)
            return "skipped", 0
        self._publish_claimed(final, channel, payloads)
        return "republished", len(payloads)

    def message(self, reason: str) -> str:
        """What users read when a media is failed for ``reason``."""
        if reason == STUCK and self.stuck_after is not None:
            return d.STUCK_ERROR_MESSAGE.format(seconds=f"{self.stuck_after:g}")
        return d.SWEEP_ERROR_MESSAGE

    def _failure_events(
        self, snapshot: MediaSnapshot, reason: str, now: float
    ) -> tuple[list[bytes], MediaSnapshot] | None:
        error = self.message(reason)
        events = [
            self._event(snapshot, ANALYSIS_FAILED, f"{name}: {error}",
                        {"model_name": name, "error_message": error}, now)
            for name, model in snapshot.models.items()
            if model.status not in ("completed", "failed")
        ]  # fmt: skip
        events.append(
            self._event(snapshot, PROCESSING_FAILED, f"Processing failed: {error}",
                        {"error_message": error}, now)
        )  # fmt: skip
        final = snapshot
        for event in events:
            _, problems = _rules.check_event(event, strict=True)
            if problems:  # written by a producer that broke the contract (e.g. no user_id)
                logger.warning("sweeper: cannot fail media %s: %s", snapshot.media_id,
                               problems[0])
                return None
            final = apply_event(final, event, now)
        final.swept = reason
        return [json.dumps(e, separators=(",", ":")).encode() for e in events], final

    def _event(
        self, snapshot: MediaSnapshot, name: str, message: str, data: Mapping[str, Any],
        now: float,
    ) -> dict[str, Any]:
        seq = self._seqs.pop(snapshot.media_id, 0) + 1
        self._seqs[snapshot.media_id] = seq
        if len(self._seqs) > d.MAX_REMEMBERED_MEDIA:
            self._seqs.popitem(last=False)
        event: dict[str, Any] = {
            "media_id": snapshot.media_id,
            "user_id": snapshot.user_id,
            "event": name,
            "message": message,
            "data": dict(data),
            "schema_version": d.SCHEMA_VERSION,
            "seq": seq,
            "source": self.source,
            "timestamp": format_timestamp(now),
        }
        if snapshot.run_id:
            event["run_id"] = snapshot.run_id
        return event


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _field(fields: Mapping[Any, Any], name: str) -> str | None:
    """A field of an HGETALL reply (bytes or text keys) as text."""
    value = fields.get(name.encode(), fields.get(name))
    return value.decode() if isinstance(value, bytes) else value

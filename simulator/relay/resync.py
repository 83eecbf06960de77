"""Resync: after the Redis subscription comes back, every connected socket is brought up to
date from the snapshots.

Pub/sub is at-most-once: what is published while the relay has no subscription (Redis
restarted, a failover, a reconnect after a cut) never reaches it. Publishers buffer
through an outage and flush as soon as they reconnect, often before the relay has
subscribed again (its backoff), so without this a restart left sockets that stayed
connected stale: of 36 media in the issue's run, 15 were never shown live and 3 stayed
"running" until a reload.

So each time the subscription is confirmed (``Relay.add_subscribe_hook``, before its
first message is handled), ``Resync`` takes every socket of the node through catch-up's
machinery again (``CatchUp.resync``): its live events are held meanwhile (the room emit
skips it), the user's snapshots are read once per user (the most recent
``--catch-up-max-media``), each socket is sent the snapshots it does not already hold,
then the held events they do not cover. What a socket holds is what the node sent all
its user's sockets, per media the last ``seq`` per source (``Resync`` keeps it from the
events it forwards and the snapshots that every socket of the user holds once sent, for
users with sockets on the node, the ``max_media`` most recent media per user; a
snapshot sent to one joining socket is not noted: the others may never have had its
events, lost in a gap): a snapshot with no ``seq`` above it is not
sent again (``resync_skipped``), so a media that did not change during the gap costs
nothing and nothing reaches the UI twice. Sockets whose own catch-up could not read Redis
get every snapshot; a socket that was catching up when the subscription came back is
resynced in full once its catch-up is done.

Users are resynced ``users_at_once`` at a time, each within its per-user catch-up turns.
What a restart without persistence lost from Redis (the snapshots themselves) comes back
from the publishers, each rewriting the whole snapshot of every media it tracks when it
reaches the new server: at its next batch (within its reconnect backoff, 3 s at most) or,
silent, at its next liveness refresh (3.3 s by default). A socket that connected in
between read fewer snapshots than there are, so each socket that joins within
``late_after`` seconds of a new subscription, or while the relay has none, is resynced in
full once more that long after the (next) subscription (``late``; a snapshot the socket
holds costs a packet, never a duplicate event).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

from progress_sdk.snapshot import MediaSnapshot

from .catchup import CatchUp, Known
from .routing import Routed
from .server import Relay

__all__ = ["DEFAULT_USERS_AT_ONCE", "MAX_REMEMBERED_MEDIA", "Resync", "install_resync"]

log = logging.getLogger("progress_sim.relay")

# Users whose snapshots are read and sent at once after a resubscribe (each user's sockets
# share one read): enough to keep Redis busy, few enough that live traffic goes on.
DEFAULT_USERS_AT_ONCE = 8
# Media remembered over all users (~250 bytes each: the media id, a dict of one or two
# sources): at most ~50 MB. Past it the least recently active user's record goes; their
# sockets then get every snapshot at the next resync, which is correct, only more.
MAX_REMEMBERED_MEDIA = 200_000
# Seconds after a new subscription within which a joining socket may have read snapshots
# that publishers had not written again yet (a Redis restarted without persistence):
# past a publisher's reconnect backoff (3 s at most) and its liveness refresh (3.3 s).
DEFAULT_LATE_AFTER = 5.0


class Resync:
    """Brings the node's sockets up to date after each new subscription (module doc)."""

    def __init__(self, relay: Relay, catch_up: CatchUp, *,
                 users_at_once: int = DEFAULT_USERS_AT_ONCE,
                 capacity: int = MAX_REMEMBERED_MEDIA,
                 late_after: float = DEFAULT_LATE_AFTER) -> None:
        self._relay = relay
        self._catch_up = catch_up
        self._users_at_once = users_at_once
        self._capacity = capacity
        # user -> media -> the last seq per source sent; users least recently noted first.
        self._sent: OrderedDict[str, OrderedDict[str, dict[str, int]]] = OrderedDict()
        self._remembered = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._late_after = late_after
        self._window_ends = 0.0  # loop time until which joining sockets are resynced late
        self._late: dict[str, set[str]] = {}  # user -> sids that joined in the window
        self._subscriptions = 0
        self.late = 0
        """Sockets resynced in full after joining right after a new subscription."""
        catch_up.on_sent = self._snapshot_sent
        catch_up.on_gap = self._after_gap

    def on_event(self, routed: Routed) -> None:
        """An event hook: note the seq each user's sockets on this node were sent.

        ~1.1 µs per event of a user with sockets here, ~0.2 µs for the others (measured
        on the 2-core test machine; the relay spends ~140 µs of CPU per event)."""
        seq, source = routed.event.get("seq"), routed.event.get("source")
        if type(seq) is not int or type(source) is not str:
            return
        if not self._relay.has_sockets(routed.user_id):
            return
        self._note(routed.user_id, routed.event["media_id"], {source: seq})

    def release(self, sid: str, user_id: str) -> None:
        """A release hook: a user without sockets here needs no record."""
        if not self._relay.has_sockets(user_id):
            self._forget(user_id)

    def remembered(self) -> int:
        """How many (user, media) records are kept now."""
        return self._remembered

    def _forget(self, user_id: str) -> None:
        media = self._sent.pop(user_id, None)
        if media is not None:
            self._remembered -= len(media)

    def on_subscribed(self) -> None:
        """A subscribe hook: resync every socket of the node, against what it held."""
        self._catch_up.epoch += 1
        held = {user: {m: dict(seqs) for m, seqs in media.items()}
                for user, media in self._sent.items()}
        self._spawn(self._resync_all(held))
        self._subscriptions += 1
        if self._subscriptions == 1:
            return  # the relay's start: no socket read snapshots before it
        loop = asyncio.get_running_loop()
        if loop.time() >= self._window_ends:
            self._spawn(self._late_pass())
        self._window_ends = loop.time() + self._late_after

    async def joined(self, sid: str, user_id: str) -> None:
        """A join hook: note a socket that joins within ``late_after`` of a new
        subscription, or while the relay has none (after its first), for the late pass
        (after the next subscription)."""
        # One that joined without a subscription read what Redis held then, maybe less
        # than the user's record says (Redis restarted empty, not written back yet):
        # the resync at the next subscription, against that record, would skip it.
        if asyncio.get_running_loop().time() < self._window_ends or (
                self._subscriptions and not self._relay.stats.redis_connected):
            self._late.setdefault(user_id, set()).add(sid)

    async def _late_pass(self) -> None:
        # Until the window closes (a later subscription extends it), then once: every
        # socket that joined in it, still here and not catching up, gets every snapshot.
        loop = asyncio.get_running_loop()
        while (left := self._window_ends - loop.time()) > 0:
            await asyncio.sleep(left)
        late, self._late = self._late, {}
        for user_id, sids in late.items():
            plan: dict[str, Known | None] = {
                sid: None for sid in sids
                if self._relay.is_live(sid) and not self._catch_up.busy(user_id, sid)}
            if plan:
                self.late += len(plan)
                self._spawn(self._catch_up.resync(user_id, plan))

    async def _resync_all(self, held: dict[str, dict[str, dict[str, int]]]) -> None:
        turns = asyncio.Semaphore(self._users_at_once)

        async def one(user_id: str) -> None:
            async with turns:
                known: Known = held.get(user_id, {})
                plan: dict[str, Known | None] = {
                    sid: None if sid in self._catch_up.incomplete else known
                    for sid in self._relay.user_sockets(user_id)
                    # One catching up now is resynced when done, if it needs it (_after_gap).
                    if self._relay.is_live(sid) and not self._catch_up.busy(user_id, sid)
                }
                if plan:
                    await self._catch_up.resync(user_id, plan)

        await asyncio.gather(*(one(user) for user in self._relay.connected_users()))

    def _after_gap(self, user_id: str, sids: list[str]) -> None:
        # A catch-up that straddled a resubscribe read its snapshots before the gap was
        # over, or not at all: send these sockets everything once they are in the room
        # (the task runs after the join's synchronous room entry).
        if sids:
            self._spawn(self._catch_up.resync(user_id, dict.fromkeys(sids)))

    def _snapshot_sent(self, user_id: str, snapshot: MediaSnapshot, holders: set[str]) -> None:
        # The record says what every socket of the user holds: a snapshot sent to some
        # of them (a joining socket's catch-up) is not what the others hold when the
        # relay missed its events. A socket that joined after Redis was restarted empty
        # and the publisher wrote it back, before the relay subscribed again, read media
        # the user's other sockets never got; noted for the user, the resync skipped
        # them for those sockets, which ended stale (the loaded suite, 7 Dec: 12-16
        # media). Not noted, they cost a snapshot packet at the next resync.
        if self._relay.user_sockets(user_id) <= holders:
            self._note(user_id, snapshot.media_id, snapshot.seqs)

    def _note(self, user_id: str, media_id: str, seqs: dict[str, int]) -> None:
        media = self._sent.get(user_id)
        if media is None:
            media = self._sent[user_id] = OrderedDict()
        else:
            self._sent.move_to_end(user_id)
        known = media.get(media_id)
        if known is None:
            known = media[media_id] = {}
            self._remembered += 1
            if len(media) > self._catch_up.limits.max_media:
                media.popitem(last=False)
                self._remembered -= 1
            while self._remembered > self._capacity:
                self._forget(next(iter(self._sent)))
        else:
            media.move_to_end(media_id)
        for source, seq in seqs.items():
            if seq > known.get(source, -1):
                known[source] = seq

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("resync failed", exc_info=task.exception())


def install_resync(relay: Relay, catch_up: CatchUp) -> Resync:
    """Resync ``relay``'s sockets through ``catch_up`` after each new subscription."""
    resync = Resync(relay, catch_up)
    relay.add_event_hook(resync.on_event)
    relay.add_release_hook(resync.release)
    relay.add_subscribe_hook(resync.on_subscribed)
    relay.add_join_hook(resync.joined)
    return resync

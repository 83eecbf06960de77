"""CatchUp's bounds and resync's record, without processes: an in-memory emit and reader
(the real-process scenarios are in test_relay_catchup.py and test_relay_resync.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from progress_sdk.snapshot import MediaSnapshot
from simulator.relay.catchup import CatchUp, CatchUpLimits
from simulator.relay.resync import Resync
from simulator.relay.routing import Routed
from simulator.relay.stats import RelayStats


def snapshots(user: str, count: int) -> list[MediaSnapshot]:
    """``count`` snapshots of ``user``, newest first (m-<count-1> .. m-0)."""
    return [MediaSnapshot(f"m-{n}", user_id=user, seqs={"w": 3}) for n in reversed(range(count))]


class Fake:
    """The relay's side of a CatchUp: what was emitted, which sockets are live, and a
    reader over a list that can be held at its first chunk."""

    def __init__(self, stored: list[MediaSnapshot], limits: CatchUpLimits,
                 leave_after: int | None = None) -> None:
        self.stored = stored
        self.leave_after = leave_after
        self.sent: list[tuple[str, str, Any]] = []
        self.gone: set[str] = set()
        self.gate = asyncio.Event()
        self.gate.set()
        self.reads = 0
        self.catch_up = CatchUp(self.emit, self.read, is_live=self.live, limits=limits)

    async def emit(self, name: str, payload: dict[str, Any], sid: str) -> None:
        self.sent.append((sid, name, payload))
        if self.leave_after is not None and len(self.sent) >= self.leave_after:
            self.gone.add(sid)  # the client closes after this packet

    def live(self, sid: str) -> bool:
        return sid not in self.gone

    async def read(self, user: str, limit: int, chunk: int
                   ) -> AsyncGenerator[list[MediaSnapshot], None]:
        self.reads += 1
        await self.gate.wait()
        mine = self.stored[:limit]
        for start in range(0, len(mine), chunk):
            yield mine[start:start + chunk]

    def snapshots_to(self, sid: str) -> list[str]:
        return [payload["mediaId"] for to, name, payload in self.sent
                if to == sid and name == "progress_snapshot"]


async def joined(fake: Fake, sid: str, user: str) -> None:
    """One socket's whole catch-up."""
    await fake.catch_up.join(sid, user)


def test_at_most_max_media_go_out_newest_first_and_the_rest_is_counted() -> None:
    """Of 7 media with a bound of 5, the 5 newest go out in that order; truncated 1."""
    fake = Fake(snapshots("u", 7), CatchUpLimits(max_media=5, chunk=2))
    asyncio.run(joined(fake, "s1", "u"))
    assert fake.snapshots_to("s1") == ["m-6", "m-5", "m-4", "m-3", "m-2"]
    assert (fake.catch_up.stats.truncated, fake.catch_up.stats.done) == (1, 1)


def test_only_per_user_catch_ups_of_a_user_run_at_once_and_others_do_not_wait() -> None:
    """Ten sockets of one user: four read at once, six wait their turn; another user's
    socket is not held up by them."""

    async def scenario() -> tuple[int, int, int, list[str]]:
        fake = Fake(snapshots("u", 1), CatchUpLimits(per_user=4))
        fake.gate.clear()
        joins = [asyncio.ensure_future(fake.catch_up.join(f"s{n}", "u")) for n in range(10)]
        for _ in range(10):
            await asyncio.sleep(0)
        running, waiting, reads = (fake.catch_up.stats.running, fake.catch_up.stats.waiting,
                                   fake.reads)
        other = Fake(snapshots("v", 1), CatchUpLimits(per_user=4))
        await other.catch_up.join("t1", "v")
        fake.gate.set()
        await asyncio.gather(*joins)
        assert fake.catch_up.stats.running == fake.catch_up.stats.waiting == 0
        return running, waiting, reads, other.snapshots_to("t1")

    assert asyncio.run(scenario()) == (4, 6, 4, ["m-0"])


def test_a_catch_up_stops_at_the_next_chunk_once_its_socket_is_gone() -> None:
    """The socket leaves during the first chunk: nothing after that chunk is read or
    sent, and the catch-up counts as abandoned."""

    async def scenario() -> Fake:
        fake = Fake(snapshots("u", 300), CatchUpLimits(chunk=50), leave_after=1)
        await fake.catch_up.join("s1", "u")
        return fake

    fake = asyncio.run(scenario())
    assert len(fake.sent) == 1 and fake.catch_up.stats.abandoned == 1


def test_events_that_arrive_during_a_catch_up_come_after_the_snapshots_minus_covered() -> None:
    """An event at or below the snapshot's seq is dropped as covered; a newer one is
    sent after the snapshots; the room emit skips the socket meanwhile."""

    async def scenario() -> tuple[Fake, list[str]]:
        fake = Fake(snapshots("u", 1), CatchUpLimits())
        fake.gate.clear()
        join = asyncio.ensure_future(fake.catch_up.join("s1", "u"))
        await asyncio.sleep(0)
        skipped = []
        for seq in (2, 3, 4):
            routed = Routed("u", {"media_id": "m-0", "seq": seq, "source": "w"},
                            (("progress_update", {"seq": seq}),))
            fake.catch_up.on_event(routed)
            skipped += fake.catch_up.skip(routed)
        fake.gate.set()
        await join
        return fake, skipped

    fake, skipped = asyncio.run(scenario())
    assert [name for _, name, _ in fake.sent] == ["progress_snapshot", "progress_update"]
    assert fake.sent[1][2] == {"seq": 4} and skipped == ["s1"] * 3
    assert (fake.catch_up.stats.covered, fake.catch_up.stats.held_back) == (2, 1)


def test_a_resync_sends_only_what_a_socket_does_not_hold_and_all_to_an_incomplete_one() -> None:
    """Resync after a gap: m-1 moved (seq 5 > 3 held) and m-9 is new, so they go to the
    socket that held the rest; the socket whose catch-up failed gets everything."""
    fake = Fake([MediaSnapshot("m-1", user_id="u", seqs={"w": 5}),
                 MediaSnapshot("m-2", user_id="u", seqs={"w": 3}),
                 MediaSnapshot("m-9", user_id="u", seqs={"w": 1})], CatchUpLimits())
    held = {"m-1": {"w": 3}, "m-2": {"w": 3}}
    asyncio.run(fake.catch_up.resync("u", {"s1": held, "s2": None}))
    assert fake.snapshots_to("s1") == ["m-1", "m-9"]
    assert fake.snapshots_to("s2") == ["m-1", "m-2", "m-9"]
    assert (fake.catch_up.stats.resync_skipped, fake.catch_up.stats.resynced) == (1, 2)


class _Relay:
    """What Resync asks of the relay: which users have sockets here."""

    def __init__(self, users: set[str]) -> None:
        self.users = users

    def has_sockets(self, user_id: str) -> bool:
        return user_id in self.users


def test_resyncs_record_is_bounded_per_user_and_over_all_users() -> None:
    """At most max_media media per user; past the overall capacity the least recently
    active user's record goes whole; a user who left is forgotten."""
    catch_up = CatchUp(Fake([], CatchUpLimits()).emit, Fake([], CatchUpLimits()).read,
                       limits=CatchUpLimits(max_media=3))
    resync = Resync(_Relay({"a", "b", "c"}), catch_up, capacity=5)  # type: ignore[arg-type]

    def event(user: str, media: str) -> Routed:
        return Routed(user, {"media_id": media, "seq": 1, "source": "w"}, ())

    for media in ("m1", "m2", "m3", "m4"):
        resync.on_event(event("a", media))
    assert resync.remembered() == 3  # a's oldest media went
    resync.on_event(event("b", "m1"))
    resync.on_event(event("b", "m2"))
    assert resync.remembered() == 5
    resync.on_event(event("c", "m1"))  # over 5: a, the least recently active, goes
    assert resync.remembered() == 3
    resync.release("x", "b")  # b still has sockets: kept
    assert resync.remembered() == 3


class _Node:
    """What Resync asks of the relay, with sockets: each user's sids on the node."""

    def __init__(self, sockets: dict[str, set[str]]) -> None:
        self.sockets = sockets
        self.stats = RelayStats()
        self.stats.redis_connected = True

    def has_sockets(self, user_id: str) -> bool:
        return bool(self.sockets.get(user_id))

    def user_sockets(self, user_id: str) -> frozenset[str]:
        return frozenset(self.sockets.get(user_id, ()))

    def connected_users(self) -> frozenset[str]:
        return frozenset(user for user, sids in self.sockets.items() if sids)

    def is_live(self, sid: str) -> bool:
        return any(sid in sids for sids in self.sockets.values())


def test_a_snapshot_one_socket_read_in_a_gap_is_still_resynced_to_the_users_others() -> None:
    """Redis restarted empty; before the relay subscribed again the publisher wrote its
    snapshots back and published the events of the gap (which the relay never got). A
    socket of the user that joined then read m-10 whole; the user's two sockets that
    stayed connected never had m-10. The resync at the new subscription sends it to them:
    a snapshot sent to one socket is not what the user's other sockets hold (it was noted
    for the whole user, and they were left without m-10, as in the loaded suite's runs)."""
    fake = Fake([], CatchUpLimits())
    node = _Node({"u": {"s1", "s2"}})
    resync = Resync(node, fake.catch_up)  # type: ignore[arg-type]

    async def scenario() -> None:
        resync.on_subscribed()  # the relay's start
        await settled(fake, 2)
        fake.stored = [MediaSnapshot("m-10", user_id="u", seqs={"w": 7})]  # written back
        node.sockets["u"].add("s3")  # joins in the gap: the relay is not subscribed
        await fake.catch_up.join("s3", "u")
        assert fake.snapshots_to("s3") == ["m-10"]
        resync.on_subscribed()  # subscribed again
        await settled(fake, 5)

    asyncio.run(scenario())
    assert fake.snapshots_to("s1") == fake.snapshots_to("s2") == ["m-10"]


def test_a_socket_that_joined_while_the_relay_had_no_subscription_is_resynced_late() -> None:
    """The user's socket got m-1 up to seq 5 live; Redis restarted empty. A socket that
    joins before the relay subscribed again reads nothing (the publisher has not written
    m-1 back yet), and the resync at the new subscription, against the user's record
    (m-1 at 5), would skip m-1 for it: the late pass after that subscription sends it
    every snapshot, m-1 included."""
    fake = Fake([], CatchUpLimits())
    node = _Node({"u": {"s1"}})
    resync = Resync(node, fake.catch_up, late_after=0)  # type: ignore[arg-type]

    async def scenario() -> None:
        resync.on_subscribed()  # the relay's start
        await settled(fake, 1)
        resync.on_event(Routed("u", {"media_id": "m-1", "seq": 5, "source": "w"}, ()))
        node.stats.redis_connected = False  # Redis restarted empty
        node.sockets["u"].add("s3")
        await resync.joined("s3", "u")
        await fake.catch_up.join("s3", "u")
        fake.stored = [MediaSnapshot("m-1", user_id="u", seqs={"w": 5})]  # written back
        node.stats.redis_connected = True
        resync.on_subscribed()
        await settled(fake, 4)

    asyncio.run(scenario())
    assert fake.snapshots_to("s3") == ["m-1"] and fake.snapshots_to("s1") == []
    assert resync.late == 1


async def settled(fake: Fake, resynced: int) -> None:
    """Let the resync's tasks run until ``resynced`` sockets were resynced in all."""
    for _ in range(1000):
        await asyncio.sleep(0)
        if fake.catch_up.stats.resynced >= resynced and not fake.catch_up.stats.running:
            return
    raise AssertionError(f"resynced {fake.catch_up.stats.resynced}, not {resynced}")

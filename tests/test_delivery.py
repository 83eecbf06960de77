"""check_deliveries: the verdict over what sockets received against the channel."""

from __future__ import annotations

from typing import Any

from simulator.delivery import Received, SocketLog, TruthEvent, check_deliveries


def _truth() -> list[TruthEvent]:
    wires = [
        {"media_id": "m1", "user_id": "a", "event": "PROCESSING_STARTED", "message": "s",
         "data": {}, "seq": 1, "source": "w", "timestamp": "2026-11-26T05:00:00.000000Z"},
        {"media_id": "m2", "user_id": "b", "event": "PROCESSING_STARTED", "message": "s",
         "data": {}, "seq": 1, "source": "w", "timestamp": "2026-11-26T05:00:00.100000Z"},
        {"media_id": "m1", "user_id": "a", "event": "PROCESSING_COMPLETED", "message": "c",
         "data": {}, "seq": 2, "source": "w", "timestamp": "2026-11-26T05:00:00.200000Z"},
    ]
    return [TruthEvent(n, w) for n, w in enumerate(wires, start=1)]


def _update(wire: dict[str, Any], *, six_only: bool = False) -> dict[str, Any]:
    update = {"mediaId": wire["media_id"], "userId": wire["user_id"], "event": wire["event"],
              "message": wire["message"], "data": wire["data"], "timestamp": wire["timestamp"]}
    if not six_only:
        update.update(seq=wire["seq"], source=wire["source"])
    return update


def _log(user: str, events: list[TruthEvent], *, six_only: bool = False,
         final: bool = True) -> SocketLog:
    log = SocketLog(user, f"socket of {user}")
    base = 1795000000.0
    for event in events:
        log.received.append(Received("progress_update", _update(event.wire, six_only=six_only),
                                     base))
        if final and event.wire["event"] == "PROCESSING_COMPLETED":
            log.received.append(Received("media_update", {"id": event.wire["media_id"],
                                                          "mediaId": event.wire["media_id"]},
                                         base))
    return log


def test_exact_delivery_is_ok_with_one_latency_per_delivery() -> None:
    """Each user's socket has each of its events once, in order: no fault."""
    t = _truth()
    report = check_deliveries(t, [_log("a", [t[0], t[2]]), _log("b", [t[1]])])
    assert report.ok and report.deliveries == report.expected_deliveries == 3
    assert len(report.latencies) == 3


def test_events_are_matched_by_content_when_seq_is_not_forwarded() -> None:
    """Only the six product fields: still matched, still OK."""
    t = _truth()
    assert check_deliveries(t, [_log("a", [t[0], t[2]], six_only=True)]).ok


def test_an_event_at_another_users_socket_is_misrouted_and_lost() -> None:
    """b's event at a's socket instead of b's: misrouted (at a) and lost (at b)."""
    t = _truth()
    report = check_deliveries(t, [_log("a", [t[0], t[1], t[2]]), _log("b", [])])
    assert dict(report.fault_counts) == {"misrouted": 1, "lost": 1}
    assert "PROCESSING_STARTED of media m2 (user b, seq 1, channel #2)" in str(report.faults[0])


def test_a_repeat_is_a_duplicate() -> None:
    """The same event twice at one socket."""
    t = _truth()
    report = check_deliveries(t, [_log("a", [t[0], t[0], t[2]])])
    assert dict(report.fault_counts) == {"duplicate": 1}


def test_a_swap_is_a_reorder() -> None:
    """a's two events in the opposite order."""
    t = _truth()
    report = check_deliveries(t, [_log("a", [t[2], t[0]])])
    assert dict(report.fault_counts) == {"reordered": 1}
    assert "PROCESSING_STARTED of media m1" in report.faults[0].message


def test_an_altered_event_is_unexpected_and_the_original_lost() -> None:
    """A changed message matches nothing on the channel."""
    t = _truth()
    log = _log("a", [t[0], t[2]])
    log.received[0].payload["message"] = "changed"
    report = check_deliveries(t, [log])
    assert dict(report.fault_counts) == {"unexpected": 1, "lost": 1}


def test_a_forwarded_seq_must_be_the_channels() -> None:
    """Content that matches but carries another seq is not that event."""
    t = _truth()
    log = _log("a", [t[0], t[2]])
    log.received[0].payload["seq"] = 99
    assert not check_deliveries(t, [log]).ok


def test_a_missing_media_update_is_lost() -> None:
    """PROCESSING_COMPLETED without its media_update at the socket."""
    t = _truth()
    report = check_deliveries(t, [_log("a", [t[0], t[2]], final=False)])
    assert dict(report.fault_counts) == {"lost": 1}
    assert "media_update of media m1" in report.faults[0].message


def _two_media_of_one_user() -> list[TruthEvent]:
    wires = [
        {"media_id": media, "user_id": "a", "event": kind, "message": kind[:1], "data": {},
         "seq": seq, "source": "w", "timestamp": f"2026-11-26T05:00:0{n}.000000Z"}
        for n, (media, kind, seq) in enumerate([
            ("m1", "PROCESSING_STARTED", 1), ("m2", "PROCESSING_STARTED", 1),
            ("m1", "PROCESSING_COMPLETED", 2), ("m2", "PROCESSING_COMPLETED", 2)])
    ]
    return [TruthEvent(n, w) for n, w in enumerate(wires, start=1)]


def test_with_shard_channels_only_each_medias_order_counts() -> None:
    """per_media_order: two media of a user interleaved differently is fine (they came
    over different shard channels); one media's events swapped is still a reorder."""
    t = _two_media_of_one_user()
    across = _log("a", [t[1], t[3], t[0], t[2]])
    assert not check_deliveries(t, [across]).ok
    assert check_deliveries(t, [across], per_media_order=True).ok
    within = _log("a", [t[2], t[0], t[1], t[3]])
    report = check_deliveries(t, [within], per_media_order=True)
    assert report.fault_counts["reordered"] == 1


def test_numbers_are_compared_as_javascript_reads_them() -> None:
    """A Node.js relay re-serialises each event: 0.0 arrives as 0, 2.50 as 2.5, keys in
    another order; those are the same events, and a changed value still is not."""
    wire = {"media_id": "m1", "user_id": "a", "event": "FRAME_ANALYSIS_PROGRESS",
            "message": "p", "seq": 1, "source": "w", "timestamp": "2026-11-26T05:00:00Z",
            "data": {"model_name": "M", "progress": 1, "total": 2,
                     "details": {"eta_seconds": 0.0, "fps": 2.5, "flags": [True, -0.0]}}}
    truth = [TruthEvent(1, wire)]
    as_node_sent = {**_update(wire), "data": {"total": 2, "model_name": "M", "progress": 1.0,
                    "details": {"fps": 2.5, "flags": [True, 0], "eta_seconds": 0}}}
    log = SocketLog("a", "socket of a", [Received("progress_update", as_node_sent, 0.0)])
    assert check_deliveries(truth, [log]).ok
    for changed in ({"eta_seconds": 0.5, "fps": 2.5, "flags": [True, 0]},
                    {"eta_seconds": 0, "fps": 2.5, "flags": [1, 0]}):  # true is not 1
        altered = {**as_node_sent, "data": {**as_node_sent["data"], "details": changed}}
        log = SocketLog("a", "socket of a", [Received("progress_update", altered, 0.0)])
        assert check_deliveries(truth, [log]).fault_counts == {"unexpected": 1, "lost": 1}

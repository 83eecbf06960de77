"""model.track(iterable, total=None): a tqdm-like loop that reports progress with timing.

Issue #9, finding 5 (the SDK side; the panel's side is in test_sim_panel.py).
"""

from __future__ import annotations

import json

import fakeredis
import pytest

from progress_sdk import EventType, ProgressPublisher
from progress_sdk.tracking import timing_details

SIGLIP = "SIGLIP-LSTM-V4"


def test_track_yields_every_item_and_reports_each_with_timing(progress_events):
    """A sized iterable: 0/n first, then i/n after each item, elapsed/rate/eta in details."""
    pub = progress_events
    seen = []
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        for frame in model.track(["a", "b", "c"]):
            seen.append(frame)
    assert seen == ["a", "b", "c"]
    datas = [e["data"] for e in pub.events if e["event"] == "FRAME_ANALYSIS_PROGRESS"]
    assert [(d["progress"], d["total"]) for d in datas] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert set(datas[0]["details"]) == {"elapsed_seconds"}
    assert set(datas[-1]["details"]) == {"elapsed_seconds", "rate_per_second", "eta_seconds"}
    assert datas[-1]["details"]["eta_seconds"] == 0
    pub.events.assert_valid()


def test_track_of_a_generator_reports_the_count_at_the_end(progress_events):
    """Without a total the contract cannot draw a bar: one n/n event when it is exhausted."""
    pub = progress_events
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        assert sum(model.track(x for x in range(5))) == 10
    datas = [e["data"] for e in pub.events if e["event"] == "FRAME_ANALYSIS_PROGRESS"]
    assert [(d["progress"], d["total"]) for d in datas] == [(5, 5)]


def test_track_takes_a_total_event_type_and_phase(progress_events):
    """total= for a generator, and another progress type and phase."""
    pub = progress_events
    with pub.media("m1", "u1") as run, run.model("MEL-SPECTROGRAM-CNN-V3") as model:
        for _ in model.track(iter(range(2)), total=2,
                             event=EventType.WINDOW_PROCESSING_PROGRESS, phase="windows"):
            pass
    datas = [e["data"] for e in pub.events if e["event"] == "WINDOW_PROCESSING_PROGRESS"]
    assert [(d["progress"], d["total"], d["phase"]) for d in datas] == [
        (0, 2, "windows"), (1, 2, "windows"), (2, 2, "windows"),
    ]


def test_breaking_out_of_a_tracked_loop_is_fine(progress_events):
    """Leaving the loop early stops reporting; the model completes as usual."""
    pub = progress_events
    with pub.media("m1", "u1") as run, run.model(SIGLIP) as model:
        for i in model.track(range(100)):
            if i == 9:
                break
    last = [e for e in pub.events if e["event"] == "FRAME_ANALYSIS_PROGRESS"][-1]
    assert (last["data"]["progress"], last["data"]["total"]) == (9, 100)
    pub.events.assert_valid()


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "expected"),
    [
        (0, 10, 0.0, {"elapsed_seconds": 0.0}),
        (5, 10, 2.0, {"elapsed_seconds": 2.0, "rate_per_second": 2.5, "eta_seconds": 2.0}),
        (4, None, 2.0, {"elapsed_seconds": 2.0, "rate_per_second": 2.0}),
    ],
)
def test_timing_details(done, total, elapsed, expected):
    """Rate is items a second since the start; ETA is what is left at that rate."""
    assert timing_details(done, total, elapsed) == expected


def test_track_goes_through_the_same_coalescing():
    """Through the real publisher, thousands of items make a few events, the last one kept."""
    client = fakeredis.FakeRedis()
    pubsub = client.pubsub()
    pubsub.subscribe("track")
    pubsub.get_message(timeout=1)
    publisher = ProgressPublisher(client, "track", finish_flush_timeout=0)
    try:
        with publisher.media("m1", "u1") as run, run.model(SIGLIP) as model:
            for _ in model.track(range(5000)):
                pass
        assert publisher.flush(5)
        stats = publisher.stats()
        assert stats.coalesced > 4000
    finally:
        publisher.close(2)
    got = [json.loads(m["data"]) for m in iter(lambda: pubsub.get_message(timeout=0.2), None)
           if m["type"] == "message"]
    progress = [e["data"] for e in got if e["event"] == "FRAME_ANALYSIS_PROGRESS"]
    assert progress[-1]["progress"] == 5000 and "rate_per_second" in progress[-1]["details"]
    pubsub.close()

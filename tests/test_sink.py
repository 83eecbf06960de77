"""The tracking API depends on the EventSink protocol, not on the publisher."""

from __future__ import annotations

import subprocess
import sys

from progress_sdk._sink import EventSink
from progress_sdk.publisher import ProgressPublisher
from progress_sdk.testing import CapturingPublisher


def test_tracking_imports_no_publisher():
    """No import cycle: the tracking API loads without the publisher module."""
    code = "import sys, progress_sdk.tracking; print('progress_sdk.publisher' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_both_publishers_are_event_sinks():
    """The real publisher and the capturing one offer the same two calls."""
    for cls in (ProgressPublisher, CapturingPublisher):
        for name in ("accept", "run_ended"):
            assert name in EventSink.__dict__
            assert callable(getattr(cls, name))


def test_a_media_run_works_with_any_sink():
    """Any object with accept() and run_ended() can take a run's events."""
    from progress_sdk.tracking import MediaRun

    class ListSink:
        def __init__(self) -> None:
            self.events: list[str] = []
            self.ended = 0

        def accept(self, fields: dict[str, object]) -> None:
            self.events.append(str(fields["event"]))

        def run_ended(self) -> None:
            self.ended += 1

    sink = ListSink()
    with MediaRun(sink, "m1", "u1") as run, run.model("A") as model:
        model.progress(1, 2)
    assert sink.events == [
        "PROCESSING_STARTED",
        "ANALYSIS_STARTED",
        "FRAME_ANALYSIS_PROGRESS",
        "ANALYSIS_COMPLETED",
        "PROCESSING_COMPLETED",
    ]
    assert sink.ended == 1

"""The terminal panel's model (simulator.panel.PanelState) against the conformance suite
the browser store also runs (clients/js/conformance/streams.json, under node's test
runner in test_js_client.py): after each step of each stream, every media's state and the
notices shown so far are the expected ones. Issue #19."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from simulator.panel import MediaView, PanelState

SUITE = json.loads((Path(__file__).parent.parent / "clients" / "js" / "conformance"
                    / "streams.json").read_text())
# progress_update is a channel event in camelCase; the panel reads the channel's names.
SNAKE = {"mediaId": "media_id", "userId": "user_id", "runId": "run_id"}


class PanelReducer:
    """PanelState behind the suite's three calls (receive, media, notices)."""

    def __init__(self) -> None:
        self.state = PanelState()
        self.shown: list[dict[str, str]] = []

    def receive(self, name: str, payload: dict[str, Any]) -> None:
        if name == "progress_update":
            self.state.feed({SNAKE.get(k, k): v for k, v in payload.items()}, now=0.0)
        elif name == "progress_snapshot":
            self.state.apply_snapshot(payload, now=0.0)
        self.shown += [{"mediaId": n.media_id, "outcome": n.outcome}
                       for n in self.state.drain_notices()]

    def media(self) -> dict[str, Any]:
        return {view.media_id: project(view) for view in self.state.all_media(now=0.0)}


def project(view: MediaView) -> dict[str, Any]:
    """One media as the suite states it."""
    return {
        "status": view.status, "outcome": view.outcome, "filename": view.filename,
        "error": view.error, "order": [r.model for r in view.rows],
        "models": {r.model: {"status": r.state, "progress": r.progress, "total": r.total,
                             "phase": r.phase, "prediction": r.prediction,
                             "confidence": r.confidence, "error": r.error,
                             "attempt": r.attempt[0] if r.attempt else None,
                             "attempts": r.attempt[1] if r.attempt else None,
                             "retryReason": r.retry_reason}
                   for r in view.rows},
    }  # fmt: skip


def mismatches(stream: dict[str, Any], reducer: PanelReducer) -> list[str]:
    """The steps of ``stream`` after which ``reducer`` shows another state."""
    found = []
    for number, step in enumerate(stream["steps"], 1):
        reducer.receive(step["on"], copy.deepcopy(step["payload"]))
        actual = {"media": reducer.media(), "notices": reducer.shown}
        if actual != step["expect"]:
            found.append(f"step {number} ({step['note']}): expected {step['expect']}, "
                         f"got {actual}")
    return found


def test_the_suite_covers_the_cases_of_the_issue() -> None:
    """Catch-up, reconnect, repeats, the sweeper, partial failure, re-analysis."""
    names = {s["name"] for s in SUITE["streams"]}
    assert {"catch-up then live", "reconnect with an overlapping snapshot", "repeats",
            "crashed worker ended by the sweeper", "partial failure",
            "re-analysed under the same id", "catch-up around live events"} <= names


@pytest.mark.parametrize("stream", SUITE["streams"], ids=lambda s: s["name"])
def test_the_panel_model_passes_the_stream(stream: dict[str, Any]) -> None:
    """Every step of the stream leaves PanelState in the expected state."""
    assert mismatches(stream, PanelReducer()) == []


def test_a_panel_that_shows_repeats_fails_the_suite() -> None:
    """Without the repeat check (every seq made unique), the repeats stream fails."""

    class Careless(PanelReducer):
        received = 0

        def receive(self, name: str, payload: dict[str, Any]) -> None:
            self.received += 1
            if name == "progress_update" and "source" in payload:
                payload["source"] += f"#{self.received}"
            super().receive(name, payload)

    (stream,) = [s for s in SUITE["streams"] if s["name"] == "repeats"]
    assert mismatches(stream, Careless())

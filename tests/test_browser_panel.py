"""The relay's page in headless Chromium (Debian's), against a real relay and real runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from relay_support import RelayProcess, wait_until

from progress_sdk.snapshot import MediaSnapshot, apply_event
from simulator.relay import sign_token

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
# Playwright drives the distribution's browser; its own downloads are not used.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SECRET = "browser-tests-secret-that-is-32-bytes-or-more"
USER = "user-1"
CONNECTED = '#connection[data-state="connected"]'


def _ensure_chromium() -> None:
    """Install Debian's Chromium when it is missing, as .ci/run does, so the README's test
    command works on a fresh machine too; fail with the reason when that is not possible."""
    if os.path.exists(CHROMIUM):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing: run `apt-get install chromium` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(
            step, check=False, env=env, capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(step)}` failed: {done.stderr.strip()[-500:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    _ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def prefix() -> str:
    """A snapshot prefix for this test's publisher and relay."""
    return f"test-browser-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def relay(redis_url: str, channel: str, prefix: str) -> Iterator[RelayProcess]:
    """A relay with catch-up, serving the page."""
    process = RelayProcess.cli(redis_url, channel, "--snapshot-prefix", prefix, "--no-sweep",
                               secret=SECRET)
    process.wait_subscribed()
    yield process
    process.stop()


def simulate(redis_url: str, channel: str, prefix: str, *, media: int, speed: float,
             seed: int) -> subprocess.Popen[str]:
    """`progress-sim run` for user-1 in its own process, events as NDJSON on stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", "from simulator.cli import main; main()", "--redis-url",
         redis_url, "--channel", channel, "run", "--users", "1", "--media", str(media),
         "--concurrency", str(media), "--speed", str(speed), "--seed", str(seed),
         "--fail-rate", "0.3", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PROGRESS_SNAPSHOT_PREFIX": prefix},
    )  # fmt: skip


def truth(ndjson: str) -> dict[str, Any]:
    """Each media's final state as the run's own subscriber saw it: status and rows."""
    panel: dict[str, MediaSnapshot] = {}
    for line in ndjson.splitlines():
        event = json.loads(line)
        panel[event["media_id"]] = apply_event(panel.get(event["media_id"]), event, 0.0)
    return {
        media_id: (snap.status, {name: (m.status, m.prediction, m.error)
                                 for name, m in snap.models.items()})
        for media_id, snap in panel.items()
    }  # fmt: skip


def shown(page: Any) -> dict[str, Any]:
    """What the page shows: each media's status and rows."""
    state = page.evaluate("window.progressPanel.state()")
    return {
        media_id: (m["status"], {name: (r["status"], r["prediction"], r["error"])
                                 for name, r in m["rows"].items()})
        for media_id, m in state.items()
    }  # fmt: skip


def open_page(browser: Any, relay: RelayProcess) -> Any:
    """user-1's page, connected."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{relay.url}/#token={sign_token(SECRET, USER)}")
    page.wait_for_selector(CONNECTED, timeout=15_000)
    return page


def test_a_run_ends_with_every_models_final_state_and_a_notice_per_media(  # noqa: PLR0917
    browser: Any, relay: RelayProcess, redis_url: str, channel: str, prefix: str,
    tmp_path: Path,
) -> None:
    """Watched from the start, the page ends with each model's final state as published,
    each media under Finished with its outcome, and a final notice per media."""
    page = open_page(browser, relay)
    run = simulate(redis_url, channel, prefix, media=2, speed=20, seed=3)
    out, _ = run.communicate(timeout=120)
    want = truth(out)
    assert len(want) == 2 and all(status != "running" for status, _ in want.values())
    wait_until(lambda: shown(page) == want, timeout=20, what="the page to show the run")
    assert page.locator("#finished .panel").count() == 2
    outcomes = page.locator("#finished .panel").evaluate_all(
        "els => els.map(e => e.dataset.status)")
    assert set(outcomes) <= {"completed", "partial", "failed"}
    assert page.locator(".toast").count() == 2
    assert page.errors == []
    page.screenshot(path=str(tmp_path / "finished.png"), full_page=True)
    page.close()


def test_a_reload_mid_run_restores_the_panel_from_snapshots(
    browser: Any, relay: RelayProcess, redis_url: str, channel: str, prefix: str,
) -> None:
    """Reloaded mid-run, the page shows the media's rows again at once (from
    progress_snapshot, before any new event), and still ends with the final state."""
    page = open_page(browser, relay)
    run = simulate(redis_url, channel, prefix, media=1, speed=2, seed=5)
    try:
        wait_until(lambda: any(
            any(r["progress"] for r in m["rows"].values())
            for m in page.evaluate("window.progressPanel.state()").values()
        ), timeout=30, what="progress on the page")
        before = shown(page)
        page.reload()
        page.wait_for_selector(CONNECTED, timeout=15_000)
        wait_until(lambda: page.evaluate("window.progressPanel.counters.snapshots") >= 1,
                   timeout=10, what="the snapshot")
        restored = shown(page)
        assert run.poll() is None, "the run ended before the reload: nothing to restore"
        assert set(restored) == set(before)
        for media_id, (_, rows) in before.items():
            assert set(rows) <= set(restored[media_id][1])  # every row is back
        assert page.locator("#active .panel .row").count() >= len(next(iter(before.values()))[1])
        out, _ = run.communicate(timeout=120)
        want = truth(out)
        wait_until(lambda: shown(page) == want, timeout=20, what="the page to show the end")
        assert page.errors == []
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        page.close()


def test_an_ended_session_says_so_and_comes_back_with_a_fresh_token(
    browser: Any, relay: RelayProcess, redis_url: str, channel: str
) -> None:
    """The page's token expires 15 s after it opened: the relay ends the session and the
    page says so instead of "reconnecting…"; a fresh token put in the URL's fragment
    connects it again, and live events show."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    # As long as the page may take to connect (the wait below): with 3 s, a page that
    # took longer on a loaded machine was refused as expired and never connected.
    expires = int(time.time()) + 15
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{relay.url}/#token={sign_token(SECRET, user, now=expires - 60, expires_in=60)}")
    page.wait_for_selector(CONNECTED, timeout=15_000)
    try:
        page.wait_for_selector('#connection[data-state="error"]', timeout=60_000)
        assert "session ended" in page.text_content("#connection")
        page.evaluate(f"location.hash = 'token={sign_token(SECRET, user)}'")
        page.wait_for_selector(CONNECTED, timeout=15_000)
        client = redis.Redis.from_url(redis_url)
        client.publish(channel, json.dumps({
            "media_id": "m-after", "user_id": user, "event": "PROCESSING_STARTED",
            "message": "started", "data": {"filename": "after.mp4"}}))
        client.close()
        wait_until(lambda: "m-after" in page.evaluate("window.progressPanel.state()"),
                   what="the page to show an event after reconnecting")
        assert errors == [] and relay.healthz()["ended"] == {"token_expired": 1}
    finally:
        page.close()


# -- what the page says (#21): queue order, ETA, counts, retries, quiet, no ids, layout ----

# The screenshots docs/panel-desktop.png and docs/panel-phone.png come from the layout test:
# PROGRESS_PANEL_SCREENSHOTS=docs python -m pytest tests/test_browser_panel.py -k layout
SCREENSHOTS = os.environ.get("PROGRESS_PANEL_SCREENSHOTS")
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def open_user_page(browser: Any, relay: RelayProcess, user: str,
                   viewport: dict[str, int] | None = None) -> Any:
    """``user``'s page, connected and caught up."""
    page = browser.new_page(viewport=viewport or VIEWPORTS["desktop"])
    # Notices stay (8 s by default): a busy machine's events must not outlast them.
    page.add_init_script("window.PROGRESS_PANEL_NOTICE_MS = 3600000")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{relay.url}/#token={sign_token(SECRET, user)}")
    page.wait_for_selector(CONNECTED, timeout=15_000)
    wait_until(lambda: page.evaluate("window.progressPanel.caughtUp"), what="caught_up")
    return page


class Feed:
    """A real publisher (with snapshots, as a worker's) sending one user's events."""

    def __init__(self, redis_url: str, channel: str, prefix: str, user: str) -> None:
        from progress_sdk import ProgressPublisher
        from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys

        self.user = user
        self.publisher = ProgressPublisher(
            redis_url, channel, snapshots=SnapshotConfig(SnapshotKeys(prefix)))

    def send(self, media_id: str, event: str, run_id: str = "run-1", **data: Any) -> None:
        """One event of ``media_id``, flushed (on the channel when this returns)."""
        self.publisher.emit({"media_id": media_id, "user_id": self.user, "event": event,
                             "message": event.lower(), "data": data, "run_id": run_id})
        assert self.publisher.flush(30)

    def close(self) -> None:
        """Close the publisher."""
        self.publisher.close()


def rows_of(page: Any, media_id: str) -> list[str]:
    """The model names of a media's rows, top to bottom as drawn."""
    return page.locator(f'.panel[data-media-id="{media_id}"] .row').evaluate_all(
        "els => els.map(e => e.dataset.model)")


def panel_text(page: Any, media_id: str) -> str:
    """Everything a user reads in a media's panel."""
    return page.locator(f'.panel[data-media-id="{media_id}"]').inner_text()


def test_rows_stay_in_queue_order_across_a_reload_with_eta_retry_and_counts(
    browser: Any, relay: RelayProcess, redis_url: str, channel: str, prefix: str,
) -> None:
    """Models queued ZETA, ALPHA, MID and reporting MID first: the rows read in queue order,
    before and after a reload (a snapshot lists them by last change); MID shows its ETA,
    ALPHA between attempts reads "retrying (2/3)" with the reason, not failed; the end
    reads "2 completed, 1 failed", and no internal id is in the panel's text."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    feed = Feed(redis_url, channel, prefix, user)
    page = open_user_page(browser, relay, user)
    media = f"media-{uuid.uuid4().hex[:8]}"
    try:
        feed.send(media, "PROCESSING_STARTED", filename="interview.mp4")
        for model in ("ZETA", "ALPHA", "MID"):
            feed.send(media, "ANALYSIS_QUEUED", model_name=model,
                      details={"attempt": 1, "attempts": 3})
        first = {"attempt": 1, "attempts": 3}
        feed.send(media, "ANALYSIS_STARTED", model_name="MID", details=first)
        feed.send(media, "FRAME_ANALYSIS_PROGRESS", model_name="MID", progress=10, total=100,
                  phase="frame_analysis", details={"eta_seconds": 125.0, "attempt": 1,
                                                   "attempts": 3})
        feed.send(media, "ANALYSIS_STARTED", model_name="ALPHA", details=first)
        feed.send(media, "ANALYSIS_QUEUED", model_name="ALPHA", details={
            "attempt": 2, "attempts": 3, "retry_reason": "CUDA out of memory"})
        wait_until(lambda: "retrying (2/3)" in panel_text(page, media), what="the retry")
        assert rows_of(page, media) == ["ZETA", "ALPHA", "MID"]
        text = panel_text(page, media)
        assert "about 2 min 05 s left" in text  # MID's row and the media's head
        alpha = page.locator(f'.panel[data-media-id="{media}"] .row[data-model="ALPHA"]')
        assert alpha.get_attribute("data-status") == "retrying"
        assert "CUDA out of memory" in alpha.inner_text() and "failed" not in alpha.inner_text()

        page.reload()
        page.wait_for_selector(CONNECTED, timeout=15_000)
        wait_until(lambda: rows_of(page, media) != [], what="the snapshot's rows")
        assert rows_of(page, media) == ["ZETA", "ALPHA", "MID"]
        assert page.evaluate(f"window.progressPanel.state()['{media}'].order") == [
            "ZETA", "ALPHA", "MID"]

        feed.send(media, "ANALYSIS_COMPLETED", model_name="MID", prediction="real",
                  confidence=0.9, details={"attempt": 1, "attempts": 3})
        feed.send(media, "ANALYSIS_COMPLETED", model_name="ZETA", prediction="real",
                  confidence=0.8, details={"attempt": 1, "attempts": 3})
        feed.send(media, "ANALYSIS_FAILED", model_name="ALPHA", error_message="no face found",
                  details={"attempt": 3, "attempts": 3})
        feed.send(media, "PROCESSING_COMPLETED")
        wait_until(lambda: page.locator(f'#finished .panel[data-media-id="{media}"]').count(),
                   what="the media under Finished")
        text = panel_text(page, media)
        assert "2 completed, 1 failed" in text and "3/3" not in text
        assert rows_of(page, media) == ["ZETA", "ALPHA", "MID"]
        shown_text = page.locator("body").inner_text()
        for internal in (media, "run-1", feed.publisher.source):
            assert internal not in shown_text
        assert page.errors == []
    finally:
        feed.close()
        page.close()


def test_a_silent_media_says_no_update_and_a_gone_worker_says_so(
    browser: Any, relay: RelayProcess, redis_url: str, prefix: str,
) -> None:
    """Snapshots of two running media last changed 40 s ago: the one whose worker still
    holds its liveness key reads "no update for N s" and no ETA (it would be frozen); the
    one whose worker is gone says the worker stopped. Neither names the worker."""
    from snapshot_oracle import fold_each

    from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys, SnapshotTracker

    user = f"u-{uuid.uuid4().hex[:8]}"
    keys = SnapshotKeys(prefix)
    client = redis.Redis.from_url(redis_url)
    client.set(keys.alive("worker-alive-1"), "1", ex=600)
    then = time.time() - 40
    for media, owner in (("m-quiet", "worker-alive-1"), ("m-gone", "worker-gone-1")):
        tracker = SnapshotTracker(SnapshotConfig(keys), channel="unused", owner=owner)
        base = {"media_id": media, "user_id": user, "source": owner, "run_id": "run-q"}
        fold_each(tracker, {**base, "event": "PROCESSING_STARTED", "seq": 1,
                            "data": {"filename": f"{media}.mp4"}}, then)
        fold_each(tracker, {**base, "event": "FRAME_ANALYSIS_PROGRESS", "seq": 2, "data": {
            "model_name": "SIGLIP", "progress": 5, "total": 10, "phase": "frame_analysis",
            "details": {"eta_seconds": 4.0}}}, then)
        pipe = client.pipeline(transaction=False)
        for command in tracker.take_commands():
            pipe.execute_command(*command)
        pipe.execute()
    page = open_user_page(browser, relay, user)
    try:
        wait_until(lambda: page.locator(".panel").count() == 2, what="both panels")
        quiet = page.locator('.panel[data-media-id="m-quiet"] .panel-time')
        assert quiet.get_attribute("data-kind") == "quiet"
        assert re.fullmatch(r"no update for \d+ s", quiet.inner_text())
        assert int(quiet.inner_text().split()[3]) >= 40
        assert "left" not in panel_text(page, "m-quiet")  # no frozen ETA
        gone = page.locator('.panel[data-media-id="m-gone"] .panel-time')
        assert gone.get_attribute("data-kind") == "gone"
        assert "worker stopped" in gone.inner_text()
        body = page.locator("body").inner_text()
        assert "worker-gone-1" not in body and "worker-alive-1" not in body
        assert "m-gone" not in body.replace("m-gone.mp4", "")
        assert page.errors == []
    finally:
        client.delete(keys.alive("worker-alive-1"))
        client.close()
        page.close()


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two bounding boxes share any area."""
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_layout_keeps_notices_off_the_panels(  # noqa: PLR0917
    browser: Any, relay: RelayProcess, redis_url: str, channel: str, prefix: str, size: str,
    tmp_path: Path,
) -> None:
    """At 1280x800 and 390x844, with notices on screen, no notice covers a panel or the
    header, at the top of the page and scrolled to its end; a screenshot of each."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    feed = Feed(redis_url, channel, prefix, user)
    page = open_user_page(browser, relay, user, VIEWPORTS[size])
    models = ("SIGLIP-LSTM-V4", "EFFNET-B7", "WAV2VEC2", "MELSPEC-CNN")
    try:
        for n, name in enumerate(("interview.mp4", "press-call.wav", "clip-0042.mp4")):
            media = f"m-layout-{n}"
            feed.send(media, "PROCESSING_STARTED", filename=name)
            for model in models:
                feed.send(media, "ANALYSIS_QUEUED", model_name=model)
            for k, model in enumerate(models):
                if n == 2 and k < 3:  # the last one keeps running
                    feed.send(media, "FRAME_ANALYSIS_PROGRESS", model_name=model,
                              progress=30 + 20 * k, total=120, phase="frame_analysis",
                              details={"eta_seconds": 40.0 - 10 * k})
                elif n == 2:
                    feed.send(media, "ANALYSIS_QUEUED", model_name=model, details={
                        "attempt": 2, "attempts": 3, "retry_reason": "CUDA out of memory"})
                elif n == 1 and k % 2 == 0:
                    feed.send(media, "ANALYSIS_FAILED", model_name=model,
                              error_message="no audio track")
                else:
                    feed.send(media, "ANALYSIS_COMPLETED", model_name=model, prediction="real",
                              confidence=0.91)
            if n < 2:
                feed.send(media, "PROCESSING_COMPLETED")
        wait_until(lambda: page.locator(".toast").count() == 2, what="two notices")
        wait_until(lambda: page.locator(".panel").count() == 3, what="three panels")
        page.wait_for_timeout(300)  # the bars' 0.2 s width transition, for the picture only
        for where in ("top", "end"):
            if where == "end":
                page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            content = page.locator(".panel, header").evaluate_all(
                "els => els.map(e => e.getBoundingClientRect().toJSON())")
            toasts = page.locator(".toast").evaluate_all(
                "els => els.map(e => e.getBoundingClientRect().toJSON())")
            assert toasts and content
            covered = [(t, c) for t in toasts for c in content if overlaps(t, c)]
            assert covered == [], f"{size}, {where}: a notice covers content"
        page.evaluate("window.scrollTo(0, 0)")
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORTS[size]["width"]
        page.screenshot(path=str(tmp_path / f"panel-{size}.png"))
        if SCREENSHOTS:
            page.screenshot(path=str(Path(SCREENSHOTS) / f"panel-{size}.png"))
        assert page.errors == []
    finally:
        feed.close()
        page.close()

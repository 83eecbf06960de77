"""The relay's page in headless Chromium (Debian's), against a real relay and real runs."""

from __future__ import annotations

import json
import os
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

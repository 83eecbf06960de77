"""Faults on the path to the screen, measured with real processes (issue #17).

    python benchmarks/ui_faults.py [--repeats 3] [--give-up 90] [--code DIR]

Two scenarios, each against a ``progress-sim relay`` process on its DEFAULT sweeper
settings (its own snapshot prefix and channel in the shared Redis at REDIS_URL):

- ``dead worker``: a worker process (a ``ProgressPublisher`` on its defaults) opens 10
  media, each with a model that reported progress, then ends with ``os._exit`` (as after
  SIGKILL or an OOM kill: nothing runs at exit). Reported: seconds from the worker's end
  until the channel carried ``PROCESSING_FAILED`` for all 10 (the relay's sweeper acts),
  per trial, then the median and the worst; "not within N s" when it gave up.
- ``silent live worker``: the issue's scenario, the relay with ``--stale-after 3`` and a
  worker whose model step is silent for 8 s before it reports again and completes.
  Reported: failures published for it (should be 0) and whether the stream passes
  ``validate --strict``.

``--code DIR`` runs the relay and the workers from another checkout (e.g. the commit
before liveness, for a baseline in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis

from progress_sdk import ProgressPublisher
from progress_sdk.contract import validate_lines

HERE = Path(__file__).resolve()
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "bench-secret-bench-secret-bench-secret"
MEDIA = 10


# -- the worker processes -------------------------------------------------------------------


def worker_dies(channel: str) -> None:
    """Open MEDIA media, say ready, wait for a line, then os._exit."""
    publisher = ProgressPublisher(REDIS_URL, channel)
    for n in range(MEDIA):
        run = publisher.media(f"dead-{n}", "bench-user", filename=f"{n}.mp4").start()
        run.model("A").start().progress(1, 10)
    publisher.flush(10)
    print("ready", flush=True)
    sys.stdin.readline()
    os._exit(1)


def worker_silent(channel: str, seconds: float) -> None:
    """One media whose step is silent for ``seconds``, then completes."""
    publisher = ProgressPublisher(REDIS_URL, channel)
    run = publisher.media("quiet", "bench-user", filename="quiet.mp4").start()
    model = run.model("A").start()
    model.progress(1, 10)
    publisher.flush(10)
    time.sleep(seconds)
    model.progress(10, 10)
    model.complete(prediction="REAL", confidence=0.9)
    run.finish()
    publisher.close()


# -- the parent -----------------------------------------------------------------------------


class Relay:
    """One ``progress-sim relay`` on a free port, default settings plus ``extra``."""

    def __init__(self, channel: str, env: dict[str, str], extra: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from simulator.cli import main; main()",
             "--redis-url", REDIS_URL, "--channel", channel, "relay", "--port", "0",
             "--log-level", "warning", *extra],
            stderr=subprocess.PIPE, text=True, env={**env, "JWT_SECRET": SECRET},
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "listening on " in line:
                self.url = line.split("listening on ")[1].split()[0]
                break
        while not self._healthz().get("redis_connected"):
            time.sleep(0.05)

    def _healthz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as response:
            body: dict[str, Any] = json.load(response)
            return body

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _env(code: Path) -> dict[str, str]:
    prefix = f"bench-faults-{uuid.uuid4().hex[:8]}:"
    return {**os.environ, "PYTHONPATH": str(code), "PROGRESS_SNAPSHOT_PREFIX": prefix}


def _spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(HERE), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def _failed(pubsub: Any, seen: set[str], deadline: float) -> None:
    while len(seen) < MEDIA and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message is not None and message["type"] == "message":
            event = json.loads(message["data"])
            if event.get("event") == "PROCESSING_FAILED":
                seen.add(event["media_id"])


def dead_worker_trial(code: Path, give_up: float) -> float | None:
    """Seconds from a worker's os._exit to all its media failed; None: gave up."""
    channel, env = f"bench-faults-{uuid.uuid4().hex}", _env(code)
    relay = Relay(channel, env, [])
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    try:
        worker = _spawn(env, "--worker-dies", channel)
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise SystemExit("the worker did not start")
        worker.communicate("go\n", timeout=30)
        ended = time.monotonic()
        seen: set[str] = set()
        _failed(pubsub, seen, ended + give_up)
        return time.monotonic() - ended if len(seen) == MEDIA else None
    finally:
        pubsub.close()
        relay.stop()


def silent_worker_trial(code: Path) -> tuple[int, bool]:
    """(failures published for a live worker silent 8 s with --stale-after 3, strictly
    valid stream)."""
    channel, env = f"bench-faults-{uuid.uuid4().hex}", _env(code)
    relay = Relay(channel, env, ["--stale-after", "3"])
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    lines: list[bytes] = []
    try:
        worker = _spawn(env, "--worker-silent", channel, "8")
        worker.communicate(timeout=120)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            b"PROCESSING_COMPLETED" in line for line in lines
        ):
            message = pubsub.get_message(timeout=0.05)
            if message is not None and message["type"] == "message":
                lines.append(message["data"])
        time.sleep(1)  # a failure published after the completion would show now
        while (message := pubsub.get_message(timeout=0.05)) is not None:
            if message["type"] == "message":
                lines.append(message["data"])
    finally:
        pubsub.close()
        relay.stop()
    failures = sum(json.loads(line)["event"].endswith("_FAILED") for line in lines)
    return failures, validate_lines(lines, strict=True).ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--give-up", type=float, default=90.0)
    parser.add_argument("--code", type=Path, default=HERE.parent.parent)
    parser.add_argument("--worker-dies", metavar="CHANNEL")
    parser.add_argument("--worker-silent", nargs=2, metavar=("CHANNEL", "SECONDS"))
    args = parser.parse_args()
    if args.worker_dies:
        worker_dies(args.worker_dies)
        return
    if args.worker_silent:
        worker_silent(args.worker_silent[0], float(args.worker_silent[1]))
        return
    code = args.code.resolve()
    print(f"code: {code}")
    times = [dead_worker_trial(code, args.give_up) for _ in range(args.repeats)]
    shown = [f"{t:.1f} s" if t is not None else f"not within {args.give_up:g} s" for t in times]
    print(f"dead worker, {MEDIA} media, relay defaults: all failed after {', '.join(shown)}")
    done = [t for t in times if t is not None]
    if len(done) == len(times):
        print(f"  median {statistics.median(done):.1f} s, worst {max(done):.1f} s")
    failures, valid = silent_worker_trial(code)
    print(f"silent live worker (8 s step, --stale-after 3): {failures} failure event(s), "
          f"validate --strict {'clean' if valid else 'NOT clean'}")


if __name__ == "__main__":
    main()

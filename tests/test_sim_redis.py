"""progress-sim against the real Redis: CliRunner for listen/record/replay, and real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from simulator.cli import cli

pytestmark = pytest.mark.redis

ML_SERVER_STREAM = [  # what the existing ML server sends: no envelope, ANALYSIS_COMPLETE
    {"media_id": "m1", "user_id": "u1", "event": "PROCESSING_STARTED", "message": "go",
     "data": {"filename": "a.mp4"}},
    {"media_id": "m1", "user_id": "u1", "event": "ANALYSIS_STARTED", "message": "s",
     "data": {"model_name": "SIGLIP-LSTM-V4"}},
    {"media_id": "m1", "user_id": "u1", "event": "ANALYSIS_COMPLETE", "message": "c",
     "data": {"model_name": "SIGLIP-LSTM-V4", "prediction": "REAL", "confidence": 0.8}},
    {"media_id": "m1", "user_id": "u1", "event": "PROCESSING_COMPLETED", "message": "done",
     "data": {}},
]


def invoke(url: str, channel: str, *args: str) -> Result:
    runner = CliRunner(env={"REDIS_URL": None, "MEDIA_PROGRESS_CHANNEL_NAME": None})
    return runner.invoke(cli, ["--redis-url", url, "--channel", channel, *args],
                         catch_exceptions=False)


def publish_when_subscribed(url: str, channel: str, events: list[Any]) -> threading.Thread:
    """Publish once someone subscribed to the channel (the command under test)."""

    def work() -> None:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while client.pubsub_numsub(channel)[0][1] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        for event in events:
            client.publish(channel, event if isinstance(event, bytes) else json.dumps(event))
        client.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_listen_accepts_other_producers_and_complete_alias(redis_url: str, channel: str) -> None:
    """listen reads envelope-less events with ANALYSIS_COMPLETE and finds no violation."""
    publish_when_subscribed(redis_url, channel, ML_SERVER_STREAM)
    result = invoke(redis_url, channel, "listen", "--json", "--count", "4", "--timeout", "10")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == ML_SERVER_STREAM
    assert "contract: OK" in result.stderr


def test_listen_counts_a_resent_batch_as_duplicates(redis_url: str, channel: str) -> None:
    """listen's summary shows exact repeats as duplicates dropped, not violations."""
    fixture = Path(__file__).parent / "fixtures" / "valid_video_multi_model.ndjson"
    lines = fixture.read_bytes().splitlines()
    publish_when_subscribed(redis_url, channel, [*lines[:7], *lines[2:7], *lines[7:]])
    result = invoke(redis_url, channel, "listen", "--count", "30", "--timeout", "10")
    assert result.exit_code == 0, result.stderr
    assert "contract: OK: 0 violations, 0 events lost, 5 duplicates dropped" in result.stderr


def test_listen_filters_by_user_and_media(redis_url: str, channel: str) -> None:
    """--user and --media keep only matching events."""
    other = [{**e, "user_id": "u2", "media_id": "m2"} for e in ML_SERVER_STREAM]
    publish_when_subscribed(redis_url, channel, [*other, *ML_SERVER_STREAM])
    result = invoke(redis_url, channel, "listen", "--json", "--user", "u1", "--media", "m1",
                    "--count", "4", "--timeout", "10")
    assert result.exit_code == 0, result.stderr
    assert {json.loads(line)["user_id"] for line in result.stdout.splitlines()} == {"u1"}
    assert "filtered out" in result.stderr


def test_listen_flags_violations_and_exits_1(redis_url: str, channel: str) -> None:
    """A broken stream is flagged as it arrives and makes listen exit 1."""
    broken = [ML_SERVER_STREAM[1], b"{not json"]
    publish_when_subscribed(redis_url, channel, broken)
    result = invoke(redis_url, channel, "listen", "--plain", "--count", "2", "--timeout", "10")
    assert result.exit_code == 1
    assert "VIOLATION" in result.stderr and "rule 1" in result.stderr
    assert "SIGLIP-LSTM-V4" in result.stdout


def test_listen_timeout_stops_quietly(redis_url: str, channel: str) -> None:
    """--timeout ends a listen that hears nothing, with exit 0."""
    result = invoke(redis_url, channel, "listen", "--timeout", "0.3")
    assert result.exit_code == 0
    assert "Received 0 events" in result.stderr


def test_record_then_replay_reproduces_events_in_order(
    redis_url: str, channel: str, tmp_path: Path, subscriber: Any
) -> None:
    """record captures the channel; replay publishes the same events in the same order."""
    path = tmp_path / "session.ndjson"
    source = f"{channel}-src"
    publish_when_subscribed(redis_url, source, [*ML_SERVER_STREAM, b"raw \xff bytes"])
    result = invoke(redis_url, source, "record", str(path), "--count", "5", "--timeout", "10")
    assert result.exit_code == 0, result.stderr
    assert "Recorded 5 events" in result.stderr
    result = invoke(redis_url, channel, "replay", str(path), "--speed", "0")
    assert result.exit_code == 0, result.stderr
    got = subscriber.settled()  # the replay returned: all it published, and no more
    assert [json.loads(m) for m in got[:4]] == ML_SERVER_STREAM
    assert got[4] == b"raw \xff bytes"


def test_run_against_real_redis(redis_url: str, channel: str) -> None:
    """run --redis-url publishes to the real server and its subscriber sees it all."""
    result = invoke(redis_url, channel, "run", "--speed", "0", "--seed", "8", "--media", "5",
                    "--crash-rate", "0.3", "-q")
    assert result.exit_code == 0, result.output
    assert "through Redis" in result.output and "contract:   OK" in result.output
    assert "never arrived" not in result.output


# -- real processes -----------------------------------------------------------------------


def start(url: str, channel: str, *args: str) -> subprocess.Popen[bytes]:
    """Start progress-sim in its own process; wait until it has subscribed."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from simulator.cli import main; main()",
         "--redis-url", url, "--channel", channel, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith((b"Listening", b"Recording")), line
    return proc


def sim(url: str, channel: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", "from simulator.cli import main; main()",
         "--redis-url", url, "--channel", channel, "run", "--speed", "0", "--json", *args],
        capture_output=True, timeout=60, check=False,
    )


def stop(proc: subprocess.Popen[bytes], ready: Any = None) -> tuple[bytes, bytes]:
    """Ctrl-C the process once ``ready()`` says it has caught up (pub/sub gives no ack)."""
    deadline = time.monotonic() + 10
    while ready is not None and not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    return out, err


def read_lines(proc: subprocess.Popen[bytes]) -> tuple[list[bytes], threading.Thread]:
    """Collect the process's stdout lines as they come, on a thread."""
    lines: list[bytes] = []

    def work() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip(b"\n"))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return lines, thread


def test_listener_process_sees_every_event_of_a_run_process(redis_url: str, channel: str) -> None:
    """A listen process sees exactly the events the run process's own subscriber saw."""
    listener = start(redis_url, channel, "listen", "--json")
    lines, reader = read_lines(listener)
    ran = sim(redis_url, channel, "--seed", "21", "--media", "6", "--concurrency", "3",
              "--fail-rate", "0.2", "--crash-rate", "0.2")
    expected = len(ran.stdout.splitlines())
    _, err = stop(listener, lambda: len(lines) >= expected)
    reader.join(5)
    out = b"\n".join(lines) + b"\n"
    assert ran.returncode == 0, ran.stderr.decode()
    published = ran.stdout.splitlines()
    assert len(published) > 50
    assert out.splitlines() == published
    assert listener.returncode == 0, err.decode()
    assert b"contract: OK" in err


def test_recorder_process_and_replay_reproduce_the_run(
    redis_url: str, channel: str, tmp_path: Path, subscriber: Any
) -> None:
    """record in one process, run in another; replaying the file gives the same events."""
    path = tmp_path / "run.ndjson"
    source = f"{channel}-live"
    recorder = start(redis_url, source, "record", str(path))
    ran = sim(redis_url, source, "--seed", "22", "--media", "4")
    assert ran.returncode == 0, ran.stderr.decode()
    published = [json.loads(line) for line in ran.stdout.splitlines()]
    # One header line, then one line per event, each flushed as it is written.
    _, err = stop(recorder, lambda: len(path.read_text().splitlines()) > len(published))
    assert f"Recorded {len(published)} events".encode() in err
    result = invoke(redis_url, channel, "replay", str(path), "--speed", "0", "--keep-timestamps")
    assert result.exit_code == 0, result.stderr
    replayed = [json.loads(m) for m in subscriber.settled()]
    assert replayed == published


# -- a server with a password ------------------------------------------------------------

# "zq" and "wxv" cannot occur in the hex of the random channel name the output also holds.
PASSWORD = "pa/ss#wo?rd-zqwxv"
ENCODED = "pa%2Fss%23wo%3Frd-zqwxv"


@pytest.fixture(scope="module")
def password_server() -> Any:
    """An own redis-server with requirepass on a free loopback port; yields its port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=PASSWORD)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("own redis-server with a password did not start")
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    "url_form",
    [
        "redis://:{enc}@127.0.0.1:{port}/0",
        "redis://default:{enc}@127.0.0.1:{port}/0",
        "redis://127.0.0.1:{port}/0?password={enc}",
    ],
    ids=["password", "user-password", "query"],
)
@pytest.mark.parametrize("command", [["listen", "--plain"], ["record", "-"]])
def test_listen_and_record_banners_mask_every_password_form(
    password_server: int, channel: str, url_form: str, command: list[str]
) -> None:
    """The banner names the server with the password as ***, in each URL form redis-py reads."""
    url = url_form.format(enc=ENCODED, port=password_server)
    result = invoke(url, channel, *command, "--timeout", "0.5")
    assert result.exit_code == 0, result.output
    assert f"127.0.0.1:{password_server}" in result.stderr and "***" in result.stderr
    for secret in (PASSWORD, ENCODED, "ss#wo", "wo?rd", "zqwxv"):
        assert secret not in result.output

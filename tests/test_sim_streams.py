"""One stream format: validate and replay read plain event NDJSON and record files alike.

Issue #9, finding 3: a round trip through every pair of commands that write and read
streams (run --json, listen --json, record → validate, replay), and the pieces alone.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from click.testing import CliRunner, Result

from simulator.cli import cli
from simulator.recording import at_rate, read_stream, replay
from simulator.streams import PLAIN, RECORDING, detect_format, event_lines

FIXTURES = Path(__file__).parent / "fixtures"


def invoke(*args: str, url: str | None = None, channel: str | None = None) -> Result:
    runner = CliRunner(env={"REDIS_URL": None, "MEDIA_PROGRESS_CHANNEL_NAME": None})
    prefix = [*(["--redis-url", url] if url else []), *(["--channel", channel] if channel else [])]
    return runner.invoke(cli, [*prefix, *args], catch_exceptions=False)


def as_recording(events: list[bytes]) -> str:
    """A record file holding ``events``, as `record` writes it."""
    header = {"progress_sim_recording": 1, "channel": "c", "started": "2026-11-26T05:00:00Z"}
    lines = [json.dumps(header)]
    for i, raw in enumerate(events):
        lines.append(json.dumps({"t": i * 0.01, "channel": "c", "event": json.loads(raw)}))
    return "\n".join(lines) + "\n"


# -- detection and validate ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ('{"progress_sim_recording": 1, "channel": "c"}', RECORDING),
        ('{"t": 0.1, "channel": "c", "event": {"media_id": "m"}}', RECORDING),
        ('{"t": 0.1, "raw": "not json"}', RECORDING),
        ('{"media_id": "m", "event": "PROCESSING_STARTED", "data": {}}', PLAIN),
        ("not json at all", PLAIN),
    ],
)
def test_format_is_detected_from_the_first_line(line, kind):
    """A header, or t with event/raw, is a recording; anything else is plain events."""
    assert detect_format(line) == kind


@pytest.mark.parametrize(
    "fixture", ["valid_video_multi_model.ndjson", "invalid_rule3_progress_decreases.ndjson"]
)
def test_validate_gives_a_record_file_the_verdict_of_its_events(tmp_path, fixture):
    """A recording of a stream validates like the stream, findings one line further down."""
    plain = (FIXTURES / fixture).read_bytes()
    recording = tmp_path / "session.ndjson"
    recording.write_text(as_recording([line for line in plain.splitlines() if line.strip()]))
    direct = invoke("validate", "--json", str(FIXTURES / fixture))
    recorded = invoke("validate", "--json", str(recording))
    assert recorded.exit_code == direct.exit_code
    a, b = json.loads(direct.stdout), json.loads(recorded.stdout)
    assert b["events"] == a["events"] and b["counts"] == a["counts"]
    assert [v["position"] for v in b["violations"]] == [v["position"] + 1 for v in a["violations"]]


def test_event_lines_keep_line_numbers_and_pass_plain_streams_through():
    """Plain lines are untouched; a recording's header becomes a blank line."""
    plain = [b'{"event": "X"}', b"", b"junk"]
    assert list(event_lines(plain)) == plain
    recorded = [b'{"progress_sim_recording": 1}', b'{"t": 0, "event": {"a": 1}}', b"junk"]
    assert list(event_lines(recorded)) == [b"", b'{"a":1}', b"junk"]


# -- replay of plain events ----------------------------------------------------------------


def stamped(seconds: float, **fields: Any) -> str:
    at = datetime.fromtimestamp(1_800_000_000 + seconds, tz=timezone.utc)
    return json.dumps({"timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **fields})


def test_plain_events_are_timed_by_their_timestamps():
    """t is seconds from the first timestamp; missing or earlier ones keep the time before."""
    text = "\n".join(
        [stamped(0, n=1), stamped(1.5, n=2), json.dumps({"n": 3}), stamped(1.0, n=4),
         stamped(3, n=5), "not json"]
    )
    entries = list(read_stream(io.StringIO(text)))
    assert [e.t for e in entries] == [0.0, 1.5, 1.5, 1.5, 3.0, 3.0]
    assert entries[-1].payload == b"not json"
    assert [e.t for e in at_rate(entries, 4)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


def test_replay_restamps_timestamps_unless_asked_to_keep_them():
    """Replayed events carry the time they were published, so latency means something."""
    client = fakeredis.FakeRedis()
    pubsub = client.pubsub()
    pubsub.subscribe("c")
    pubsub.get_message(timeout=1)
    entries = list(read_stream(io.StringIO(stamped(0, n=1) + "\n" + json.dumps({"n": 2}))))
    before = time.time()
    assert replay(client, "c", entries, speed=0) == 2
    assert replay(client, "c", entries, speed=0, restamp=False) == 2
    got = [json.loads(m["data"]) for m in iter(lambda: pubsub.get_message(timeout=0.2), None)
           if m["type"] == "message"]
    fresh = datetime.fromisoformat(got[0]["timestamp"].replace("Z", "+00:00")).timestamp()
    assert fresh >= before - 1
    assert got[1] == {"n": 2}  # no timestamp: left as it was
    assert got[2] == json.loads(entries[0].payload)


def test_replay_of_an_empty_file_is_an_error(tmp_path):
    """Nothing to publish: one error line, exit 2."""
    path = tmp_path / "empty.ndjson"
    path.write_text("\n\n")
    result = invoke("replay", str(path), url="redis://127.0.0.1:1/0")
    assert result.exit_code == 2
    assert result.stderr.startswith("error:") and "no events" in result.stderr


# -- every pair of commands, through the real Redis ----------------------------------------


def start(url: str, channel: str, *args: str) -> subprocess.Popen[bytes]:
    """progress-sim in its own process, returned once it has subscribed."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from simulator.cli import main; main()",
         "--redis-url", url, "--channel", channel, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith((b"Listening", b"Recording")), line
    return proc


def without_timestamps(lines: list[bytes]) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in lines if line.strip()]
    for event in events:
        event.pop("timestamp", None)
    return events


@pytest.mark.redis
@pytest.mark.slow
def test_every_pair_of_stream_commands_round_trips(redis_url, channel, tmp_path):
    """run --json → validate, → replay → record → validate, → replay → listen --json →
    validate, → replay --rate → record: same events all the way, fresh timestamps."""
    # run --json writes plain events, and validate takes them.
    ran = invoke("run", "--speed", "0", "--seed", "5", "--media", "2", "--models", "video",
                 "--json")
    assert ran.exit_code == 0, ran.stderr
    plain = tmp_path / "run.ndjson"
    plain.write_text(ran.stdout)
    events = [line.encode() for line in ran.stdout.splitlines()]
    count = str(len(events))
    assert invoke("validate", "--strict", str(plain)).exit_code == 0

    # replay takes plain events; record captures them; validate takes the record file.
    recorder = start(redis_url, channel, "record", str(tmp_path / "rec.ndjson"), "--count", count,
                     "--timeout", "30")
    replayed = invoke("replay", str(plain), "--speed", "0", url=redis_url, channel=channel)
    assert replayed.exit_code == 0, replayed.stderr
    recorder.communicate(timeout=30)
    assert recorder.returncode == 0
    checked = invoke("validate", "--strict", "--json", str(tmp_path / "rec.ndjson"))
    assert checked.exit_code == 0, checked.stdout
    assert json.loads(checked.stdout)["events"] == len(events)

    # replay takes the record file; listen --json writes plain events again.
    listener = start(redis_url, channel, "listen", "--json", "--count", count, "--timeout", "30")
    replayed = invoke("replay", str(tmp_path / "rec.ndjson"), "--speed", "0", url=redis_url,
                      channel=channel)
    assert replayed.exit_code == 0, replayed.stderr
    out, err = listener.communicate(timeout=30)
    assert listener.returncode == 0, err.decode()
    assert without_timestamps(out.splitlines()) == without_timestamps(events)
    # Re-stamped: latency is the replay's, not the age of the recording (seconds, not days).
    p99 = float(err.decode().split("p99 ")[1].split(" ms")[0])
    assert p99 < 10_000, err.decode()
    (tmp_path / "listened.ndjson").write_bytes(out)
    assert invoke("validate", "--strict", str(tmp_path / "listened.ndjson")).exit_code == 0

    # replay --rate takes listen's output, evenly paced.
    recorder = start(redis_url, channel, "record", str(tmp_path / "rec2.ndjson"), "--count",
                     count, "--timeout", "30")
    replayed = invoke("replay", str(tmp_path / "listened.ndjson"), "--rate", "5000",
                      url=redis_url, channel=channel)
    assert replayed.exit_code == 0, replayed.stderr
    recorder.communicate(timeout=30)
    assert recorder.returncode == 0
    again = [json.loads(line)["event"] for line in
             (tmp_path / "rec2.ndjson").read_text().splitlines()[1:]]
    assert [{k: v for k, v in e.items() if k != "timestamp"} for e in again] == (
        without_timestamps(events)
    )


def test_a_recorded_event_near_the_size_limit_validates(tmp_path):
    """A recording escapes non-ASCII text, so its line is longer than the event: still valid."""
    text = "é" * 20_000  # 40,000 bytes of UTF-8, 120,000 once escaped as \u00e9
    events = [
        {"media_id": "m1", "user_id": "u1", "event": "PROCESSING_STARTED", "message": "go",
         "data": {"details": {"notes": text}}},
        {"media_id": "m1", "user_id": "u1", "event": "PROCESSING_FAILED", "message": "x",
         "data": {"error_message": "x"}},
    ]
    path = tmp_path / "big.ndjson"
    path.write_text(as_recording([json.dumps(e).encode() for e in events]))
    assert len(path.read_bytes().splitlines()[1]) > 64 * 1024
    result = invoke("validate", "--json", str(path))
    assert result.exit_code == 0, result.stdout
    too_big = tmp_path / "too-big.ndjson"
    too_big.write_text(json.dumps({**events[0], "data": {"details": {"n": "x" * 70_000}}}) + "\n")
    result = invoke("validate", "--json", str(too_big))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["violations"][0]["check"] == "max_size"

"""`progress-sim validate`: exit status, text and JSON reports, stdin, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import cli

FIXTURES = Path(__file__).parent / "fixtures"


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["validate", *args], input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def test_valid_stream_exits_zero_with_a_verdict() -> None:
    """A valid stream prints VALID and the event counts, and exits 0."""
    code, out, _ = run("--strict", str(FIXTURES / "valid_video_multi_model.ndjson"))
    assert code == 0
    assert out.startswith("VALID: 25 events checked (strict mode)")
    assert "FRAME_ANALYSIS_PROGRESS 10" in out


def test_violations_exit_one_naming_rule_and_line() -> None:
    """A stream breaking a rule exits 1, each finding naming the rule, line and ids."""
    code, out, _ = run(str(FIXTURES / "invalid_rule2_progress_before_started.ndjson"))
    assert code == 1
    assert out.startswith("INVALID")
    assert "line 2: rule 2 [media c41d9e77, run run-0001, model EYEBLINK-CNN-LSTM-V1]" in out


def test_json_report_is_machine_readable() -> None:
    """--json prints the report as one JSON document with the same verdict."""
    code, out, _ = run("--json", str(FIXTURES / "invalid_rule5_completed_without_success.ndjson"))
    report = json.loads(out)
    assert code == 1
    assert report["ok"] is False
    assert report["violations_by_rule"] == {"rule 5": 1}
    assert report["violations"][0]["position"] == 8


def test_strict_requires_the_envelope() -> None:
    """Another producer's stream passes leniently and fails with --strict."""
    path = str(FIXTURES / "valid_legacy_producer.ndjson")
    assert run(path)[0] == 0
    code, out, _ = run("--strict", path)
    assert code == 1
    assert "event field seq (required)" in out


def test_incomplete_runs_fail_unless_allowed() -> None:
    """A crashed job's run fails validation unless --allow-incomplete is given."""
    path = str(FIXTURES / "incomplete_crashed_job.ndjson")
    code, out, _ = run(path)
    assert code == 1
    assert "1 incomplete run" in out
    code, out, _ = run("--allow-incomplete", path)
    assert code == 0
    assert out.startswith("VALID")


def test_lost_events_are_reported_but_do_not_fail() -> None:
    """A seq gap is shown as lost events and the stream still validates."""
    code, out, _ = run("--strict", str(FIXTURES / "lost_events.ndjson"))
    assert code == 0
    assert "3 events lost in 1 seq gap" in out


def resent_batch(tmp_path: Path) -> tuple[str, bytes]:
    """A valid stream with lines 3-7 sent again byte for byte (a resend after a reset)."""
    lines = (FIXTURES / "valid_video_multi_model.ndjson").read_bytes().splitlines()
    changed = [*lines[:7], *lines[2:7], *lines[7:]]
    path = tmp_path / "resent.ndjson"
    path.write_bytes(b"\n".join(changed) + b"\n")
    return str(path), lines[6]


def test_a_resent_batch_is_valid_and_its_duplicates_are_counted(tmp_path: Path) -> None:
    """Exact repeats exit 0 with their count in the text and the JSON report."""
    path, _ = resent_batch(tmp_path)
    code, out, _ = run("--strict", path)
    assert code == 0
    assert out.startswith("VALID: 30 events checked (strict mode)")
    assert "\n5 duplicates dropped (exact repeats of an event already seen" in out
    code, out, _ = run("--strict", "--json", path)
    assert code == 0
    assert json.loads(out)["duplicates"] == 5


def test_a_changed_event_with_a_repeated_seq_fails(tmp_path: Path) -> None:
    """An event that reuses a seq with other content is a rule-6 violation, not a duplicate."""
    path, original = resent_batch(tmp_path)
    text = Path(path).read_bytes()
    event = json.loads(original)
    event["message"] += " (changed)"
    head, _, tail = text.rpartition(original)  # the second copy of line 7 (progress)
    Path(path).write_bytes(head + json.dumps(event).encode() + tail)
    code, out, _ = run("--strict", "--json", path)
    report = json.loads(out)
    assert code == 1
    assert report["violations_by_rule"] == {"rule 6": 1}
    assert report["violations"][0]["position"] == 12
    assert report["duplicates"] == 4


def test_reads_stdin_with_a_dash() -> None:
    """`-` reads the stream from standard input."""
    data = (FIXTURES / "valid_partly_failed.ndjson").read_bytes()
    code, out, _ = run("-", stdin=data)
    assert code == 0
    assert out.startswith("VALID: 11 events")


def test_missing_file_exits_two() -> None:
    """A file that cannot be read exits 2 with one line saying why."""
    code, _, err = run("/nonexistent/events.ndjson")
    assert code == 2
    assert "cannot read /nonexistent/events.ndjson" in err


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"])
def test_input_without_events_exits_two(content: bytes, tmp_path: Path) -> None:
    """An empty input (or only blank lines) exits 2: there was nothing to validate."""
    path = tmp_path / "empty.ndjson"
    path.write_bytes(content)
    code, out, err = run(str(path))
    assert code == 2
    assert "holds no events" in err
    assert "VALID" not in out  # no verdict over nothing


def test_garbage_input_gives_line_numbered_findings(tmp_path: Path) -> None:
    """Binary junk, a huge line and JSON that is not an object each get their line number."""
    path = tmp_path / "junk.ndjson"
    lines = [b"\x00\xff\xfe binary", b"[1, 2]", b"7", b'"x" ' * 3_000_000, b"{", b"\xc3\x28"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, out, _ = run(str(path))
    assert code == 1
    for number in range(1, 7):
        assert f"\n  line {number}: " in out
    assert "event field $ (max_size)" in out


def test_validate_does_not_import_pydantic_redis_or_rich(tmp_path: Path) -> None:
    """`validate` starts without the publisher's and panel's imports (a fifth of a second)."""
    code = (
        "import sys\n"
        "from simulator.cli import cli\n"
        "try:\n"
        f"    cli(['validate', '--strict', {str(FIXTURES / 'valid_video_multi_model.ndjson')!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in ('pydantic', 'redis', 'rich', 'progress_sdk.publisher',\n"
        "               'progress_sdk.events', 'simulator.commands') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().endswith("heavy: []"), result.stdout + result.stderr


def test_lazily_loaded_commands_are_listed_and_run() -> None:
    """The simulator's commands, loaded on first use, are still listed and runnable."""
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("listen", "record", "replay", "run", "schema", "validate"):
        assert f"  {name} " in result.stdout
    result = CliRunner().invoke(cli, ["replay", "--help"])
    assert result.exit_code == 0
    assert "Usage: cli replay [OPTIONS] FILE" in result.stdout


def test_lazy_package_attributes_resolve() -> None:
    """`progress_sdk` loads its pydantic models and publisher on first attribute access."""
    import progress_sdk
    from progress_sdk.events import ProgressEvent
    from progress_sdk.publisher import ProgressPublisher

    assert progress_sdk.ProgressEvent is ProgressEvent
    assert progress_sdk.ProgressPublisher is ProgressPublisher
    assert set(progress_sdk.__all__) <= set(dir(progress_sdk))
    with pytest.raises(AttributeError):
        progress_sdk.NoSuchName  # noqa: B018

"""CliRunner tests for progress-sim run, listen, record and replay (embedded Redis or none)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from simulator.cli import cli

UNREACHABLE = "redis://127.0.0.1:1/0"


def invoke(*args: str) -> Result:
    # REDIS_URL unset: `run` uses its embedded Redis, as for a first-time user.
    runner = CliRunner(env={"REDIS_URL": None, "MEDIA_PROGRESS_CHANNEL_NAME": None})
    return runner.invoke(cli, list(args), catch_exceptions=False)


def events_of(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_run_without_options_works_on_embedded_redis() -> None:
    """`run` needs no server: it simulates, prints plain lines and an OK summary."""
    result = invoke("run", "--speed", "0", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "embedded in-process Redis" in result.output
    assert "PROCESSING_STARTED" in result.output
    assert "FRAME_ANALYSIS_PROGRESS " not in result.output.split("Simulated")[0]
    assert "contract:   OK" in result.output
    assert "latency p50" in result.output


def test_run_json_writes_ndjson_events_and_summary_to_stderr() -> None:
    """--json writes one event per stdout line; the summary goes to stderr."""
    result = invoke("run", "--speed", "0", "--seed", "2", "--media", "2", "--json")
    assert result.exit_code == 0, result.stderr
    events = events_of(result)
    assert len(events) == len(result.stdout.splitlines())
    assert [e["event"] for e in events].count("PROCESSING_STARTED") == 2
    assert all(e["schema_version"] == 1 for e in events)
    assert "contract:   OK" in result.stderr


def test_same_seed_same_lifecycle_events() -> None:
    """With one seed two runs publish the same lifecycle events in the same order."""

    def lifecycle(seed: str) -> list[tuple[object, ...]]:
        result = invoke("run", "--speed", "0", "--seed", seed, "--media", "4",
                        "--concurrency", "2", "--fail-rate", "0.3", "--json")
        return [
            (e["media_id"], e["event"], json.dumps(e["data"], sort_keys=True))
            for e in events_of(result)
            if not str(e["event"]).endswith("_PROGRESS")
        ]

    assert lifecycle("5") == lifecycle("5")
    assert lifecycle("5") != lifecycle("6")


def test_models_users_and_concurrency_options() -> None:
    """--models picks models, --users spreads user ids, --concurrency is accepted."""
    result = invoke("run", "--speed", "0", "--seed", "3", "--media", "8", "--users", "2",
                    "--concurrency", "4", "--models", "MFF-MOE-V1,distil-dire-v1", "--json")
    assert result.exit_code == 0, result.stderr
    events = events_of(result)
    models = {e["data"].get("model_name") for e in events} - {None}  # type: ignore[union-attr]
    assert models == {"MFF-MOE-V1", "DISTIL-DIRE-V1"}
    assert {e["user_id"] for e in events} <= {"user-1", "user-2"}


def test_fail_rate_gives_failed_models_with_errors() -> None:
    """--fail-rate 1 fails every model with an error message; every media then fails."""
    result = invoke("run", "--speed", "0", "--seed", "4", "--media", "2", "--fail-rate", "1",
                    "--json")
    assert result.exit_code == 0, result.stderr
    events = events_of(result)
    failed = [e for e in events if e["event"] == "ANALYSIS_FAILED"]
    assert failed and all(e["data"]["error_message"] for e in failed)  # type: ignore[index]
    assert not [e for e in events if e["event"] == "ANALYSIS_COMPLETED"]


def test_crashed_media_are_reported_as_intended_incomplete_runs() -> None:
    """--crash-rate 1: every media is incomplete, as intended, and the run still passes."""
    result = invoke("run", "--speed", "0", "--seed", "5", "--media", "3", "--crash-rate", "1")
    assert result.exit_code == 0, result.output
    assert "3 crashed" in result.output
    assert "3 incomplete runs (3 crashed on purpose)" in result.output


def test_duration_bounds_the_run() -> None:
    """--duration without --media runs media until the time is up."""
    result = invoke("run", "--speed", "20", "--seed", "6", "--duration", "0.3",
                    "--models", "image", "--concurrency", "1", "-q")
    assert result.exit_code == 0, result.output
    assert "Simulated" in result.output and "contract:   OK" in result.output


def test_min_progress_interval_is_passed_to_the_publisher() -> None:
    """--min-progress-interval 0 lets more progress through than a long interval."""

    def published(interval: str) -> int:
        result = invoke("run", "--speed", "10", "--seed", "7", "--media", "1", "--models",
                        "MFF-MOE-V1", "--min-progress-interval", interval, "--json")
        return len(events_of(result))

    assert published("0") > published("5")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--media", "0"], "--media"),
        (["--media", "-3"], "--media"),
        (["--fail-rate", "1.5"], "--fail-rate"),
        (["--fail-rate", "-0.1"], "--fail-rate"),
        (["--crash-rate", "2"], "--crash-rate"),
        (["--speed", "-1"], "--speed"),
        (["--users", "0"], "--users"),
        (["--concurrency", "0"], "--concurrency"),
        (["--duration", "0"], "--duration"),
    ],
)
def test_bad_numbers_are_usage_errors(args: list[str], words: str) -> None:
    """Out-of-range options are click usage errors (exit 2) naming the option."""
    result = invoke("run", *args)
    assert result.exit_code == 2
    assert words in result.stderr


def test_unknown_model_lists_valid_names() -> None:
    """An unknown model is a usage error listing presets and models."""
    result = invoke("run", "--models", "video,GPT-5")
    assert result.exit_code == 2
    assert "'GPT-5'" in result.stderr
    assert "SIGLIP-LSTM-V4" in result.stderr and "image" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["listen", "--timeout", "1"],
        ["record", "-", "--timeout", "1"],
    ],
)
def test_unreachable_redis_is_one_line_and_exit_2(args: list[str]) -> None:
    """With an unreachable --redis-url each command says so in one line, no traceback."""
    result = invoke("--redis-url", UNREACHABLE, *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Redis")
    assert "Traceback" not in result.output


def test_replay_unreachable_redis(tmp_path: Path) -> None:
    """replay of a good file to an unreachable Redis fails in one line."""
    path = tmp_path / "r.ndjson"
    path.write_text('{"t": 0, "event": {"a": 1}}\n')
    result = invoke("--redis-url", UNREACHABLE, "replay", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: cannot reach Redis")


def test_replay_malformed_file_names_the_line(tmp_path: Path) -> None:
    """A malformed recording is refused with its line number before publishing."""
    path = tmp_path / "bad.ndjson"
    path.write_text('{"t": 0, "event": {}}\n{"t": 1, "event": {}}\nnot json\n')
    result = invoke("--redis-url", UNREACHABLE, "replay", str(path))
    assert result.exit_code == 2
    assert f"{path}: line 3: not a JSON document" in result.stderr


def test_replay_missing_file() -> None:
    """A missing recording is a one-line error."""
    result = invoke("replay", "/nonexistent/rec.ndjson")
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_help_lists_every_command() -> None:
    """run, listen, record, replay, sweep, validate and schema are all in one CLI."""
    result = invoke("--help")
    for name in ("run", "listen", "record", "replay", "sweep", "validate", "schema"):
        assert f"  {name}" in result.output


URL_COMMANDS = [["run", "-q"], ["listen", "--timeout", "1"], ["record", "-", "--timeout", "1"],
                ["replay", "-"], ["sweep", "--once"]]
BAD_URLS = [
    ("http://user:hunter2@example.invalid/0", "must start with redis://"),
    ("redis://:hunter2@127.0.0.1:notaport/0", "port is not a number"),
    ("not a url hunter2", "must start with redis://"),
    ("redis://:hun/ter#2?x@127.0.0.1:6379/0", "unencoded"),
    ("redis://127.0.0.1:6379/0?password=hun#ter2", "unencoded '#'"),
]


@pytest.mark.parametrize("command", URL_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(("url", "why"), BAD_URLS)
def test_a_bad_url_is_one_error_line_from_every_command(command: list[str], url: str, why: str):
    """Any unusable --redis-url: one `error:` line, exit 2, no traceback, password masked."""
    result = invoke("--redis-url", url, *command)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --redis-url: unusable Redis URL")
    assert why in result.stderr
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert "ter2" not in result.output
    assert result.stderr.count("\n") == 1


def test_validate_ignores_a_redis_url_it_does_not_use(tmp_path: Path):
    """validate never connects: a bad REDIS_URL meant for other tools does not stop it."""
    file = tmp_path / "events.ndjson"
    file.write_text(Path("tests/fixtures/valid_audio_phases.ndjson").read_text())
    result = invoke("--redis-url", "http://example.invalid", "validate", str(file))
    assert result.exit_code == 0, result.output


def test_start_banner_names_a_command_that_exists() -> None:
    """The banner's hint for a real server puts --redis-url before `run`, where it works."""
    result = invoke("run", "--speed", "0", "--seed", "1", "--media", "1", "--models", "image")
    assert "`progress-sim --redis-url URL run`" in result.output
    assert " run --redis-url" not in result.output


def test_console_script_without_the_sim_extra_says_what_to_install() -> None:
    """Without click, progress-sim prints one error line and exits 2, no traceback."""
    import subprocess
    import sys

    code = "import sys; sys.modules['click'] = None; from simulator.console import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30,
                          check=False)
    assert proc.returncode == 2
    assert proc.stderr.decode() == (
        "error: progress-sim needs the simulator's dependencies (click missing): "
        "pip install 'progress-sdk[sim]'\n"
    )


BAD_USAGE = [
    (["run", "--bogus"], "--bogus' (see 'progress-sim run --help')"),
    (["run", "--media", "x"], "Invalid value for '--media'"),
    (["run", "--via", "carrier-pigeon"], "Invalid value for '--via'"),
    (["--shards", "0", "run"], "Invalid value for '--shards'"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["validate"], "Missing argument 'FILE'"),
    (["replay", "a", "b"], "Got unexpected extra argument (b)"),
    (["relay", "--port", "99999"], "Invalid value for '--port'"),
    (["e2e"], "Missing option '--relay-url'"),
    (["worker", "--queue"], "Option '--queue' requires an argument"),
]


@pytest.mark.parametrize(("args", "words"), BAD_USAGE, ids=[" ".join(a) for a, _ in BAD_USAGE])
def test_bad_options_and_values_are_one_error_line_with_exit_2(
    args: list[str], words: str
) -> None:
    """click's usage errors read as every other error: one `error:` line, exit 2."""
    result = CliRunner().invoke(cli, args, prog_name="progress-sim")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert words in lines[0]


def test_a_bad_option_is_one_line_from_the_console_script_too() -> None:
    """The installed command (a real process) prints the same single line."""
    import subprocess
    import sys

    for args, words in BAD_USAGE[:3]:
        result = subprocess.run(
            [sys.executable, "-c", "from simulator.console import main; main()", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert words in result.stderr and "Traceback" not in result.stderr


def test_help_version_and_a_bare_call_still_exit_0() -> None:
    """--help, --version and no command at all print what they did before, exit 0."""
    for args in (["--help"], ["--version"], [], ["run", "--help"]):
        result = CliRunner().invoke(cli, args, prog_name="progress-sim")
        assert result.exit_code == 0, (args, result.output)
        assert result.stderr == ""
        assert result.stdout.startswith(("Usage: progress-sim", "progress-sim, version"))


def test_plain_output_names_the_model_on_every_model_level_line() -> None:
    """`run --plain` (and `listen`): each model event's line carries its model's name,
    ANALYSIS_FAILED included, whose message is replaced by its error text."""
    result = invoke("run", "--speed", "0", "--seed", "7", "--media", "6", "--fail-rate",
                    "0.5", "--plain")
    assert result.exit_code == 0, result.output
    from simulator.catalog import CATALOG

    lines = [line.split(maxsplit=3) for line in result.stdout.splitlines()]
    model_lines = [words for words in lines if len(words) == 4 and words[0].startswith("user-")
                   and not words[2].startswith("PROCESSING_")]
    assert any(words[2] == "ANALYSIS_FAILED" for words in model_lines), result.stdout
    for words in model_lines:
        assert any(name in words[3] for name in CATALOG), " ".join(words)

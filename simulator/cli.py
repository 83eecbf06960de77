"""The ``progress-sim`` command line: a thin layer over progress_sdk and simulator code."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import click

from progress_sdk import __version__
from progress_sdk import defaults as d
from progress_sdk.contract import read_lines, validate_lines
from progress_sdk.exceptions import ConfigurationError

from .cli_context import CliContext, fail
from .streams import MAX_LINE_BYTES, event_lines

# The simulator's commands live in simulator.commands, which imports redis, rich and the
# publisher. They are loaded when one of them is run or listed, so `validate` (and
# `schema`) start without those imports: a third of a second, about 5% of validating a
# million events (docs/benchmarks.md).
_SIMULATOR_COMMANDS = {
    "run": ("commands", "run"),
    "listen": ("commands", "listen"),
    "record": ("commands", "record"),
    "replay": ("commands", "replay_command"),
    "sweep": ("commands", "sweep"),
    "relay": ("relay_commands", "relay"),
    "e2e": ("relay_commands", "e2e"),
    "revoke": ("relay_commands", "revoke"),
    "worker": ("rq_commands", "worker"),
}


_OFFLINE_COMMANDS = frozenset({"validate", "schema"})


# click >= 8.2 raises this for a group run without a command (older versions print help).
_NoArgsIsHelp: type[click.UsageError] = getattr(
    click.exceptions, "NoArgsIsHelpError", type("_Never", (click.UsageError,), {})
)


def usage_error_line(error: click.ClickException) -> str:
    """A click error as the one ``error:`` line every failure of the CLI is.

    click's own report is three lines (Usage, Try, Error) with a capital ``Error:``;
    docs/simulator.md promises one line a script can match, so the usage hint moves to
    the end of that line.
    """
    text = " ".join(error.format_message().split())
    ctx = getattr(error, "ctx", None)
    if isinstance(error, click.UsageError) and ctx is not None:
        text = f"{text.rstrip('.')} (see '{ctx.command_path} --help')"
    return f"error: {text}"


class _Group(click.Group):
    """A click group that imports ``simulator.commands`` only when it needs one of them,
    and reports click's usage errors as one ``error:`` line with exit status 2."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's ``main``; in standalone mode (the console script, ``CliRunner``) its
        errors are reported here instead of by click."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NoArgsIsHelp as exc:  # bare `progress-sim`: its help, as --help gives it
            click.echo(exc.ctx.get_help() if exc.ctx is not None else "")
            sys.exit(0)
        except click.ClickException as exc:  # bad options and values, unreadable files
            click.echo(usage_error_line(exc), err=True)
            sys.exit(2)
        except click.Abort:  # Ctrl-C at a prompt or while click parses
            click.echo("Aborted!", err=True)
            sys.exit(1)
        # --help and --version end with ctx.exit(0), which non-standalone click returns.
        sys.exit(code if isinstance(code, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_SIMULATOR_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = _SIMULATOR_COMMANDS.get(cmd_name)
        if where is not None and cmd_name not in self.commands:
            # redis, rich (and for relay, socketio): not for validate
            module = importlib.import_module(f".{where[0]}", __package__)
            command: click.Command = getattr(module, where[1])
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--redis-url",
    envvar=d.ENV_REDIS_URL,
    default=None,
    help="Redis server (redis://, rediss://, unix://). Default for `run`: an embedded "
    f"in-process Redis. Env: {d.ENV_REDIS_URL}.",
)
@click.option(
    "--channel",
    envvar=d.ENV_CHANNEL,
    default=d.DEFAULT_CHANNEL,
    show_default=True,
    help=f"Pub/sub channel. Env: {d.ENV_CHANNEL}.",
)
@click.option(
    "--shards",
    envvar=d.ENV_SHARDS,
    type=click.IntRange(1, d.MAX_SHARDS),
    default=d.DEFAULT_SHARDS,
    show_default=True,
    help="Shard channels CHANNEL:0..N-1 that media are spread over (1: CHANNEL alone); "
    f"listen and record subscribe to all of them and to CHANNEL. Env: {d.ENV_SHARDS}.",
)
@click.version_option(__version__, prog_name="progress-sim")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, channel: str, shards: int) -> None:
    """Simulate, watch, record, replay and validate media-analysis progress events."""
    # validate and schema never connect: a REDIS_URL set for other tools must not stop them.
    if redis_url is not None and ctx.invoked_subcommand not in _OFFLINE_COMMANDS:
        _check_url(redis_url)
    ctx.obj = CliContext(redis_url, channel, shards)


def _check_url(url: str) -> None:
    """One error line (exit 2) for a URL redis-py cannot use, before any command runs."""
    from progress_sdk.redis_urls import check_redis_url  # noqa: PLC0415 - redis: only here

    try:
        check_redis_url(url)
    except ConfigurationError as exc:  # the message shows the URL with its password masked
        fail(f"--redis-url: {exc}")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a v1 progress event."""
    from progress_sdk import event_json_schema  # noqa: PLC0415 - pydantic: only here

    click.echo(json.dumps(event_json_schema(), indent=2, sort_keys=True))


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--strict", is_flag=True, help="Require the v1 envelope: schema_version, seq, "
              "source and timestamp.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--allow-incomplete", is_flag=True, help="Accept runs that never reach "
              "PROCESSING_COMPLETED/FAILED (crashed jobs) instead of counting them as "
              "rule 4 violations.")
def validate(file: str, strict: bool, as_json: bool, allow_incomplete: bool) -> None:
    """Check a stream of events (FILE, or - for stdin) against the v1 contract.

    FILE is NDJSON of plain events (`run --json`, `listen --json`) or a `record` file;
    the format is detected. Exit status: 0 valid, 1 violations (or incomplete runs), 2
    the input could not be read or holds no events at all. Lost events (seq gaps) are
    reported, not failed.
    """
    try:
        if file == "-":
            report = validate_lines(
                event_lines(read_lines(sys.stdin.buffer, MAX_LINE_BYTES)),
                strict, allow_incomplete=allow_incomplete,
            )
        else:
            with open(file, "rb") as stream:
                report = validate_lines(
                    event_lines(read_lines(stream, MAX_LINE_BYTES)),
                    strict,
                    allow_incomplete=allow_incomplete,
                )
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    if report.events == 0:
        # No verdict at all: "VALID" over nothing would read as a pass.
        fail(f"{file} holds no events (empty or only blank lines)")
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.to_text())
    sys.exit(0 if report.ok else 1)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="progress-sim")

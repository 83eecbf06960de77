"""The ``progress-sim`` command line: a thin layer over progress_sdk and simulator code."""

from __future__ import annotations

import json

import click

from progress_sdk import __version__, event_json_schema
from progress_sdk import defaults as d


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.version_option(__version__, prog_name="progress-sim")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, channel: str) -> None:
    """Simulate, watch, record, replay and validate media-analysis progress events."""
    ctx.obj = {"redis_url": redis_url, "channel": channel}


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a v1 progress event."""
    click.echo(json.dumps(event_json_schema(), indent=2, sort_keys=True))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="progress-sim")

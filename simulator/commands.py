"""The ``run``, ``listen``, ``record`` and ``replay`` commands of ``progress-sim``.

Thin: each parses its options, builds library objects (``simulator.session``,
``simulator.listener``, ``simulator.recording``, ``simulator.panel``) and prints what
they report. ``simulator.cli`` registers them on the group, whose ``--redis-url`` and
``--channel`` arrive as a ``CliContext`` (simulator/cli_context.py). What they print
and how is in simulator/cli_io.py; ``run --via rq`` and ``worker`` in simulator/rq_commands.py.

Exit status: 0 fine; 1 the stream broke the contract; 2 bad usage or nothing to work with
(Redis unreachable, unreadable or malformed file).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click
import redis

from progress_sdk import RedisUnavailableError
from progress_sdk import defaults as d
from progress_sdk.contract import Finding, LifecycleValidator
from progress_sdk.redis_urls import mask_url
from progress_sdk.sharding import subscribed_channels

from .catalog import PRESETS, UnknownModelError, resolve_models
from .cli_context import CliContext, fail, on_interrupt, pass_cli
from .cli_io import (
    describe_channels,
    event_writer,
    footer_line,
    listen_summary,
    open_subscription,
    panel_for,
    shown,
)
from .listener import Observer
from .recording import Recorder, RecordingError, at_rate, read_stream, replay
from .rq_commands import RqPlan, run_via_rq
from .runner import SimulationConfig
from .session import RunSession

__all__ = ["listen", "record", "replay_command", "run", "sweep"]


def _model_help() -> str:
    presets = ", ".join(PRESETS)
    return f"Models to run: names or presets ({presets}), comma-separated or repeated."


# -- run ----------------------------------------------------------------------------------


@click.command()
@click.option("--media", type=click.IntRange(min=1), default=None,
              help="How many media to analyse. [default: 3, or unlimited with --duration]")
@click.option("--models", "models", multiple=True, default=("all",), show_default=True,
              help=_model_help())
@click.option("--users", type=click.IntRange(min=1), default=3, show_default=True,
              help="Spread the media over this many user ids (user-1, user-2, ...).")
@click.option("--concurrency", type=click.IntRange(min=1), default=3, show_default=True,
              help="Media in flight at once.")
@click.option("--speed", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Time multiplier: 1 real time, 10 ten times faster, 0 as fast as possible.")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Probability that a model fails (a media fails outright at a tenth of it).")
@click.option("--crash-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability that a media's job dies without its terminal events.")
@click.option("--seed", type=int, default=None,
              help="Seed for a reproducible run. [default: random, printed in the summary]")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop starting new media after this many seconds (in-flight ones finish).")
@click.option("--min-progress-interval", type=click.FloatRange(min=0), default=None,
              help="The publisher's progress coalescing interval in seconds (0: send every "
              "update it can). [default: the SDK's, 0.1]")
@click.option("--json", "as_json", is_flag=True,
              help="Write the events the subscriber saw as NDJSON to stdout (summary to stderr).")
@click.option("--plain", is_flag=True,
              help="Plain lines (lifecycle events, not progress) even on a terminal.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@click.option("--via", type=click.Choice(["process", "rq"]), default="process",
              show_default=True,
              help="process: simulate in this process. rq: enqueue real RQ jobs (one per "
              "model and a finalizer per media) for `progress-sim worker` to run; "
              "--crash-rate then SIGKILLs work horses. Needs --redis-url.")
@click.option("--queue", "queue_name", default=None,
              help="The RQ queue, with --via rq. [default: progress-sim]")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --via rq: start this many real RQ workers (`progress-sim worker "
              "--burst`) for the run; 0 waits for workers started elsewhere.")
@pass_cli
def run(  # noqa: PLR0917 - one parameter per click option
    cli: CliContext,
    media: int | None,
    models: tuple[str, ...],
    users: int,
    concurrency: int,
    speed: float,
    fail_rate: float,
    crash_rate: float,
    seed: int | None,
    duration: float | None,
    min_progress_interval: float | None,
    as_json: bool,
    plain: bool,
    quiet: bool,
    via: str,
    queue_name: str | None,
    workers: int,
) -> None:
    """Simulate media analysed by several models, publishing through the SDK.

    Without --redis-url everything runs in this process on an embedded Redis. A
    subscriber of the channel measures latency and checks the contract; the exit status
    is 1 when the stream broke it (crashed media, see --crash-rate, are expected to stay
    incomplete and do not count).
    """
    try:
        names = resolve_models(models)
    except UnknownModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--models") from None
    if seed is None:
        seed = random.SystemRandom().randrange(1, 1_000_000)
    if media is None and duration is None:
        media = 3
    if via == "rq":
        plan = RqPlan(queue_name, media, names, users, seed, speed, fail_rate, crash_rate,
                       workers)
        run_via_rq(cli, plan, as_json=as_json, plain=plain, quiet=quiet)
        return
    if queue_name is not None or workers:
        fail("--queue and --workers are for --via rq")
    config = SimulationConfig(
        models=names, seed=seed, media=media, users=users, concurrency=concurrency,
        speed=speed, fail_rate=fail_rate, crash_rate=crash_rate, duration=duration,
    )
    _run_in_process(cli, config, min_progress_interval, as_json=as_json, plain=plain,
                    quiet=quiet)


def _run_in_process(
    cli: CliContext, config: SimulationConfig, min_progress_interval: float | None, *,
    as_json: bool, plain: bool, quiet: bool,
) -> None:
    """`run` without --via rq: a RunSession, its events shown as the options ask."""
    redis_url = cli.redis_url
    out = sys.stdout
    info_err = as_json or quiet
    panel = panel_for(out, as_json or plain or quiet)
    recent: deque[Finding] = deque(maxlen=3)
    session = RunSession(
        config,
        redis_url=redis_url,
        channel=cli.channel,
        panel=panel,
        on_event=event_writer(out, as_json, lines=not quiet and panel is None, progress=False),
        on_finding=recent.append,
        min_progress_interval=min_progress_interval,
        shards=cli.shards,
    )
    try:
        session.check()
    except RedisUnavailableError as exc:
        fail(str(exc))
    if not quiet:
        click.echo(_run_banner(config, redis_url, cli.channel), err=info_err)
    footer = footer_line(lambda: session.observer, recent, "events received")
    try:
        with on_interrupt(session.stop):
            summary = shown(panel, out, footer, session.run)
    except (redis.RedisError, OSError) as exc:
        fail(f"lost Redis while running: {mask_url(str(exc))}")
    click.echo(summary.to_text(), err=info_err)
    if not summary.ok:
        sys.exit(1)


def _run_banner(config: SimulationConfig, redis_url: str | None, channel: str) -> str:
    where = (
        "an embedded in-process Redis (no server needed; "
        "`progress-sim --redis-url URL run` publishes to a real one)"
        if redis_url is None
        else f"{mask_url(redis_url)} channel {channel!r}"
    )
    count = f"{config.media} media" if config.media is not None else "media"
    limit = f" for {config.duration:g} s" if config.duration is not None else ""
    return (
        f"progress-sim: simulating {count}{limit} with {len(config.models)} models "
        f"(seed {config.seed}) on {where}. Ctrl-C stops."
    )


# -- listen -------------------------------------------------------------------------------


F = TypeVar("F", bound=Callable[..., Any])


def _subscription_options(command: F) -> F:
    """--user, --media, --count and --timeout: what to take from the channel, and when
    to stop (shared by listen and record)."""
    for option in reversed(
        [
            click.option("--user", "users", multiple=True,
                         help="Only this user id (repeatable)."),
            click.option("--media", "media", multiple=True,
                         help="Only this media id (repeatable)."),
            click.option("--count", type=click.IntRange(min=1), default=None,
                         help="Stop after this many events (after filtering)."),
            click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
                         default=None, help="Stop after this many seconds."),
        ]
    ):
        command = option(command)
    return command


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Write events as NDJSON to stdout.")
@click.option("--plain", is_flag=True, help="Plain lines even on a terminal.")
@_subscription_options
@click.option("--strict", is_flag=True,
              help="Validate strictly: require the v1 envelope (schema_version, seq, ...).")
@pass_cli
def listen(  # noqa: PLR0917 - one parameter per click option
    cli: CliContext,
    as_json: bool,
    plain: bool,
    users: tuple[str, ...],
    media: tuple[str, ...],
    count: int | None,
    timeout: float | None,
    strict: bool,
) -> None:
    """Watch the channel (any producer): the UI's panel, plain lines, or NDJSON.

    Every event is checked against the contract as it arrives; violations are flagged
    at once and the exit status is 1 if there were any. Stops on Ctrl-C, --count or
    --timeout, then prints a summary to stderr.
    """
    url, channel = cli.url, cli.channel
    out = sys.stdout
    panel = panel_for(out, as_json or plain)
    recent: deque[Finding] = deque(maxlen=3)

    def on_finding(finding: Finding) -> None:
        if panel is not None:
            recent.append(finding)
        else:
            click.echo(f"VIOLATION {finding}", err=True)

    observer = Observer(
        validator=LifecycleValidator(strict, allow_incomplete=True),
        panel=panel,
        on_event=event_writer(out, as_json, lines=panel is None, progress=True),
        on_finding=on_finding,
        users=users,
        media=media,
    )
    channels = subscribed_channels(channel, cli.shards)
    subscription = open_subscription(url, channels)
    where = describe_channels(channels)
    click.echo(f"Listening on {mask_url(url)} {where} (Ctrl-C stops)", err=True)
    stop = threading.Event()
    began = time.monotonic()
    footer = footer_line(lambda: observer, recent, "events")

    def pump() -> None:
        subscription.pump(observer.handle, stop=stop, count=count, timeout=timeout)

    try:
        with on_interrupt(stop.set):
            shown(panel, out, footer, pump)
    except (redis.RedisError, OSError) as exc:
        fail(f"lost Redis while listening: {mask_url(str(exc))}")
    finally:
        subscription.close()
        out.flush()
    listen_summary(observer, time.monotonic() - began, recent if panel is not None else None)
    report = observer.report()
    if report is not None and report.violation_count:
        sys.exit(1)


# -- record / replay ----------------------------------------------------------------------


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, writable=True, allow_dash=True))
@_subscription_options
@pass_cli
def record(  # noqa: PLR0917 - one parameter per click option
    cli: CliContext,
    file: str,
    users: tuple[str, ...],
    media: tuple[str, ...],
    count: int | None,
    timeout: float | None,
) -> None:
    """Capture the channel to FILE (NDJSON with arrival times; - for stdout).

    Each line is {"t": seconds since start, "channel": ..., "event": {...}} after a header
    line; see docs/simulator.md. Stops on Ctrl-C, --count or --timeout.
    """
    url, channel = cli.url, cli.channel
    try:
        stream: IO[str] = (
            sys.stdout if file == "-"
            else open(file, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        )
    except OSError as exc:
        fail(f"cannot write {file}: {exc.strerror or exc}")
    channels = subscribed_channels(channel, cli.shards)
    subscription = open_subscription(url, channels)
    recorder = Recorder(stream, channel)
    observer = Observer(on_event=recorder.write, users=users, media=media)
    where = describe_channels(channels)
    click.echo(f"Recording {mask_url(url)} {where} to {file} (Ctrl-C stops)", err=True)
    stop = threading.Event()
    try:
        with on_interrupt(stop.set):
            subscription.pump(observer.handle, stop=stop, count=count, timeout=timeout)
    except (redis.RedisError, OSError) as exc:
        fail(f"lost Redis while recording: {mask_url(str(exc))}")
    finally:
        subscription.close()
        if file != "-":
            stream.close()
    click.echo(f"Recorded {recorder.count:,} events to {file}", err=True)


@click.command("replay")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--speed", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Time multiplier: 1 original timing, 2 twice as fast, 0 as fast as possible.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Publish this many events a second, evenly, instead of the file's timing.")
@click.option("--keep-timestamps", is_flag=True,
              help="Publish events with their original timestamp instead of the time of "
              "publishing (latency measured downstream is then the recording's age).")
@pass_cli
def replay_command(
    cli: CliContext, file: str, speed: float, rate: float | None, keep_timestamps: bool
) -> None:
    """Publish a `record` file or plain event NDJSON (detected) to the channel again.

    Timing: a recording's arrival times, or plain events' timestamps (relative to the
    first), divided by --speed; or --rate events a second. Each event's timestamp is set
    to the time it is published unless --keep-timestamps. The whole file is checked
    first: a malformed recording line stops the replay before anything is published.
    """
    url, channel = cli.url, cli.channel
    try:
        if file == "-":
            entries = list(read_stream(sys.stdin))
        else:
            with open(file, encoding="utf-8", errors="surrogateescape") as stream:
                entries = list(read_stream(stream))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    except RecordingError as exc:
        fail(f"{file}: {exc}")
    if not entries:
        fail(f"{file} holds no events (empty or only blank lines)")
    if rate is not None:
        entries, speed = at_rate(entries, rate), 1.0
    client = redis.Redis.from_url(url, socket_connect_timeout=2.0)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        fail(f"cannot reach Redis at {mask_url(url)}: {mask_url(str(exc))}")
    stop = threading.Event()
    began = time.monotonic()
    try:
        with on_interrupt(stop.set):
            sent = replay(
                client, channel, entries, speed=speed, stop=stop, restamp=not keep_timestamps
            )
    except (redis.RedisError, OSError) as exc:
        fail(f"lost Redis while replaying: {mask_url(str(exc))}")
    finally:
        client.close()
    click.echo(
        f"Replayed {sent:,} of {len(entries):,} events to channel {channel!r} "
        f"in {time.monotonic() - began:.1f} s",
        err=True,
    )


# -- sweep --------------------------------------------------------------------------------


@click.command()
@click.option("--prefix", envvar=d.ENV_SNAPSHOT_PREFIX, default=d.DEFAULT_SNAPSHOT_PREFIX,
              show_default=True, help=f"Snapshot key prefix. Env: {d.ENV_SNAPSHOT_PREFIX}.")
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True),
              default=d.DEFAULT_SWEEP_STALE_AFTER, show_default=True,
              help="Seconds without a snapshot change after which a media that names no "
              "owner (no liveness key to check) is failed.")
@click.option("--stuck-after", type=click.FloatRange(min=d.MIN_STUCK_AFTER), default=None,
              help="Also fail media of live workers after this many seconds without news "
              "(off by default).")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True),
              default=d.DEFAULT_SWEEP_INTERVAL, show_default=True,
              help="Seconds between sweeps.")
@click.option("--lease", type=click.FloatRange(min=0, min_open=True),
              default=d.DEFAULT_SWEEP_LEASE, show_default=True,
              help="Seconds the lease lasts without renewal (one sweeper acts at a time).")
@click.option("--once", is_flag=True, help="Sweep once and exit.")
@pass_cli
def sweep(  # noqa: PLR0917 - one parameter per click option
    cli: CliContext, prefix: str, stale_after: float, stuck_after: float | None,
    interval: float, lease: float, once: bool,
) -> None:
    """Fail media whose worker is gone (ANALYSIS_FAILED, PROCESSING_FAILED): its liveness
    key lapsed. A live worker's silence fails nothing unless --stuck-after says so.

    Safe to run on several machines at once: one sweeper acts at a time (a lease in
    Redis), and a media's failure events never go out twice.
    """
    from progress_sdk.cluster import client_for  # noqa: PLC0415
    from progress_sdk.snapshot import SnapshotConfig, SnapshotKeys  # noqa: PLC0415
    from progress_sdk.sweeper import Sweeper  # noqa: PLC0415

    url = cli.url
    stop = threading.Event()
    try:
        sweeper = Sweeper(client_for(url), channel=cli.channel,
                          config=SnapshotConfig(SnapshotKeys(prefix)), stale_after=stale_after,
                          lease=lease, stuck_after=stuck_after)
        with on_interrupt(stop.set):
            while True:
                result = sweeper.sweep()
                for _, line in result.notices():
                    click.echo(line)
                if once:
                    if not result.leader:
                        click.echo("another sweeper holds the lease; nothing done")
                    sweeper.release_lease()
                    return
                if stop.wait(interval):
                    sweeper.release_lease()
                    return
    except (redis.RedisError, OSError) as exc:
        fail(f"cannot reach Redis at {mask_url(url)}: {mask_url(str(exc))}")

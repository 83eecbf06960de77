"""The ``run``, ``listen``, ``record`` and ``replay`` commands of ``progress-sim``.

Thin: each parses its options, builds library objects (``simulator.session``,
``simulator.listener``, ``simulator.recording``, ``simulator.panel``) and prints what
they report. ``simulator.cli`` registers them on the group, whose ``--redis-url`` and
``--channel`` arrive in ``ctx.obj``.

Exit status: 0 fine; 1 the stream broke the contract; 2 bad usage or nothing to work with
(Redis unreachable, unreadable or malformed file).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, Any, NamedTuple, NoReturn, TypeVar

import click
import redis
from rich.console import Console

from progress_sdk import RedisUnavailableError
from progress_sdk import defaults as d
from progress_sdk.contract import Finding, LifecycleValidator
from progress_sdk.event_types import PROCESSING_COMPLETED, PROCESSING_FAILED, PROGRESS_EVENT_NAMES
from progress_sdk.exceptions import ConfigurationError
from progress_sdk.redis_urls import mask_url
from progress_sdk.sharding import subscribed_channels

from .catalog import PRESETS, UnknownModelError, resolve_models
from .listener import ChannelSubscription, Observer, latency_percentiles, plain_line, subscribe
from .panel import LivePanel, PanelState
from .recording import Recorder, RecordingError, at_rate, read_stream, replay
from .runner import SimulationConfig
from .session import RunSession

__all__ = ["listen", "record", "replay_command", "run", "sweep", "worker"]


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _url(ctx: click.Context) -> str:
    url: str | None = ctx.obj.get("redis_url") if ctx.obj else None
    return url or d.DEFAULT_REDIS_URL


def _channel(ctx: click.Context) -> str:
    channel: str = ctx.obj.get("channel") if ctx.obj else d.DEFAULT_CHANNEL
    return channel


@contextlib.contextmanager
def _on_interrupt(callback: Callable[[], None]) -> Iterator[None]:
    """First Ctrl-C calls ``callback`` (wind down, then summarise); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        callback()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _quiet_on_broken_pipe(
    write: Callable[[bytes, dict[str, Any] | None], None],
) -> Callable[[bytes, dict[str, Any] | None], None]:
    """Stop writing, without a traceback, once the reader went away (`| head`)."""
    broken = False

    def guarded(payload: bytes, event: dict[str, Any] | None) -> None:
        nonlocal broken
        if broken:
            return
        try:
            write(payload, event)
        except BrokenPipeError:
            broken = True
            # Point stdout at /dev/null so the interpreter's final flush cannot fail too.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    return guarded


def _ndjson_writer(stream: IO[str]) -> Callable[[bytes, dict[str, Any] | None], None]:
    def write(payload: bytes, event: dict[str, Any] | None) -> None:
        stream.write(payload.decode("utf-8", "replace") + "\n")
        # Line by line, so `| jq` or a frontend's test harness sees each event live.
        stream.flush()

    return write


def _shards(ctx: click.Context) -> int:
    shards: int = ctx.obj.get("shards") if ctx.obj else d.DEFAULT_SHARDS
    return shards


def _open_subscription(url: str, channels: list[str]) -> ChannelSubscription:
    try:
        return subscribe(url, channels)
    except ConfigurationError as exc:
        _fail(str(exc))
    except (redis.RedisError, OSError) as exc:
        _fail(f"cannot reach Redis at {mask_url(url)}: {mask_url(str(exc))}")


def _describe(channels: list[str]) -> str:
    if len(channels) == 1:
        return f"channel {channels[0]!r}"
    return f"channels {channels[0]!r} and {channels[1]!r}..{channels[-1].rsplit(':', 1)[-1]}"


def _model_help() -> str:
    presets = ", ".join(PRESETS)
    return f"Models to run: names or presets ({presets}), comma-separated or repeated."


_OnEvent = Callable[[bytes, dict[str, Any] | None], None]
_T = TypeVar("_T")


def _panel_for(out: IO[str], other_output: bool) -> PanelState | None:
    """The live panel's state when it is what the user sees: no other mode, a terminal."""
    return PanelState() if not other_output and _is_terminal(out) else None


def _event_writer(out: IO[str], as_json: bool, *, lines: bool, progress: bool) -> _OnEvent | None:
    """What prints each event: NDJSON, a plain line (``progress`` events too, or not), or
    nothing (``lines`` False: the panel shows them, or --quiet)."""
    write: _OnEvent
    if as_json:
        write = _ndjson_writer(out)
    elif lines:
        write = _plain_writer(progress)
    else:
        return None
    return _quiet_on_broken_pipe(write)


def _plain_writer(progress: bool) -> _OnEvent:
    def write(payload: bytes, event: dict[str, Any] | None) -> None:
        if not progress and event is not None and event.get("event") in PROGRESS_EVENT_NAMES:
            return
        click.echo(plain_line(event, payload))

    return write


def _footer(
    observer: Callable[[], Observer], recent: deque[Finding], received: str
) -> Callable[[], str]:
    """The panel's last line: events received, violations, and the latest of them."""

    def footer() -> str:
        obs = observer()
        text = f"{obs.received:,} {received} · {obs.violations} violations"
        return text + (f" · last: {recent[-1]}" if recent else "")

    return footer


def _shown(
    panel: PanelState | None, out: IO[str], footer: Callable[[], str], work: Callable[[], _T]
) -> _T:
    """Do ``work``, drawing the live panel meanwhile if there is one."""
    if panel is None:
        return work()
    with LivePanel(panel, Console(file=out), footer=footer):
        return work()


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
@click.pass_context
def run(  # noqa: PLR0917 - one parameter per click option
    ctx: click.Context,
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
        plan = _RqPlan(queue_name, media, names, users, seed, speed, fail_rate, crash_rate,
                       workers)
        _run_via_rq(ctx, plan, as_json=as_json, plain=plain, quiet=quiet)
        return
    if queue_name is not None or workers:
        _fail("--queue and --workers are for --via rq")
    config = SimulationConfig(
        models=names, seed=seed, media=media, users=users, concurrency=concurrency,
        speed=speed, fail_rate=fail_rate, crash_rate=crash_rate, duration=duration,
    )
    _run_in_process(ctx, config, min_progress_interval, as_json=as_json, plain=plain,
                    quiet=quiet)


def _run_in_process(
    ctx: click.Context, config: SimulationConfig, min_progress_interval: float | None, *,
    as_json: bool, plain: bool, quiet: bool,
) -> None:
    """`run` without --via rq: a RunSession, its events shown as the options ask."""
    redis_url: str | None = ctx.obj.get("redis_url") if ctx.obj else None
    out = sys.stdout
    info_err = as_json or quiet
    panel = _panel_for(out, as_json or plain or quiet)
    recent: deque[Finding] = deque(maxlen=3)
    session = RunSession(
        config,
        redis_url=redis_url,
        channel=_channel(ctx),
        panel=panel,
        on_event=_event_writer(out, as_json, lines=not quiet and panel is None, progress=False),
        on_finding=recent.append,
        min_progress_interval=min_progress_interval,
        shards=_shards(ctx),
    )
    try:
        session.check()
    except RedisUnavailableError as exc:
        _fail(str(exc))
    if not quiet:
        click.echo(_run_banner(config, redis_url, _channel(ctx)), err=info_err)
    footer = _footer(lambda: session.observer, recent, "events received")
    try:
        with _on_interrupt(session.stop):
            summary = _shown(panel, out, footer, session.run)
    except (redis.RedisError, OSError) as exc:
        _fail(f"lost Redis while running: {mask_url(str(exc))}")
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


def _needs_rq_url(ctx: click.Context, what: str) -> str:
    url: str | None = ctx.obj.get("redis_url") if ctx.obj else None
    if url is None:
        _fail(f"{what} needs --redis-url (or REDIS_URL): RQ workers are other processes")
    try:
        from . import rq_run  # noqa: F401, PLC0415 - needs the rq extra
    except ImportError:
        _fail("the RQ integration needs the rq extra: pip install 'progress-sdk[rq]'")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except (redis.RedisError, ValueError) as exc:
        _fail(f"cannot reach Redis at {mask_url(url)}: {mask_url(str(exc))}")
    return url


class _RqPlan(NamedTuple):
    """What `run --via rq` enqueues, and how many workers it starts for it."""

    queue: str | None
    media: int | None
    models: tuple[str, ...]
    users: int
    seed: int
    speed: float
    fail_rate: float
    crash_rate: float
    workers: int


def _run_via_rq(
    ctx: click.Context, plan: _RqPlan, *, as_json: bool, plain: bool, quiet: bool
) -> None:
    """Enqueue the media as RQ jobs, then show their events (the live panel on a
    terminal, else plain lines or NDJSON) until every media's last job ended."""
    url = _needs_rq_url(ctx, "--via rq")
    if plan.media is None:
        _fail("--via rq needs --media (--duration is for in-process runs)")
    from rq import Queue  # noqa: PLC0415 - the rq extra

    from progress_sdk import ProgressPublisher  # noqa: PLC0415

    from . import rq_run  # noqa: PLC0415

    out = sys.stdout
    panel = _panel_for(out, as_json or plain or quiet)
    observer = Observer(
        panel=panel, media=rq_run.media_ids(plan.seed, plan.media),
        on_event=_event_writer(out, as_json, lines=not quiet and panel is None, progress=False),
    )
    # Subscribed before anything is enqueued: the media's first events are on screen too.
    subscription = _open_subscription(url, subscribed_channels(_channel(ctx), _shards(ctx)))
    queue = Queue(plan.queue or rq_run.DEFAULT_QUEUE, connection=redis.Redis.from_url(url))
    with ProgressPublisher(url, _channel(ctx)) as publisher:
        enqueued = rq_run.enqueue_simulation(
            queue, publisher, media=plan.media, models=plan.models, users=plan.users,
            seed=plan.seed, speed=plan.speed, fail_rate=plan.fail_rate,
            crash_rate=plan.crash_rate,
        )
    who = (f"{plan.workers} worker{'s' if plan.workers != 1 else ''} started here"
           if plan.workers else "`progress-sim worker`")
    click.echo(
        f"progress-sim: enqueued {plan.media} media x {len(plan.models)} models (seed "
        f"{plan.seed}) on RQ queue {queue.name!r} at {mask_url(url)}; waiting for {who}. "
        "Ctrl-C stops waiting.", err=True,
    )
    with tempfile.TemporaryFile() as log:
        started = rq_run.start_workers(url, _channel(ctx), queue.name, plan.workers, log)
        try:
            summary = _watch_rq(enqueued, subscription, observer, panel, out)
        finally:
            subscription.close()
            _stop_workers(started)
        _echo_worker_errors(log)
    click.echo(summary.to_text(), err=as_json or quiet)


def _watch_rq(
    enqueued: list[Any], subscription: ChannelSubscription, observer: Observer,
    panel: PanelState | None, out: IO[str],
) -> Any:
    """Pump the channel into ``observer`` on a thread while waiting for the media to end."""
    from .rq_run import wait_for  # noqa: PLC0415 - the rq extra

    stop, pumped = threading.Event(), threading.Event()

    def pump() -> None:
        # A lost subscription costs only the live view: the wait below still ends.
        with contextlib.suppress(redis.RedisError, OSError):
            subscription.pump(observer.handle, stop=pumped)

    reader = threading.Thread(target=pump, name="progress-sim-rq-events", daemon=True)
    reader.start()
    footer = _footer(lambda: observer, deque(), "events received")

    def work() -> Any:
        summary = wait_for(enqueued, timeout=None, stop=stop)
        # A media's terminal event is published before its last job returns; give the
        # subscription a moment to hand over what is still in flight.
        deadline = time.monotonic() + 2.0
        while (_terminals_seen(observer) < summary.finished and not stop.is_set()
               and time.monotonic() < deadline):
            stop.wait(0.05)
        return summary

    try:
        with _on_interrupt(stop.set):
            return _shown(panel, out, footer, work)
    finally:
        pumped.set()
        reader.join(5)


def _terminals_seen(observer: Observer) -> int:
    return observer.counts[PROCESSING_COMPLETED] + observer.counts[PROCESSING_FAILED]


def _stop_workers(started: list[subprocess.Popen[bytes]]) -> None:
    """Burst workers end on their own; after Ctrl-C, ask them to stop (SIGTERM: RQ's
    warm shutdown lets a running job finish)."""
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _echo_worker_errors(log: IO[bytes]) -> None:
    """The workers' own `error:` lines (a job module they cannot import), once each."""
    log.seek(0)
    seen: set[str] = set()
    for raw in log:
        line = raw.decode("utf-8", "replace").rstrip()
        if line.startswith("error: ") and line not in seen:
            seen.add(line)
            click.echo(line, err=True)


@click.command()
@click.option("--queue", "queues", multiple=True, default=None,
              help="Queue to work on (repeat for several). [default: progress-sim]")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--path", "-P", "paths", multiple=True, default=(".",), show_default=True,
              help="A folder to import job modules from (repeatable), as `rq worker --path`.")
@click.option("--with-scheduler", is_flag=True,
              help="Also run RQ's scheduler: retries with intervals (Retry(interval=...)) "
              "and enqueue_in/enqueue_at jobs need one.")
@click.pass_context
def worker(ctx: click.Context, queues: tuple[str, ...], burst: bool,
           paths: tuple[str, ...], with_scheduler: bool) -> None:
    """Run an RQ worker (progress_sdk.rq.TrackingWorker) for tracked jobs.

    Jobs publish on --channel at --redis-url, which also holds RQ's queues. Its parent
    process reports work horses that die (SIGKILL, hard timeout, stop command) and it
    sweeps the jobs of workers that died with their horse. Job modules are imported from
    the current folder (and each --path), as `rq worker` does.
    """
    url = _needs_rq_url(ctx, "worker")
    from .rq_run import DEFAULT_QUEUE, add_import_paths, run_worker  # noqa: PLC0415 - rq extra

    add_import_paths(paths)
    run_worker(url, _channel(ctx), queues or (DEFAULT_QUEUE,), burst=burst,
               with_scheduler=with_scheduler)


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
@click.pass_context
def listen(  # noqa: PLR0917 - one parameter per click option
    ctx: click.Context,
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
    url, channel = _url(ctx), _channel(ctx)
    out = sys.stdout
    panel = _panel_for(out, as_json or plain)
    recent: deque[Finding] = deque(maxlen=3)

    def on_finding(finding: Finding) -> None:
        if panel is not None:
            recent.append(finding)
        else:
            click.echo(f"VIOLATION {finding}", err=True)

    observer = Observer(
        validator=LifecycleValidator(strict, allow_incomplete=True),
        panel=panel,
        on_event=_event_writer(out, as_json, lines=panel is None, progress=True),
        on_finding=on_finding,
        users=users,
        media=media,
    )
    channels = subscribed_channels(channel, _shards(ctx))
    subscription = _open_subscription(url, channels)
    click.echo(f"Listening on {mask_url(url)} {_describe(channels)} (Ctrl-C stops)", err=True)
    stop = threading.Event()
    began = time.monotonic()
    footer = _footer(lambda: observer, recent, "events")

    def pump() -> None:
        subscription.pump(observer.handle, stop=stop, count=count, timeout=timeout)

    try:
        with _on_interrupt(stop.set):
            _shown(panel, out, footer, pump)
    except (redis.RedisError, OSError) as exc:
        _fail(f"lost Redis while listening: {mask_url(str(exc))}")
    finally:
        subscription.close()
        out.flush()
    _listen_summary(observer, time.monotonic() - began, recent if panel is not None else None)
    report = observer.report()
    if report is not None and report.violation_count:
        sys.exit(1)


def _listen_summary(
    observer: Observer, seconds: float, recent: deque[Finding] | None
) -> None:
    report = observer.report()
    assert report is not None
    lines = [f"Received {observer.received:,} events in {seconds:.1f} s"]
    if observer.ignored:
        lines[0] += f" ({observer.ignored:,} filtered out)"
    if observer.counts:
        lines.append(
            "  by type: " + ", ".join(f"{k} {v:,}" for k, v in sorted(observer.counts.items()))
        )
    pct = latency_percentiles(observer.latencies, 0.5, 0.99)
    if pct:
        lines.append(
            f"  latency from event timestamp: p50 {pct[0] * 1000:.1f} ms, "
            f"p99 {pct[1] * 1000:.1f} ms"
        )
    verdict = "OK" if report.violation_count == 0 else "BROKEN"
    lines.append(
        f"  contract: {verdict}: {report.violation_count} violations, "
        f"{report.lost_events} events lost, {report.duplicates} duplicates dropped, "
        f"{report.incomplete_count} runs still open when listening stopped"
    )
    if recent is not None:
        lines.extend(f"    {f}" for f in report.violations[:10])
    click.echo("\n".join(lines), err=True)


# -- record / replay ----------------------------------------------------------------------


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, writable=True, allow_dash=True))
@_subscription_options
@click.pass_context
def record(  # noqa: PLR0917 - one parameter per click option
    ctx: click.Context,
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
    url, channel = _url(ctx), _channel(ctx)
    try:
        stream: IO[str] = (
            sys.stdout if file == "-"
            else open(file, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        )
    except OSError as exc:
        _fail(f"cannot write {file}: {exc.strerror or exc}")
    channels = subscribed_channels(channel, _shards(ctx))
    subscription = _open_subscription(url, channels)
    recorder = Recorder(stream, channel)
    observer = Observer(on_event=recorder.write, users=users, media=media)
    click.echo(
        f"Recording {mask_url(url)} {_describe(channels)} to {file} (Ctrl-C stops)", err=True
    )
    stop = threading.Event()
    try:
        with _on_interrupt(stop.set):
            subscription.pump(observer.handle, stop=stop, count=count, timeout=timeout)
    except (redis.RedisError, OSError) as exc:
        _fail(f"lost Redis while recording: {mask_url(str(exc))}")
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
@click.pass_context
def replay_command(
    ctx: click.Context, file: str, speed: float, rate: float | None, keep_timestamps: bool
) -> None:
    """Publish a `record` file or plain event NDJSON (detected) to the channel again.

    Timing: a recording's arrival times, or plain events' timestamps (relative to the
    first), divided by --speed; or --rate events a second. Each event's timestamp is set
    to the time it is published unless --keep-timestamps. The whole file is checked
    first: a malformed recording line stops the replay before anything is published.
    """
    url, channel = _url(ctx), _channel(ctx)
    try:
        if file == "-":
            entries = list(read_stream(sys.stdin))
        else:
            with open(file, encoding="utf-8", errors="surrogateescape") as stream:
                entries = list(read_stream(stream))
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")
    except RecordingError as exc:
        _fail(f"{file}: {exc}")
    if not entries:
        _fail(f"{file} holds no events (empty or only blank lines)")
    if rate is not None:
        entries, speed = at_rate(entries, rate), 1.0
    client = redis.Redis.from_url(url, socket_connect_timeout=2.0)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        _fail(f"cannot reach Redis at {mask_url(url)}: {mask_url(str(exc))}")
    stop = threading.Event()
    began = time.monotonic()
    try:
        with _on_interrupt(stop.set):
            sent = replay(
                client, channel, entries, speed=speed, stop=stop, restamp=not keep_timestamps
            )
    except (redis.RedisError, OSError) as exc:
        _fail(f"lost Redis while replaying: {mask_url(str(exc))}")
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
@click.pass_context
def sweep(  # noqa: PLR0917 - one parameter per click option
    ctx: click.Context, prefix: str, stale_after: float, stuck_after: float | None,
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

    url = _url(ctx)
    stop = threading.Event()
    try:
        sweeper = Sweeper(client_for(url), channel=_channel(ctx),
                          config=SnapshotConfig(SnapshotKeys(prefix)), stale_after=stale_after,
                          lease=lease, stuck_after=stuck_after)
        with _on_interrupt(stop.set):
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
        _fail(f"cannot reach Redis at {mask_url(url)}: {mask_url(str(exc))}")

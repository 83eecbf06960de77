"""``run --via rq`` and ``worker``: the simulation as real RQ jobs, and the worker for them.

Needs the rq extra, imported only inside the functions that use it, so the other commands
load without it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from typing import IO, Any, NamedTuple

import click
import redis

from progress_sdk.event_types import PROCESSING_COMPLETED, PROCESSING_FAILED
from progress_sdk.redis_urls import mask_url
from progress_sdk.sharding import subscribed_channels

from .cli_context import CliContext, fail, on_interrupt, pass_cli
from .cli_io import event_writer, footer_line, open_subscription, panel_for, shown
from .listener import ChannelSubscription, Observer
from .panel import PanelState

__all__ = ["RqPlan", "needs_rq_url", "run_via_rq", "worker"]


def needs_rq_url(cli: CliContext, what: str) -> str:
    """The --redis-url RQ needs, checked reachable, with the rq extra installed; or fail."""
    url = cli.redis_url
    if url is None:
        fail(f"{what} needs --redis-url (or REDIS_URL): RQ workers are other processes")
    try:
        from . import rq_run  # noqa: F401, PLC0415 - needs the rq extra
    except ImportError:
        fail("the RQ integration needs the rq extra: pip install 'progress-sdk[rq]'")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except (redis.RedisError, ValueError) as exc:
        fail(f"cannot reach Redis at {mask_url(url)}: {mask_url(str(exc))}")
    return url


class RqPlan(NamedTuple):
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


def run_via_rq(
    cli: CliContext, plan: RqPlan, *, as_json: bool, plain: bool, quiet: bool
) -> None:
    """Enqueue the media as RQ jobs, then show their events (the live panel on a
    terminal, else plain lines or NDJSON) until every media's last job ended."""
    url = needs_rq_url(cli, "--via rq")
    if plan.media is None:
        fail("--via rq needs --media (--duration is for in-process runs)")
    from rq import Queue  # noqa: PLC0415 - the rq extra

    from progress_sdk import ProgressPublisher  # noqa: PLC0415

    from . import rq_run  # noqa: PLC0415

    out = sys.stdout
    panel = panel_for(out, as_json or plain or quiet)
    observer = Observer(
        panel=panel, media=rq_run.media_ids(plan.seed, plan.media),
        on_event=event_writer(out, as_json, lines=not quiet and panel is None, progress=False),
    )
    # Subscribed before anything is enqueued: the media's first events are on screen too.
    subscription = open_subscription(url, subscribed_channels(cli.channel, cli.shards))
    queue = Queue(plan.queue or rq_run.DEFAULT_QUEUE, connection=redis.Redis.from_url(url))
    with ProgressPublisher(url, cli.channel) as publisher:
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
        started = rq_run.start_workers(url, cli.channel, queue.name, plan.workers, log)
        try:
            summary = watch_rq(enqueued, subscription, observer, panel, out)
        finally:
            subscription.close()
            _stop_workers(started)
        _echo_worker_errors(log)
    click.echo(summary.to_text(), err=as_json or quiet)


def watch_rq(
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
    footer = footer_line(lambda: observer, deque(), "events received")

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
        with on_interrupt(stop.set):
            return shown(panel, out, footer, work)
    finally:
        pumped.set()
        reader.join(5)


def _terminals_seen(observer: Observer) -> int:
    """Media terminal events the subscription handed over so far."""
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
@pass_cli
def worker(cli: CliContext, queues: tuple[str, ...], burst: bool,
           paths: tuple[str, ...], with_scheduler: bool) -> None:
    """Run an RQ worker (progress_sdk.rq.TrackingWorker) for tracked jobs.

    Jobs publish on --channel at --redis-url, which also holds RQ's queues. Its parent
    process reports work horses that die (SIGKILL, hard timeout, stop command) and it
    sweeps the jobs of workers that died with their horse. Job modules are imported from
    the current folder (and each --path), as `rq worker` does.
    """
    url = needs_rq_url(cli, "worker")
    from .rq_run import DEFAULT_QUEUE, add_import_paths, run_worker  # noqa: PLC0415 - rq extra

    add_import_paths(paths)
    run_worker(url, cli.channel, queues or (DEFAULT_QUEUE,), burst=burst,
               with_scheduler=with_scheduler)

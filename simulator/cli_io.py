"""Where ``progress-sim``'s commands get events from and write them to.

A channel subscription (or one ``error:`` line), the writers that print each event (NDJSON
that a pipe sees line by line, plain lines, nothing when the live panel shows them), the
live panel with its footer, and `listen`'s summary. The commands (simulator/commands.py,
simulator/rq_commands.py) choose among them from their options.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click
import redis
from rich.console import Console

from progress_sdk.contract import Finding
from progress_sdk.event_types import PROGRESS_EVENT_NAMES
from progress_sdk.exceptions import ConfigurationError
from progress_sdk.redis_urls import mask_url

from .cli_context import fail
from .listener import ChannelSubscription, Observer, latency_percentiles, plain_line, subscribe
from .panel import LivePanel, PanelState

__all__ = [
    "OnEvent",
    "describe_channels",
    "event_writer",
    "footer_line",
    "is_terminal",
    "listen_summary",
    "ndjson_writer",
    "open_subscription",
    "panel_for",
    "plain_writer",
    "quiet_on_broken_pipe",
    "shown",
]


def open_subscription(url: str, channels: list[str]) -> ChannelSubscription:
    """Subscribed to ``channels``, or the command fails with one ``error:`` line."""
    try:
        return subscribe(url, channels)
    except ConfigurationError as exc:
        fail(str(exc))
    except (redis.RedisError, OSError) as exc:
        fail(f"cannot reach Redis at {mask_url(url)}: {mask_url(str(exc))}")


def describe_channels(channels: list[str]) -> str:
    """``channel 'x'``, or ``channels 'x' and 'x:0'..3`` for shards."""
    if len(channels) == 1:
        return f"channel {channels[0]!r}"
    return f"channels {channels[0]!r} and {channels[1]!r}..{channels[-1].rsplit(':', 1)[-1]}"


OnEvent = Callable[[bytes, dict[str, Any] | None], None]
"""What is called with each event's payload and its decoded form (None: undecodable)."""


_T = TypeVar("_T")


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (False for what cannot tell)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def quiet_on_broken_pipe(
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


def ndjson_writer(stream: IO[str]) -> OnEvent:
    """Each event's payload as one line of ``stream``."""
    def write(payload: bytes, event: dict[str, Any] | None) -> None:
        stream.write(payload.decode("utf-8", "replace") + "\n")
        # Line by line, so `| jq` or a frontend's test harness sees each event live.
        stream.flush()

    return write


def panel_for(out: IO[str], other_output: bool) -> PanelState | None:
    """The live panel's state when it is what the user sees: no other mode, a terminal."""
    return PanelState() if not other_output and is_terminal(out) else None


def event_writer(out: IO[str], as_json: bool, *, lines: bool, progress: bool) -> OnEvent | None:
    """What prints each event: NDJSON, a plain line (``progress`` events too, or not), or
    nothing (``lines`` False: the panel shows them, or --quiet)."""
    write: OnEvent
    if as_json:
        write = ndjson_writer(out)
    elif lines:
        write = plain_writer(progress)
    else:
        return None
    return quiet_on_broken_pipe(write)


def plain_writer(progress: bool) -> OnEvent:
    """Each event as a plain line on stdout (progress events only with ``progress``)."""
    def write(payload: bytes, event: dict[str, Any] | None) -> None:
        if not progress and event is not None and event.get("event") in PROGRESS_EVENT_NAMES:
            return
        click.echo(plain_line(event, payload))

    return write


def footer_line(
    observer: Callable[[], Observer], recent: deque[Finding], received: str
) -> Callable[[], str]:
    """The panel's last line: events received, violations, and the latest of them."""

    def footer() -> str:
        obs = observer()
        text = f"{obs.received:,} {received} · {obs.violations} violations"
        return text + (f" · last: {recent[-1]}" if recent else "")

    return footer


def shown(
    panel: PanelState | None, out: IO[str], footer: Callable[[], str], work: Callable[[], _T]
) -> _T:
    """Do ``work``, drawing the live panel meanwhile if there is one."""
    if panel is None:
        return work()
    with LivePanel(panel, Console(file=out), footer=footer):
        return work()


def listen_summary(
    observer: Observer, seconds: float, recent: deque[Finding] | None
) -> None:
    """What `listen` saw, on stderr: counts, latency and the contract's verdict
    (with the violations when the panel hid them: ``recent`` not None)."""
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

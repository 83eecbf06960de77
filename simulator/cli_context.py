"""What every ``progress-sim`` command shares: the group's options, Ctrl-C, and failing.

The group (``simulator.cli``) stores a ``CliContext`` as click's context object; commands
take it with ``@pass_cli``, which makes the defaults' one when a command is invoked on its
own (``CliRunner`` on a single command). ``fail`` is the CLI's one way out on bad input or
an unreachable server: one ``error:`` line, exit status 2, never a traceback.

Light on purpose: ``simulator.cli`` imports it, and ``validate`` must start without redis
or rich (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn

import click

from progress_sdk import defaults as d

__all__ = ["CliContext", "fail", "on_interrupt", "pass_cli"]


@dataclass(frozen=True)
class CliContext:
    """The group's ``--redis-url``, ``--channel`` and ``--shards``."""

    redis_url: str | None = None
    """None without --redis-url: ``run`` then uses an embedded Redis, the others ``url``."""
    channel: str = d.DEFAULT_CHANNEL
    shards: int = d.DEFAULT_SHARDS

    @property
    def url(self) -> str:
        """The Redis to connect to: --redis-url, else the default one."""
        return self.redis_url or d.DEFAULT_REDIS_URL


pass_cli = click.make_pass_decorator(CliContext, ensure=True)
"""Passes the command's ``CliContext`` as its first argument."""


def fail(message: str) -> NoReturn:
    """Stop the command: ``error: message`` on stderr, exit status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@contextlib.contextmanager
def on_interrupt(callback: Callable[[], None]) -> Iterator[None]:
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

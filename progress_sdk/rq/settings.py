"""Process-wide settings of the RQ integration: the publisher, the shared state's keys.

Job functions, the finalizer, the worker and the sweeper all run in processes RQ forks
or starts; they find their publisher here. ``configure()`` before the worker starts (a
worker script, or ``rq worker -c`` settings module) sets it for every horse it forks;
without it, the first use creates a ``ProgressPublisher()`` from the environment
(``REDIS_URL``, ``MEDIA_PROGRESS_CHANNEL_NAME``). The shared state's key prefix comes
from ``PROGRESS_SDK_RQ_PREFIX`` when set (give each deployment, or test, its own).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace

from ..exceptions import ConfigurationError
from ..publisher import ProgressPublisher
from .state import DEFAULT_PREFIX, DEFAULT_STATE_TTL

__all__ = ["ENV_PREFIX", "Settings", "configure", "current", "default_publisher"]

ENV_PREFIX = "PROGRESS_SDK_RQ_PREFIX"


@dataclass(frozen=True)
class Settings:
    """What every part of the integration in this process shares."""

    publisher: ProgressPublisher | None = None
    prefix: str = DEFAULT_PREFIX
    state_ttl: int = DEFAULT_STATE_TTL
    # How long the end of a job (or a failure report) waits for its events to be sent:
    # the work horse ends with os._exit right after, and what is still buffered is lost.
    delivery_timeout: float = 5.0
    # The job.meta mirror of the latest progress is saved at most this often.
    meta_interval: float = 1.0


_lock = threading.Lock()
_settings = Settings(prefix=os.environ.get(ENV_PREFIX) or DEFAULT_PREFIX)


def _new_lock_in_child() -> None:
    # A work horse asks for its publisher under this lock as its job starts, and the
    # worker's sweeper thread takes it every sweep: held by that thread at the fork, the
    # horse's copy would stay locked and the job would wait forever.
    global _lock  # noqa: PLW0603 - the child needs a fresh lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def configure(
    *,
    publisher: ProgressPublisher | None = None,
    prefix: str | None = None,
    state_ttl: int | None = None,
    delivery_timeout: float | None = None,
    meta_interval: float | None = None,
) -> Settings:
    """Change this process's settings (forked work horses inherit them); returns them."""
    global _settings  # noqa: PLW0603 - one settings object per process, by design
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        raise ConfigurationError(f"prefix must be a non-empty string, got {prefix!r}")
    for name, value in (("delivery_timeout", delivery_timeout), ("meta_interval", meta_interval)):
        if value is not None and (isinstance(value, bool) or value < 0):
            raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}")
    if state_ttl is not None and (not isinstance(state_ttl, int) or state_ttl < 1):
        raise ConfigurationError(f"state_ttl must be an integer >= 1, got {state_ttl!r}")
    with _lock:
        changes: dict[str, object] = {
            name: value
            for name, value in (
                ("publisher", publisher), ("prefix", prefix), ("state_ttl", state_ttl),
                ("delivery_timeout", delivery_timeout), ("meta_interval", meta_interval),
            )
            if value is not None
        }
        _settings = replace(_settings, **changes)  # type: ignore[arg-type]
        return _settings


def current() -> Settings:
    """This process's settings."""
    return _settings


def default_publisher() -> ProgressPublisher:
    """The configured publisher, created from the environment on first use."""
    global _settings  # noqa: PLW0603 - see configure()
    with _lock:
        if _settings.publisher is None:
            _settings = replace(_settings, publisher=ProgressPublisher())
        return _settings.publisher  # type: ignore[return-value]

"""A publisher's settings: checked when it is created, with their environment defaults."""

from __future__ import annotations

import os
import random
import socket

from . import defaults as d
from .exceptions import ConfigurationError
from .snapshot import SnapshotConfig

__all__ = ["check_positive", "check_settings", "default_source", "snapshot_config"]


def default_source() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(16):04x}"


def check_settings(
    channel: object, buffer_size: object, batch_size: object, source: object
) -> None:
    if not isinstance(channel, str) or not channel:
        raise ConfigurationError(f"channel must be a non-empty string, got {channel!r}")
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
        raise ConfigurationError(f"buffer_size must be an integer >= 1, got {buffer_size!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if source is not None and (
        not isinstance(source, str) or not source.strip() or len(source) > d.MAX_SOURCE_CHARS
    ):
        raise ConfigurationError(
            f"source must be a non-empty string of at most {d.MAX_SOURCE_CHARS} "
            f"characters, got {source!r}"
        )


def snapshot_config(snapshots: SnapshotConfig | bool | None) -> SnapshotConfig | None:
    if snapshots is None:
        snapshots = os.environ.get(d.ENV_SNAPSHOTS, "").strip().lower() not in (
            "0", "false", "off", "no",
        )
    if isinstance(snapshots, SnapshotConfig):
        return snapshots
    if snapshots is True:
        return SnapshotConfig()
    if snapshots is False:
        return None
    raise ConfigurationError(
        f"snapshots must be a SnapshotConfig, True or False, got {snapshots!r}"
    )


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a number {bound}, got {value!r}")

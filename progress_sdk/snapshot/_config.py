"""Where snapshots live (``SnapshotKeys``) and how a publisher keeps them
(``SnapshotConfig``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .. import defaults as d
from ..exceptions import ConfigurationError

__all__ = ["SnapshotConfig", "SnapshotKeys"]


@dataclass(frozen=True)
class SnapshotKeys:
    """Where snapshots live in Redis: every key under one prefix (``defaults.py``)."""

    prefix: str = d.DEFAULT_SNAPSHOT_PREFIX

    @classmethod
    def from_env(cls, prefix: str | None = None) -> SnapshotKeys:
        """An explicit prefix, else ``PROGRESS_SNAPSHOT_PREFIX``, else ``progress:``."""
        chosen = prefix if prefix is not None else os.environ.get(d.ENV_SNAPSHOT_PREFIX)
        return cls(d.DEFAULT_SNAPSHOT_PREFIX if chosen is None else chosen)

    def media(self, media_id: str) -> str:
        """The hash holding one media's snapshot."""
        return d.SNAPSHOT_MEDIA_KEY.format(prefix=self.prefix, media_id=media_id)

    def user(self, user_id: str) -> str:
        """The sorted set of one user's media with a snapshot."""
        return d.SNAPSHOT_USER_KEY.format(prefix=self.prefix, user_id=user_id)

    @property
    def inflight(self) -> str:
        """The sorted set of media without a terminal event, scored by updated-at."""
        return d.SNAPSHOT_INFLIGHT_KEY.format(prefix=self.prefix)

    @property
    def sweeper_lease(self) -> str:
        """The key whose holder is the one sweeper allowed to act."""
        return d.SWEEPER_LEASE_KEY.format(prefix=self.prefix)

    def alive(self, owner: str) -> str:
        """The liveness key of one publisher (``progress_sdk.liveness``)."""
        return d.LIVENESS_KEY.format(prefix=self.prefix, owner=owner)


def _liveness_ttl_from_env() -> float | None:
    raw = os.environ.get(d.ENV_LIVENESS_TTL, "").strip().lower()
    if not raw:
        return d.DEFAULT_LIVENESS_TTL
    if raw in ("0", "off", "false", "no"):
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{d.ENV_LIVENESS_TTL} must be a number of seconds or 'off', got {raw!r}"
        ) from None


@dataclass(frozen=True)
class SnapshotConfig:
    """Whether and how a publisher keeps snapshots."""

    keys: SnapshotKeys = field(default_factory=SnapshotKeys.from_env)
    ttl: float = d.DEFAULT_SNAPSHOT_TTL
    """Seconds a finished media's snapshot stays after its terminal event."""
    inflight_ttl: float = d.DEFAULT_SNAPSHOT_INFLIGHT_TTL
    """Seconds an in-flight snapshot stays after its last write (no sweeper running)."""
    liveness_ttl: float | None = field(default_factory=_liveness_ttl_from_env)
    """Seconds a publisher's liveness key lives without a refresh (refreshed three times
    as often); ``None``: no liveness, the snapshots record no owner and the sweeper fails
    their media after ``stale_after`` of silence. Default: ``PROGRESS_SDK_LIVENESS_TTL``
    (``0``/``off``: none), else 10 s."""

    @property
    def refresh_every(self) -> float:
        """Seconds between two writes of a running media's expiry by one publisher (a
        tenth of ``inflight_ttl``, at most a minute): not every batch, which would cost
        Redis a command per media and batch. The expiry written is ``inflight_ttl`` plus
        this, so a snapshot still stays at least ``inflight_ttl`` after its last write."""
        return min(self.inflight_ttl / 10, d.SNAPSHOT_EXPIRY_REFRESH_MAX)

    @property
    def inflight_expiry_ms(self) -> str:
        """The expiry written for a running media, in milliseconds (a command argument)."""
        return str(max(1, int((self.inflight_ttl + self.refresh_every) * 1000)))

    def __post_init__(self) -> None:
        names = ("ttl", "inflight_ttl") if self.liveness_ttl is None else (
            "ttl", "inflight_ttl", "liveness_ttl")
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(
                    f"snapshot {name} must be a positive number of seconds, got {value!r}"
                )

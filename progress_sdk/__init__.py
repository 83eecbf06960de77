"""progress_sdk: publish media-analysis progress events without waiting on delivery."""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

from .contract import Finding, LifecycleValidator, Report, validate_lines
from .exceptions import (
    ConfigurationError,
    InvalidEventError,
    Problem,
    ProgressSDKError,
    PublisherClosedError,
    RedisUnavailableError,
    TrackingError,
)

if _TYPE_CHECKING:
    from .events import EventData, EventType, ProgressEvent, parse_event
    from .publisher import ProgressPublisher, PublisherStats
    from .schema import event_json_schema
    from .snapshot import MediaSnapshot, SnapshotConfig, SnapshotKeys
    from .sweeper import Sweeper
    from .tracking import MediaRun, ModelRun

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "EventData",
    "EventType",
    "Finding",
    "InvalidEventError",
    "LifecycleValidator",
    "MediaRun",
    "MediaSnapshot",
    "ModelRun",
    "Problem",
    "ProgressEvent",
    "ProgressPublisher",
    "ProgressSDKError",
    "PublisherClosedError",
    "PublisherStats",
    "RedisUnavailableError",
    "Report",
    "SnapshotConfig",
    "SnapshotKeys",
    "Sweeper",
    "TrackingError",
    "__version__",
    "event_json_schema",
    "parse_event",
    "validate_lines",
]

# The pydantic models, the publisher (redis) and the tracking API are imported on first
# use: `progress-sim validate` needs none of them, and importing pydantic and redis takes
# about a quarter of a second (docs/benchmarks.md).
_LAZY = {
    "EventData": ".events",
    "EventType": ".events",
    "ProgressEvent": ".events",
    "event_json_schema": ".schema",
    "parse_event": ".events",
    "ProgressPublisher": ".publisher",
    "PublisherStats": ".publisher",
    "MediaRun": ".tracking",
    "ModelRun": ".tracking",
    "MediaSnapshot": ".snapshot",
    "SnapshotConfig": ".snapshot",
    "SnapshotKeys": ".snapshot",
    "Sweeper": ".sweeper",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public names only: not the helpers above, nor submodules loaded so far.
    return sorted(__all__)

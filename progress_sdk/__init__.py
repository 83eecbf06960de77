"""progress_sdk: publish media-analysis progress events without waiting on delivery."""

from __future__ import annotations

from .contract import Finding, LifecycleValidator, Report, validate_lines
from .events import EventData, EventType, ProgressEvent, event_json_schema, parse_event
from .exceptions import (
    ConfigurationError,
    InvalidEventError,
    Problem,
    ProgressSDKError,
    PublisherClosedError,
    RedisUnavailableError,
    TrackingError,
)
from .publisher import ProgressPublisher, PublisherStats
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
    "ModelRun",
    "Problem",
    "ProgressEvent",
    "ProgressPublisher",
    "ProgressSDKError",
    "PublisherClosedError",
    "PublisherStats",
    "RedisUnavailableError",
    "Report",
    "TrackingError",
    "__version__",
    "event_json_schema",
    "parse_event",
    "validate_lines",
]

"""The public surface of progress_sdk is deliberate: this test pins it."""

from __future__ import annotations

import progress_sdk


def test_public_api_is_exactly_what_is_documented():
    """Adding or removing a public name is a decision, not an accident."""
    assert sorted(progress_sdk.__all__) == progress_sdk.__all__
    assert set(progress_sdk.__all__) == {
        "ConfigurationError", "EventData", "EventType", "Finding", "InvalidEventError",
        "LifecycleValidator", "MediaRun", "MediaSnapshot", "ModelRun", "Problem",
        "ProgressEvent", "ProgressPublisher", "ProgressSDKError", "PublisherClosedError",
        "PublisherStats", "RedisUnavailableError", "Report", "SnapshotConfig", "SnapshotKeys",
        "Sweeper", "TrackingError", "__version__",
        "event_json_schema", "parse_event", "validate_lines",
    }
    for name in progress_sdk.__all__:
        assert hasattr(progress_sdk, name)


def test_every_sdk_error_shares_one_base_class():
    """Catching ProgressSDKError catches every error the SDK raises."""
    for name in progress_sdk.__all__:
        obj = getattr(progress_sdk, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, progress_sdk.ProgressSDKError), name

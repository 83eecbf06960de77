"""The public surface of progress_sdk is deliberate: this test pins it, reading it from
the module itself so that a name that leaks into the namespace fails it."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import progress_sdk

DOCUMENTED = {
    "ConfigurationError", "EventData", "EventType", "Finding", "InvalidEventError",
    "LifecycleValidator", "MediaRun", "MediaSnapshot", "ModelRun", "Problem",
    "ProgressEvent", "ProgressPublisher", "ProgressSDKError", "PublisherClosedError",
    "PublisherStats", "RedisUnavailableError", "Report", "SnapshotConfig", "SnapshotKeys",
    "Sweeper", "TrackingError", "__version__",
    "event_json_schema", "parse_event", "validate_lines",
}  # fmt: skip


def test_public_api_is_exactly_what_is_documented():
    """Adding or removing a public name is a decision, not an accident."""
    assert sorted(progress_sdk.__all__) == progress_sdk.__all__
    assert set(progress_sdk.__all__) == DOCUMENTED
    for name in progress_sdk.__all__:
        assert hasattr(progress_sdk, name)


def test_dir_shows_exactly_the_public_names():
    """dir(progress_sdk) lists __all__, nothing else (no typing or import helpers)."""
    assert dir(progress_sdk) == sorted(DOCUMENTED)


def public_names(module: types.ModuleType) -> set[str]:
    """The names a module really holds that are neither private nor submodules."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_nothing_else_public_lives_in_the_namespace():
    """Every name the package module holds is in __all__, private (underscore), or a
    submodule: a helper imported without an underscore fails, freshly imported or not."""
    code = (
        "import json, types, progress_sdk as p; print(json.dumps(sorted(n for n, v in "
        "vars(p).items() if not n.startswith('_') and not isinstance(v, types.ModuleType))))"
    )
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(json.loads(fresh.stdout)) <= DOCUMENTED
    assert public_names(progress_sdk) <= DOCUMENTED


def test_every_sdk_error_shares_one_base_class():
    """Catching ProgressSDKError catches every error the SDK raises."""
    for name in progress_sdk.__all__:
        obj = getattr(progress_sdk, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, progress_sdk.ProgressSDKError), name

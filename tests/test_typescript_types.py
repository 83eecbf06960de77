"""The TypeScript types: generated from the JSON Schema, checked by ``tsc --strict``.

``types/progress-event.d.ts`` must be what ``types/generate.mjs`` makes of the committed
schema (no drift), and every event of the sample streams in ``tests/fixtures`` that is a
strict v1 event must type-check as a ``ProgressEvent``, while events the contract refuses
in ways a type can express (no ``data``, progress without ``total``...) must not. The
Node packages come from ``types/package-lock.json`` (``npm ci``; ``.ci/run`` does it, and
so does this module when they are missing). Issue #9, finding 4.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from js_package import npm_ci

from progress_sdk import InvalidEventError, parse_event

ROOT = Path(__file__).parent.parent
TYPES = ROOT / "types"
TSC = TYPES / "node_modules" / ".bin" / "tsc"

pytestmark = pytest.mark.slow

# Each must be a type error: the line after `// @ts-expect-error` must not compile.
REFUSED = {
    "no data": {"event": "PROCESSING_STARTED"},
    "progress without total": {
        "event": "FRAME_ANALYSIS_PROGRESS", "data": {"model_name": "M", "progress": 1},
    },
    "progress as a string": {
        "event": "FRAME_ANALYSIS_PROGRESS",
        "data": {"model_name": "M", "progress": "1", "total": 2},
    },
    "failure without error_message": {"event": "ANALYSIS_FAILED", "data": {"model_name": "M"}},
    "model event without model_name": {"event": "ANALYSIS_STARTED", "data": {}},
    "unknown event type": {"event": "ANALYSIS_DONE", "data": {"model_name": "M"}},
    "no seq": {"event": "PROCESSING_STARTED", "data": {}, "seq": None},
}
ENVELOPE = {
    "media_id": "m1", "user_id": "u1", "message": "m", "schema_version": 1, "seq": 1,
    "source": "s", "timestamp": "2026-11-26T05:00:00.123456Z",
}


@pytest.fixture(scope="module")
def tsc() -> Path:
    """The TypeScript compiler from types/node_modules, installed by `npm ci` if missing."""
    npm_ci(TYPES)  # under a lock: pytest-xdist's workers may get here at once
    return TSC


def strict_fixture_events() -> list[dict[str, object]]:
    """Every event of tests/fixtures/*.ndjson that is a valid strict v1 event."""
    events = []
    for path in sorted((ROOT / "tests" / "fixtures").glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                parse_event(line, strict=True)
            except InvalidEventError:
                continue
            events.append(json.loads(line))
    return events


def compile_ts(tsc: Path, tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "check.ts"
    path.write_text(source)
    return subprocess.run(
        [str(tsc), "--strict", "--noEmit", "--target", "es2020", "--module", "esnext",
         "--moduleResolution", "bundler", str(path), str(TYPES / "check" / "consumer.ts")],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_committed_types_are_generated_from_the_committed_schema(tsc):
    """progress-event.d.ts is what generate.mjs makes of the schema; regenerate if not."""
    generated = subprocess.run(
        ["node", str(TYPES / "generate.mjs"), "--stdout"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    committed = (TYPES / "progress-event.d.ts").read_text()
    assert generated == committed, "the schema changed: run `npm run generate` in types/"


def test_sample_streams_type_check_and_refused_events_do_not(tsc, tmp_path):
    """tsc --strict accepts every strict v1 fixture event and rejects each REFUSED one."""
    events = strict_fixture_events()
    assert len(events) > 100
    types = {e["event"] for e in events}
    assert {"PROCESSING_STARTED", "FRAME_ANALYSIS_PROGRESS", "ANALYSIS_FAILED"} <= types
    lines = [
        f'import type {{ ProgressEvent }} from "{TYPES / "progress-event"}";',
        'import { nextRow } from "' + str(TYPES / "check" / "consumer") + '";',
        f"export const samples: ProgressEvent[] = {json.dumps(events, indent=1)};",
        "export const rows = samples.map((e) => nextRow(undefined, e));",
    ]
    for name, fields in REFUSED.items():
        event = {k: v for k, v in {**ENVELOPE, **fields}.items() if v is not None}
        lines += [f"// {name}", "// @ts-expect-error", f"export const bad_{len(lines)}: "
                  f"ProgressEvent = {json.dumps(event)};"]
    result = compile_ts(tsc, tmp_path, "\n".join(lines) + "\n")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_fails_on_an_event_that_breaks_the_types(tsc, tmp_path):
    """A sample stream with a wrong field type makes tsc fail, so the check can fail."""
    event = {**ENVELOPE, "event": "FRAME_ANALYSIS_PROGRESS",
             "data": {"model_name": "M", "progress": 1, "total": "300"}}
    source = (
        f'import type {{ ProgressEvent }} from "{TYPES / "progress-event"}";\n'
        f"export const samples: ProgressEvent[] = [{json.dumps(event)}];\n"
    )
    result = compile_ts(tsc, tmp_path, source)
    assert result.returncode != 0
    assert "total" in result.stdout

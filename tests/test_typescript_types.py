"""The channel event's TypeScript types, as ``@progress-sdk/client`` (clients/js) exports
them, checked by ``tsc --strict``.

Every event of the sample streams in ``tests/fixtures`` that is a strict v1 event must
type-check as a ``ProgressEvent`` imported from the built package, together with the
channel consumer example ``clients/js/examples/consumer.ts``, while events the contract
refuses in ways a type can express (no ``data``, progress without ``total``...) must not;
every type name ``src/generated/channel.ts`` declares is importable from the package. That
the generated file is what docs/schema makes (no drift) is checked in test_js_client.py.
Issue #9, finding 4; since #20 these types have one home (the ``types/`` package is retired).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from js_package import check_strict

from progress_sdk import InvalidEventError, parse_event

ROOT = Path(__file__).parent.parent
CHANNEL = ROOT / "clients" / "js" / "src" / "generated" / "channel.ts"
CONSUMER = ROOT / "clients" / "js" / "examples" / "consumer.ts"

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


def channel_type_names() -> list[str]:
    """Every type and interface src/generated/channel.ts exports."""
    return re.findall(r"^export (?:type|interface) (\w+)", CHANNEL.read_text(), re.M)


def test_sample_streams_type_check_and_refused_events_do_not(
    js_client: Path, tmp_path: Path
) -> None:
    """tsc --strict accepts every strict v1 fixture event as the package's ProgressEvent
    (folded by the consumer example) and every channel type name the package should export,
    and rejects each REFUSED event."""
    events = strict_fixture_events()
    assert len(events) > 100
    types = {e["event"] for e in events}
    assert {"PROCESSING_STARTED", "FRAME_ANALYSIS_PROGRESS", "ANALYSIS_FAILED"} <= types
    names = channel_type_names()
    assert {"ProgressEvent", "JsonValue", "AnalysisFailedEvent", "ProgressData"} <= set(names)
    lines = [
        f'import type {{ {", ".join(names)} }} from "@progress-sdk/client";',
        'import { nextRow } from "./consumer";',
        f"export type ChannelTypes = [{', '.join(names)}];",
        f"export const samples: ProgressEvent[] = {json.dumps(events, indent=1)};",
        "export const rows = samples.map((e) => nextRow(undefined, e));",
    ]
    for name, fields in REFUSED.items():
        event = {k: v for k, v in {**ENVELOPE, **fields}.items() if v is not None}
        lines += [f"// {name}", "// @ts-expect-error", f"export const bad_{len(lines)}: "
                  f"ProgressEvent = {json.dumps(event)};"]
    sources = {"check.ts": "\n".join(lines) + "\n", "consumer.ts": CONSUMER.read_text()}
    out = check_strict(js_client, tmp_path, sources)
    assert out == "", out


def test_the_check_fails_on_an_event_that_breaks_the_types(
    js_client: Path, tmp_path: Path
) -> None:
    """A sample stream with a wrong field type makes tsc fail, so the check can fail."""
    event = {**ENVELOPE, "event": "FRAME_ANALYSIS_PROGRESS",
             "data": {"model_name": "M", "progress": 1, "total": "300"}}
    source = (
        'import type { ProgressEvent } from "@progress-sdk/client";\n'
        f"export const samples: ProgressEvent[] = [{json.dumps(event)}];\n"
    )
    out = check_strict(js_client, tmp_path, {"check.ts": source})
    assert "check.ts" in out and "total" in out, out

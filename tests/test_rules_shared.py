"""One list of event names and one blank-string rule, shared by the models, the per-event
rules, the fast path and the lifecycle validator."""

from __future__ import annotations

import sys

import pytest

from progress_sdk import InvalidEventError, ProgressEvent, _fast_accept, _rules
from progress_sdk.exceptions import Problem

WHITESPACE_LIKE = sorted(
    {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()} | set("\x1c\x1d\x1e\x1f")
)


@pytest.mark.parametrize("char", WHITESPACE_LIKE, ids=lambda c: f"U+{ord(c):04X}")
def test_blank_means_the_same_to_the_rules_and_the_fast_path(char):
    """A one-character text is refused by check_str exactly when it is blank, and the
    fast path never accepts what check_str refuses (it may defer more)."""
    blank = _rules.is_blank(char)
    problems: list[Problem] = []
    _rules.check_str(problems, "user_id", char, 10, required=True, what="x")
    assert bool(problems) == blank
    assert _fast_accept._bad_str(char, 10) or not blank


@pytest.mark.parametrize("char", WHITESPACE_LIKE, ids=lambda c: f"U+{ord(c):04X}")
def test_the_pydantic_model_agrees_on_blank_text(char):
    """ProgressEvent (its pattern \\S) refuses a one-character text exactly when it is blank."""
    fields = {
        "media_id": "m1",
        "user_id": char,
        "event": "PROCESSING_STARTED",
        "message": "started",
        "data": {},
        "schema_version": 1,
        "seq": 1,
        "source": "s",
        "timestamp": "2026-11-26T05:00:00.000000Z",
    }
    try:
        ProgressEvent(**fields)
    except InvalidEventError:
        refused = True
    else:
        refused = False
    assert refused == _rules.is_blank(char)

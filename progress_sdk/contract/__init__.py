"""Check a stream of progress events against the v1 contract's lifecycle rules.

``LifecycleValidator`` reads events from any producer one at a time, so it can run live
on the channel as well as over a recorded NDJSON file. It checks each event's fields
with ``_rules.check_event`` (the single implementation of the per-event rules) and the
lifecycle rules 1–6 of docs/contract.md incrementally::

    validator = LifecycleValidator(strict=True)
    for position, line in enumerate(lines, start=1):
        for finding in validator.feed(line, position):
            print(finding)
    report = validator.finish()

Memory is proportional to the runs and models that are open, not to the number of
events: a run's state is dropped at its terminal event. Open runs are bounded too
(``MAX_OPEN_RUNS``): past that many, the runs seen least recently (by the position of
their last event; a sixteenth of the table at a time) are forgotten and reported as
incomplete (its later events are not lifecycle-checked; its terminal event
takes it off the list), so a live validator of a stream where jobs die runs in flat
memory. Three things are remembered past a run's end, each in a bounded
least-recently-used table so a long or endless stream cannot grow them without limit
(``MAX_FINISHED_RUNS``, ``MAX_SEQUENCES``, ``MAX_FINDINGS``):

* finished runs, to report events that arrive after a run's terminal event (rule 4).
  An event for a run evicted from this table is reported as an event before
  ``PROCESSING_STARTED`` (rule 1) instead: still a violation, named differently;
* the last ``seq`` per (source, media_id), to report repeats (rule 6) and gaps (lost
  events), with a 64-bit digest of each of the pair's last ``REPEAT_WINDOW`` events. An
  exact copy of an event already seen (same bytes, so same source, media_id and seq) is
  what a publisher resends after a connection reset: it is counted in
  ``Report.duplicates`` and dropped, as consumers drop it, not checked again. A
  different event reusing a seq stays a rule-6 violation. A pair evicted and seen again
  starts afresh, as a pair seen for the first time does (the first ``seq`` seen is the
  baseline: a validator that joins a live stream late, or a publisher that continues
  its sequence into a re-analysis, does not start at 1);
* the findings themselves: the report keeps the first ``MAX_FINDINGS`` of each kind and
  exact counts of all of them.

One concept a module: ``_decode`` (JSON as the relay reads it, digests), ``_report``
(``Finding``, ``Report``, their text and the tally of findings), ``_sequences`` (rule 6
and duplicates), ``_runs`` (the open, forgotten and finished runs), ``_lifecycle``
(rules 1-5), ``_validator`` (``LifecycleValidator``, which composes them and holds the
fast path) and ``_reading`` (NDJSON lines and ``validate_lines``).
"""

from __future__ import annotations

from .. import _rules
from ..exceptions import Problem
from ._reading import read_lines, validate_lines
from ._report import MAX_FINDINGS, Finding, Report
from ._runs import MAX_FINISHED_RUNS, MAX_OPEN_RUNS
from ._sequences import MAX_SEQUENCES, REPEAT_WINDOW
from ._validator import LifecycleValidator, ValidatorSizes

__all__ = [
    "MAX_FINDINGS",
    "MAX_FINISHED_RUNS",
    "MAX_OPEN_RUNS",
    "MAX_SEQUENCES",
    "REPEAT_WINDOW",
    "Finding",
    "LifecycleValidator",
    "Report",
    "ValidatorSizes",
    "check_event",
    "read_lines",
    "validate_lines",
]


def check_event(obj: object, *, strict: bool = False) -> tuple[str | None, list[Problem]]:
    """Check one decoded event's own fields (not its place in a run), as a relay does.

    Returns the normalised event type (``None`` when missing or unknown) and the problems;
    an empty list means the event is valid. ``strict`` requires the v1 envelope.
    """
    return _rules.check_event(obj, strict=strict)

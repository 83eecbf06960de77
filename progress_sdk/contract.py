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
"""

from __future__ import annotations

import heapq
import json
import json.scanner
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from . import _rules
from . import defaults as d
from ._fast_accept import fast_accept
from .event_types import (
    MEDIA_TERMINAL_NAMES,
    MODEL_EVENT_NAMES,
    MODEL_TERMINAL_NAMES,
    PROGRESS_EVENT_NAMES,
)
from .exceptions import Problem

__all__ = [
    "MAX_FINDINGS",
    "MAX_FINISHED_RUNS",
    "MAX_OPEN_RUNS",
    "MAX_SEQUENCES",
    "REPEAT_WINDOW",
    "Finding",
    "LifecycleValidator",
    "Report",
    "check_event",
    "read_lines",
    "validate_lines",
]

# Sized for a relay that sees thousands of media an hour: late events after a terminal
# event and seq repeats arrive within seconds, far inside 10,000 runs or publishers'
# media. Each entry costs a few hundred bytes (~700 for a seq pair with its digests), so
# the tables stay under ~15 MB.
MAX_FINISHED_RUNS = 10_000
MAX_SEQUENCES = 10_000
# Exact repeats are recognised among the last 32 events of each (source, media_id): a
# publisher resends what its cut connection left unanswered, a batch's events of one
# media, at once. A power of two (the slot is ``seq & _REPEAT_MASK``); 256 bytes a pair.
REPEAT_WINDOW = 32
_REPEAT_MASK = REPEAT_WINDOW - 1
_NO_DIGESTS = array("q", bytes(8 * REPEAT_WINDOW))
# Open runs: far more than a fleet has in flight at once (a media takes minutes), so only
# runs whose job died are ever forgotten. ~350 bytes each with a model or two: ~20 MB.
MAX_OPEN_RUNS = 50_000
# A stream that is wrong throughout (say, every line is not JSON) would otherwise keep a
# finding per event; the first thousand say everything a person will read.
MAX_FINDINGS = 1_000


def _reject_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON does not, and neither does the relay's
    # JSON.parse, so an event holding them never reaches the UI.
    raise ValueError(f"{name} is not valid JSON")


# The standard library's C scanner, called directly: json.loads(bytes) would also sniff
# the encoding (the wire is UTF-8 by contract) and go through two wrapper functions,
# which costs about a third of its time on a typical event.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_scan_once: Any = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type, unused-ignore]
_JSON_SPACE = " \t\n\r"


def _stdlib_loads(raw: bytes | str) -> Any:
    """``json.loads`` for one UTF-8 event, with json's own error for anything unusual."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        obj, end = _scan_once(text, 0)
    except StopIteration:  # leading whitespace, or no JSON value at all
        return _DECODER.decode(text)
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return _DECODER.decode(text)  # raises "Extra data"
    return obj


try:
    # orjson parses a typical event three times faster, which is most of the validator's
    # time (docs/benchmarks.md). It is used when installed; both reject what JSON does
    # not allow (NaN, Infinity, invalid UTF-8, a BOM). They differ only at the edges:
    # orjson also rejects lone surrogate escapes and reads integers beyond 64 bits as
    # floats.
    import orjson

    _loads: Any = orjson.loads

    def _canonical(obj: dict[str, Any]) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)

except ImportError:  # pragma: no cover - depends on the environment
    _loads = _stdlib_loads

    def _canonical(obj: dict[str, Any]) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

# orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors; RecursionError comes
# from the standard library on deeply nested arrays.
_DECODE_ERRORS = (ValueError, RecursionError)


Kind = Literal["violation", "lost", "incomplete"]
RunKey = tuple[str, "str | None"]

_MODEL_EVENTS = MODEL_EVENT_NAMES
_PROGRESS_EVENTS = PROGRESS_EVENT_NAMES
_MEDIA_TERMINALS = MEDIA_TERMINAL_NAMES
_MODEL_TERMINALS = MODEL_TERMINAL_NAMES

# Model states, ordered so that ``state >= _COMPLETED`` means "has its terminal event".
_QUEUED, _STARTED, _COMPLETED, _FAILED = 0, 1, 2, 3
_STATE_NAMES = {_QUEUED: "ANALYSIS_QUEUED", _STARTED: "ANALYSIS_STARTED"}
# The events that may begin a model's next attempt (data.details.attempt above its last).
_ATTEMPT_STARTS = frozenset({"ANALYSIS_QUEUED", "ANALYSIS_STARTED"})


@dataclass(frozen=True)
class Finding:
    """One thing the validator found: a violation, lost events, or a run left open.

    ``rule`` is ``"rule 1"`` … ``"rule 6"`` for the lifecycle rules of docs/contract.md,
    ``"event"`` for a per-event field rule (then ``field`` and ``check`` say which) and
    ``"json"`` for a line that is not a JSON document. ``position`` is the line number
    for files (or what the caller passed to ``feed``); ``count`` is the number of lost
    events for ``kind == "lost"``.
    """

    kind: Kind
    rule: str
    position: int | None
    message: str
    media_id: str | None = None
    run_id: str | None = None
    model_name: str | None = None
    source: str | None = None
    field: str | None = None
    check: str | None = None
    count: int | None = None

    def __str__(self) -> str:
        where = f"line {self.position}: " if self.position is not None else ""
        what = "lost events" if self.kind == "lost" else self.rule
        if self.rule == "event":
            what = f"event field {self.field} ({self.check})"
        if self.kind == "incomplete":
            what = f"incomplete run ({self.rule})"
        ids = [
            f"{name} {_quote(value)}"
            for name, value in (
                ("source", self.source),
                ("media", self.media_id),
                ("run", self.run_id),
                ("model", self.model_name),
            )
            if value is not None
        ]
        about = f" [{', '.join(ids)}]" if ids else ""
        return f"{where}{what}{about}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict, ``None`` fields left out."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _quote(value: str) -> str:
    # repr escapes newlines, control characters and lone surrogates, so an identity
    # taken from a hostile line can neither break the report's layout nor the terminal.
    text = repr(value[:80] + ("…" if len(value) > 80 else ""))
    return text[1:-1]


@dataclass
class Report:
    """What a validator found in a whole stream; ``ok`` says whether it keeps the contract.

    ``violations``, ``lost`` and ``incomplete`` hold the first ``MAX_FINDINGS`` findings
    of each kind; ``violation_count``, ``lost_events`` and ``incomplete_count`` count
    all of them. Lost events (seq gaps) do not make a stream invalid: pub/sub is
    at-most-once. Neither do ``duplicates``, exact repeats of an event already seen (a
    publisher's resend after a connection reset): dropped, counted, and left out of
    ``counts``. Runs left open count as rule-4 violations unless ``allow_incomplete``.
    """

    events: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    violations: list[Finding] = field(default_factory=list)
    violation_count: int = 0
    violations_by_rule: dict[str, int] = field(default_factory=dict)
    lost: list[Finding] = field(default_factory=list)
    lost_gaps: int = 0
    lost_events: int = 0
    duplicates: int = 0
    incomplete: list[Finding] = field(default_factory=list)
    incomplete_count: int = 0
    strict: bool = False
    allow_incomplete: bool = False

    @property
    def ok(self) -> bool:
        """True when there is no violation (and no open run, unless those are allowed)."""
        return self.violation_count == 0 and (self.allow_incomplete or self.incomplete_count == 0)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (what ``progress-sim validate --json`` prints)."""
        return {
            "ok": self.ok,
            "strict": self.strict,
            "allow_incomplete": self.allow_incomplete,
            "events": self.events,
            "counts": dict(sorted(self.counts.items())),
            "violation_count": self.violation_count,
            "violations_by_rule": dict(sorted(self.violations_by_rule.items())),
            "violations": [f.to_dict() for f in self.violations],
            "lost_gaps": self.lost_gaps,
            "lost_events": self.lost_events,
            "lost": [f.to_dict() for f in self.lost],
            "duplicates": self.duplicates,
            "incomplete_count": self.incomplete_count,
            "incomplete": [f.to_dict() for f in self.incomplete],
        }

    def to_text(self, *, allow_hint: str = "--allow-incomplete accepts them") -> str:
        """A report for people: a verdict line, then each finding on its own line.

        ``allow_hint`` tells how to accept incomplete runs where the report is read (the
        CLI's flag by default; the testing helpers name their Python argument).
        """
        mode = "strict" if self.strict else "lenient"
        verdict = "VALID" if self.ok else "INVALID"
        lines = [f"{verdict}: {_plural(self.events, 'event')} checked ({mode} mode)"]
        if self.counts:
            lines.append("  " + ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items())))
        if self.violation_count:
            by_rule = ", ".join(f"{r}: {n}" for r, n in sorted(self.violations_by_rule.items()))
            lines.append(f"{_plural(self.violation_count, 'violation')} ({by_rule})")
            lines.extend(f"  {f}" for f in self.violations)
            _more(lines, self.violation_count, len(self.violations))
        if self.incomplete_count:
            counted = (
                "allowed"
                if self.allow_incomplete
                else f"counted as rule 4 violations; {allow_hint}"
            )
            lines.append(
                f"{_plural(self.incomplete_count, 'incomplete run')} (no PROCESSING_COMPLETED or "
                f"PROCESSING_FAILED; {counted})"
            )
            lines.extend(f"  {f}" for f in self.incomplete)
            _more(lines, self.incomplete_count, len(self.incomplete))
        if self.lost_gaps:
            gaps = _plural(self.lost_gaps, "seq gap")
            lines.append(
                f"{_plural(self.lost_events, 'event')} lost in {gaps} "
                "(not a violation: pub/sub is at-most-once)"
            )
            lines.extend(f"  {f}" for f in self.lost)
            _more(lines, self.lost_gaps, len(self.lost))
        if self.duplicates:
            lines.append(
                f"{_plural(self.duplicates, 'duplicate')} dropped (exact repeats of an event "
                "already seen, as a publisher resends after a connection reset; not a violation)"
            )
        return "\n".join(lines)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _more(lines: list[str], total: int, shown: int) -> None:
    if total > shown:
        lines.append(f"  … and {total - shown} more")


class _Model:
    """What the validator knows about one model of an open run."""

    __slots__ = ("attempt", "progress", "state", "where")

    def __init__(self, state: int, where: int, attempt: int = 1) -> None:
        self.state = state
        self.where = where  # position of the event that set ``state``
        self.progress: dict[str, tuple[int, int, int]] | None = None  # type -> (p, total, pos)
        self.attempt = attempt  # data.details.attempt of a retried job; 1 otherwise


def _attempt_of(data: dict[str, Any]) -> int:
    """``data.details.attempt`` (a job retried on failure, e.g. RQ's Retry), else 1."""
    details = data.get("details")
    attempt = details.get("attempt") if isinstance(details, dict) else None
    return attempt if type(attempt) is int and attempt > 1 else 1


def _new_attempt(run: _Run, name: str, model: _Model, event: str, *, pos: int,
                 attempt: int) -> None:
    """Rule 2, retries: the model's next attempt starts over, whatever the last one did."""
    if model.state == _COMPLETED:
        run.completed -= 1
    state = _QUEUED if event == "ANALYSIS_QUEUED" else _STARTED
    run.models[name] = _Model(state, pos, attempt)


class _Sequence:
    """The last seq of a (source, media_id) pair and digests of its recent events."""

    __slots__ = ("digests", "last")

    def __init__(self, last: int, digest: int) -> None:
        self.last = last
        # Slot ``seq & _REPEAT_MASK`` holds the digest of event ``seq``; a slot reused by a
        # later seq holds that event's digest, which cannot match (the seq is in the bytes).
        self.digests = _NO_DIGESTS[:]
        self.digests[last & _REPEAT_MASK] = digest


class _Run:
    """An open run: started, no media terminal event yet."""

    __slots__ = ("completed", "last", "models", "started")

    def __init__(self, started: int) -> None:
        self.started = started
        self.last = started
        self.completed = 0
        self.models: dict[str, _Model] = {}


def _after_model_end(event: str, model: _Model) -> str:
    done = "ANALYSIS_COMPLETED" if model.state == _COMPLETED else "ANALYSIS_FAILED"
    return (
        f"{event} after {done} at line {model.where}; expected nothing for the model after "
        "its terminal event (exactly one of ANALYSIS_COMPLETED / ANALYSIS_FAILED)"
    )


def _start_late(
    event: str, run: _Run, name: str, model: _Model | None, pos: int
) -> tuple[_Model, str]:
    """A progress or phase event of a model not started: the model as if it had started
    (so this omission is reported once), and the problem."""
    what = "ANALYSIS_QUEUED only" if model is not None else "no ANALYSIS_STARTED"
    if model is None:
        model = run.models[name] = _Model(_STARTED, pos)
    else:
        model.state, model.where = _STARTED, pos
    return model, (
        f"{event} for a model with {what}; expected ANALYSIS_STARTED before its progress "
        "and phase events"
    )


def _end_model(event: str, run: _Run, name: str, model: _Model | None, pos: int) -> str | None:
    """Record a model's terminal event (it has none yet); the problem with it, if any."""
    completed = event == "ANALYSIS_COMPLETED"
    problem = None
    # A model that fails before it starts (the job gave up while it was queued) may go
    # straight to ANALYSIS_FAILED; a completed one must have started.
    if model is None or (completed and model.state == _QUEUED):
        before = "ANALYSIS_STARTED" if completed else "ANALYSIS_STARTED or ANALYSIS_QUEUED"
        problem = f"{event} for a model that was never started; expected {before} first"
    if model is None:
        model = run.models[name] = _Model(_STARTED, pos)
    model.state, model.where = (_COMPLETED if completed else _FAILED), pos
    if completed:
        run.completed += 1
    model.progress = None  # no longer needed: nothing may follow
    return problem


class LifecycleValidator:
    """Feed events one at a time; ``finish()`` returns the ``Report``.

    ``strict`` requires the v1 envelope (``schema_version``, ``seq``, ``source``,
    ``timestamp``); lenient mode (the default) accepts producers that omit it.
    ``allow_incomplete`` accepts runs still open when the stream ends (a crashed job).
    The ``max_*`` arguments bound the memory kept for open runs and past a run's end (see
    the module doc).
    """

    def __init__(
        self,
        strict: bool = False,
        *,
        allow_incomplete: bool = False,
        max_findings: int = MAX_FINDINGS,
        max_finished_runs: int = MAX_FINISHED_RUNS,
        max_sequences: int = MAX_SEQUENCES,
        max_open_runs: int = MAX_OPEN_RUNS,
    ) -> None:
        self.strict = strict
        self._report = Report(strict=strict, allow_incomplete=allow_incomplete)
        self._max_findings = max_findings
        self._max_finished = max_finished_runs
        self._max_sequences = max_sequences
        self._max_open = max_open_runs
        # Open runs. A plain dict: recency is each run's ``last`` position, which every
        # event sets anyway, so the hot path pays nothing for it (see _forget_oldest).
        self._runs: dict[RunKey, _Run] = {}
        # Runs forgotten while open -> what finish() reports of them (incomplete, unless
        # their terminal event still comes); bounded like _finished. ``_forgotten_gone``
        # counts those pushed out of this table too: incomplete for good.
        self._forgotten: OrderedDict[RunKey, tuple[int, int, str]] = OrderedDict()
        self._forgotten_gone = 0
        self._gone_listed: list[Finding] = []
        # run -> (terminal event type, its position); insertion order is recency.
        self._finished: OrderedDict[RunKey, tuple[str, int]] = OrderedDict()
        self._seqs: OrderedDict[tuple[str, str], _Sequence] = OrderedDict()
        self._fed = 0

    # -- input ------------------------------------------------------------------------

    def feed(self, raw: bytes | str | dict[str, Any], position: int | None = None) -> list[Finding]:
        """Check one event (a wire message, or a decoded dict); return what it breaks.

        ``position`` is reported with each finding (use the line number for files); it
        defaults to the number of events fed so far. Never raises for bad input: every
        problem is a finding. An exact repeat of an event already seen returns no finding
        and is counted in ``Report.duplicates`` (for a dict: equal content).
        """
        self._fed += 1
        pos = self._fed if position is None else position
        self._report.events += 1
        if isinstance(raw, dict):
            obj: Any = raw
            digest = _digest_of(raw)
        else:
            # Python's hash of the bytes (SipHash, keyed per process): what tells a resent
            # copy from a different event with the same seq, for ~1 % of feed's time.
            digest = hash(raw)
            # A str is at most 4 UTF-8 bytes a character: only long ones are encoded.
            if len(raw) * (4 if isinstance(raw, str) else 1) > d.MAX_EVENT_BYTES and (
                _size(raw.rstrip()) > d.MAX_EVENT_BYTES  # the line's newline is not counted
            ):
                return [self._too_large(raw, pos)]
            try:
                obj = _loads(raw)
            except _DECODE_ERRORS as exc:
                return [self._violation("json", pos, f"not a JSON document: {_brief(exc)}")]

        # fast_accept is check_event's own first step; calling it here saves two calls
        # per event, and check_event runs whenever it does not accept.
        event = fast_accept(obj, self.strict) if type(obj) is dict else None
        if event is not None:
            return self._accepted(event, obj, digest, pos)
        return self._checked(obj, digest, pos)

    def _too_large(self, raw: bytes | str, pos: int) -> Finding:
        size = _size(raw.rstrip())
        return self._violation(
            "event",
            pos,
            f"the event is {size} bytes or more, at most {d.MAX_EVENT_BYTES} allowed",
            field="$",
            check="max_size",
        )

    def _checked(self, obj: Any, digest: int, pos: int) -> list[Finding]:
        """``feed`` for a decoded event ``fast_accept`` did not accept: every rule, typed.

        Its per-event findings come first, then those of the sequence and lifecycle rules.
        """
        event, problems = _rules.check_event(obj, strict=self.strict)
        if event is not None and self._repeats(obj, digest):
            return []
        if event is not None:
            counts = self._report.counts
            counts[event] = counts.get(event, 0) + 1
        findings: list[Finding] = []
        if problems:
            where = _identity(obj) if isinstance(obj, dict) else {}
            for p in problems:
                findings.append(
                    self._violation("event", pos, p.message, field=p.field, check=p.rule, **where)
                )
        if event is None:
            return findings
        # Lifecycle rules apply even when some other field is wrong, as long as the
        # event's identity is usable: dropping a PROCESSING_STARTED for a bad user_id
        # would turn every later event of its run into a rule-1 violation.
        media_id = obj.get("media_id")
        run_id = obj.get("run_id")
        if (
            type(media_id) is not str
            or not media_id
            or (run_id is not None and type(run_id) is not str)
        ):
            return findings
        seq = obj.get("seq")
        source = obj.get("source")
        if type(seq) is int and type(source) is str:
            # Rule 6: the usual case is the next seq of a pair seen before.
            seqs = self._seqs
            seq_key = (source, media_id)
            seen = seqs.get(seq_key)
            if seen is not None and seq == seen.last + 1:
                seen.last = seq
                seen.digests[seq & _REPEAT_MASK] = digest
                seqs.move_to_end(seq_key)
            else:
                self._check_seq(seq_key, seq, seen, digest, pos, findings)
        self._check_lifecycle(event, obj, (media_id, run_id), pos, findings)
        return findings

    def _accepted(self, event: str, obj: dict[str, Any], digest: int, pos: int) -> list[Finding]:
        """``feed`` for an event ``fast_accept`` accepted: most events, so written out.

        What the fast path accepted is known to be well typed: ``media_id`` is a
        non-empty str, ``run_id`` and ``source`` are a str or absent, ``seq`` an int or
        absent, and a progress event's ``model_name`` a non-empty str with int
        ``progress`` and ``total``. The checks are those of ``feed`` and
        ``_check_lifecycle``, without the type tests that guard them there.
        """
        findings: list[Finding] = []
        get = obj.get
        media_id: str = obj["media_id"]
        seq = get("seq")
        if seq is not None:
            source = get("source")
            if source is not None:
                # Rule 6: the usual case is the next seq of a pair seen before.
                seqs = self._seqs
                seq_key = (source, media_id)
                pair = seqs.get(seq_key)
                if pair is not None and seq == pair.last + 1:
                    pair.last = seq
                    pair.digests[seq & _REPEAT_MASK] = digest
                    seqs.move_to_end(seq_key)
                elif self._check_seq(seq_key, seq, pair, digest, pos, findings):
                    return findings  # an exact repeat: counted, not checked again
        counts = self._report.counts
        counts[event] = counts.get(event, 0) + 1
        run_id: str | None = get("run_id")
        key = (media_id, run_id)
        run = self._runs.get(key)
        if run is None or event not in _PROGRESS_EVENTS:
            self._check_lifecycle(event, obj, key, pos, findings)
            return findings
        # A progress event of an open run (rule 3), the most common event of all.
        run.last = pos
        data = obj["data"]
        name = data["model_name"]
        model = run.models.get(name)
        if model is None or model.state != _STARTED:
            self._check_model(event, data, run, name, key, pos, findings)
            return findings
        seen = model.progress
        if seen is not None:
            previous = seen.get(event)
            if previous is not None:
                progress = data["progress"]
                total = data["total"]
                if total == previous[1] and progress >= previous[0]:
                    seen[event] = (progress, total, pos)
                    return findings
        self._check_progress(event, data, model, name, key, pos, findings)
        return findings

    def finish(self) -> Report:
        """Return the report, with every run still open listed as incomplete.

        Does not reset the validator: feeding more and calling ``finish`` again gives an
        up-to-date report (useful for a live validator's periodic summaries).
        """
        report = self._report
        report.incomplete = self._gone_listed[: self._max_findings]
        report.incomplete_count = self._forgotten_gone + len(self._forgotten) + len(self._runs)
        forgotten = ((key, *seen) for key, seen in self._forgotten.items())
        still_open = ((key, *_open_run_facts(run)) for key, run in self._runs.items())
        for source in (forgotten, still_open):
            for key, started, last, models in source:
                if len(report.incomplete) >= self._max_findings:
                    break
                report.incomplete.append(self._incomplete(key, started, last, models))
        return report

    def _incomplete(
        self, key: RunKey, started: int, last: int, models: str, *, forgotten: bool = False
    ) -> Finding:
        why = (
            f"and was forgotten when more than {self._max_open} runs were open (job crashed?)"
            if forgotten or key in self._forgotten
            else "(job crashed or stream cut short)"
        )
        return Finding(
            "incomplete",
            "rule 4",
            started,
            f"run started at line {started}, last event at line {last}, has no "
            f"PROCESSING_COMPLETED or PROCESSING_FAILED {why}{models}",
            media_id=key[0],
            run_id=key[1],
        )

    def _open_run(self, key: RunKey, pos: int) -> _Run:
        """Open a run; forget the least recently seen ones when too many are open."""
        run = self._runs[key] = _Run(pos)
        if self._forgotten and key in self._forgotten:
            del self._forgotten[key]  # it is back: open again, no longer forgotten
        if len(self._runs) > self._max_open:
            self._forget_oldest()
        return run

    def _forget_oldest(self) -> None:
        """Forget the sixteenth of the open runs whose last event is oldest.

        In batches, so that finding them (a partial sort by ``last``) costs a few
        microseconds per run opened instead of a recency update on every event.
        """
        count = max(1, self._max_open // 16)
        oldest = heapq.nsmallest(count, self._runs.items(), key=_last_position)
        forgotten = self._forgotten
        for old_key, old in oldest:
            del self._runs[old_key]
            forgotten[old_key] = _open_run_facts(old)
        while len(forgotten) > self._max_finished:
            gone_key, gone = forgotten.popitem(last=False)
            self._forgotten_gone += 1
            if len(self._gone_listed) < self._max_findings:
                self._gone_listed.append(self._incomplete(gone_key, *gone, forgotten=True))

    def _forgotten_event(self, event: str, key: RunKey, pos: int) -> bool:
        """Handle an event of a run forgotten while open; False if the run is not one.

        Its state is gone, so its events are not checked against rules 2-5; its terminal
        event takes it off the incomplete list.
        """
        seen = self._forgotten.pop(key, None)
        if seen is None:
            return False
        if event in _MEDIA_TERMINALS:
            self._remember_finished(key, event, pos)
        else:
            self._forgotten[key] = (seen[0], pos, seen[2])
        return True

    # -- rules ------------------------------------------------------------------------

    def _repeats(self, obj: dict[str, Any], digest: int) -> bool:
        """True (and counted) when ``obj`` is an exact repeat of an event already seen.

        For the general path, which asks before it reports the event's own findings; the
        accepted path learns it from ``_check_seq``. The identity must be usable, as for
        the lifecycle rules.
        """
        media_id = obj.get("media_id")
        run_id = obj.get("run_id")
        seq = obj.get("seq")
        source = obj.get("source")
        if (
            type(media_id) is not str
            or (run_id is not None and type(run_id) is not str)
            or type(seq) is not int
            or type(source) is not str
        ):
            return False
        seen = self._seqs.get((source, media_id))
        if seen is None or not _copies(seen, seq, digest):
            return False
        self._seqs.move_to_end((source, media_id))
        self._report.duplicates += 1
        return True

    def _check_seq(  # noqa: PLR0917
        self,
        key: tuple[str, str],
        seq: int,
        seen: _Sequence | None,
        digest: int,
        pos: int,
        findings: list[Finding],
    ) -> bool:
        """Rule 6 for a seq that is not the next of its pair; True for an exact repeat."""
        seqs = self._seqs
        if seen is None:
            seqs[key] = _Sequence(seq, digest)
            if len(seqs) > self._max_sequences:
                seqs.popitem(last=False)
            return False
        seqs.move_to_end(key)
        if _copies(seen, seq, digest):
            self._report.duplicates += 1
            return True
        last = seen.last
        source, media_id = key
        if seq <= last:
            what = "repeats" if seq == last else "decreases from"
            findings.append(
                self._violation(
                    "rule 6",
                    pos,
                    f"seq {seq} {what} {last}; expected a seq greater than {last} "
                    "(strictly increasing per source and media_id)",
                    media_id=media_id,
                    source=source,
                )
            )
            return False  # keep the highest seq seen, so one stray event is reported once
        seen.last = seq
        seen.digests[seq & _REPEAT_MASK] = digest
        findings.append(self._lost(source, media_id, last, seq, pos))
        return False

    # The _check_* methods take positional arguments: they run for every event, and
    # keyword passing costs measurably there (see docs/benchmarks.md).
    def _check_lifecycle(
        self, event: str, obj: dict[str, Any], key: RunKey, pos: int, findings: list[Finding]
    ) -> None:
        media_id, run_id = key
        run = self._runs.get(key)
        if run is None:
            ended = self._finished.get(key)
            if event == "PROCESSING_STARTED":
                # A new PROCESSING_STARTED after a terminal event is a re-analysis.
                if ended is not None:
                    del self._finished[key]
                self._open_run(key, pos)
                return
            if ended is not None:
                self._finished.move_to_end(key)
                terminal, at = ended
                again = "a second media terminal event" if event in _MEDIA_TERMINALS else event
                findings.append(
                    self._violation(
                        "rule 4",
                        pos,
                        f"{again} after {terminal} at line {at}; expected nothing for the "
                        "run after its media terminal event (exactly one per run)",
                        media_id=media_id,
                        run_id=run_id,
                        model_name=_model_of(obj),
                    )
                )
                return
            if self._forgotten and self._forgotten_event(event, key, pos):
                return
            findings.append(
                self._violation(
                    "rule 1",
                    pos,
                    f"{event} before PROCESSING_STARTED; expected PROCESSING_STARTED "
                    "first in every run",
                    media_id=media_id,
                    run_id=run_id,
                    model_name=_model_of(obj),
                )
            )
            # Carry on as if it had started, so the rest of the run is still checked
            # and this one omission is reported once.
            run = self._open_run(key, pos)
        run.last = pos

        if event in _MODEL_EVENTS:
            data = obj.get("data")
            if isinstance(data, dict):
                name = data.get("model_name")
                if type(name) is str and name:
                    self._check_model(event, data, run, name, key, pos, findings)
        elif event in _MEDIA_TERMINALS:
            self._check_terminal(event, run, key, pos, findings)
        # A repeated PROCESSING_STARTED before the terminal event is allowed (rule 1).

    def _check_model(  # noqa: PLR0917
        self,
        event: str,
        data: dict[str, Any],
        run: _Run,
        name: str,
        key: RunKey,
        pos: int,
        findings: list[Finding],
    ) -> None:
        model = run.models.get(name)
        if model is None:
            state = -1
        else:
            state = model.state
            if state == _STARTED and event in _PROGRESS_EVENTS:
                # Most events are this one: a progress update of a running model.
                self._check_progress(event, data, model, name, key, pos, findings)
                return
        if event in _ATTEMPT_STARTS:
            attempt = _attempt_of(data)
            if model is not None and attempt > model.attempt:
                _new_attempt(run, name, model, event, pos=pos, attempt=attempt)
                return
        problem: str | None = None

        if state >= _COMPLETED:
            assert model is not None
            problem = _after_model_end(event, model)
        elif event == "ANALYSIS_QUEUED":
            if model is None:
                run.models[name] = _Model(_QUEUED, pos)
            elif state == _STARTED:
                problem = (
                    f"ANALYSIS_QUEUED after ANALYSIS_STARTED at line {model.where}; "
                    "expected ANALYSIS_QUEUED, if sent, before ANALYSIS_STARTED"
                )
        elif event == "ANALYSIS_STARTED":
            if model is None:
                run.models[name] = _Model(_STARTED, pos)
            elif state == _QUEUED:
                model.state, model.where = _STARTED, pos
            else:
                problem = (
                    f"ANALYSIS_STARTED repeated (first at line {model.where}); expected "
                    "one ANALYSIS_STARTED per model and run"
                )
        elif event in _MODEL_TERMINALS:
            problem = _end_model(event, run, name, model, pos)
        else:  # a progress or phase event (before ANALYSIS_STARTED, if state is not _STARTED)
            if model is None or state == _QUEUED:
                model, problem = _start_late(event, run, name, model, pos)
            if event in _PROGRESS_EVENTS:
                self._check_progress(event, data, model, name, key, pos, findings)
        if problem is not None:
            findings.append(
                self._violation(
                    "rule 2", pos, problem, media_id=key[0], run_id=key[1], model_name=name
                )
            )

    def _check_progress(  # noqa: PLR0917
        self,
        event: str,
        data: dict[str, Any],
        model: _Model,
        name: str,
        key: RunKey,
        pos: int,
        findings: list[Finding],
    ) -> None:
        progress = data.get("progress")
        total = data.get("total")
        if type(progress) is not int or type(total) is not int:
            return  # already reported by the per-event rules
        seen = model.progress
        if seen is None:
            model.progress = {event: (progress, total, pos)}
            return
        previous = seen.get(event)
        if previous is not None:
            last_progress, last_total, at = previous
            if total != last_total or progress < last_progress:
                if total != last_total:
                    problem = (
                        f"{event} total changed from {last_total} (line {at}) to {total}; "
                        "expected the same total for the whole model and event type"
                    )
                else:
                    problem = (
                        f"{event} progress decreased from {last_progress}/{last_total} "
                        f"(line {at}) to {progress}/{total}; expected it never to decrease"
                    )
                findings.append(
                    self._violation(
                        "rule 3", pos, problem, media_id=key[0], run_id=key[1], model_name=name
                    )
                )
                if total == last_total:
                    return  # keep the high-water mark
        seen[event] = (progress, total, pos)

    def _check_terminal(
        self, event: str, run: _Run, key: RunKey, pos: int, findings: list[Finding]
    ) -> None:
        media_id, run_id = key
        open_models = [name for name, m in run.models.items() if m.state < _COMPLETED]
        if open_models:
            findings.append(
                self._violation(
                    "rule 4",
                    pos,
                    f"{event} while {_names(open_models)} had no terminal event; expected "
                    "ANALYSIS_COMPLETED or ANALYSIS_FAILED for every model first",
                    media_id=media_id,
                    run_id=run_id,
                )
            )
        if event == "PROCESSING_COMPLETED" and run.completed == 0:
            failed = sum(1 for m in run.models.values() if m.state == _FAILED)
            why = f"all {failed} models failed" if failed else "no model completed"
            findings.append(
                self._violation(
                    "rule 5",
                    pos,
                    f"PROCESSING_COMPLETED but {why}; expected PROCESSING_FAILED unless at "
                    "least one model completed",
                    media_id=media_id,
                    run_id=run_id,
                )
            )
        del self._runs[key]
        self._remember_finished(key, event, pos)

    def _remember_finished(self, key: RunKey, event: str, pos: int) -> None:
        finished = self._finished
        finished[key] = (event, pos)
        if len(finished) > self._max_finished:
            finished.popitem(last=False)

    # -- findings ---------------------------------------------------------------------

    def _violation(self, rule: str, pos: int, message: str, **about: Any) -> Finding:
        report = self._report
        finding = Finding("violation", rule, pos, message, **about)
        report.violation_count += 1
        report.violations_by_rule[rule] = report.violations_by_rule.get(rule, 0) + 1
        if len(report.violations) < self._max_findings:
            report.violations.append(finding)
        return finding

    def _lost(self, source: str, media_id: str, last: int, seq: int, pos: int) -> Finding:
        report = self._report
        count = seq - last - 1
        finding = Finding(
            "lost",
            "rule 6",
            pos,
            f"seq jumped from {last} to {seq}: {_plural(count, 'event')} lost",
            media_id=media_id,
            source=source,
            count=count,
        )
        report.lost_gaps += 1
        report.lost_events += count
        if len(report.lost) < self._max_findings:
            report.lost.append(finding)
        return finding


def _copies(seen: _Sequence, seq: int, digest: int) -> bool:
    """Whether the event ``seq`` with ``digest`` was seen among the pair's recent events."""
    # 0 is an empty slot (and a dict that cannot be serialised has no digest).
    return seq <= seen.last and digest != 0 and seen.digests[seq & _REPEAT_MASK] == digest


def _digest_of(obj: dict[str, Any]) -> int:
    """A digest of a decoded event's content (keys sorted); 0 when it cannot be made."""
    try:
        return hash(_canonical(obj))
    except (TypeError, ValueError, RecursionError):  # orjson's JSONEncodeError is a TypeError
        return 0


def _last_position(item: tuple[RunKey, _Run]) -> int:
    return item[1].last


def _open_run_facts(run: _Run) -> tuple[int, int, str]:
    """(started, last, "; models without a terminal event: …") of an open run."""
    open_models = [name for name, m in run.models.items() if m.state < _COMPLETED]
    models = f"; models without a terminal event: {_names(open_models)}" if open_models else ""
    return run.started, run.last, models


def _identity(obj: dict[str, Any]) -> dict[str, Any]:
    """The media/run/model of a (possibly broken) event, where they are strings."""
    about: dict[str, Any] = {}
    for key, name in (("media_id", "media_id"), ("run_id", "run_id"), ("source", "source")):
        value = obj.get(key)
        if type(value) is str:
            about[name] = value
    model = _model_of(obj)
    if model is not None:
        about["model_name"] = model
    return about


def _model_of(obj: dict[str, Any]) -> str | None:
    data = obj.get("data")
    name = data.get("model_name") if isinstance(data, dict) else None
    return name if type(name) is str else None


def _names(names: list[str]) -> str:
    shown = ", ".join(_quote(n) for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _size(raw: bytes | str) -> int:
    return len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)


def _brief(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    return str(exc)[:200]


def read_lines(
    stream: IO[bytes], max_bytes: int = d.MAX_EVENT_BYTES, chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """Yield the lines of a binary stream (without their newline) in bounded memory.

    A line longer than ``max_bytes`` is yielded cut to ``max_bytes + 1`` bytes (enough
    for the validator to report it as too large without parsing it) and the rest of it
    is skipped, so a multi-gigabyte line without a newline cannot exhaust memory. The
    stream is read in chunks: a readline() call per line would cost a tenth of the
    validator's time.
    """
    limit = max_bytes + 1
    pending = b""  # the start of a line whose newline has not been read yet
    skipping = False  # the current line was too long: it was yielded cut, skip its rest
    while chunk := stream.read(chunk_size):
        parts = chunk.split(b"\n")
        rest = parts.pop()
        for part in parts:
            if skipping:
                skipping = False
                continue
            line = pending + part if pending else part
            pending = b""
            yield line if len(line) <= limit else line[:limit]
        if not skipping and rest:
            pending += rest
            if len(pending) > limit:
                yield pending[:limit]
                pending, skipping = b"", True
    if pending:
        yield pending


def validate_lines(
    lines: Iterable[bytes | str],
    strict: bool = False,
    *,
    allow_incomplete: bool = False,
) -> Report:
    """Validate NDJSON lines (blank lines are skipped); findings name 1-based line numbers."""
    validator = LifecycleValidator(strict, allow_incomplete=allow_incomplete)
    feed = validator.feed
    for number, line in enumerate(lines, start=1):
        if line and not line.isspace():
            feed(line, number)
    return validator.finish()


def check_event(obj: object, *, strict: bool = False) -> tuple[str | None, list[Problem]]:
    """Check one decoded event's own fields (not its place in a run), as a relay does.

    Returns the normalised event type (``None`` when missing or unknown) and the problems;
    an empty list means the event is valid. ``strict`` requires the v1 envelope.
    """
    return _rules.check_event(obj, strict=strict)

"""What the validator found: ``Finding`` and ``Report``, their text, and the tally that
records findings into a report within its bounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "MAX_FINDINGS",
    "Finding",
    "Kind",
    "Report",
    "Tally",
    "identity",
    "model_of",
    "names",
    "plural",
    "quote",
]

# A stream that is wrong throughout (say, every line is not JSON) would otherwise keep a
# finding per event; the first thousand say everything a person will read.
MAX_FINDINGS = 1_000

Kind = Literal["violation", "lost", "incomplete"]


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
            f"{name} {quote(value)}"
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


def quote(value: str) -> str:
    """A value from an event, escaped and cut to 80 characters for a finding's text."""
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
        lines = [f"{verdict}: {plural(self.events, 'event')} checked ({mode} mode)"]
        if self.counts:
            lines.append("  " + ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items())))
        if self.violation_count:
            by_rule = ", ".join(f"{r}: {n}" for r, n in sorted(self.violations_by_rule.items()))
            lines.append(f"{plural(self.violation_count, 'violation')} ({by_rule})")
            lines.extend(f"  {f}" for f in self.violations)
            _more(lines, self.violation_count, len(self.violations))
        if self.incomplete_count:
            counted = (
                "allowed"
                if self.allow_incomplete
                else f"counted as rule 4 violations; {allow_hint}"
            )
            lines.append(
                f"{plural(self.incomplete_count, 'incomplete run')} (no PROCESSING_COMPLETED or "
                f"PROCESSING_FAILED; {counted})"
            )
            lines.extend(f"  {f}" for f in self.incomplete)
            _more(lines, self.incomplete_count, len(self.incomplete))
        if self.lost_gaps:
            gaps = plural(self.lost_gaps, "seq gap")
            lines.append(
                f"{plural(self.lost_events, 'event')} lost in {gaps} "
                "(not a violation: pub/sub is at-most-once)"
            )
            lines.extend(f"  {f}" for f in self.lost)
            _more(lines, self.lost_gaps, len(self.lost))
        if self.duplicates:
            lines.append(
                f"{plural(self.duplicates, 'duplicate')} dropped (exact repeats of an event "
                "already seen, as a publisher resends after a connection reset; not a violation)"
            )
        return "\n".join(lines)


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, in the plural unless ``n`` is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _more(lines: list[str], total: int, shown: int) -> None:
    if total > shown:
        lines.append(f"  … and {total - shown} more")


class Tally:
    """Records findings into a report: all of them counted, the first ``max_findings``
    of each kind kept."""

    __slots__ = ("max_findings", "report")

    def __init__(self, report: Report, max_findings: int) -> None:
        self.report = report
        self.max_findings = max_findings

    def violation(self, rule: str, pos: int, message: str, **about: Any) -> Finding:
        """Record a violation of ``rule`` at ``pos`` and return it."""
        report = self.report
        finding = Finding("violation", rule, pos, message, **about)
        report.violation_count += 1
        report.violations_by_rule[rule] = report.violations_by_rule.get(rule, 0) + 1
        if len(report.violations) < self.max_findings:
            report.violations.append(finding)
        return finding

    def lost(self, source: str, media_id: str, last: int, seq: int, pos: int) -> Finding:
        """Record the events lost between ``last`` and ``seq`` (a seq gap) and return it."""
        report = self.report
        count = seq - last - 1
        finding = Finding(
            "lost",
            "rule 6",
            pos,
            f"seq jumped from {last} to {seq}: {plural(count, 'event')} lost",
            media_id=media_id,
            source=source,
            count=count,
        )
        report.lost_gaps += 1
        report.lost_events += count
        if len(report.lost) < self.max_findings:
            report.lost.append(finding)
        return finding


def identity(obj: dict[str, Any]) -> dict[str, Any]:
    """The media/run/model of a (possibly broken) event, where they are strings."""
    about: dict[str, Any] = {}
    for key in ("media_id", "run_id", "source"):
        value = obj.get(key)
        if type(value) is str:
            about[key] = value
    model = model_of(obj)
    if model is not None:
        about["model_name"] = model
    return about


def model_of(obj: dict[str, Any]) -> str | None:
    """The event's ``data.model_name`` when it is a string."""
    data = obj.get("data")
    name = data.get("model_name") if isinstance(data, dict) else None
    return name if type(name) is str else None


def names(items: list[str]) -> str:
    """The first five names, quoted, and how many more there are."""
    shown = ", ".join(quote(n) for n in items[:5])
    return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")

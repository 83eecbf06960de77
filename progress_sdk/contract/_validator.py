"""``LifecycleValidator``: decodes each event, checks its fields with ``_rules``, and hands
it to the seq rule (``_sequences``) and the lifecycle rules (``_lifecycle``).

Most events take the fast path, ``_accepted``: an event ``fast_accept`` accepted, whose
seq is the next of its pair and which is a progress update of a running model. It is
written out against the collaborators' tables, bound once in ``__init__``, and held to
the general path by tests/test_contract.py's differential test, which turns it off, and
``fast_accept`` with it, with ``fast_path=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _rules
from .. import defaults as d
from .._fast_accept import fast_accept
from ._decode import DECODE_ERRORS, JsonDecoder, brief, decoder_named, digest_of, size
from ._lifecycle import PROGRESS_EVENTS, LifecycleRules
from ._report import MAX_FINDINGS, Finding, Report, Tally, identity
from ._runs import MAX_FINISHED_RUNS, MAX_OPEN_RUNS, STARTED, RunTable
from ._sequences import MAX_SEQUENCES, REPEAT_MASK, Sequences

__all__ = ["LifecycleValidator", "ValidatorSizes"]


@dataclass(frozen=True)
class ValidatorSizes:
    """How many entries a validator's bounded tables hold (``LifecycleValidator.sizes``)."""

    open_runs: int
    forgotten_runs: int
    finished_runs: int
    sequences: int


def _accept_none(obj: dict[str, Any], strict: bool) -> None:
    """``fast_accept`` for a validator without its fast path: accepts nothing."""
    return None


class LifecycleValidator:
    """Feed events one at a time; ``finish()`` returns the ``Report``.

    ``strict`` requires the v1 envelope (``schema_version``, ``seq``, ``source``,
    ``timestamp``); lenient mode (the default) accepts producers that omit it.
    ``allow_incomplete`` accepts runs still open when the stream ends (a crashed job).
    The ``max_*`` arguments bound the memory kept for open runs and past a run's end (see
    the module doc of ``progress_sdk.contract``). ``json_decoder`` reads each message:
    ``"auto"`` (orjson when installed, else the standard library), ``"orjson"`` or
    ``"stdlib"`` (Python's ``json``; the two differ only at the edges: orjson also
    rejects lone surrogate escapes and reads integers beyond 64 bits as floats).
    ``fast_path=False`` takes every event through every rule, one after the other (the
    event's fields, then its seq, then its place in its run), without the shortcuts for
    valid events (``fast_accept``, and ``_accepted`` below): the same findings, more
    slowly; for checking the shortcuts, or a finding one doubts. All are kept as attributes of the
    same names.
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
        json_decoder: JsonDecoder = "auto",
        fast_path: bool = True,
    ) -> None:
        self.strict = strict
        self.json_decoder = json_decoder
        self.fast_path = fast_path
        self._loads = decoder_named(json_decoder)
        # Without the fast path, no event is accepted by the shortcut: all take _checked.
        self._fast_accept = fast_accept if fast_path else _accept_none
        self.max_findings = max_findings
        self.max_finished_runs = max_finished_runs
        self.max_sequences = max_sequences
        self.max_open_runs = max_open_runs
        self._report = Report(strict=strict, allow_incomplete=allow_incomplete)
        self._tally = Tally(self._report, max_findings)
        self._table = RunTable(max_open_runs, max_finished_runs, max_findings)
        self._sequences = Sequences(self._tally, max_sequences)
        rules = LifecycleRules(self._table, self._tally)
        # What the fast path reads for every event, bound once: an attribute of this
        # object is one lookup, a collaborator's attribute or method two.
        self._runs = self._table.open
        self._seqs = self._sequences.table
        self._check_seq = self._sequences.check
        self._check_lifecycle = rules.check
        self._check_model = rules.check_model
        self._check_progress = rules.check_progress
        self._fed = 0

    def sizes(self) -> ValidatorSizes:
        """How many runs and sequences the validator holds now (each table is bounded)."""
        return ValidatorSizes(
            open_runs=len(self._table.open),
            forgotten_runs=len(self._table.forgotten),
            finished_runs=len(self._table.finished),
            sequences=len(self._seqs),
        )

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
            digest = digest_of(raw)
        else:
            # Python's hash of the bytes (SipHash, keyed per process): what tells a resent
            # copy from a different event with the same seq, for ~1 % of feed's time.
            digest = hash(raw)
            # A str is at most 4 UTF-8 bytes a character: only long ones are encoded.
            if len(raw) * (4 if isinstance(raw, str) else 1) > d.MAX_EVENT_BYTES and (
                size(raw.rstrip()) > d.MAX_EVENT_BYTES  # the line's newline is not counted
            ):
                return [self._too_large(raw, pos)]
            try:
                obj = self._loads(raw)
            except DECODE_ERRORS as exc:
                return [self._tally.violation("json", pos, f"not a JSON document: {brief(exc)}")]

        # fast_accept is check_event's own first step; calling it here saves two calls
        # per event, and check_event runs whenever it does not accept.
        event = self._fast_accept(obj, self.strict) if type(obj) is dict else None
        if event is not None:
            return self._accepted(event, obj, digest, pos)
        return self._checked(obj, digest, pos)

    def _too_large(self, raw: bytes | str, pos: int) -> Finding:
        return self._tally.violation(
            "event",
            pos,
            f"the event is {size(raw.rstrip())} bytes or more, at most {d.MAX_EVENT_BYTES} "
            "allowed",
            field="$",
            check="max_size",
        )

    def _checked(self, obj: Any, digest: int, pos: int) -> list[Finding]:
        """``feed`` for a decoded event ``fast_accept`` did not accept: every rule, typed.

        Its per-event findings come first, then those of the sequence and lifecycle rules.
        """
        event, problems = _rules.check_event(obj, strict=self.strict, fast=self.fast_path)
        if event is not None and self._sequences.repeats(obj, digest):
            return []
        if event is not None:
            counts = self._report.counts
            counts[event] = counts.get(event, 0) + 1
        findings: list[Finding] = []
        if problems:
            where = identity(obj) if isinstance(obj, dict) else {}
            violation = self._tally.violation
            for p in problems:
                findings.append(
                    violation("event", pos, p.message, field=p.field, check=p.rule, **where)
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
                seen.digests[seq & REPEAT_MASK] = digest
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
        ``progress`` and ``total``. The checks are those of ``_checked`` and
        ``LifecycleRules.check``, without the type tests that guard them there.
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
                    pair.digests[seq & REPEAT_MASK] = digest
                    seqs.move_to_end(seq_key)
                elif self._check_seq(seq_key, seq, pair, digest, pos, findings):
                    return findings  # an exact repeat: counted, not checked again
        counts = self._report.counts
        counts[event] = counts.get(event, 0) + 1
        run_id: str | None = get("run_id")
        key = (media_id, run_id)
        run = self._runs.get(key)
        if run is None or event not in PROGRESS_EVENTS:
            self._check_lifecycle(event, obj, key, pos, findings)
            return findings
        # A progress event of an open run (rule 3), the most common event of all.
        run.last = pos
        data = obj["data"]
        name = data["model_name"]
        model = run.models.get(name)
        if model is None or model.state != STARTED:
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
        self._table.report_incomplete(self._report)
        return self._report

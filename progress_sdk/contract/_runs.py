"""The runs the lifecycle rules keep: open runs with their models, runs forgotten while
open, and finished runs, each table bounded.

Open runs are bounded (``MAX_OPEN_RUNS``): past that many, the runs seen least recently
(by the position of their last event; a sixteenth of the table at a time) are forgotten
and reported as incomplete; their later events are not lifecycle-checked and their
terminal event takes them off the list. Finished runs are remembered in a
least-recently-used table (``MAX_FINISHED_RUNS``) to report events after a run's end.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

from ._report import Finding, Report, names

__all__ = [
    "COMPLETED",
    "FAILED",
    "MAX_FINISHED_RUNS",
    "MAX_OPEN_RUNS",
    "QUEUED",
    "STARTED",
    "Model",
    "Run",
    "RunKey",
    "RunTable",
]

# Sized for a relay that sees thousands of media an hour: late events after a terminal
# event arrive within seconds, far inside 10,000 runs. A few hundred bytes an entry.
MAX_FINISHED_RUNS = 10_000
# Open runs: far more than a fleet has in flight at once (a media takes minutes), so only
# runs whose job died are ever forgotten. ~350 bytes each with a model or two: ~20 MB.
MAX_OPEN_RUNS = 50_000

RunKey = tuple[str, "str | None"]

# Model states, ordered so that ``state >= COMPLETED`` means "has its terminal event".
QUEUED, STARTED, COMPLETED, FAILED = 0, 1, 2, 3


class Model:
    """What the validator knows about one model of an open run."""

    __slots__ = ("attempt", "progress", "state", "where")

    def __init__(self, state: int, where: int, attempt: int = 1) -> None:
        self.state = state
        self.where = where  # position of the event that set ``state``
        self.progress: dict[str, tuple[int, int, int]] | None = None  # type -> (p, total, pos)
        self.attempt = attempt  # data.details.attempt of a retried job; 1 otherwise


class Run:
    """An open run: started, no media terminal event yet."""

    __slots__ = ("completed", "last", "models", "started")

    def __init__(self, started: int) -> None:
        self.started = started
        self.last = started
        self.completed = 0
        self.models: dict[str, Model] = {}

    def facts(self) -> tuple[int, int, str]:
        """(started, last, "; models without a terminal event: …") of the open run."""
        open_models = [name for name, m in self.models.items() if m.state < COMPLETED]
        models = f"; models without a terminal event: {names(open_models)}" if open_models else ""
        return self.started, self.last, models


class RunTable:
    """Open, forgotten and finished runs, within their bounds."""

    def __init__(self, max_open: int, max_finished: int, max_findings: int) -> None:
        self.max_open = max_open
        self.max_finished = max_finished
        self.max_findings = max_findings
        # A plain dict: recency is each run's ``last`` position, which every event sets
        # anyway, so the hot path pays nothing for it (see _forget_oldest).
        self.open: dict[RunKey, Run] = {}
        # Runs forgotten while open -> what finish() reports of them (incomplete, unless
        # their terminal event still comes); bounded like ``finished``. ``_gone`` counts
        # those pushed out of this table too: incomplete for good.
        self.forgotten: OrderedDict[RunKey, tuple[int, int, str]] = OrderedDict()
        self._gone = 0
        self._gone_listed: list[Finding] = []
        # run -> (terminal event type, its position); insertion order is recency.
        self.finished: OrderedDict[RunKey, tuple[str, int]] = OrderedDict()

    def open_run(self, key: RunKey, pos: int) -> Run:
        """Open a run; forget the least recently seen ones when too many are open."""
        run = self.open[key] = Run(pos)
        if self.forgotten and key in self.forgotten:
            del self.forgotten[key]  # it is back: open again, no longer forgotten
        if len(self.open) > self.max_open:
            self._forget_oldest()
        return run

    def _forget_oldest(self) -> None:
        """Forget the sixteenth of the open runs whose last event is oldest.

        In batches, so that finding them (a partial sort by ``last``) costs a few
        microseconds per run opened instead of a recency update on every event.
        """
        count = max(1, self.max_open // 16)
        oldest = heapq.nsmallest(count, self.open.items(), key=_last_position)
        forgotten = self.forgotten
        for old_key, old in oldest:
            del self.open[old_key]
            forgotten[old_key] = old.facts()
        while len(forgotten) > self.max_finished:
            gone_key, gone = forgotten.popitem(last=False)
            self._gone += 1
            if len(self._gone_listed) < self.max_findings:
                self._gone_listed.append(self._incomplete(gone_key, *gone, forgotten=True))

    def forgotten_event(self, key: RunKey, pos: int, terminal: str | None) -> bool:
        """Take an event of a run forgotten while open; False if the run is not one.

        Its state is gone, so its events are not checked against rules 2-5; its terminal
        event (``terminal``, the event's type when it is a media terminal event) takes it
        off the incomplete list.
        """
        seen = self.forgotten.pop(key, None)
        if seen is None:
            return False
        if terminal is not None:
            self.remember_finished(key, terminal, pos)
        else:
            self.forgotten[key] = (seen[0], pos, seen[2])
        return True

    def remember_finished(self, key: RunKey, event: str, pos: int) -> None:
        """Remember that ``key`` ended with ``event`` at ``pos``."""
        finished = self.finished
        finished[key] = (event, pos)
        if len(finished) > self.max_finished:
            finished.popitem(last=False)

    def report_incomplete(self, report: Report) -> None:
        """List every run still open, or forgotten open, as incomplete in ``report``."""
        report.incomplete = self._gone_listed[: self.max_findings]
        report.incomplete_count = self._gone + len(self.forgotten) + len(self.open)
        forgotten = ((key, *seen) for key, seen in self.forgotten.items())
        still_open = ((key, *run.facts()) for key, run in self.open.items())
        for source in (forgotten, still_open):
            for key, started, last, models in source:
                if len(report.incomplete) >= self.max_findings:
                    break
                report.incomplete.append(self._incomplete(key, started, last, models))

    def _incomplete(
        self, key: RunKey, started: int, last: int, models: str, *, forgotten: bool = False
    ) -> Finding:
        why = (
            f"and was forgotten when more than {self.max_open} runs were open (job crashed?)"
            if forgotten or key in self.forgotten
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


def _last_position(item: tuple[RunKey, Run]) -> int:
    return item[1].last

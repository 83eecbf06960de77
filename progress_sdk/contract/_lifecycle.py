"""The lifecycle rules 1-5 of docs/contract.md, checked one event at a time against the
runs in a ``RunTable``: a run starts first (rule 1), a model's events come in order
(rule 2), progress never decreases (rule 3), a run ends once, after its models (rule 4),
and completes only if a model did (rule 5)."""

from __future__ import annotations

from typing import Any

from ..event_types import (
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    ANALYSIS_QUEUED,
    ANALYSIS_STARTED,
    MEDIA_TERMINAL_NAMES,
    MODEL_EVENT_NAMES,
    MODEL_TERMINAL_NAMES,
    PROCESSING_COMPLETED,
    PROCESSING_STARTED,
    PROGRESS_EVENT_NAMES,
)
from ._report import Finding, Tally, model_of, names
from ._runs import COMPLETED, FAILED, QUEUED, STARTED, Model, Run, RunKey, RunTable

__all__ = ["MEDIA_TERMINALS", "PROGRESS_EVENTS", "LifecycleRules"]

MODEL_EVENTS = MODEL_EVENT_NAMES
PROGRESS_EVENTS = PROGRESS_EVENT_NAMES
MEDIA_TERMINALS = MEDIA_TERMINAL_NAMES
MODEL_TERMINALS = MODEL_TERMINAL_NAMES
# The events that may begin a model's next attempt (data.details.attempt above its last).
_ATTEMPT_STARTS = frozenset({ANALYSIS_QUEUED, ANALYSIS_STARTED})


class LifecycleRules:
    """Rules 1-5 over the runs of ``table``; findings recorded by ``tally``."""

    __slots__ = ("_finished", "_forgotten", "_open", "_table", "_tally")

    def __init__(self, table: RunTable, tally: Tally) -> None:
        self._table = table
        self._tally = tally
        # The table's dicts, bound once: they are read for every event.
        self._open = table.open
        self._finished = table.finished
        self._forgotten = table.forgotten

    # The check methods take positional arguments: they run for every event, and
    # keyword passing costs measurably there (see docs/benchmarks.md).
    def check(
        self, event: str, obj: dict[str, Any], key: RunKey, pos: int, findings: list[Finding]
    ) -> None:
        media_id, run_id = key
        run = self._open.get(key)
        if run is None:
            ended = self._finished.get(key)
            if event == PROCESSING_STARTED:
                # A new PROCESSING_STARTED after a terminal event is a re-analysis.
                if ended is not None:
                    del self._finished[key]
                self._table.open_run(key, pos)
                return
            if ended is not None:
                self._finished.move_to_end(key)
                terminal, at = ended
                again = "a second media terminal event" if event in MEDIA_TERMINALS else event
                findings.append(
                    self._tally.violation(
                        "rule 4",
                        pos,
                        f"{again} after {terminal} at line {at}; expected nothing for the "
                        "run after its media terminal event (exactly one per run)",
                        media_id=media_id,
                        run_id=run_id,
                        model_name=model_of(obj),
                    )
                )
                return
            if self._forgotten and self._table.forgotten_event(
                key, pos, event if event in MEDIA_TERMINALS else None
            ):
                return
            findings.append(
                self._tally.violation(
                    "rule 1",
                    pos,
                    f"{event} before PROCESSING_STARTED; expected PROCESSING_STARTED "
                    "first in every run",
                    media_id=media_id,
                    run_id=run_id,
                    model_name=model_of(obj),
                )
            )
            # Carry on as if it had started, so the rest of the run is still checked
            # and this one omission is reported once.
            run = self._table.open_run(key, pos)
        run.last = pos

        if event in MODEL_EVENTS:
            data = obj.get("data")
            if isinstance(data, dict):
                name = data.get("model_name")
                if type(name) is str and name:
                    self.check_model(event, data, run, name, key, pos, findings)
        elif event in MEDIA_TERMINALS:
            self._check_terminal(event, run, key, pos, findings)
        # A repeated PROCESSING_STARTED before the terminal event is allowed (rule 1).

    def check_model(  # noqa: PLR0917
        self,
        event: str,
        data: dict[str, Any],
        run: Run,
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
            if state == STARTED and event in PROGRESS_EVENTS:
                # Most events are this one: a progress update of a running model.
                self.check_progress(event, data, model, name, key, pos, findings)
                return
        if event in _ATTEMPT_STARTS:
            attempt = _attempt_of(data)
            if model is not None and attempt > model.attempt:
                _new_attempt(run, name, model, event, pos=pos, attempt=attempt)
                return
        problem: str | None = None

        if state >= COMPLETED:
            assert model is not None
            problem = _after_model_end(event, model)
        elif event == ANALYSIS_QUEUED:
            if model is None:
                run.models[name] = Model(QUEUED, pos)
            elif state == STARTED:
                problem = (
                    f"ANALYSIS_QUEUED after ANALYSIS_STARTED at line {model.where}; "
                    "expected ANALYSIS_QUEUED, if sent, before ANALYSIS_STARTED"
                )
        elif event == ANALYSIS_STARTED:
            if model is None:
                run.models[name] = Model(STARTED, pos)
            elif state == QUEUED:
                model.state, model.where = STARTED, pos
            else:
                problem = (
                    f"ANALYSIS_STARTED repeated (first at line {model.where}); expected "
                    "one ANALYSIS_STARTED per model and run"
                )
        elif event in MODEL_TERMINALS:
            problem = _end_model(event, run, name, model, pos)
        else:  # a progress or phase event (before ANALYSIS_STARTED, if state is not STARTED)
            if model is None or state == QUEUED:
                model, problem = _start_late(event, run, name, model, pos)
            if event in PROGRESS_EVENTS:
                self.check_progress(event, data, model, name, key, pos, findings)
        if problem is not None:
            findings.append(
                self._tally.violation(
                    "rule 2", pos, problem, media_id=key[0], run_id=key[1], model_name=name
                )
            )

    def check_progress(  # noqa: PLR0917
        self,
        event: str,
        data: dict[str, Any],
        model: Model,
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
                    self._tally.violation(
                        "rule 3", pos, problem, media_id=key[0], run_id=key[1], model_name=name
                    )
                )
                if total == last_total:
                    return  # keep the high-water mark
        seen[event] = (progress, total, pos)

    def _check_terminal(
        self, event: str, run: Run, key: RunKey, pos: int, findings: list[Finding]
    ) -> None:
        media_id, run_id = key
        open_models = [name for name, m in run.models.items() if m.state < COMPLETED]
        if open_models:
            findings.append(
                self._tally.violation(
                    "rule 4",
                    pos,
                    f"{event} while {names(open_models)} had no terminal event; expected "
                    "ANALYSIS_COMPLETED or ANALYSIS_FAILED for every model first",
                    media_id=media_id,
                    run_id=run_id,
                )
            )
        if event == PROCESSING_COMPLETED and run.completed == 0:
            failed = sum(1 for m in run.models.values() if m.state == FAILED)
            why = f"all {failed} models failed" if failed else "no model completed"
            findings.append(
                self._tally.violation(
                    "rule 5",
                    pos,
                    f"PROCESSING_COMPLETED but {why}; expected PROCESSING_FAILED unless at "
                    "least one model completed",
                    media_id=media_id,
                    run_id=run_id,
                )
            )
        del self._open[key]
        self._table.remember_finished(key, event, pos)


def _attempt_of(data: dict[str, Any]) -> int:
    """``data.details.attempt`` (a job retried on failure, e.g. RQ's Retry), else 1."""
    details = data.get("details")
    attempt = details.get("attempt") if isinstance(details, dict) else None
    return attempt if type(attempt) is int and attempt > 1 else 1


def _new_attempt(run: Run, name: str, model: Model, event: str, *, pos: int,
                 attempt: int) -> None:
    """Rule 2, retries: the model's next attempt starts over, whatever the last one did."""
    if model.state == COMPLETED:
        run.completed -= 1
    state = QUEUED if event == ANALYSIS_QUEUED else STARTED
    run.models[name] = Model(state, pos, attempt)


def _after_model_end(event: str, model: Model) -> str:
    done = ANALYSIS_COMPLETED if model.state == COMPLETED else ANALYSIS_FAILED
    return (
        f"{event} after {done} at line {model.where}; expected nothing for the model after "
        "its terminal event (exactly one of ANALYSIS_COMPLETED / ANALYSIS_FAILED)"
    )


def _start_late(
    event: str, run: Run, name: str, model: Model | None, pos: int
) -> tuple[Model, str]:
    """A progress or phase event of a model not started: the model as if it had started
    (so this omission is reported once), and the problem."""
    what = "ANALYSIS_QUEUED only" if model is not None else "no ANALYSIS_STARTED"
    if model is None:
        model = run.models[name] = Model(STARTED, pos)
    else:
        model.state, model.where = STARTED, pos
    return model, (
        f"{event} for a model with {what}; expected ANALYSIS_STARTED before its progress "
        "and phase events"
    )


def _end_model(event: str, run: Run, name: str, model: Model | None, pos: int) -> str | None:
    """Record a model's terminal event (it has none yet); the problem with it, if any."""
    completed = event == ANALYSIS_COMPLETED
    problem = None
    # A model that fails before it starts (the job gave up while it was queued) may go
    # straight to ANALYSIS_FAILED; a completed one must have started.
    if model is None or (completed and model.state == QUEUED):
        before = ANALYSIS_STARTED if completed else f"{ANALYSIS_STARTED} or {ANALYSIS_QUEUED}"
        problem = f"{event} for a model that was never started; expected {before} first"
    if model is None:
        model = run.models[name] = Model(STARTED, pos)
    model.state, model.where = (COMPLETED if completed else FAILED), pos
    if completed:
        run.completed += 1
    model.progress = None  # no longer needed: nothing may follow
    return problem

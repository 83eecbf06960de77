"""``TrackingWorker``: an RQ worker whose parent process reports what its horse could not.

RQ forks a work horse per job. A horse killed by a signal (the OOM killer's SIGKILL),
killed by RQ at a hard timeout (the job's timeout plus RQ's 60 s grace, when the job
sits in native code and ignores the soft one) or by ``send_stop_job_command`` runs no
more code: no ``except``, no ``on_failure`` callback. The worker's parent process
survives it and calls ``handle_job_failure`` for each of these; this subclass reports
the job's open models and (by contract rule 5) its media from there, through the shared
state (``RunState``) the horse kept, before RQ records the failure and enqueues the
media's finalizer.

It overrides only hooks RQ has kept public and stable since 1.16: ``handle_job_failure``
(every failure, in the parent and in the horse), ``handle_work_horse_killed`` (the exit
status of a killed horse), ``execute_job`` (which job this worker owns),
``monitor_work_horse`` (closing the job while the worker is still busy),
``stop_scheduler`` (bounded) and ``register_birth``/``register_death`` (a liveness key and
the sweeper thread). Failures
it cannot see (the worker killed with its horse) are left to the sweeper; see
``progress_sdk.rq.sweeper``. Use it with ``rq worker -w progress_sdk.rq.TrackingWorker``
or ``progress-sim worker``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from datetime import timezone
from typing import Any

from rq import Worker
from rq.exceptions import StopRequested

from ..failures import traceback_text
from ..publisher import ProgressPublisher
from . import settings
from .closing import close_job, retry_job
from .state import RunState
from .sweeper import sweep

__all__ = ["TrackingWorker", "failure_reason", "unloadable"]

log = logging.getLogger("progress_sdk.rq")


def failure_reason(job: Any, exc_string: str, exit_status: int | None) -> str:
    """The sentence the UI shows for a job that ended without reporting its failure."""
    if "stopped" in exc_string.lower():
        return "the job was stopped (RQ stop command)"
    timeout = getattr(job, "timeout", None)
    started = getattr(job, "started_at", None)
    if timeout and timeout > 0 and started is not None:
        if started.tzinfo is None:  # rq < 2 keeps naive UTC times
            started = started.replace(tzinfo=timezone.utc)
        if time.time() - started.timestamp() >= timeout:
            return f"the job ran past its {timeout} s timeout and was killed"
    if exit_status is not None and os.WIFSIGNALED(exit_status):
        number = os.WTERMSIG(exit_status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        hint = " (out of memory?)" if number == signal.SIGKILL else ""
        return f"the work horse was killed by {name}{hint}"
    if exit_status is not None:
        return f"the work horse exited with status {os.waitstatus_to_exitcode(exit_status)}"
    if not exc_string.strip():
        return "the job failed"
    # A traceback's last line names the exception's class: users read only its text.
    return traceback_text(exc_string)


def unloadable(job: Any) -> str | None:
    """Why the worker cannot import ``job``'s function (``None``: it can).

    rq imports the function by its dotted name in the work horse; a module that is not
    on ``sys.path`` fails there with ``ValueError: Invalid attribute name``, which tells
    a team nothing about the folder their worker was started in.
    """
    try:
        job.func  # noqa: B018 - rq's import of the function by name
    except Exception as exc:  # ImportError, rq's ValueError, the module's own errors
        return str(exc) or "it could not be imported"
    return None


def _waits_for_retry(job: Any) -> bool:
    """Whether RQ queued (or scheduled) the job again after this attempt failed."""
    if getattr(job, "retries_left", None) is None:
        return False  # enqueued without Retry: the common case costs no round trip
    status = job.get_status(refresh=True)
    return getattr(status, "value", status) in ("queued", "scheduled")


class TrackingWorker(Worker):
    """An ``rq.Worker`` that reports tracked jobs its work horses could not."""

    #: Seconds the liveness key lives; the sweeper reports a worker silent this long.
    alive_ttl: float = 15.0
    #: Seconds between two sweeps of this worker's sweeper thread.
    sweep_interval: float = 5.0
    #: Seconds a stopping worker waits for its scheduler process (``--with-scheduler``)
    #: after SIGTERM before it kills it. RQ's scheduler checks for a stop once a second
    #: and then releases its locks; a scheduler stuck past this holds the worker no longer.
    scheduler_stop_timeout: float = 10.0

    def __init__(
        self,
        *args: Any,
        publisher: ProgressPublisher | None = None,
        alive_ttl: float | None = None,
        sweep_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if publisher is not None:
            settings.configure(publisher=publisher)
        if alive_ttl is not None:
            self.alive_ttl = alive_ttl
        if sweep_interval is not None:
            self.sweep_interval = sweep_interval
        self._killed: dict[str, int] = {}
        self._reported: str | None = None  # the job monitor_work_horse reported
        self._stop_sweeping = threading.Event()
        self._sweeper: threading.Thread | None = None

    def _shared_state(self) -> RunState:
        config = settings.current()
        return RunState(self.connection, prefix=config.prefix, ttl=config.state_ttl)

    def execute_job(self, job: Any, queue: Any) -> Any:
        """Own the job (for the sweeper), run it, then close it if nobody did."""
        self._shared_state().record_job(job.id, owner=self.name)
        self._reported = None
        try:
            return super().execute_job(job, queue)
        finally:
            if self._reported != job.id:  # no horse was monitored (the fork failed)
                self._report(job, "the job ended without reporting its result", None)

    def monitor_work_horse(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
        """Wait for the horse, then close the job if nobody did, while still busy.

        Busy matters: RQ's SIGTERM handler raises ``StopRequested`` wherever an idle
        worker's main thread is. Raised in this report, after RQ had set the worker idle,
        it was swallowed by the report's ``except Exception`` and the worker went on; a
        non-burst one then waited for its next job instead of stopping (#20: a
        `progress-sim worker` that did not exit within 60 s of SIGTERM in 1 of 3 suite
        runs beside two CPU hogs; tests/test_rq_worker_stop.py sends it there every
        time). A busy worker's SIGTERM is RQ's warm shutdown: the report ends, then the
        worker stops.
        """
        try:
            return super().monitor_work_horse(job, queue, *args, **kwargs)
        finally:
            self._reported = job.id
            self._report(job, "the job ended without reporting its result", None)

    def handle_work_horse_killed(self, job: Any, retpid: Any, ret_val: Any, rusage: Any) -> None:
        """Remember how the horse ended, for the failure's message."""
        if isinstance(ret_val, int):
            self._killed[job.id] = ret_val
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call,unused-ignore]

    def handle_job_failure(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
        """Report the job's open models and media (or, when RQ will retry it, its next
        attempt), then let RQ record the failure."""
        exc_string = kwargs.get("exc_string", "")
        # Only in the horse, which has just tried the import: the parent runs no job code.
        if self.is_horse and unloadable(job) is not None:
            exc_string = f"the worker could not load this job's code ({job.func_name})"
        exit_status = self._killed.pop(job.id, None)
        # RQ retries any failure but a stop command (it marks the job stopped instead).
        if getattr(job, "should_retry", False) and "stopped" not in exc_string.lower():
            self._report_retry(job, failure_reason(job, exc_string, exit_status))
        else:
            self._report(job, exc_string, exit_status)
        return super().handle_job_failure(job, queue, *args, **kwargs)

    def _report_retry(self, job: Any, reason: str) -> None:
        # The decorator announced the retry already when the job raised; this one is for
        # a horse that died, or a job that failed before its code ran.
        try:
            config = settings.current()
            state = self._shared_state()
            attempts = state.attempts(job.id, job.retries_left)
            retry_job(
                settings.default_publisher(), state, job.id, reason,
                attempt=attempts - job.retries_left + 1, attempts=attempts,
                delivery_timeout=config.delivery_timeout,
            )
        except StopRequested:
            raise  # see _report
        except Exception:
            log.exception("job %s: could not report its retry", job.id)

    def _report(self, job: Any, exc_string: str, exit_status: int | None) -> None:
        # Never let reporting break the worker: RQ must still record the job's end.
        try:
            if _waits_for_retry(job):
                return  # RQ queued it again: its next attempt reports, not this one
            config = settings.current()
            close_job(
                settings.default_publisher(), self._shared_state(), job.id,
                failure_reason(job, exc_string, exit_status),
                delivery_timeout=config.delivery_timeout,
            )
        except StopRequested:
            raise  # an idle worker's SIGTERM (see monitor_work_horse): stop, as asked
        except Exception:
            log.exception("job %s: could not report its failure", job.id)

    def unsubscribe(self) -> None:
        """Leave RQ's command channel without waiting up to a minute for its thread.

        RQ's pub/sub thread waits for messages 60 s at a time, and redis-py 8's
        ``PubSubWorkerThread.stop()`` joins it without a timeout; once the thread has read
        the unsubscribe reply it sits in that wait, so a burst worker could take 60 s to
        exit (tests/test_rq_integration.py's two-worker test: 2 of 7 runs at 63 s instead
        of 3-5 s before this, 0 of 6 after, rq 3.0 and redis-py 8.2). The thread is a
        daemon: stopping it with a bound, as RQ's own ``join(timeout=1)`` meant to, loses
        nothing.
        """
        thread, pubsub = getattr(self, "pubsub_thread", None), getattr(self, "pubsub", None)
        if thread is None or pubsub is None:
            super().unsubscribe()  # type: ignore[no-untyped-call,unused-ignore]
            return
        pubsub.unsubscribe()
        try:
            thread.stop(timeout=1)
        except TypeError:  # redis-py before 8: stop() takes no timeout and does not join
            thread.stop()
        pubsub.close()

    def stop_scheduler(self) -> None:
        """Stop the scheduler process (``--with-scheduler``) within a bound.

        RQ's own sends SIGTERM and then waits for the process without a limit: a
        scheduler that never got back to its loop (stuck in a call, or forked while
        another thread held a lock it needs) would hold the worker's exit forever. This one
        waits ``scheduler_stop_timeout`` seconds, then kills it (SIGKILL) and says so;
        its locks then expire on their own (RQ's lock TTL: its interval plus 60 s).
        """
        # rq keeps the process private; its own stop_scheduler() reads the same attribute.
        process = getattr(self.scheduler, "_process", None)
        # Stopped already (a warm shutdown stops it first): its pid may be another's now.
        if process is None or not process.pid or process.exitcode is not None:
            return
        with contextlib.suppress(OSError):  # it has just exited
            os.kill(process.pid, signal.SIGTERM)
        process.join(self.scheduler_stop_timeout)
        if process.is_alive():
            log.warning(
                "worker %s: scheduler process %s did not stop within %s s of SIGTERM; "
                "killing it (SIGKILL)", self.name, process.pid, self.scheduler_stop_timeout,
            )
            process.kill()
            process.join()

    # -- liveness and the sweeper ----------------------------------------------------

    def register_birth(self, *args: Any, **kwargs: Any) -> Any:
        """Start keeping this worker's liveness key and sweeping dead workers' jobs."""
        result = super().register_birth(*args, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
        self._shared_state().keep_alive(self.name, self.alive_ttl)
        self._stop_sweeping.clear()
        self._sweeper = threading.Thread(
            target=self._keep_alive_and_sweep, name="progress-sdk-sweeper", daemon=True
        )
        self._sweeper.start()
        return result

    def register_death(self, *args: Any, **kwargs: Any) -> Any:
        """Stop the sweeper and say this worker stopped cleanly."""
        self._stop_sweeping.set()
        if self._sweeper is not None:
            self._sweeper.join(5)
        try:
            self._shared_state().forget_worker(self.name)
        except Exception:
            log.exception("could not remove the liveness key of %s", self.name)
        return super().register_death(*args, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]

    def _keep_alive_and_sweep(self) -> None:
        beat = max(self.alive_ttl / 3, 0.1)
        next_sweep = time.monotonic()
        # Wakes for whichever is due first: waiting a whole beat swept every alive_ttl/3
        # s however short sweep_interval was (5 s instead of 1 s with the defaults' TTL).
        while not self._stop_sweeping.wait(
            max(0.0, min(beat, next_sweep - time.monotonic()))
        ):
            try:
                self._shared_state().keep_alive(self.name, self.alive_ttl)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.sweep_interval
                    sweep(self.connection)
            except Exception:
                log.exception("worker %s: liveness or sweep failed; retrying", self.name)
                next_sweep = time.monotonic() + self.sweep_interval

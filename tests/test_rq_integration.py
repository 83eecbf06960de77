"""progress_sdk.rq against the real Redis server with real forking RQ workers.

Every worker here is a ``TrackingWorker`` in its own process (``tests/rq_tracked_jobs.py``)
that forks a work horse per job. RQ's keys live in database 15, shared with other test
sessions: each test uses its own queues and its own shared-state prefix and deletes its
queues afterwards. Progress events go over the test's own channel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from rich.console import Console
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.job import JobStatus

from progress_sdk import ProgressPublisher, validate_lines
from progress_sdk.rq import configure, enqueue_media, failure_reason, sweep
from progress_sdk.rq.closing import close_job
from progress_sdk.rq.settings import ENV_PREFIX, current
from progress_sdk.rq.state import RunState
from progress_sdk.testing import CapturingPublisher
from simulator.panel import PanelState, render

pytestmark = pytest.mark.redis

TESTS = Path(__file__).parent
A, B, C = "SIGLIP-LSTM-V4", "LIP-FD-V1", "COLOR-CUES-LSTM-V1"
TERMINAL = ("PROCESSING_COMPLETED", "PROCESSING_FAILED")


@pytest.fixture
def rq_url(redis_url: str) -> str:
    """The same server, database 15."""
    return urlunsplit(urlsplit(redis_url)._replace(path="/15"))


@pytest.fixture
def prefix() -> Iterator[str]:
    """A shared-state prefix of this test alone, in this process and its workers."""
    before = current().prefix
    name = f"progress-test-rq:{uuid.uuid4().hex}"
    configure(prefix=name)
    yield name
    configure(prefix=before)


@pytest.fixture
def queues(rq_url: str) -> Iterator[Callable[[], Queue]]:
    """Makes queues no other test uses; deletes them, their jobs and registries after."""
    connection = redis.Redis.from_url(rq_url)
    made: list[Queue] = []

    def make() -> Queue:
        queue = Queue(f"progress-test-{uuid.uuid4().hex}", connection=connection)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        registries = [queue.started_job_registry, queue.finished_job_registry,
                      queue.failed_job_registry, queue.deferred_job_registry,
                      queue.scheduled_job_registry, queue.canceled_job_registry]
        job_ids = set(queue.get_job_ids())
        for registry in registries:
            job_ids.update(registry.get_job_ids())
        for job_id in job_ids:
            connection.delete(f"rq:job:{job_id}", f"rq:results:{job_id}",
                              f"rq:job:{job_id}:dependents", f"rq:job:{job_id}:dependencies")
        connection.delete(*(registry.key for registry in registries))
        queue.delete(delete_jobs=True)
    connection.close()


@pytest.fixture
def publisher(redis_url: str, channel: str) -> Iterator[ProgressPublisher]:
    """The enqueuing side's publisher (it announces per-model media)."""
    out = ProgressPublisher(redis_url, channel, finish_flush_timeout=2)
    yield out
    out.close()


class Workers:
    """Starts TrackingWorker processes; kills whatever is left at the end."""

    def __init__(self, rq_url: str, events_url: str, channel: str, prefix: str) -> None:
        self.rq_url = rq_url
        self.env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
            REDIS_URL=events_url,
            MEDIA_PROGRESS_CHANNEL_NAME=channel,
            **{ENV_PREFIX: prefix},
        )
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, queue: Queue, *, burst: bool = True, alive_ttl: float = 15.0,
              ) -> subprocess.Popen[bytes]:
        command = [sys.executable, str(TESTS / "rq_tracked_jobs.py"), self.rq_url, queue.name,
                   "burst" if burst else "forever", str(alive_ttl)]
        process = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture
def workers(rq_url: str, redis_url: str, channel: str, prefix: str) -> Iterator[Workers]:
    """Real forking TrackingWorker processes publishing on this test's channel."""
    started = Workers(rq_url, redis_url, channel, prefix)
    yield started
    started.close()


def wait_for_terminals(subscriber: Any, media: set[str], timeout: float) -> list[dict[str, Any]]:
    """Wait until every media's terminal event arrived; return every event so far."""
    deadline = time.monotonic() + timeout
    while True:
        events = [json.loads(raw) for raw in subscriber.wait_for(0, timeout=0)]
        ended = {e["media_id"] for e in events if e["event"] in TERMINAL}
        if media <= ended or time.monotonic() > deadline:
            assert media <= ended, f"no terminal event for {sorted(media - ended)}"
            return events
        time.sleep(0.1)


def settle(subscriber: Any, url: str, channel: str) -> list[bytes]:
    """Everything on the channel so far: a sentinel published now arrives after it all."""
    sentinel = f"sentinel-{uuid.uuid4().hex}".encode()
    client = redis.Redis.from_url(url)
    client.publish(channel, sentinel)
    client.close()
    deadline = time.monotonic() + 10
    messages = subscriber.wait_for(1, timeout=10)
    while sentinel not in messages and time.monotonic() < deadline:
        messages = subscriber.wait_for(len(messages) + 1, timeout=deadline - time.monotonic())
    assert sentinel in messages, "the sentinel never arrived"
    return [m for m in messages if m != sentinel]


def lifecycle(events: list[dict[str, Any]], media_id: str) -> list[tuple[str, str | None]]:
    """The media's lifecycle events (no progress, no repeated PROCESSING_STARTED)."""
    out: list[tuple[str, str | None]] = []
    for e in events:
        if e["media_id"] != media_id or e["event"].endswith("_PROGRESS"):
            continue
        if e["event"] == "PROCESSING_STARTED" and ("PROCESSING_STARTED", None) in out:
            continue
        out.append((e["event"], e["data"].get("model_name")))
    return out


def errors(events: list[dict[str, Any]], media_id: str) -> dict[str | None, str]:
    """The media's error messages by model (None: the media's)."""
    return {
        e["data"].get("model_name"): e["data"]["error_message"]
        for e in events
        if e["media_id"] == media_id and "error_message" in e["data"]
    }


def assert_strictly_valid(received: list[bytes]) -> None:
    report = validate_lines(received, strict=True)
    assert report.ok, report.to_text()
    assert report.incomplete_count == 0 and report.lost_events == 0, report.to_text()
    assert len(set(received)) == len(received), "a message arrived twice"


# -- without a worker ---------------------------------------------------------------------


def test_a_tracked_job_runs_without_a_worker_with_the_testing_helpers() -> None:
    """Called directly, a tracked job emits its whole, valid stream to the given publisher."""
    import rq_tracked_jobs as jobs

    capturing = CapturingPublisher()
    outcome = jobs.analyse_media.with_publisher(capturing)(
        4, 0.0, {B: "fail"}, media_id="m-direct", user_id="u-1", models=[A, B]
    )
    assert outcome == ["completed", "failed"]
    capturing.events.assert_valid()
    assert [(e["event"], e["data"].get("model_name")) for e in capturing.events
            if not e["event"].endswith("_PROGRESS")] == [
        ("PROCESSING_STARTED", None), ("ANALYSIS_QUEUED", A), ("ANALYSIS_QUEUED", B),
        ("ANALYSIS_STARTED", A), ("ANALYSIS_COMPLETED", A),
        ("ANALYSIS_STARTED", B), ("ANALYSIS_FAILED", B), ("PROCESSING_COMPLETED", None),
    ]


def test_an_exception_outside_any_model_fails_the_media() -> None:
    """Rule 5: a job failing outside a model ends its media with PROCESSING_FAILED."""
    from progress_sdk.rq import JobTracking, tracked_job

    @tracked_job
    def broken(tracking: JobTracking) -> None:
        with tracking.model(A) as model:
            model.complete("REAL", 0.6)
        raise OSError("the upload vanished")

    capturing = CapturingPublisher()
    with pytest.raises(OSError):
        broken.with_publisher(capturing)(media_id="m-broken", user_id="u-1", models=[A])
    capturing.events.assert_valid()
    last = capturing.events[-1]
    assert last["event"] == "PROCESSING_FAILED"
    assert last["data"]["error_message"] == "the upload vanished"


def test_a_tracked_job_without_ids_says_how_to_pass_them() -> None:
    """The error names the two ways to give a job its media and user ids."""
    import rq_tracked_jobs as jobs

    from progress_sdk import TrackingError

    with pytest.raises(TrackingError, match="media_id and user_id"):
        jobs.analyse_media.with_publisher(CapturingPublisher())(1, 0.0, {})


def test_failure_reasons_name_what_ended_the_horse() -> None:
    """Stop command, signal and exit status each give the UI a sentence of their own."""

    class FakeJob:
        timeout = 180
        started_at = None

    stopped = "Job stopped by user, work-horse terminated."
    assert failure_reason(FakeJob(), stopped, None) == "the job was stopped (RQ stop command)"
    assert failure_reason(FakeJob(), "", signal.SIGKILL) == (
        "the work horse was killed by SIGKILL (out of memory?)"
    )
    assert failure_reason(FakeJob(), "", 3 << 8) == "the work horse exited with status 3"
    class Overran(FakeJob):
        timeout = 1
        started_at = datetime.now(timezone.utc) - timedelta(seconds=2)

    # RQ's hard timeout: it SIGKILLs the horse and reports no waitpid status.
    hard = "Work-horse terminated unexpectedly; waitpid returned None; "
    for status in (None, signal.SIGKILL):
        assert failure_reason(Overran(), hard, status) == (
            "the job ran past its 1 s timeout and was killed"
        )
    raised = ("Traceback (most recent call last):\n  File \"rq/utils.py\", line 9, in f\n"
              "    raise ValueError(...)\nValueError: Invalid attribute name: jobs.run\n")
    assert failure_reason(FakeJob(), raised, None) == "Invalid attribute name: jobs.run"


# -- real workers -------------------------------------------------------------------------


@pytest.mark.slow
def test_both_layouts_deliver_every_media_once_in_a_strictly_valid_stream(  # noqa: PLR0917
    rq_url, redis_url, channel, subscriber, publisher, queues, workers
):
    """3 media x 3 models per layout, two forking workers: one terminal per media, by
    rule 5, every event once, and the latest progress mirrored in each job's meta."""
    queue = queues()
    models = [A, B, C]
    per_model = {}
    single = {}
    for i in range(3):
        plan = {B: "fail"} if i == 1 else {}
        per_model[f"m-pm-{i}"] = enqueue_media(
            queue, "rq_tracked_jobs.analyse_model", 12, 0.005, plan,
            media_id=f"m-pm-{i}", user_id=f"u-{i}", models=models, run_id=f"run-{i}",
            filename=f"clip-{i}.mp4", publisher=publisher,
        )
        all_failed = dict.fromkeys(models, "fail") if i == 2 else plan
        single[f"m-single-{i}"] = enqueue_media(
            queue, "rq_tracked_jobs.analyse_media", 12, 0.005, all_failed,
            media_id=f"m-single-{i}", user_id=f"u-{i}", models=models, layout="single",
            publisher=publisher,
        )
    for process in [workers.start(queue), workers.start(queue)]:
        assert process.wait(60) == 0

    received = settle(subscriber, redis_url, channel)
    assert_strictly_valid(received)
    events = [json.loads(raw) for raw in received]
    for media_id in [*per_model, *single]:
        steps = lifecycle(events, media_id)
        assert [s for s in steps if s[0] in TERMINAL] == [steps[-1]], steps
        for model in models:
            ends = [s for s in steps if s[1] == model and s[0].startswith("ANALYSIS_")
                    and s[0] in ("ANALYSIS_COMPLETED", "ANALYSIS_FAILED")]
            assert len(ends) == 1, (media_id, model, steps)
    assert lifecycle(events, "m-pm-1")[-1] == ("PROCESSING_COMPLETED", None)
    assert errors(events, "m-pm-1") == {B: f"{B} lost the face track"}
    assert lifecycle(events, "m-single-2")[-1] == ("PROCESSING_FAILED", None)
    assert errors(events, "m-single-2")[None] == "every model failed"

    for jobs in per_model.values():
        jobs.finalizer.refresh()
        assert jobs.finalizer.get_status() == JobStatus.FINISHED
        assert jobs.finalizer.return_value() == "PROCESSING_COMPLETED"
        mirrored = jobs.jobs[A].get_meta()["progress"]
        assert (mirrored["model"], mirrored["progress"], mirrored["total"]) == (A, 12, 12)
    assert {e["data"].get("filename") for e in events
            if e["media_id"] == "m-pm-0" and e["event"] in TERMINAL} == {"clip-0.mp4"}


def _marker_pid(connection: redis.Redis, key: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = connection.get(key)
        if value is not None:
            return int(value)
        time.sleep(0.05)
    raise AssertionError(f"the job never reached {key}")


@pytest.mark.slow
def test_failures_the_job_cannot_report_close_the_media(  # noqa: PLR0917
    rq_url, redis_url, channel, subscriber, publisher, queues, workers
):
    """A SIGKILLed horse (both layouts), a horse killed past its timeout (as RQ's hard
    timeout does), a stop command and a worker killed with its horse (then the
    sweeper): each gets its failure events, by rule 5, and the whole stream stays
    strictly valid with no run left open."""
    connection = redis.Redis.from_url(rq_url)
    marker = f"progress-test-marker:{uuid.uuid4().hex}"
    frames = 20

    def enqueue(queue: Queue, media_id: str, models: list[str], plan: dict[str, str],
                **options: Any) -> Any:
        job = "rq_tracked_jobs.analyse_media" if options.get("layout") == "single" else (
            "rq_tracked_jobs.analyse_model")
        return enqueue_media(queue, job, frames, 0.01, plan, f"{marker}:{media_id}",
                             media_id=media_id, user_id="u-crash", models=models,
                             publisher=publisher, **options)

    # RQ's hard timeout SIGKILLs a horse that ignores the soft one 60 s past the job's
    # timeout; the test kills it once it has run past its timeout, without the 60 s
    # (RQ's own kill, waitpid unread, is test_failure_reasons_name_what_ended_the_horse).
    hard = queues()
    enqueue(hard, "m-hard-timeout", [A], {A: "hang"}, job_timeout=1)
    workers.start(hard)
    killed = queues()
    enqueue(killed, "m-killed-pm", [A, B], {B: "sigkill"})
    enqueue(killed, "m-killed-single", [A, B], {A: "sigkill"}, layout="single")
    workers.start(killed)
    stopped = queues()
    stop_jobs = enqueue(stopped, "m-stopped", [A, B], {A: "stall"})
    workers.start(stopped)
    sweeper = workers.start(queues(), burst=False)  # a live worker sweeps dead ones' jobs
    dead = queues()
    enqueue(dead, "m-dead-worker", [A, B], {B: "stall"}, layout="single")
    doomed = workers.start(dead, burst=False, alive_ttl=2)

    _marker_pid(connection, f"{marker}:m-stopped:{A}")
    send_stop_job_command(connection, stop_jobs.jobs[A].id)
    horse = _marker_pid(connection, f"{marker}:m-dead-worker:{B}")
    doomed.kill()
    os.kill(horse, signal.SIGKILL)
    os.kill(_marker_pid(connection, f"{marker}:m-hard-timeout:{A}"), signal.SIGKILL)

    # Reported within seconds (the doomed worker's 2 s liveness key, a 1 s sweep); how
    # many is not asserted: on a busy machine a wall-clock bound fails for the wrong reason.
    wait_for_terminals(subscriber, {"m-dead-worker"}, timeout=30)
    media = {"m-killed-pm", "m-killed-single", "m-stopped", "m-dead-worker"}
    wait_for_terminals(subscriber, media, timeout=30)
    wait_for_terminals(subscriber, media | {"m-hard-timeout"}, timeout=30)
    assert sweeper.poll() is None, "the sweeping worker died"
    received = settle(subscriber, redis_url, channel)
    assert_strictly_valid(received)
    events = [json.loads(raw) for raw in received]

    steps = lifecycle(events, "m-killed-pm")
    assert steps[-1] == ("PROCESSING_COMPLETED", None)
    assert {("ANALYSIS_FAILED", B), ("ANALYSIS_COMPLETED", A)} <= set(steps)
    assert errors(events, "m-killed-pm") == {
        B: "the work horse was killed by SIGKILL (out of memory?)"
    }
    assert lifecycle(events, "m-killed-single")[-3:] == [
        ("ANALYSIS_FAILED", A), ("ANALYSIS_FAILED", B), ("PROCESSING_FAILED", None),
    ]
    assert errors(events, "m-killed-single") == {
        A: "the work horse was killed by SIGKILL (out of memory?)",
        B: "not run: the work horse was killed by SIGKILL (out of memory?)",
        None: "every model failed",
    }
    assert errors(events, "m-stopped") == {A: "the job was stopped (RQ stop command)"}
    assert lifecycle(events, "m-stopped")[-1] == ("PROCESSING_COMPLETED", None)
    assert stop_jobs.jobs[A].get_status() == JobStatus.STOPPED
    assert lifecycle(events, "m-dead-worker")[-3:] == [
        ("ANALYSIS_STARTED", B), ("ANALYSIS_FAILED", B), ("PROCESSING_COMPLETED", None),
    ]
    # The worker's name (RQ's internal id) stays in the log, out of the user's text.
    assert errors(events, "m-dead-worker")[B] == (
        "the worker running this job stopped without reporting it (killed together with "
        "its work horse, or its machine went down)"
    )
    assert errors(events, "m-hard-timeout") == {
        A: "the job ran past its 1 s timeout and was killed", None: "every model failed",
    }
    connection.close()


@pytest.mark.slow
def test_a_redis_restart_mid_run_delays_the_lifecycle_events_but_loses_none(
    rq_url, queues, prefix
):
    """The events' Redis (our own server) restarts while models run: the jobs finish, and
    their lifecycle events, buffered meanwhile, arrive after the reconnect."""
    from conftest import Subscriber
    from own_redis import OwnRedis
    from tcp_proxy import TcpProxy

    server = OwnRedis().start()
    port = server.port
    # Publishers reach the server through a proxy we can hold shut until the restarted
    # server has its subscriber again: pub/sub keeps nothing for a subscriber not there.
    proxy = TcpProxy(("127.0.0.1", port))
    direct = f"redis://127.0.0.1:{port}/0"
    channel = f"test-progress-{uuid.uuid4().hex}"
    before = Subscriber(direct, channel)
    after = None
    announcer = ProgressPublisher(proxy.url, channel)
    started = Workers(rq_url, proxy.url, channel, prefix)
    try:
        queue = queues()
        media = {f"m-restart-{i}" for i in range(3)}
        for media_id in sorted(media):
            enqueue_media(queue, "rq_tracked_jobs.analyse_model", 40, 0.05, {},
                          media_id=media_id, user_id="u-restart", models=[A, B],
                          publisher=announcer)
        workers_ = [started.start(queue), started.start(queue)]
        deadline = time.monotonic() + 20
        while not any(b'"ANALYSIS_STARTED"' in m for m in before.wait_for(0, timeout=0)):
            assert time.monotonic() < deadline, "no model started"
            time.sleep(0.05)
        proxy.cut()
        early = before.settled()  # all the server published before the cut, in order
        before.close()  # its thread would die with the server's connection
        server.kill()
        time.sleep(1.0)
        server.start()  # on the same port
        after = Subscriber(direct, channel)
        proxy.restore()
        for process in workers_:
            assert process.wait(60) == 0
        client = redis.Redis.from_url(direct)
        sentinel = b"end-of-restart-test"
        client.publish(channel, sentinel)
        client.close()
        late = after.wait_for(1, timeout=10)
        deadline = time.monotonic() + 10
        while sentinel not in late and time.monotonic() < deadline:
            late = after.wait_for(len(late) + 1, timeout=1)
        late = [m for m in late if m != sentinel]
        received = early + late
    finally:
        announcer.close(1)
        started.close()
        before.close()
        if after is not None:
            after.close()
        proxy.close()
        server.kill()

    late_events = [json.loads(raw) for raw in late]
    assert {e["media_id"] for e in late_events if e["event"] in TERMINAL} == media
    assert any(e["event"] == "ANALYSIS_COMPLETED" for e in late_events)
    # The publisher sends a batch again when its connection was reset mid-batch
    # (docs/publisher.md): the proxy's cut can reset it after Redis published, so an
    # event may arrive twice, byte for byte (same source and seq), which a consumer
    # drops. Messages the old server published but never delivered are seq gaps
    # (counted as lost). Nothing may break the lifecycle or stay open.
    unique = list(dict.fromkeys(received))
    report = validate_lines(unique, strict=True)
    assert report.ok and report.incomplete_count == 0, report.to_text()
    events = [json.loads(raw) for raw in unique]
    for media_id in media:
        assert [s for s in lifecycle(events, media_id) if s[0] in TERMINAL] == [
            ("PROCESSING_COMPLETED", None)
        ]


@pytest.mark.slow
def test_a_media_analysed_again_gets_a_whole_new_run(  # noqa: PLR0917
    rq_url, redis_url, channel, subscriber, publisher, queues, workers
):
    """Enqueued again (no run_id), a media starts afresh: the first run's shared state
    does not end the second one early or swallow its terminal event."""
    for layout in ("per-model", "single", "per-model"):
        queue = queues()
        job = "rq_tracked_jobs.analyse_model" if layout == "per-model" else (
            "rq_tracked_jobs.analyse_media")
        enqueue_media(queue, job, 4, 0.0, {}, media_id="m-again", user_id="u-1",
                      models=[A, B], layout=layout, publisher=publisher)
        assert workers.start(queue).wait(60) == 0
    received = settle(subscriber, redis_url, channel)
    assert_strictly_valid(received)
    events = [json.loads(raw) for raw in received]
    assert [e["event"] for e in events if e["event"] in TERMINAL] == [
        "PROCESSING_COMPLETED"
    ] * 3


@pytest.mark.slow
def test_a_model_job_canceled_before_it_ran_still_ends_its_media(  # noqa: PLR0917
    redis_url, channel, subscriber, publisher, queues, workers
):
    """RQ never runs a finalizer whose dependency was canceled: the sweeper fails the
    canceled model and the media ends when its other model does."""
    queue = queues()
    jobs = enqueue_media(queue, "rq_tracked_jobs.analyse_model", 4, 0.0, {},
                         media_id="m-canceled", user_id="u-1", models=[A, B],
                         publisher=publisher)
    jobs.jobs[B].cancel()
    assert workers.start(queue).wait(60) == 0
    # The burst worker may have swept already (its sweeper starts with it); a sweep from
    # here finds nothing left then, and reports the canceled job otherwise.
    sweep(queue.connection, publisher)
    events = wait_for_terminals(subscriber, {"m-canceled"}, timeout=20)
    assert errors(events, "m-canceled") == {B: "the job was canceled before it ran"}
    assert lifecycle(events, "m-canceled")[-1] == ("PROCESSING_COMPLETED", None)
    assert_strictly_valid(settle(subscriber, redis_url, channel))


def state_at_each_flush(
    publisher: CapturingPublisher, state: RunState, run_key: str
) -> list[tuple[list[str], str | None]]:
    """Wrap this publisher's flush() (composition, no subclass): each time the closer
    waits for delivery, the last event delivered and model B's state then, appended to
    the list returned."""
    seen: list[tuple[list[str], str | None]] = []
    flush = publisher.flush

    def flush_and_look(timeout: float | None = None) -> bool:
        delivered = flush(timeout)
        run = state.load_run(run_key)
        seen.append((publisher.events.types()[-1:], run.models[B] if run else None))
        return delivered

    publisher.flush = flush_and_look  # type: ignore[method-assign]
    return seen


def test_a_closer_delivers_a_models_failure_before_the_state_says_it_ended(
    queues, prefix
) -> None:
    """Another process ends the media as soon as the state says B ended: B's
    ANALYSIS_FAILED must already be delivered then, or the media's end overtakes it."""
    queue = queues()
    state = RunState(queue.connection, prefix=current().prefix, ttl=60)
    key = state.record_run(media_id="m-order", user_id="u-1", run_id=None, filename=None,
                           layout="per-model", models=[A, B])
    state.record_job("job-b", run_key=key, role="model", model=B)
    capturing = CapturingPublisher()
    seen = state_at_each_flush(capturing, state, key)
    rival = CapturingPublisher()
    assert state.take_model_failure(key, B, hold=60)  # a rival closer reports B right now
    assert not close_job(rival, state, "job-b", "the job was canceled before it ran")
    assert rival.events.types() == []
    state.connection.delete(f"{key}:failing:{B}")  # the rival died: its hold expired
    assert close_job(capturing, state, "job-b", "the job was canceled before it ran")
    assert seen[0] == (["ANALYSIS_FAILED"], "queued")
    assert state.load_run(key).models[B] == "failed"  # type: ignore[union-attr]


def test_a_media_that_cannot_be_enqueued_ends_instead_of_staying_open(queues, prefix) -> None:
    """The UI saw the media announced; RQ refusing the job fails its models and media."""
    capturing = CapturingPublisher()

    def local_job(tracking: Any) -> None:
        """Not importable by a worker: RQ refuses it."""

    local_job.__module__ = "__main__"
    with pytest.raises(ValueError, match="__main__"):
        enqueue_media(queues(), local_job, media_id="m-refused", user_id="u-1",
                      models=[A, B], publisher=capturing)
    capturing.events.assert_valid()
    assert capturing.events.types()[-3:] == [
        "ANALYSIS_FAILED", "ANALYSIS_FAILED", "PROCESSING_FAILED",
    ]
    assert capturing.events[-2]["data"]["error_message"].startswith(
        "the media could not be enqueued: Functions from the __main__ module"
    )


@pytest.mark.slow
@pytest.mark.parametrize("example", ["rq_per_model.py", "rq_single_job.py"])
def test_the_documented_examples_run_and_keep_the_contract(
    example, rq_url, redis_url, channel, subscriber
):
    """examples/*.py, as docs/rq.md tells users to run them: a strictly valid stream."""
    env = dict(os.environ, REDIS_URL=rq_url, MEDIA_PROGRESS_CHANNEL_NAME=channel,
               EXAMPLE_QUEUE=f"progress-test-{uuid.uuid4().hex}",
               **{ENV_PREFIX: f"progress-test-rq:{uuid.uuid4().hex}"})
    result = subprocess.run([sys.executable, str(TESTS.parent / "examples" / example)],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    received = settle(subscriber, redis_url, channel)
    assert_strictly_valid(received)
    ends = [json.loads(raw)["event"] for raw in received]
    assert ends.count("PROCESSING_COMPLETED") == (2 if example == "rq_per_model.py" else 1)


def test_closing_a_publisher_leaves_runs_that_other_processes_end(queues, prefix) -> None:
    """The enqueuer's announcement and a model job's run end elsewhere (the last model's
    process): closing their publisher must not fail the media (fail_runs_left_open)."""
    import rq_tracked_jobs as jobs

    announcer = CapturingPublisher()
    enqueue_media(queues(), "rq_tracked_jobs.analyse_model", 1, 0.0, {},
                  media_id="m-announced", user_id="u-1", models=[A, B], publisher=announcer)
    model_job = CapturingPublisher()
    jobs.analyse_model.with_publisher(model_job)(
        2, 0.0, {}, media_id="m-announced", user_id="u-1", model=A, models=[A, B]
    )
    announcer.close()
    model_job.close()
    assert announcer.events.types() == [
        "PROCESSING_STARTED", "ANALYSIS_QUEUED", "ANALYSIS_QUEUED",
    ]
    assert [t for t in model_job.events.types() if not t.endswith("_PROGRESS")] == [
        "PROCESSING_STARTED", "ANALYSIS_STARTED", "ANALYSIS_COMPLETED",
    ]


@pytest.mark.slow
def test_the_rq_cli_runs_the_tracking_worker(  # noqa: PLR0917
    rq_url, redis_url, channel, subscriber, publisher, queues, workers
):
    """`rq worker -w progress_sdk.rq.TrackingWorker`, as documented, reports a killed horse."""
    queue = queues()
    enqueue_media(queue, "rq_tracked_jobs.analyse_model", 6, 0.0, {B: "sigkill"},
                  media_id="m-rq-cli", user_id="u-1", models=[A, B], publisher=publisher)
    result = subprocess.run(
        [sys.executable, "-m", "rq.cli", "worker", "-w", "progress_sdk.rq.TrackingWorker",
         "--burst", "--url", rq_url, queue.name],
        env=workers.env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = wait_for_terminals(subscriber, {"m-rq-cli"}, timeout=20)
    killed = "the work horse was killed by SIGKILL (out of memory?)"
    assert errors(events, "m-rq-cli") == {B: killed}
    assert_strictly_valid(settle(subscriber, redis_url, channel))


# -- RQ's Retry ---------------------------------------------------------------------------
# Each attempt is a new run of the model (per-model layout) or of the media (single
# layout), numbered in data.details.attempt; between attempts the model is queued again
# (ANALYSIS_QUEUED, the panel's "retrying (2/3)"), never failed; the media ends once,
# after its last attempt.

RETRY_FRAMES = 8


def _of(events: list[dict[str, Any]], media_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["media_id"] == media_id
            and not e["event"].endswith("_PROGRESS")]


def _steps(events: list[dict[str, Any]], model: str) -> list[tuple[str, int | None]]:
    """(event, attempt) of one model's lifecycle events."""
    return [(e["event"], (e["data"].get("details") or {}).get("attempt"))
            for e in events if e["data"].get("model_name") == model]


@pytest.mark.slow
def test_a_model_that_fails_once_then_succeeds_is_retried_not_failed(  # noqa: PLR0917
    rq_url, redis_url, channel, subscriber, publisher, queues, workers
):
    """Per-model layout, Retry(max=2): a raising attempt and a killed horse are each
    followed by the model queued again as the next attempt, then its completion; the
    media ends once, after the last attempt, and the stream is strictly valid."""
    queue = queues()
    flaky = "rq_tracked_jobs.flaky_model"
    enqueue_media(queue, flaky, RETRY_FRAMES, {A: ["raise"]}, media_id="m-retry-raise",
                  user_id="u-r", models=[A, B], publisher=publisher, retry=Retry(max=2))
    enqueue_media(queue, flaky, RETRY_FRAMES, {A: ["sigkill"]}, media_id="m-retry-kill",
                  user_id="u-r", models=[A], publisher=publisher, retry=Retry(max=2))
    assert workers.start(queue).wait(120) == 0
    wait_for_terminals(subscriber, {"m-retry-raise", "m-retry-kill"}, timeout=60)
    received = settle(subscriber, redis_url, channel)
    assert_strictly_valid(received)
    events = [json.loads(raw) for raw in received]

    raised = _of(events, "m-retry-raise")
    assert _steps(raised, A) == [
        ("ANALYSIS_QUEUED", None), ("ANALYSIS_STARTED", 1), ("ANALYSIS_QUEUED", 2),
        ("ANALYSIS_STARTED", 2), ("ANALYSIS_COMPLETED", 2),
    ]
    retry = next(e for e in raised if e["event"] == "ANALYSIS_QUEUED"
                 and e["data"].get("details", {}).get("attempt") == 2)
    assert retry["data"]["details"] == {
        "attempt": 2, "attempts": 3,
        "retry_reason": f"{A} lost the face track (attempt 1)",
    }
    assert _steps(raised, B)[-1] == ("ANALYSIS_COMPLETED", 1)
    assert [e["event"] for e in raised if e["event"].startswith("PROCESSING_")
            and e["event"] != "PROCESSING_STARTED"] == ["PROCESSING_COMPLETED"]
    assert raised[-1]["event"] == "PROCESSING_COMPLETED"

    killed = _of(events, "m-retry-kill")
    assert _steps(killed, A) == [
        ("ANALYSIS_QUEUED", None), ("ANALYSIS_STARTED", 1), ("ANALYSIS_QUEUED", 2),
        ("ANALYSIS_STARTED", 2), ("ANALYSIS_COMPLETED", 2),
    ]
    (requeued,) = [e for e in killed if e["event"] == "ANALYSIS_QUEUED"
                   and e["data"].get("details", {}).get("attempt") == 2]
    assert requeued["data"]["details"]["retry_reason"] == (
        "the work horse was killed by SIGKILL (out of memory?)"
    )
    assert killed[-1]["event"] == "PROCESSING_COMPLETED"

    # What the terminal panel shows between the two attempts: retrying, not failed.
    state = PanelState()
    for event in raised[: raised.index(retry) + 1]:
        state.feed(event)
    (view,) = state.snapshot()
    (row,) = [r for r in view.rows if r.model == A]
    assert (row.status, row.retrying) == ("queued", "retrying (2/3)")
    console = Console(width=200, record=True)
    console.print(render(state.snapshot()))
    shown = console.export_text()
    assert "retrying (2/3)" in shown and "failed" not in shown


@pytest.mark.slow
def test_a_model_that_exhausts_its_retries_fails_once_at_its_last_attempt(  # noqa: PLR0917
    rq_url, redis_url, channel, subscriber, publisher, queues, workers
):
    """Retry(max=2), failing every time: attempts 1, 2 and 3, the model failed once (at
    attempt 3), and the media's terminal event only after it."""
    queue = queues()
    jobs = enqueue_media(queue, "rq_tracked_jobs.flaky_model", RETRY_FRAMES,
                         {A: ["raise", "raise", "raise"]}, media_id="m-retry-out",
                         user_id="u-r", models=[A], publisher=publisher, retry=Retry(max=2))
    assert workers.start(queue).wait(120) == 0
    wait_for_terminals(subscriber, {"m-retry-out"}, timeout=60)
    received = settle(subscriber, redis_url, channel)
    assert_strictly_valid(received)
    out = _of([json.loads(raw) for raw in received], "m-retry-out")
    assert _steps(out, A) == [
        ("ANALYSIS_QUEUED", None), ("ANALYSIS_STARTED", 1), ("ANALYSIS_QUEUED", 2),
        ("ANALYSIS_STARTED", 2), ("ANALYSIS_QUEUED", 3), ("ANALYSIS_STARTED", 3),
        ("ANALYSIS_FAILED", 3),
    ]
    assert out[-2]["data"]["error_message"] == f"{A} lost the face track (attempt 3)"
    assert [e["event"] for e in out][-1] == "PROCESSING_FAILED"
    jobs.jobs[A].refresh()
    assert jobs.jobs[A].get_status() == "failed"


@pytest.mark.slow
def test_a_single_job_retried_runs_the_whole_media_again(  # noqa: PLR0917
    rq_url, redis_url, channel, subscriber, publisher, queues, workers
):
    """Single layout, failing outside its models once: every model is queued again as
    attempt 2 (the one that had completed too), and the media ends once, completed."""
    queue = queues()
    enqueue_media(queue, "rq_tracked_jobs.flaky_media", RETRY_FRAMES, 1, media_id="m-retry-one",
                  user_id="u-r", models=[A, B], layout="single", publisher=publisher,
                  retry=Retry(max=1))
    assert workers.start(queue).wait(120) == 0
    wait_for_terminals(subscriber, {"m-retry-one"}, timeout=60)
    received = settle(subscriber, redis_url, channel)
    assert_strictly_valid(received)
    one = _of([json.loads(raw) for raw in received], "m-retry-one")
    assert _steps(one, A) == [
        ("ANALYSIS_QUEUED", 1), ("ANALYSIS_STARTED", 1), ("ANALYSIS_COMPLETED", 1),
        ("ANALYSIS_QUEUED", 2), ("ANALYSIS_QUEUED", 2), ("ANALYSIS_STARTED", 2),
        ("ANALYSIS_COMPLETED", 2),
    ]
    assert _steps(one, B)[-1] == ("ANALYSIS_COMPLETED", 2)
    assert [e["event"] for e in one if e["event"] in
            ("PROCESSING_COMPLETED", "PROCESSING_FAILED")] == ["PROCESSING_COMPLETED"]
    assert one[-1]["event"] == "PROCESSING_COMPLETED"
    started = [e for e in one if e["event"] == "PROCESSING_STARTED"]
    assert [e["data"]["details"]["attempt"] for e in started] == [1, 2]

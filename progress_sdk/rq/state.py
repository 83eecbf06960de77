"""A media run's state shared by every process that works on it, in RQ's Redis.

In the one-job-per-model layout each model runs in its own work horse, the worker's
parent process reports a horse that died, a sweeper reports a worker that died, and a
finalizer job ends the media: none of them can see another's ``MediaRun``. They share
this instead, in the Redis server RQ uses (every one of them has a connection to it):

- ``<prefix>:run:<media_id>:<run_id>``: a hash with the run's ids, its layout and one
  ``m:<model>`` field per model (``queued``, ``started``, ``completed``, ``failed``),
  and ``terminal`` once a process has taken the media's terminal event on itself.
- ``<prefix>:job:<job_id>``: which run and model a job works on, the worker running it,
  and ``closed`` once its events are all out.
- ``<prefix>:open``: the ids of jobs not yet closed (a sorted set, scored by time), for
  the sweeper.
- ``<prefix>:alive:<worker>``: a key a ``TrackingWorker`` keeps alive while it runs.

Every key expires (``ttl``, a day by default, renewed on each write) and a run tracks at
most ``MAX_MODELS`` models, so a crashed producer leaves nothing behind for long.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from ..exceptions import ConfigurationError

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_STATE_TTL",
    "MAX_MODELS",
    "JobRecord",
    "RunRecord",
    "RunState",
]

DEFAULT_PREFIX = "progress-sdk:rq"
DEFAULT_STATE_TTL = 24 * 3600
MAX_MODELS = 64
TERMINAL_STATES = ("completed", "failed")

log = logging.getLogger("progress_sdk.rq")

# One model ends; if it was the run's last open model and `claim` is 1, the caller also
# takes the media's terminal event on itself (HSETNX), all in one atomic step, so two
# processes ending the last two models at once cannot both (or neither) publish it.
# Returns {changed, claimed}: changed 0 when the model had already ended (someone else
# reported it), -1 when the run is unknown (expired or never recorded).
_END_MODEL = """
local field = 'm:' .. ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local current = redis.call('HGET', KEYS[1], field)
if current == 'completed' or current == 'failed' then return {0, 0} end
redis.call('HSET', KEYS[1], field, ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[4] ~= '1' then return {1, 0} end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'm:' and all[i + 1] ~= 'completed'
      and all[i + 1] ~= 'failed' then
    return {1, 0}
  end
end
return {1, redis.call('HSETNX', KEYS[1], 'terminal', 'claimed')}
"""


# A failed attempt's retry is announced once: the horse's decorator and the worker's
# parent process (after a crash) may both try. Returns 1 for the first to name attempt
# ARGV[1] as the next one, 0 after; the job's owner is cleared (a retry waits in RQ's
# queue, owned by no worker: the sweeper checks its RQ status instead).
_NEXT_ATTEMPT = """
local next = tonumber(ARGV[1])
local announced = tonumber(redis.call('HGET', KEYS[1], 'next_attempt') or '0')
if announced >= next then return 0 end
redis.call('HSET', KEYS[1], 'next_attempt', next)
redis.call('HDEL', KEYS[1], 'owner')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class RunRecord:
    """What the shared state knows about one media run."""

    key: str
    media_id: str
    user_id: str
    run_id: str | None
    filename: str | None
    layout: str
    models: dict[str, str]
    terminal: str | None

    @property
    def open_models(self) -> list[str]:
        """Models announced but not ended, in the order they were recorded."""
        return [name for name, state in self.models.items() if state not in TERMINAL_STATES]

    @property
    def any_completed(self) -> bool:
        """Contract rule 5: the media completed only if a model did."""
        return any(state == "completed" for state in self.models.values())


@dataclass(frozen=True)
class JobRecord:
    """What the shared state knows about one RQ job."""

    job_id: str
    run_key: str | None
    role: str | None
    model: str | None
    owner: str | None
    closed: bool


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class RunState:
    """The shared state, on one Redis connection (normally the RQ job's)."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: int = DEFAULT_STATE_TTL,
    ) -> None:
        if not isinstance(ttl, int) or ttl < 1:
            raise ConfigurationError(f"the shared state's ttl must be >= 1 second, got {ttl!r}")
        self.connection = connection
        self.prefix = prefix
        self.ttl = ttl
        self._end_model = connection.register_script(_END_MODEL)
        self._next_attempt = connection.register_script(_NEXT_ATTEMPT)

    # -- keys ---------------------------------------------------------------------

    def run_key(self, media_id: str, run_id: str | None) -> str:
        """The hash of one media run."""
        return f"{self.prefix}:run:{media_id}:{run_id or '-'}"

    def job_key(self, job_id: str) -> str:
        """The hash of one job."""
        return f"{self.prefix}:job:{job_id}"

    @property
    def open_key(self) -> str:
        """The jobs not yet closed, scored by when they were recorded."""
        return f"{self.prefix}:open"

    def alive_key(self, worker_name: str) -> str:
        """The key a TrackingWorker keeps alive while it runs."""
        return f"{self.prefix}:alive:{worker_name}"

    # -- runs -----------------------------------------------------------------------

    def record_run(
        self,
        *,
        media_id: str,
        user_id: str,
        run_id: str | None,
        filename: str | None,
        layout: str,
        models: list[str],
        fresh: bool = False,
    ) -> str:
        """Record a run and its models, queued (models already recorded keep their state).

        ``fresh`` forgets what an earlier run with the same ids left (a re-analysis).
        """
        if len(models) > MAX_MODELS:
            raise ConfigurationError(
                f"a tracked run has at most {MAX_MODELS} models, got {len(models)}: "
                "split the media into several runs"
            )
        key = self.run_key(media_id, run_id)
        fields: dict[Any, Any] = {
            "media_id": media_id,
            "user_id": user_id,
            "run_id": run_id or "",
            "filename": filename or "",
            "layout": layout,
        }
        with self.connection.pipeline() as pipe:
            if fresh:
                pipe.delete(key)
            pipe.hset(key, mapping=fields)
            for name in models:
                pipe.hsetnx(key, f"m:{name}", "queued")
            pipe.expire(key, self.ttl)
            pipe.execute()
        return key

    def forget_run(self, run_key: str) -> None:
        """Forget a run's state (before its ids are used for a new run)."""
        self.connection.delete(run_key)

    def set_model(self, run_key: str, model: str, state: str) -> None:
        """Record a model's progress through its lifecycle (not its end: see end_model)."""
        with self.connection.pipeline() as pipe:
            pipe.hset(run_key, f"m:{model}", state)
            pipe.expire(run_key, self.ttl)
            pipe.execute()

    def end_model(self, run_key: str, model: str, state: str, *, claim: bool) -> tuple[int, bool]:
        """End a model once; with ``claim``, take the media's terminal event if it was the last.

        Returns (changed, claimed): changed is 1 when this call ended the model, 0 when
        it had already ended, -1 when the run is unknown.
        """
        changed, claimed = self._end_model(
            keys=[run_key], args=[model, state, self.ttl, "1" if claim else "0"]
        )
        return int(changed), bool(claimed)

    def take_model_failure(self, run_key: str, model: str, hold: float) -> bool:
        """Take the report of ``model``'s failure on this process for ``hold`` seconds.

        The reporter publishes the failure before ``end_model`` (so no process ends the
        media ahead of it), which the atomic step of ``end_model`` cannot guard alone;
        this key keeps two reporters from both publishing it. It expires, so a reporter
        killed in between leaves the model to the next sweep instead of open forever.
        """
        key = f"{run_key}:failing:{model}"
        return bool(self.connection.set(key, "1", nx=True, px=max(1, int(hold * 1000))))

    def claim_terminal(self, run_key: str) -> bool:
        """Take the media's terminal event on this process; False when another has."""
        return bool(self.connection.hsetnx(run_key, "terminal", "claimed"))

    def terminal_sent(self, run_key: str, outcome: str) -> None:
        """Record that the media's terminal event went out."""
        self.connection.hset(run_key, "terminal", outcome)

    def load_run(self, run_key: str) -> RunRecord | None:
        """The run's record, or None when it is unknown or expired."""
        raw = {_text(k): _text(v) for k, v in self.connection.hgetall(run_key).items()}
        if not raw.get("media_id") or not raw.get("user_id"):
            return None
        models = {k[2:]: v or "" for k, v in raw.items() if k and k.startswith("m:")}
        return RunRecord(
            key=run_key,
            media_id=raw["media_id"] or "",
            user_id=raw["user_id"] or "",
            run_id=raw.get("run_id") or None,
            filename=raw.get("filename") or None,
            layout=raw.get("layout") or "single",
            models=models,
            terminal=raw.get("terminal") or None,
        )

    # -- jobs -----------------------------------------------------------------------

    def record_job(
        self,
        job_id: str,
        *,
        run_key: str | None = None,
        role: str | None = None,
        model: str | None = None,
        owner: str | None = None,
    ) -> None:
        """Record (or complete the record of) a job and list it as open."""
        fields: dict[Any, Any] = {
            name: value
            for name, value in (("run", run_key), ("role", role), ("model", model),
                                ("owner", owner))
            if value is not None
        }
        key = self.job_key(job_id)
        with self.connection.pipeline() as pipe:
            if fields:
                pipe.hset(key, mapping=fields)
            pipe.expire(key, self.ttl)
            pipe.zadd(self.open_key, {job_id: time.time()}, nx=True)
            pipe.execute()

    def attempts(self, job_id: str, retries_left: int) -> int:
        """How many attempts the job has in all: recorded at its first attempt, when RQ's
        ``retries_left`` still equals ``Retry(max=...)`` (RQ keeps no ``max``)."""
        key = self.job_key(job_id)
        with self.connection.pipeline() as pipe:
            pipe.hsetnx(key, "attempts", retries_left + 1)
            pipe.hget(key, "attempts")
            pipe.expire(key, self.ttl)
            _, stored, _ = pipe.execute()
        return int(stored)

    def announce_attempt(self, job_id: str, attempt: int) -> bool:
        """Take the announcement of the job's attempt ``attempt`` (its retry) on this
        process; False when it was already announced."""
        return bool(self._next_attempt(keys=[self.job_key(job_id)], args=[attempt, self.ttl]))

    def reopen_job(self, job_id: str) -> None:
        """A retried job runs again: its events are not all out any more."""
        with self.connection.pipeline() as pipe:
            pipe.hdel(self.job_key(job_id), "closed")
            pipe.zadd(self.open_key, {job_id: time.time()})
            pipe.execute()

    def load_job(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when the job was never tracked (or expired)."""
        raw = {_text(k): _text(v) for k, v in self.connection.hgetall(self.job_key(job_id)).items()}
        if not raw:
            return None
        return JobRecord(
            job_id=job_id,
            run_key=raw.get("run"),
            role=raw.get("role"),
            model=raw.get("model"),
            owner=raw.get("owner"),
            closed=raw.get("closed") == "1",
        )

    def close_job(self, job_id: str) -> bool:
        """Mark the job's events as all out; False when it was already closed."""
        with self.connection.pipeline() as pipe:
            pipe.hsetnx(self.job_key(job_id), "closed", "1")
            pipe.zrem(self.open_key, job_id)
            first, _ = pipe.execute()
        return bool(first)

    def open_jobs(self, limit: int = 1000) -> list[tuple[str, float]]:
        """(id, seconds since recorded) of open jobs, oldest first; older than ttl: forgotten."""
        now = time.time()
        self.connection.zremrangebyscore(self.open_key, 0, now - self.ttl)
        entries: list[tuple[bytes, float]] = self.connection.zrange(  # type: ignore[assignment]
            self.open_key, 0, limit - 1, withscores=True
        )
        return [(_text(job_id) or "", now - float(score)) for job_id, score in entries]

    # -- workers --------------------------------------------------------------------

    def keep_alive(self, worker_name: str, ttl: float) -> None:
        """Say the worker runs, for ``ttl`` seconds."""
        self.connection.set(self.alive_key(worker_name), "1", px=max(1, int(ttl * 1000)))

    def is_alive(self, worker_name: str) -> bool:
        """Whether the worker said it runs within its last ttl."""
        return bool(self.connection.exists(self.alive_key(worker_name)))

    def forget_worker(self, worker_name: str) -> None:
        """The worker stopped cleanly."""
        self.connection.delete(self.alive_key(worker_name))


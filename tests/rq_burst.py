"""The plain RQ worker the tests start (``rq_jobs.work()`` and ``rq worker -w rq_burst.Worker``)."""

from __future__ import annotations

from rq import Worker as RQWorker


class Worker(RQWorker):
    """A plain ``rq.Worker`` whose burst exit does not wait up to 60 s for RQ's thread.

    RQ's command-channel thread waits 60 s at a time for a subscription once it has read
    the unsubscribe reply, and redis-py 8.2's ``PubSubWorkerThread.stop()`` joins it
    without a timeout (rq 3.0 calls its own ``join(timeout=1)`` only after that), so a
    burst worker now and then took 60 s to exit. This stops the thread with the bound
    RQ meant, as ``progress_sdk.rq.TrackingWorker`` does; nothing else differs, and the
    thread is a daemon, so nothing is lost. The rq CLI uses it with ``-w rq_burst.Worker``;
    this module imports no job code, so the worker's main process stays free of it.
    """

    def unsubscribe(self) -> None:
        if self.pubsub_thread is None or self.pubsub is None:
            return
        self.pubsub.unsubscribe()
        self.pubsub_thread.stop(timeout=1)
        self.pubsub.close()

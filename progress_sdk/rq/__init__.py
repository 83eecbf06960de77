"""RQ integration: tracked jobs, the one-job-per-model layout, and failures jobs cannot report.

Install with ``pip install 'progress-sdk[rq]'``. See docs/rq.md.
"""

from __future__ import annotations

from .closing import close_job, finalize_run
from .decorator import JobTracking, TrackedJob, TrackedModel, tracked_job
from .enqueue import MediaJobs, enqueue_media, finalize_media
from .settings import configure, default_publisher
from .state import RunState
from .sweeper import sweep
from .worker import TrackingWorker, failure_reason

__all__ = [
    "JobTracking",
    "MediaJobs",
    "RunState",
    "TrackedJob",
    "TrackedModel",
    "TrackingWorker",
    "close_job",
    "configure",
    "default_publisher",
    "enqueue_media",
    "failure_reason",
    "finalize_media",
    "finalize_run",
    "sweep",
    "tracked_job",
]

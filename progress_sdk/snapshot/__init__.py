"""The current state of each in-flight media, kept in Redis beside the pub/sub stream.

Pub/sub is fire-and-forget: a browser that connects mid-job sees nothing until the next
event. So the publisher also keeps a compact snapshot of each media it reports on (media
status; per model status, progress/total, phase, result or error; the last ``seq`` per
source; updated-at) and an index of each user's media, written in the same pipeline as the
publish. A relay sends it to a socket on connect (``progress_snapshot``) and then live
events with a higher ``seq``; a sweeper finds media whose worker stopped reporting.

One concept a module: ``_config`` (keys and settings), ``_model`` (``MediaSnapshot`` and
its model rows), ``_fold`` (``apply_event`` folds an event into a snapshot), ``_codec``
(the hash's fields, ``parse_snapshot`` reads them back), ``_writes`` (the Redis commands,
one key each, so a Redis Cluster can route them), ``_tracker`` (``SnapshotTracker``
remembers the snapshots one publisher is writing and turns each batch's changes into
commands), ``_hook`` (``SnapshotHook``, the publisher's writer) and ``_reader``
(``read_media``, ``read_user``...: the only functions doing I/O).

Key layout (``defaults.py``): ``{prefix}media:{media_id}`` is a hash with one field per
media attribute (``status``, ``user_id``, ``filename``, ``run_id``, ``error``, ``seq``,
``source``, ``updated_at``, ``started_at``, ``owner``, ``alive_at``, ``swept``), one
``seq:{source}`` per publisher and one ``model:{name}`` (compact JSON) per model;
``{prefix}user:{user_id}`` and ``{prefix}inflight`` are sorted sets of media ids scored
by updated-at (milliseconds). ``owner`` names the publisher whose liveness key
(``{prefix}alive:{owner}``, ``progress_sdk.liveness``) says the media's worker is alive;
empty while the media waits on a queue (no model analyzing, one queued).
"""

from __future__ import annotations

from ._codec import media_fields, parse_snapshot
from ._config import SnapshotConfig, SnapshotKeys
from ._fold import apply_event, copy_snapshot, fold_event, owner_of, owners_of
from ._hook import SnapshotHook
from ._model import COMPLETED, FAILED, MEDIA_TERMINAL, RUNNING, MediaSnapshot, ModelSnapshot
from ._reader import read_media, read_recent_async, read_user, read_user_async
from ._tracker import SnapshotTracker
from ._writes import LOAD_COMMAND, WRITE_SCRIPT, WRITE_SCRIPT_SHA, progress_commands, write_commands

__all__ = [
    "COMPLETED",
    "FAILED",
    "LOAD_COMMAND",
    "MEDIA_TERMINAL",
    "RUNNING",
    "WRITE_SCRIPT",
    "WRITE_SCRIPT_SHA",
    "MediaSnapshot",
    "ModelSnapshot",
    "SnapshotConfig",
    "SnapshotHook",
    "SnapshotKeys",
    "SnapshotTracker",
    "apply_event",
    "copy_snapshot",
    "fold_event",
    "media_fields",
    "owner_of",
    "owners_of",
    "parse_snapshot",
    "progress_commands",
    "read_media",
    "read_recent_async",
    "read_user",
    "read_user_async",
    "write_commands",
]

"""Every default, environment variable name and contract limit, in one place."""

from __future__ import annotations

# Transport -----------------------------------------------------------------
ENV_REDIS_URL = "REDIS_URL"
ENV_CHANNEL = "MEDIA_PROGRESS_CHANNEL_NAME"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CHANNEL = "media-progress-events"
# "1": the tracking API raises on bad progress data instead of repairing it.
ENV_STRICT = "PROGRESS_SDK_STRICT"
# Spreading media over shard channels (progress_sdk.sharding): 1 keeps every event on
# DEFAULT_CHANNEL, which is what the product's relay subscribes to.
ENV_SHARDS = "MEDIA_PROGRESS_SHARDS"
DEFAULT_SHARDS = 1
MAX_SHARDS = 1024
# Per-user channels (progress_sdk.sharding.user_channel): off by default; when on, the
# contract channel is kept unless turned off (relays like the product's read it).
ENV_USER_CHANNELS = "MEDIA_PROGRESS_USER_CHANNELS"
ENV_CONTRACT_CHANNEL = "MEDIA_PROGRESS_CONTRACT_CHANNEL"

# Contract limits (docs/contract.md, v1) -------------------------------------------
SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 64 * 1024
MAX_MEDIA_ID_CHARS = 128
# The contract leaves these open; the SDK bounds them so that, with every string at its
# limit and each character escaped as \uXXXX (6 bytes), an event without free-form JSON
# (``details`` or extra ``data`` keys) always fits in MAX_EVENT_BYTES. Only events that
# carry free-form JSON then need their size measured, which keeps emit() cheap.
MAX_USER_ID_CHARS = 256
MAX_RUN_ID_CHARS = 128
MAX_SOURCE_CHARS = 256
MAX_MESSAGE_CHARS = 2000
MAX_MODEL_NAME_CHARS = 128
MAX_PHASE_CHARS = 64
MAX_PREDICTION_CHARS = 64
MAX_ERROR_MESSAGE_CHARS = 2000
MAX_FILENAME_CHARS = 1024
# Levels of nested lists/objects inside one free-form value (data.details, an unknown
# key). The contract only says "JSON"; deeper structures break real consumers: orjson
# refuses to write more than 254 levels, the standard library's json recurses once per
# level (RecursionError near 1,000). 64 is far more than any summary a UI shows needs.
MAX_JSON_DEPTH = 64
# Integers anywhere in an event (progress, total, seq, numbers in free-form JSON) stay in
# the signed 64-bit range. orjson (the relay's and the snapshots' decoder) writes nothing
# wider and reads a wider integer as a lossy float, or refuses the whole event past
# ~1.8e308: details={"frames": 10**400} cost the relay a model's ANALYSIS_COMPLETED, and
# its row never ended. Go and Java readers take int64; JavaScript reads every number as
# a double, exact up to 2**53.
MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**63 - 1

# Publisher -------------------------------------------------------------------
# 100k events is far more than minutes of outage at realistic rates: a media emits a
# few dozen lifecycle events, and coalescing keeps at most one waiting progress event per
# model and progress type.
DEFAULT_BUFFER_SIZE = 100_000
DEFAULT_MIN_PROGRESS_INTERVAL = 0.1  # seconds; ~10 updates/s per model, as the UI asks
DEFAULT_BATCH_SIZE = 500
# Terminal events a full buffer gave up, kept aside to be sent again once it has room
# (progress_sdk._lost_terminals): 16 MiB, ~30,000 of the tracking API's (350 B each),
# beyond a buffer already full of terminal events.
MAX_LOST_TERMINAL_BYTES = 16 * 1024 * 1024
DEFAULT_ATEXIT_FLUSH_TIMEOUT = 2.0
DEFAULT_CLOSE_TIMEOUT = 5.0
# Worker processes often end right after a job with os._exit (RQ's work horse,
# multiprocessing), which skips atexit; so the end of a media run waits up to this long
# for the events to go out (well under a millisecond with Redis up; not at all while
# Redis is known to be down).
DEFAULT_FINISH_FLUSH_TIMEOUT = 2.0
# The end of a run stops waiting for delivery once the publish call under way has moved
# no byte (nothing written, no reply received) on a working connection for this long (a
# frozen or overloaded Redis); later runs do not wait while that lasts. Connecting (TCP,
# AUTH/HELLO/SELECT) is not a stall until it has taken CONNECT_TIMEOUT: a fresh process's
# first call connects, and its run's end must wait for it (the process may end right
# after with os._exit).
STALL_NOTICE = 0.05  # seconds
# A write or reply that stalls beyond SOCKET_TIMEOUT is waited for on the same connection
# (a frozen server reads and answers once it thaws, and sending again would duplicate) up
# to this long; after that the batch's fate is unknown and it is counted as
# delivery_unknown.
REPLY_PATIENCE = 60.0
RECONNECT_BACKOFF_INITIAL = 0.05
RECONNECT_BACKOFF_MAX = 3.0
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
# Sequence counters of finished media are kept so a re-analysis from the same source
# continues the sequence; this many are remembered, least recently used first out
# (~100 bytes each). Ten times the lifecycle validator's memory of (source, media)
# pairs (contract.MAX_SEQUENCES): by the time a media's counter is forgotten and starts
# again at 1, a validator has long forgotten the pair too and takes the new sequence as
# a fresh start rather than a repeat.
MAX_REMEMBERED_MEDIA = 100_000
# Finished media whose snapshots a publisher rewrites after Redis lost its data (their
# snapshots stay DEFAULT_SNAPSHOT_TTL after the end): a worker ends a few a minute; past
# this many, the oldest finished ones are left out (history, not a run in flight).
# ~1 KB each.
MAX_REWRITTEN_FINISHED = 1_000

# Snapshots (current state of in-flight media in Redis) --------------------------
# Key layout, all under one configurable prefix:
#   {prefix}media:{media_id}   hash: the media's snapshot (fields: snapshot/_codec.py)
#   {prefix}user:{user_id}     sorted set: the user's media with a snapshot, by updated-at
#   {prefix}inflight           sorted set: media without a terminal event, by updated-at
#   {prefix}sweeper            string: the dead-worker sweeper's lease (SET NX PX)
#   {prefix}alive:{owner}      string: a publisher's liveness key (progress_sdk.liveness)
ENV_SNAPSHOTS = "PROGRESS_SDK_SNAPSHOTS"  # "0", "false" or "off" turns them off
ENV_SNAPSHOT_PREFIX = "PROGRESS_SNAPSHOT_PREFIX"
DEFAULT_SNAPSHOT_PREFIX = "progress:"
SNAPSHOT_MEDIA_KEY = "{prefix}media:{media_id}"
SNAPSHOT_USER_KEY = "{prefix}user:{user_id}"
SNAPSHOT_INFLIGHT_KEY = "{prefix}inflight"
SWEEPER_LEASE_KEY = "{prefix}sweeper"
LIVENESS_KEY = "{prefix}alive:{owner}"
# A finished media's snapshot stays this long, so a browser that reloads just after the
# terminal event still gets the final notice.
DEFAULT_SNAPSHOT_TTL = 600.0  # seconds after the terminal event
# An in-flight snapshot's expiry is pushed back as it is written; this bounds what a dead
# worker leaves behind when no sweeper runs.
DEFAULT_SNAPSHOT_INFLIGHT_TTL = 24 * 3600.0
# A publisher pushes a running media's expiry back at most this often (seconds; or a tenth
# of the in-flight TTL when that is shorter), not in every batch.
SNAPSHOT_EXPIRY_REFRESH_MAX = 60.0
# Liveness (progress_sdk.liveness): each publisher's sender thread keeps a key alive while
# it has media open, whatever the job reports; the sweeper fails a media only once its
# owner's key is gone. A dead worker's key lapses within the TTL, and the next sweep (every
# DEFAULT_SWEEP_INTERVAL) fails its media: about 10-15 s after the kill (benchmarks/
# ui_faults.py measures it). Three refreshes per TTL: a refresh may be late by a busy
# interpreter or a reconnect without the key lapsing.
ENV_LIVENESS_TTL = "PROGRESS_SDK_LIVENESS_TTL"
DEFAULT_LIVENESS_TTL = 10.0
LIVENESS_REFRESHES_PER_TTL = 3
# A media whose snapshot this publisher has not written for this long (by the publisher's
# clock) is checked before its next events go out (liveness.GUARD_SCRIPT): the sweeper
# may have ended it meanwhile. Below every silence the sweeper acts on (the liveness TTL,
# stuck_after), with room for clock skew between hosts.
LIVENESS_GUARD_AFTER = 2.0
# Media whose snapshot records no owner (written by a producer without liveness: another
# SDK, an older publisher, or a media only queued, waiting for a worker) are failed after
# this long without news, as before liveness existed. A media with an owner never is.
DEFAULT_SWEEP_STALE_AFTER = 300.0
# The sweeper looks at a media's owner only once the media has been quiet this long (by
# its snapshot): a publisher writes a media's snapshot before its first liveness refresh
# lands, and this leaves LIVENESS_GUARD_AFTER room for clock skew between hosts.
SWEEP_OWNER_GRACE = 5.0
DEFAULT_SWEEP_INTERVAL = 5.0
# A media without news this long is shown as "no update for N s" (quiet), not failed.
QUIET_AFTER = 15.0
# stuck_after (opt-in, off by default) fails a media of a live worker with no news this
# long; it must leave the liveness guard room.
MIN_STUCK_AFTER = 10.0
STUCK_ERROR_MESSAGE = "no update for {seconds} s: the analysis was taken for stuck"
DEFAULT_SWEEP_LEASE = 30.0
# On a cluster a sweeper claims a media before publishing its failure; a claim whose
# publish is still pending this long after it was made is taken to be a sweeper that died
# (a live one publishes within milliseconds of its claim) and is published again.
DEFAULT_SWEEP_REPUBLISH_AFTER = 5.0
SWEEP_ERROR_MESSAGE = "the worker stopped reporting"

# Relay (simulator/relay) ------------------------------------------------------------
# What may wait for one socket whose browser stops reading before it is disconnected (it
# resyncs from the snapshots on reconnect). 16 MiB: a browser stalled for 10 s at 100
# events/s of 4 KB (far above one user's usual rate) still catches up; a socket that never
# reads costs the relay about this much (benchmarks/backlog_bench.py). Small packets cost
# more in per-packet overhead than in bytes (~250 bytes each), hence the event limit.
DEFAULT_RELAY_MAX_BACKLOG_BYTES = 16 * 1024 * 1024
DEFAULT_RELAY_MAX_BACKLOG_EVENTS = 20_000

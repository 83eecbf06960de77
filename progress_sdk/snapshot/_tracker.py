"""``SnapshotTracker``: the snapshots one publisher is writing, folded a batch at a time,
and the commands that write what changed."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import defaults as d
from ..event_types import MEDIA_EVENT_NAMES, MODEL_EVENT_NAMES, PROCESSING_STARTED
from ._config import SnapshotConfig
from ._fold import fold_event, owner_of
from ._model import MediaSnapshot
from ._writes import LOAD_COMMAND, IndexWrites, index_score, progress_hset, script_write

__all__ = ["SnapshotTracker"]


def _supersedes(later: Mapping[str, Any], earlier: Mapping[str, Any]) -> bool:
    """Whether folding ``earlier`` and then ``later`` (the next event of the same media)
    into an existing snapshot gives what folding ``later`` alone gives: both are the same
    model event with the same ids and the same data (numbers of the same types: the fold
    reads ``1`` and ``True`` differently), except a progress value ``later`` replaces.
    Folding a model event twice with the same data changes nothing more than once."""
    name = earlier.get("event")
    if later.get("event") != name or name not in MODEL_EVENT_NAMES:
        return False
    old, new = earlier.get("data"), later.get("data")
    if type(old) is not dict or type(new) is not dict:
        return False
    if old == new:
        if type(old.get("progress")) is not type(new.get("progress")):
            return False
    elif not _progress_replaced(old, new):
        return False
    return (
        _alike(old, new)
        and type(later.get("seq")) is int
        and later.get("source") == earlier.get("source")
        and later.get("user_id") == earlier.get("user_id")
        and later.get("run_id") == earlier.get("run_id")
    )


def _progress_replaced(old: dict[str, Any], new: dict[str, Any]) -> bool:
    # The data differ in their progress value alone, and the later one's counts.
    progress, total = new.get("progress"), new.get("total")
    if type(progress) is not int or type(total) is not int or total <= 0:
        return False
    return old.keys() == new.keys() and all(
        value == new[key] for key, value in old.items() if key != "progress"
    )


def _alike(old: dict[str, Any], new: dict[str, Any]) -> bool:
    # Equal data whose numbers the fold reads the same way (1, 1.0 and True are equal;
    # a confidence is set from the last completion whatever it is).
    if type(old.get("total")) is not type(new.get("total")):
        return False
    details = old.get("details")
    if type(details) is dict:
        eta = details.get("eta_seconds")
        if type(eta) is not type(new["details"].get("eta_seconds")):
            return False
    return True


@dataclass
class _Pending:
    models: set[str] = field(default_factory=set)
    fresh: bool = False
    full: bool = False
    """Write every field: a media-level event, or the first write of this tracker."""


class SnapshotTracker:
    """The snapshots one publisher writes: apply each sent event, then take the commands.

    Not thread-safe: the sender thread owns it. Finished media are forgotten once their
    terminal state is taken; at most ``max_media`` in-flight media are remembered (least
    recently updated first out; a forgotten one starts again from its next event, which
    still updates its hash field by field).
    """

    def __init__(
        self, config: SnapshotConfig, *, channel: str | Callable[[str], str] | None = None,
        max_media: int = d.MAX_REMEMBERED_MEDIA, clock: Callable[[], float] = time.monotonic,
        owner: str | None = None,
    ) -> None:
        self.config = config
        self.channel = channel
        """The channel the events go to, or media_id -> its shard channel."""
        self.owner = owner
        """The liveness id written as each media's ``owner`` (None: none written)."""
        self._max_media = max_media
        self._clock = clock
        self._states: OrderedDict[str, MediaSnapshot] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self._expiry_due: dict[str, float] = {}  # media_id -> when its expiry is written next
        # Media whose terminal state was taken, with when (clock()): rewritten with the
        # others by ``rewrite_commands`` while their snapshot would still be in Redis.
        self._finished: OrderedDict[str, tuple[MediaSnapshot, float]] = OrderedDict()

    def apply_batch(
        self, events: Iterable[Mapping[str, Any]], epoch: Callable[[Mapping[str, Any]], float]
    ) -> None:
        """``apply`` for each of a batch's decoded wire events, in order (they carry their
        own ``seq`` and ``source``; ``epoch`` reads an event's time): the same snapshots
        and pending writes, with the per-event bookkeeping done once per media (a batch
        is hundreds of events over a few media). Recency counts per batch.

        Each media's latest event waits until the next one shows whether it is needed: an
        event that the next one of its media repeats (``_supersedes``) changes nothing
        that one does not, and is not folded."""
        touched: dict[str, MediaSnapshot] = {}
        latest: dict[str, Mapping[str, Any]] = {}
        for event in events:
            media_id = event.get("media_id")
            if type(media_id) is not str or not media_id:
                continue
            before = latest.get(media_id)
            latest[media_id] = event
            if before is not None and not (
                _supersedes(event, before) and (media_id in touched or media_id in self._states)
            ):
                self._fold(touched, media_id, before, epoch(before))
        for media_id, event in latest.items():
            self._fold(touched, media_id, event, epoch(event))
        self._settle(touched)

    def _fold(
        self, touched: dict[str, MediaSnapshot], media_id: str, event: Mapping[str, Any],
        now: float,
    ) -> None:
        # apply()'s work on the state and its pending write, but for recency and bound.
        previous = (touched.get(media_id) or self._states.pop(media_id, None)
                    or self._ended(media_id, event))
        state = touched[media_id] = fold_event(previous, event, now)
        pending = self._pending.get(media_id)
        if pending is None:
            pending = self._pending[media_id] = _Pending()
        name = event.get("event")
        if previous is None or name in MEDIA_EVENT_NAMES:
            pending.full = True
            if name == PROCESSING_STARTED and (previous is None or previous.terminal):
                pending.fresh = True
        if state is not previous:
            pending.models.clear()
        data = event.get("data")
        model = data.get("model_name") if isinstance(data, dict) else None
        if type(model) is str and model in state.models:
            pending.models.add(model)

    def _settle(self, touched: dict[str, MediaSnapshot]) -> None:
        # What apply() does per event, once per media: channel, recency, the bound.
        states, channel, owner = self._states, self.channel, self.owner
        for media_id, state in touched.items():
            state.channel = channel(media_id) if callable(channel) else channel
            if owner is not None:
                state.owner = owner_of(state, owner)
            states[media_id] = state
        while len(states) > self._max_media:
            evicted, _ = states.popitem(last=False)
            self._pending.pop(evicted, None)
            self._expiry_due.pop(evicted, None)

    def take_commands(self) -> list[tuple[str | bytes, ...]]:
        """The writes for every media changed since the last call: the script
        (``LOAD_COMMAND`` first, then ``write_commands``) for a first write, a
        media-level event or the end; otherwise ``progress_commands``, with the expiry
        only when due (``SnapshotConfig.refresh_every``); then the indexes' updates, one
        command per key and kind. Finished media are forgotten."""
        commands: list[tuple[str | bytes, ...]] = []
        indexes = IndexWrites(self.config)
        now, refresh_every = self._clock(), self.config.refresh_every
        due = self._expiry_due
        owner = self.owner
        for media_id, pending in self._pending.items():
            state = self._states.get(media_id)
            if state is None:
                continue
            if owner is not None:
                for name in pending.models:
                    state.models[name].owner = owner
            if pending.full or state.terminal:
                commands.append(script_write(state, self.config, pending.models, pending.fresh))
                indexes.whole(state)
                if state.terminal:
                    del self._states[media_id]
                    due.pop(media_id, None)
                    self._remember_finished(state, now)
                else:
                    due[media_id] = now + refresh_every
                continue
            key = self.config.keys.media(media_id)
            commands.append(progress_hset(key, state, pending.models))
            if now >= due.get(media_id, now):
                commands.append(("PEXPIRE", key, self.config.inflight_expiry_ms))
                due[media_id] = now + refresh_every
            indexes.rescored += (index_score(state), media_id)
        self._pending.clear()
        if any(command[0] == "EVALSHA" for command in commands):
            commands.insert(0, LOAD_COMMAND)
        return commands + indexes.commands()

    def _ended(self, media_id: str, event: Mapping[str, Any]) -> MediaSnapshot | None:
        # A batch's tail sent again after a connection cut mid-batch repeats events of a
        # run this tracker saw end: folded onto that end, not onto nothing, or the
        # media's snapshot would be written from the tail alone (on a server that lost
        # its data, without its filename and its other models).
        if event.get("event") == PROCESSING_STARTED or media_id not in self._finished:
            return None
        return self._finished.pop(media_id)[0]

    def _remember_finished(self, state: MediaSnapshot, now: float) -> None:
        finished = self._finished
        finished.pop(state.media_id, None)
        finished[state.media_id] = (state, now)
        while finished and (
            len(finished) > d.MAX_REWRITTEN_FINISHED
            or next(iter(finished.values()))[1] + self.config.ttl <= now
        ):
            finished.popitem(last=False)

    def rewrite_commands(self) -> list[tuple[str | bytes, ...]]:
        """The writes of every snapshot this tracker still holds, whole (every field,
        every model row, both indexes): the in-flight media, and the finished ones whose
        snapshot has not expired yet (at most ``MAX_REWRITTEN_FINISHED``, with the expiry
        they have left). For a server that lost its data (a restart without
        persistence): the writes since were of changed fields alone, and they would
        leave partial hashes outside every index. Not fresh: on a server that kept its
        data, a state a sweeper ended stays ended (``WRITE_SCRIPT``)."""
        now = self._clock()
        indexes = IndexWrites(self.config)
        commands: list[tuple[str | bytes, ...]] = []
        for state, ended in list(self._finished.values()):
            left = ended + self.config.ttl - now
            if left > 0 and state.media_id not in self._states:  # not started again
                commands.append(script_write(state, replace(self.config, ttl=left), None, False))
                indexes.whole(state)
        for state in self._states.values():
            commands.append(script_write(state, self.config, None, False))
            indexes.whole(state)
        if not commands:
            return []
        return [LOAD_COMMAND, *commands, *indexes.commands()]

    def __len__(self) -> int:
        return len(self._states)

"""One batch on its way out: its events' bytes and the extra commands written with it.

Progress events are serialised here, on the sender thread (most were replaced before);
one whose data is no longer JSON is dropped alone. The snapshots' wire hook and a batch
hook add their commands; events of runs a sweeper ended are withheld.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ._entry import DONE, Entry
from ._wire import WireEncoder
from .transport import Command

__all__ = ["BatchHook", "BatchPrep", "OutgoingEvent", "WireHook"]

logger = logging.getLogger("progress_sdk")


class OutgoingEvent(Protocol):
    """What a batch hook sees of each event of a batch."""

    media_id: str
    event: str
    seq: int
    ts: float | None
    """When the event was accepted (``time.time()``)."""
    fields: dict[str, Any] | None
    """The event's wire fields without the envelope (kept while a hook is set)."""


BatchHook = Callable[[str, Sequence[OutgoingEvent]], Sequence[Command]]
"""Given the publisher's ``source`` and a batch's events in order, the extra Redis
commands to write in the same pipeline, before the batch's PUBLISH commands. Called again
for the same events if the batch is sent again after a connection reset."""

WireHook = Callable[[Sequence[bytes]], Sequence[Command]]
"""``BatchHook`` given the batch's wire bytes instead (the snapshots): it needs no event
to keep its fields dict while it waits in the buffer."""


class BatchPrep:
    """Prepares the batches a courier sends; drops what cannot go, counted in ``dropped``
    (the courier's counter) under ``settled``'s lock, and logged once by ``log_once``."""

    def __init__(
        self,
        settled: threading.Condition,
        encoder: WireEncoder,
        dropped: Counter[str],
        log_once: Callable[..., None],
        *,
        source: str,
        batch_hook: BatchHook | None,
        wire_hook: WireHook | None,
        withheld: Callable[[], list[int]] | None,
    ) -> None:
        self.settled = settled
        self.encoder = encoder
        self._dropped = dropped
        self._log_once = log_once
        self.source = source
        self.batch_hook = batch_hook
        self.wire_hook = wire_hook
        # The positions of a batch's events the wire hook found fenced (liveness).
        self.withheld = withheld
        self.hooked = batch_hook is not None or wire_hook is not None

    def payloads(self, batch: list[Any]) -> list[bytes]:
        """The batch's bytes, serialising its progress events, in place; one that cannot
        be serialised (its data was changed after emit()) is dropped alone."""
        payloads: list[bytes] = []
        kept: list[Any] = []
        failed: list[tuple[Entry, Exception]] = []
        keep = self.batch_hook is not None
        for item in batch:
            if type(item) is bytes:
                payloads.append(item)
                kept.append(item)
                continue
            try:
                payloads.append(item.finish(self.encoder, keep=keep))
            except (TypeError, ValueError, RecursionError) as exc:
                failed.append((item, exc))
            else:
                kept.append(item)
        if failed:
            self._drop_unserialisable(batch, kept, failed)
        return payloads

    def _drop_unserialisable(
        self, batch: list[Any], kept: list[Any], failed: list[tuple[Entry, Exception]]
    ) -> None:
        # One locked step: counted as dropped and out of the in-flight list (``batch`` is
        # the buffer's) together, so no stats() counts an event both ways.
        with self.settled:
            self._dropped["unserialisable"] += len(failed)
            for entry, _ in failed:
                entry.state = DONE
            batch[:] = kept
        entry, exc = failed[0]
        self._log_once(
            "unserialisable",
            "progress_sdk: dropped a %s event of media %r that is no longer "
            "JSON-serialisable (was its data changed after emit()?): %s (logged once; "
            "counted as dropped[unserialisable])",
            entry.event,
            entry.media_id,
            exc,
        )

    def extra_commands(self, batch: list[Any], payloads: list[bytes]) -> list[Command]:
        extra: list[Command] = []
        if self.wire_hook is not None:
            extra += self._run_hook(self.wire_hook, payloads)
            if self.withheld is not None and (positions := self.withheld()):
                self._withhold(batch, payloads, positions)
        if self.batch_hook is not None:
            extra += self._run_hook(self.batch_hook, self.source, batch)
        return extra

    def _run_hook(self, hook: Callable[..., Sequence[Command]], *args: Any) -> Sequence[Command]:
        try:
            return hook(*args)
        except KeyboardInterrupt:
            raise
        except BaseException:
            # Even a SystemExit from the hook's code costs only this batch's extras: the
            # hook runs on the sender's thread, which must not end with events queued.
            self._log_once(
                "batch_hook",
                "progress_sdk: the batch hook failed; its commands are left out of this batch",
                exc_info=True,
            )
            return ()

    def _withhold(self, batch: list[Any], payloads: list[bytes], positions: list[int]) -> None:
        """Take the events of runs a sweeper ended out of the batch: counted as
        ``dropped["fenced"]`` (one locked step, as for unserialisable ones)."""
        gone = set(positions)
        with self.settled:
            self._dropped["fenced"] += len(gone)
            for i in gone:
                if type(batch[i]) is not bytes:
                    batch[i].state = DONE
            batch[:] = [item for i, item in enumerate(batch) if i not in gone]
        payloads[:] = [p for i, p in enumerate(payloads) if i not in gone]

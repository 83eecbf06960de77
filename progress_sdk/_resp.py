"""Redis protocol (RESP) framing and reply reading for the sender's pipelined batches.

The sender writes a batch of a few hundred commands at once and then needs only to know,
per command, whether Redis answered with an error, and for PUBLISH the receiver count.
Framing the commands directly as bytes and scanning the replies in bulk costs a fraction
of a generic client's per-command packing and per-reply parsing (docs/benchmarks.md).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Sequence

Arg = bytes | str | int | float


def _arg(value: Arg) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode() if isinstance(value, float) else b"%d" % value


def frame_command(args: Sequence[Arg]) -> bytes:
    """One command as a RESP array of bulk strings."""
    if len(args) == 3 and type(args[1]) is bytes and type(args[2]) is bytes:
        # One format for the commonest extra, a PUBLISH of a user channel's copy (#18):
        # 0.40 against 1.15 us a command (timeit, load 14).
        name, key, body = _arg(args[0]), args[1], args[2]
        return b"*3\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
            len(name), name, len(key), key, len(body), body)
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        data = _arg(value)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def frame_publishes(channel: bytes, payloads: Iterable[bytes]) -> list[bytes]:
    """PUBLISH ``channel`` each payload, as the pieces of one buffer (to be joined)."""
    head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n" % (len(channel), channel)
    parts: list[bytes] = []
    for payload in payloads:
        parts += (head, b"$%d\r\n" % len(payload), payload, b"\r\n")
    return parts


class Activity:
    """When the publish call under way last got anywhere (monotonic seconds), and how long
    Redis takes to answer, for telling a stalled Redis from a slow or distant one: a
    batch that takes long but keeps moving bytes is not stalled, a connection that moves
    none for longer than its answers usually take is.

    Written by the sender thread only, read by threads waiting at a run's end. ``moved``
    is written before ``ready`` so that a reader who sees a call's ``ready`` time also
    sees a ``moved`` time at least as recent; ``round_trip`` is replaced as one float.
    """

    __slots__ = ("_asked", "_samples", "moved", "ready", "round_trip")

    def __init__(self) -> None:
        self.ready = float("-inf")  # the call's connection was up (made or checked)
        self.moved = float("-inf")  # bytes last written or received
        self.round_trip = 0.0  # the shortest of the last answers' waits (0: none yet)
        self._samples: tuple[float, ...] = ()
        self._asked: float | None = None  # when the last write ended, until answered

    def connected(self, handshake: float | None = None) -> None:
        """The call has a working connection; what follows is the exchange. ``handshake``:
        how long a connection just made took (a few round trips: an estimate of the
        answers' wait until the first real one is measured)."""
        now = time.monotonic()
        if handshake is not None:
            self._sample(handshake)
        self.moved = now
        self.ready = now

    def progressed(self) -> None:
        """Bytes were written or received."""
        self.moved = time.monotonic()

    def wrote(self) -> None:
        """A whole request went out: its answer is awaited from now."""
        now = self.moved = time.monotonic()
        if self._asked is None:
            self._asked = now

    def answered(self) -> None:
        """Bytes of an answer arrived."""
        now = self.moved = time.monotonic()
        if self._asked is not None:
            self._sample(now - self._asked)
            self._asked = None

    def patience(self, notice: float) -> float:
        """How long no byte may move before the call counts as stalled: ``notice``, or
        four of the answers' usual waits on a distant Redis (where answers take longer
        than ``notice``). The shortest recent wait is the path's own: a freeze makes one
        long sample, which the shortest ignores."""
        return max(notice, 4 * self.round_trip)

    def _sample(self, wait: float) -> None:
        self._samples = (*self._samples[-7:], wait)
        self.round_trip = min(self._samples)


def send_all(
    sock: socket.socket, data: bytes, patience: float, activity: Activity | None = None
) -> None:
    """Write all of ``data``, waiting up to ``patience`` seconds for a socket that stops
    taking bytes (the socket's own timeout is only how often we look again).

    A Redis frozen for a few seconds mid-write reads again once it thaws; giving up at the
    socket timeout would leave a batch Redis never saw counted as of unknown fate (it
    cannot be resent once part of it was written), so the write is as patient as the
    reader of its replies.
    """
    give_up_at = time.monotonic() + patience
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except TimeoutError:
            if time.monotonic() > give_up_at:
                raise
            continue
        view = view[sent:]
        if activity is not None:
            activity.progressed()
    if activity is not None:
        activity.wrote()


class ReplyReader:
    """Reads whole replies from a socket; only their kind and integer value matter."""

    def __init__(
        self, sock: socket.socket, patience: float = 0.0, activity: Activity | None = None
    ) -> None:
        self._sock = sock
        self._activity = activity
        self._give_up_at = time.monotonic() + patience
        self._buf = b""
        self._pos = 0

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n", self._pos)
            if end >= 0:
                line = self._buf[self._pos : end]
                self._pos = end + 2
                return line
            self._fill()

    def _skip(self, count: int) -> None:
        while len(self._buf) - self._pos < count:
            self._fill()
        self._pos += count

    def _fill(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
                break
            except TimeoutError:
                # A frozen server answers once it thaws; sending again would duplicate.
                if time.monotonic() > self._give_up_at:
                    raise

        if not data:
            raise ConnectionError("Connection closed by server.")
        if self._activity is not None:
            self._activity.answered()
        self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def read(self) -> tuple[bool, int, str]:
        """One reply: (is an error, integer value or 0, error text or "")."""
        line = self._line()
        kind = line[:1]
        if kind == b":":
            return False, int(line[1:]), ""
        if kind in (b"-", b"!"):
            if kind == b"!":  # RESP3 bulk error: the text follows
                length = int(line[1:])
                self._skip(length + 2)
                text = self._buf[self._pos - length - 2 : self._pos - 2]
                return True, 0, text.decode(errors="replace")
            return True, 0, line[1:].decode(errors="replace")
        if kind in (b"$", b"="):
            length = int(line[1:])
            if length >= 0:
                self._skip(length + 2)
        elif kind in (b"*", b"~", b">", b"%", b"|"):
            count = int(line[1:])
            for _ in range(count * (2 if kind in (b"%", b"|") else 1)):
                self.read()
        return False, 0, ""

    def read_publishes(self, count: int, tally: Tally) -> None:
        """Read ``count`` PUBLISH replies into ``tally`` (kept up to date, so after a
        connection error it says how many got an answer).

        Integer replies are counted in bulk, a whole received chunk at a time.
        """
        end = tally.replies + count
        while tally.replies < end:
            if self._buf.find(b"\r\n", self._pos) < 0:
                self._fill()
                continue
            lines = self._buf[self._pos :].split(b"\r\n")
            lines.pop()  # what follows the last complete line
            for line in lines[: end - tally.replies]:
                if line[:1] != b":":
                    break
                tally.receivers += int(line[1:])
                self._pos += len(line) + 2
                tally.replies += 1
            else:
                continue
            tally.add(*self.read())  # not an integer: an error, most likely

    def read_others(self, count: int, tally: Tally) -> None:
        """Read ``count`` replies of any kind into ``tally``; their values are not
        receiver counts (a script's reply is whatever it returns). Integer and simple
        string replies (most extras': HSET, PEXPIRE, a user channel's PUBLISH) are
        taken in bulk, as ``read_publishes`` does; any other reply one by one."""
        end = tally.replies + count
        while tally.replies < end:
            if self._buf.find(b"\r\n", self._pos) < 0:
                self._fill()
                continue
            lines = self._buf[self._pos :].split(b"\r\n")
            lines.pop()  # what follows the last complete line
            for line in lines[: end - tally.replies]:
                if line[:1] not in (b":", b"+"):
                    break
                self._pos += len(line) + 2
                tally.replies += 1
            else:
                continue
            is_error, _, text = self.read()
            tally.add(is_error, 0, text)


TRANSIENT_ERRORS = frozenset(
    {"BUSY", "LOADING", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY"}
)
"""Error reply prefixes meaning Redis did not run the command for now (a script running
past busy-reply-threshold, a dataset loading, a cluster or replica not serving, a
read-only former master after a failover): sent again later, it can succeed. Any other
error (NOPERM, WRONGTYPE, ERR ...) is final."""


def is_transient(error: str) -> bool:
    """Whether an error reply's text says the command was not run, for now."""
    return error.split(" ", 1)[0] in TRANSIENT_ERRORS


class Tally:
    """What the replies of a batch said so far."""

    __slots__ = (
        "errors", "extra_errors", "first_error", "receivers", "replies", "transient_at",
    )

    def __init__(self) -> None:
        self.extra_errors = 0  # errors among the extra commands, which come first
        self.replies = 0
        self.receivers = 0
        self.errors = 0
        self.first_error = ""
        self.transient_at: list[int] = []  # reply positions of transient errors

    def add(self, is_error: bool, value: int, text: str) -> None:
        """Count one reply."""
        if is_error:
            self.errors += 1
            self.first_error = self.first_error or text
            if is_transient(text):
                self.transient_at.append(self.replies)
        else:
            self.receivers += value
        self.replies += 1

    def transient_tail(self) -> int:
        """How many of the last replies so far are transient errors, all in a row (the
        commands Redis did not run, from the first of them to the end)."""
        count = 0
        for position in reversed(self.transient_at):
            if position != self.replies - 1 - count:
                break
            count += 1
        return count

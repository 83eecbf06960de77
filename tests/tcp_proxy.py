"""A TCP proxy in front of the real Redis that a test can cut and restore, to make a
real outage (connections reset, then refused) without stopping the shared server."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``cut()`` drops everything, ``restore()``
    listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        # While set, what the server sends back is swallowed: requests reach it, replies
        # never reach the client (a connection cut between the two).
        self.hold_replies = False
        # Seconds a new connection's first bytes wait, both ways (a distant or slow-to-
        # accept server: the connect and handshake take that long, later replies do not).
        self.connect_delay = 0.0
        # Seconds each chunk the server sends back waits (a distant server: every answer
        # takes that long).
        self.reply_delay = 0.0
        # Cleared by hang_connects(): new connections are accepted but nothing flows until
        # release_connects() (a connect that hangs: a stuck load balancer, a server too
        # busy to answer the handshake). Connections made so far are not affected.
        self._flowing = threading.Event()
        self._flowing.set()
        # Cleared by hold_subscribes(): a client's chunk that holds a SUBSCRIBE waits
        # until release_subscribes() (a pub/sub client that cannot subscribe yet while
        # its other connections, reads and writes, go on).
        self._subscribes = threading.Event()
        self._subscribes.set()
        self.accepted = 0  # connections accepted so far
        self.restore()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                # cut() may have run since accept() returned: the connection belongs to
                # the outage it missed, so it is reset too, not left to outlive the cut.
                if listener is not self._listener:
                    for s in (client, upstream):
                        s.close()
                    return
                self._conns += [client, upstream]
                self.accepted += 1
            flowing = self._flowing if not self._flowing.is_set() else None
            threading.Thread(
                target=self._pump, args=(client, upstream, flowing), daemon=True
            ).start()

    def hang_connects(self) -> None:
        """Accept new connections, but pass nothing either way until release_connects()."""
        self._flowing = threading.Event()

    def release_connects(self) -> None:
        """Let the hung connections (those still open) and new ones flow."""
        self._flowing.set()

    def hold_subscribes(self) -> None:
        """Hold every SUBSCRIBE a client sends from now on, until release_subscribes()."""
        self._subscribes = threading.Event()

    def release_subscribes(self) -> None:
        """Let the held SUBSCRIBEs (and later ones) through."""
        self._subscribes.set()

    def _pump(
        self, a: socket.socket, b: socket.socket, flowing: threading.Event | None = None
    ) -> None:
        time.sleep(self.connect_delay)
        if flowing is not None:
            flowing.wait()
        sel = selectors.DefaultSelector()
        try:
            # cut() closes the sockets from its own thread, at any point of this one: before
            # they are registered (register() raises ValueError for the fd -1 of a closed
            # socket), or while select() waits on them (the kernel drops a closed fd from
            # the poll set, so select() would time out forever: the fileno check ends it).
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while a.fileno() >= 0 and b.fileno() >= 0:
                for key, _ in sel.select(timeout=0.5):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if self.hold_replies and key.fileobj is b:
                        continue
                    if self.reply_delay and key.fileobj is b:
                        time.sleep(self.reply_delay)
                    if key.fileobj is a and b"SUBSCRIBE" in data:
                        self._subscribes.wait()
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones (a dead server, as seen by us)."""
        with self._lock:
            # Under the lock: an accept() that returns after this sees its listener gone.
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave
            # the port bound until then.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        self._flowing.set()  # hung pumps find their sockets closed and end
        self._subscribes.set()

    def close(self) -> None:
        self.cut()

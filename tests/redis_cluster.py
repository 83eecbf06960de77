"""A real Redis Cluster on loopback ports, started and torn down by the tests.

Three masters and three replicas (``redis-server --cluster-enabled yes`` in a temporary
directory, joined with ``redis-cli --cluster create ... --cluster-replicas 1``), no
persistence. ``fail_over`` kills a master with SIGKILL and waits until its replica has
taken its slots; ``revive`` restarts the killed node, which rejoins as a replica, so a
session-wide cluster is whole again for the next test.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

# Short enough that a failover takes a few seconds; long enough that a loaded machine (the
# cluster bus pings every node at a fraction of this) does not fail nodes over by itself.
NODE_TIMEOUT_MS = 2000


class ClusterStartError(RuntimeError):
    """The local cluster could not be started; the message says why."""


@dataclass
class ClusterNode:
    """One redis-server process of the local cluster."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int) -> list[int]:
    """``count`` loopback ports whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 55000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


@dataclass
class LocalCluster:
    """3 masters + 3 replicas on loopback; ``start()`` then ``stop()``."""

    size: int = 6
    nodes: list[ClusterNode] = field(default_factory=list)
    _root: Path | None = None

    @property
    def url(self) -> str:
        """The URL of one live node (any node will do for a cluster client)."""
        return next(n for n in self.nodes if n.alive).url

    def start(self, attempts: int = 3) -> LocalCluster:
        for binary in ("redis-server", "redis-cli"):
            if shutil.which(binary) is None:
                raise ClusterStartError(f"{binary} is not installed (apt-get install redis)")
        version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout
        major = int(version.split("v=")[1].split(".")[0]) if "v=" in version else 0
        if major < 7:
            raise ClusterStartError(f"sharded pub/sub needs Redis 7 or later: {version.strip()}")
        reason = ""
        for _ in range(attempts):
            try:
                self._start_once()
                return self
            except ClusterStartError as exc:  # a port taken meanwhile: new ports, again
                reason = str(exc)
                self.stop()
        raise ClusterStartError(reason)

    def _start_once(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="progress-cluster-"))
        self.nodes = []
        for port in free_cluster_ports(self.size):
            node = ClusterNode(port, self._root / str(port))
            node.directory.mkdir()
            self.nodes.append(node)
            self._launch(node)
        for node in self.nodes:
            self._wait_ping(node)
        create = subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if create.returncode != 0:
            raise ClusterStartError(f"redis-cli --cluster create failed: {create.stdout[-500:]}")
        for node in self.nodes:
            node.node_id = str(node.client().execute_command("CLUSTER", "MYID"), "ascii")
        self.wait_healthy()

    def _launch(self, node: ClusterNode) -> None:
        log = open(node.directory / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        node.process = subprocess.Popen(
            ["redis-server", "--port", str(node.port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "",
             "--appendonly", "no", "--repl-diskless-sync-delay", "0",
             "--dir", str(node.directory)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()

    def _wait_ping(self, node: ClusterNode, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.alive:
                tail = (node.directory / "redis.log").read_text(errors="replace")[-300:]
                raise ClusterStartError(f"redis-server on port {node.port} exited: {tail}")
            with contextlib.suppress(redis.RedisError), node.client() as client:
                if client.ping():
                    return
            time.sleep(0.02)
        raise ClusterStartError(f"redis-server on port {node.port} did not answer")

    def masters(self) -> list[ClusterNode]:
        """Live nodes that serve slots now, as the cluster sees it."""
        return [n for n in self.nodes if n.alive and self._role(n) == "master"]

    def replicas(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive and self._role(n) == "slave"]

    def _role(self, node: ClusterNode) -> str:
        with node.client() as client:
            return str(client.execute_command("ROLE")[0], "ascii")

    def owner(self, name: str) -> ClusterNode:
        """The master that serves the slot of a key or shard channel, per a live node."""
        slot = key_slot(name.encode())
        for node in self.nodes:
            if not node.alive:
                continue
            with contextlib.suppress(redis.RedisError), node.client() as client:
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise ClusterStartError(f"no live node knows who serves slot {slot}")

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        """The live replicas of a master, as it sees them."""
        with master.client() as client:
            lines = client.execute_command("CLUSTER", "REPLICAS", master.node_id)
        ports = {int(str(line, "ascii").split()[1].split("@")[0].rsplit(":", 1)[1])
                 for line in lines}
        return [n for n in self.nodes if n.port in ports and n.alive]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node says cluster_state:ok, sees three masters, and every
        replica's link to its master is up (so a failover can happen)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            last = self._health_problem()
            if not last:
                return
            time.sleep(0.05)
        raise ClusterStartError(f"cluster not healthy after {timeout:.0f} s: {last}")

    def _health_problem(self) -> str:
        live = [n for n in self.nodes if n.alive]
        replicas = len(live) - 3
        try:
            for node in live:
                with node.client() as client:
                    info = str(client.execute_command("CLUSTER", "INFO"), "ascii")
                    if "cluster_state:ok" not in info:
                        return f"port {node.port}: cluster_state not ok"
                    view = self._view(client)
                    if view.count("master") != 3 or view.count("slave") != replicas:
                        return f"port {node.port} sees {sorted(view)}"
                    replication = client.info("replication")
                    if replication["role"] == "slave" and (
                        replication.get("master_link_status") != "up"
                    ):
                        return f"port {node.port}: replica link down"
        except redis.RedisError as exc:
            return f"{type(exc).__name__}: {exc}"
        return ""

    @staticmethod
    def _view(client: redis.Redis) -> list[str]:
        """Roles of the healthy nodes a node knows: "master" (serving slots) or "slave"."""
        text = client.execute_command("CLUSTER", "NODES")
        text = text.decode() if isinstance(text, bytes) else text
        roles = []
        for line in str(text).splitlines():
            fields = line.split()
            flags = fields[2].split(",")
            if "fail" in flags or "fail?" in flags or "handshake" in flags:
                continue
            if "slave" in flags:
                roles.append("slave")
            elif "master" in flags and len(fields) > 8:  # with slots
                roles.append("master")
        return roles

    def fail_over(self, master: ClusterNode, timeout: float = 30.0,
                  on_killed: Callable[[], None] | None = None) -> ClusterNode:
        """SIGKILL ``master`` and wait until a replica serves its slots; returns the new
        master. ``on_killed()`` is called once the master is dead, before the wait."""
        with master.client() as client:
            mine = [r for r in client.execute_command("CLUSTER", "SLOTS")
                    if int(r[2][1]) == master.port]
        if not mine:
            raise ClusterStartError(f"port {master.port} serves no slots: not a master")
        slot = int(mine[0][0])
        assert master.process is not None
        master.process.send_signal(signal.SIGKILL)
        master.process.wait(5)
        if on_killed is not None:
            on_killed()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node is master or not node.alive:
                    continue
                with contextlib.suppress(redis.RedisError), node.client() as client:
                    if str(client.execute_command("ROLE")[0], "ascii") != "master":
                        continue
                    ranges = client.execute_command("CLUSTER", "SLOTS")
                    if any(int(r[0]) <= slot <= int(r[1]) and int(r[2][1]) == node.port
                           for r in ranges):
                        return node
            time.sleep(0.05)
        raise ClusterStartError(f"no replica took over slot {slot} within {timeout:.0f} s")

    def revive(self, node: ClusterNode) -> None:
        """Restart a killed node (it rejoins as a replica) and wait until all is well."""
        self._launch(node)
        self._wait_ping(node)
        deadline = time.monotonic() + 30
        while self._role(node) != "slave":  # it starts as the master it was, then learns
            if time.monotonic() > deadline:
                raise ClusterStartError(f"port {node.port} did not rejoin as a replica")
            time.sleep(0.05)
        self.wait_healthy()

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and remove the temporary directory."""
        for node in self.nodes:
            if node.alive:
                assert node.process is not None
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(5)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(5)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

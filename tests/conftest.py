"""Shared fixtures. Tests marked ``redis`` run against the real server at REDIS_URL
(default redis://127.0.0.1:6379/0); each uses its own channel, so nothing a previous
test or session left in Redis matters."""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import js_package
import pytest
import redis
from hypothesis import is_hypothesis_test
from redis_cluster import ClusterStartError, LocalCluster

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# Publishers keep snapshots by default, and relays sweep them: under a prefix of this test
# session's own (child processes inherit it), so neither meets another session's media
# in the shared Redis.
os.environ.setdefault("PROGRESS_SNAPSHOT_PREFIX", f"test-session-{uuid.uuid4().hex[:8]}:")


# Tests that share an expensive fixture run on one pytest-xdist worker (the suite runs
# with -n 4 --dist loadgroup, see pyproject.toml), which then sets it up once: the session's
# Redis Cluster (six redis-server processes), clients/js built by tsc (the js_client
# fixture: on four workers, three waited 25 s for the first one's build under its lock,
# beside two CPU hogs) and these modules' module-scoped fixtures (a Chromium, a relay, an
# own redis-server, npm packages). By module: a test elsewhere that uses one of these
# fixtures sets it up on its own worker. Every other test goes to whichever worker is
# free: most of the suite's wall time is waiting on subprocesses, sockets and timers, and
# four workers wait side by side.
GROUPS = {
    "redis-cluster": ("test_cluster.py", "test_publisher_cluster.py", "test_relay_cluster.py",
                      "test_sim_cluster.py", "test_snapshot_cluster.py"),
    "js-client": ("test_js_client.py", "test_js_client_relay.py", "test_typescript_types.py"),
    **{module: (module,) for module in (
        "test_browser_panel.py", "test_e2e_node_relay.py", "test_relay_node_client.py",
        "test_relay_server.py", "test_sim_redis.py",
    )},
}
GROUP_OF_MODULE = {module: group for group, modules in GROUPS.items() for module in modules}


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` by the modules of ``GROUPS``.

    pytest-xdist 3.8 groups the tests it finds an ``xdist_group`` mark on by appending
    the group to their node ids, which pytest 9.2 ignores (pytest-xdist#1386): every
    test went to any worker, and every worker started its own Redis Cluster and
    Chromium. This scheduler finds a test's group from its node id's module instead.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # only with xdist

    class ModuleGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
            return GROUP_OF_MODULE.get(module, nodeid)

    return ModuleGroupScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_starts_late)


def _starts_late(item: pytest.Item) -> bool:
    """Whether a test may wait for the quick ones: pytest-xdist hands out the groups first
    (the largest first), then single tests in this order, so the long ones (slow, or a
    Hypothesis property test of hundreds of examples) start early and the run does not
    end on one of them while the other workers are idle. A group's tests keep their
    order: a module-scoped fixture is set up once only if its module's tests run in a row.
    """
    if item.path.name in GROUP_OF_MODULE:
        return True
    long = item.get_closest_marker("slow") is not None or is_hypothesis_test(
        getattr(item, "obj", None))
    return not long


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis server's URL; fails (not skips) when it does not answer."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"the integration tests need a Redis server at {REDIS_URL} ({exc}); start one "
            "with `redis-server --daemonize yes --port 6379 --save ''` or set REDIS_URL"
        )
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A real Redis Cluster (3 masters, 3 replicas) on free loopback ports, for the whole
    session; fails (not skips) with the reason when it cannot be started."""
    cluster = LocalCluster()
    atexit.register(cluster.stop)  # a backstop should the session end abnormally
    try:
        cluster.start()
    except (ClusterStartError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"cannot start a local Redis Cluster: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def js_client() -> Path:
    """clients/js, its packages installed and built once for the session (dist/)."""
    return js_package.build()


@pytest.fixture
def channel() -> str:
    """A channel name no other test uses."""
    return f"test-progress-{uuid.uuid4().hex}"


class Subscriber:
    """Collects every message of one channel on a background thread."""

    def __init__(self, url: str, channel: str) -> None:
        self.channel = channel
        self._client = redis.Redis.from_url(url)
        self._pubsub = self._client.pubsub()
        self._pubsub.subscribe(channel)
        # Wait for the subscription to be confirmed so no early message is missed.
        for _ in range(50):
            confirm = self._pubsub.get_message(timeout=0.2)
            if confirm is not None and confirm["type"] == "subscribe":
                break
        else:
            raise RuntimeError(f"no subscription confirmation for {channel}")
        self.messages: list[bytes] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-subscriber", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.05)
            if message is not None and message["type"] == "message":
                with self._cond:
                    self.messages.append(message["data"])
                    self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """Wait until ``count`` messages arrived (or the timeout); return them all."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def settled(self, timeout: float = 30.0) -> list[bytes]:
        """Every message so far, once a sentinel published now has arrived (then removed).

        Redis delivers a channel's messages in the order it ran the PUBLISH commands, so
        once whatever publishes on the channel has flushed or exited, anything it sent,
        a duplicate included, arrives before the sentinel: no sleep "for a duplicate to
        show up" is needed."""
        sentinel = f"settled-{uuid.uuid4().hex}".encode()
        self._client.publish(self.channel, sentinel)
        with self._cond:
            arrived = self._cond.wait_for(lambda: sentinel in self.messages, timeout)
            assert arrived, "the sentinel never arrived"
            self.messages.remove(sentinel)
            return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._pubsub.close()
        self._client.close()


@pytest.fixture
def subscriber(redis_url: str, channel: str) -> Iterator[Subscriber]:
    """A live subscriber of this test's channel on the real Redis server."""
    sub = Subscriber(redis_url, channel)
    yield sub
    sub.close()

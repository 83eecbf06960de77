"""Relay load benchmark: relay layouts under one load, interleaved, medians of repeats.

    python benchmarks/relay_bench.py [--rates 5000,1000] [--seconds 6] [--sockets 500]
        [--repeats 3] [--client-procs 2]
    python benchmarks/relay_bench.py --vs-node [--rates 1000,3000,5000,12000]
        [--sockets-list 100,500] | --vs-node --quick
    python benchmarks/relay_bench.py --split [--rates 3000,6000,12000] [--p99-bound-ms 100]
    python benchmarks/relay_bench.py --loops | --micro | --calibrate-publisher

Each trial: relay processes on free ports; the sockets (two per user) in ``--client-procs``
client processes (benchmarks/relay_load.py, a minimal WebSocket/Engine.IO client);
a warm-up (one event per user, again until every socket got one, so each relay has every
socket in its room and its subscriptions made); then a publisher process PUBLISHes
valid FRAME_ANALYSIS_PROGRESS events at the rate for ``--seconds`` (pipelined every 10
ms; the send time rides in ``data.details.sent``); then the trial waits until every
delivery arrived, none arrived for 2 s, or ``--drain-limit`` s passed, so a relay that
falls behind ends its trial in bounded time and shows it: fewer received than expected,
``drain`` seconds, and ``p50 last``, the p50 of the events sent in the run's last second,
above the run's p50 when the backlog grew. Against the shared Redis at REDIS_URL, on
channels of its own.

Every row also reports the load, to show it was not the bottleneck: the publisher's
events/s actually published, its CPU and how far behind its 10 ms schedule it fell at
worst (``late``); the client processes' CPU per delivery, the busiest one's share of a
core, and ``headroom``: the deliveries/s the client processes could take at a full core
each, over the deliveries/s the run asked of them. ``--client-procs`` defaults to 2: the
client costs 15-26 µs of CPU per delivery (7 Dec 2026, at load 10-18 on 2 cores), so 12k
events/s to 500 sockets (24k deliveries/s) is ~0.2 core per process, headroom ~4x.
``--calibrate-publisher`` runs the publisher alone at each rate: by itself it held 12k/s
exactly (72,000 in 6.0 s, 13-15 µs of CPU per event, at worst 43-65 ms behind its
schedule, load 13, 7 Dec 2026), so a trial's ``in/s`` short of the rate is contention.

Modes:

- default: ``2 nodes`` (each user has one socket on each of two ``progress-sim relay``
  processes: the fan-out worst case, every node serves every user) against ``1 node``.
- ``--vs-node`` (issue #18): one ``progress-sim relay`` against the Node.js reference relay
  of benchmarks/node_relay (``npm ci`` there is run when node_modules is missing), the
  same load through each, interleaved (python, node; node, python on the next repeat), at
  each of ``--rates`` with each of ``--sockets-list``; CPU per event, p50/p99, peak RSS,
  received/expected and the load's CPU for both. ``--quick``: 1k/s, 100 sockets, 2 s,
  once (a smoke run, not figures).
- ``--split`` (issue #18, deliver 3): ``1 node`` with every user against ``split``, two
  nodes each with half of the users (both sockets of a user on the same node), both
  started with ``--user-channels`` and the publisher sending each event to
  ``{channel}:user:{user_id}``; and ``split*``, the same split on the contract channel
  (every node reads every event: the cost user channels remove). Interleaved, at each of
  ``--rates``. A layout's capacity is derived from its CPU, not found by raising the rate
  until it breaks: on a 2-core machine shared with the load (and other work), two relays
  cannot each get the core a stepped search needs, so the stepped figure would measure
  the machine. Instead: events/s at one core per node = published / the busiest node's
  CPU seconds (the node that saturates first), and the ratio to ``1 node``'s. Run the
  split at twice the single node's rate too (the default ``--rates 3000,6000,12000``): then a
  split node reads what the single node read, and CPU per event, which falls as the rate
  rises (batching), is compared at the same rate per node. p50/p99 show the layouts kept
  up (``!`` marks a row above ``--p99-bound-ms`` or short of deliveries: a relay cut off
  by the drain limit has its CPU understated, its capacity overstated); the highest rate
  each layout held within the bound is printed too, a capacity only on a machine with a
  core per relay process and more for the load.
- ``--loops``: uvloop against asyncio on one node; ``--micro``: per-event costs of
  encoding and subscription reads (benchmarks/relay_micro.py).

Run it on a quiet machine; the load average is printed with every row. The relays run
``python -c "from simulator.cli import main; main()"`` in the current directory, so the
``simulator`` package there (or on PYTHONPATH) is the one measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay_load import (
    REDIS_URL,
    SECRET,
    Deliveries,
    LoadClients,
    cpu_seconds,
    publish,
    warm_up_publisher,
)

HERE = Path(__file__).resolve()
NODE_RELAY = HERE.parent / "node_relay"
DRAIN_STALL = 2.0  # seconds without a delivery: the relay is not going to catch up


class Relay:
    """One ``progress-sim relay`` process on a free port, subscribed."""

    def __init__(self, channel: str, event_loop: str = "auto", extra: tuple[str, ...] = ()
                 ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from simulator.cli import main; main()",
             "--redis-url", REDIS_URL, "--channel", channel, "relay", "--port", "0",
             "--log-level", "warning", "--event-loop", event_loop, *extra],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "JWT_SECRET": SECRET},
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "listening on " in line:
                self.url = line.split("listening on ")[1].split()[0]
                break
        else:
            raise RuntimeError(f"the relay did not start (exit {self.proc.wait()})")
        # Read on, or a relay that logs while it falls behind fills the pipe and blocks.
        self.log: deque[str] = deque(maxlen=20)
        threading.Thread(target=self.log.extend, args=(self.proc.stderr,), daemon=True).start()
        while not self.healthz()["redis_connected"]:
            time.sleep(0.05)

    def healthz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as response:
            body: dict[str, Any] = json.load(response)
            return body

    def stop(self) -> None:
        _stop(self.proc)


class NodeRelay:
    """benchmarks/node_relay/relay.mjs on a free port, listening and subscribed."""

    def __init__(self, channel: str, event_loop: str = "auto", extra: tuple[str, ...] = ()
                 ) -> None:
        if not (NODE_RELAY / "node_modules").is_dir():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=NODE_RELAY, check=True)
        self.proc = subprocess.Popen(
            ["node", str(NODE_RELAY / "relay.mjs"), "--port", "0", "--redis-url", REDIS_URL,
             "--channel", channel, *extra],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "JWT_SECRET": SECRET},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the Node relay did not start (see its stderr)")
        self.url = json.loads(line)["listening"]

    def stop(self) -> None:
        _stop(self.proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, and SIGKILL after 10 s (a relay still working off a backlog)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass(frozen=True)
class Layout:
    """Relay processes and where each user's two sockets go."""

    nodes: int
    placement: str
    """``same``: both sockets of a user on one node (user n on node n % nodes);
    ``across``: one socket on each of two nodes."""
    user_channels: bool = False
    """Relays read per-user channels (``--user-channels``), the publisher writes them."""

    def plan(self, urls: list[str], users: list[str]) -> list[tuple[str, str]]:
        if self.placement == "across":
            return [(url, user) for user in users for url in urls]
        return [(urls[n % len(urls)], user) for n, user in enumerate(users) for _ in (0, 1)]


FANOUT = {"2 nodes": Layout(2, "across"), "1 node": Layout(1, "same")}
SPLIT = {"1 node": Layout(1, "same", True), "split": Layout(2, "same", True),
         "split*": Layout(2, "same")}


@dataclass(frozen=True)
class Load:
    """What a trial asks of the load, and how it may wait."""

    rate: int
    seconds: float
    sockets: int
    client_procs: int = 2
    drain_limit: float = 10.0


def trial(layout: Layout, load: Load, *, relay_class: Any = Relay,
          event_loop: str = "auto") -> dict[str, float]:
    """One run of one layout; returns its figures."""
    channel = f"bench-relay-{uuid.uuid4().hex}"
    users = [f"bench-{uuid.uuid4().hex[:6]}-{i}" for i in range(load.sockets // 2)]
    extra = ("--user-channels",) if layout.user_channels else ()
    relays: list[Any] = []
    clients = None
    try:
        relays = [relay_class(channel, event_loop, extra) for _ in range(layout.nodes)]
        clients = LoadClients(layout.plan([r.url for r in relays], users), load.client_procs)
        clients.warm_up(warm_up_publisher(channel, users, layout.user_channels))
        before = [cpu_seconds(r.proc.pid) for r in relays]
        sent = publish(channel, users, load.rate, load.seconds,
                       per_user=layout.user_channels, timeout=load.seconds * 10 + 60)
        expected = sent["published"] * 2
        _, drain = clients.drain(int(expected), DRAIN_STALL, load.drain_limit)
        relay_cpu = [cpu_seconds(r.proc.pid) - b for r, b in zip(relays, before, strict=True)]
        rss = sum(peak_rss_mb(r.proc.pid) for r in relays)
        got = clients.stop()
    finally:
        if clients is not None:
            clients.kill()
        for relay in relays:
            relay.stop()
    return {**_delivery_figures(got, sent, expected, drain),
            **_relay_figures(relay_cpu, rss, sent, drain),
            **_load_figures(got, sent, expected, drain)}


def _quantile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p * (len(values) - 1)))]


def _delivery_figures(got: Deliveries, sent: dict[str, float], expected: float,
                      drain: float) -> dict[str, float]:
    latencies = sorted(got.latency)
    last_second = max(got.sent, default=0.0) - 1.0
    late = sorted(lat for s, lat in zip(got.sent, got.latency, strict=True) if s >= last_second)
    return {
        "rate_in": sent["published"] / sent["seconds"],
        "received": len(latencies),
        "expected": expected,
        "p50_ms": _quantile(latencies, 0.5) * 1000,
        "p99_ms": _quantile(latencies, 0.99) * 1000,
        "p50_last_ms": _quantile(late, 0.5) * 1000,
        "drain_s": drain,
        "sockets_closed": got.closed,
    }


def _relay_figures(relay_cpu: list[float], rss: float, sent: dict[str, float],
                   drain: float) -> dict[str, float]:
    """CPU per event of the stream (all nodes), and the events/s the layout could take
    with one core per node: the busiest node saturates first."""
    published = max(1.0, sent["published"])
    return {
        "relay_cores": sum(relay_cpu) / (sent["seconds"] + drain),
        "relay_us_per_event_cpu": sum(relay_cpu) * 1e6 / published,
        "capacity_per_core": published / max(*relay_cpu, 1e-9),
        "relay_rss_mb": rss,
    }


def _load_figures(got: Deliveries, sent: dict[str, float], expected: float, drain: float
                  ) -> dict[str, float]:
    """The load's own cost: the publisher's, and the clients' per delivery, with the
    headroom (deliveries/s at a full core per client process over those asked). The
    clients' cores are over the window deliveries came in (publishing, then draining)."""
    received = max(1, len(got.latency))
    per_delivery = sum(got.cpu) / received
    asked = expected / sent["seconds"]
    window = sent["seconds"] + drain
    return {
        "publisher_cores": sent["cpu"] / sent["seconds"],
        "late_ms": sent["late_max_ms"],
        "client_cores": sum(got.cpu) / window,
        "client_max_core": max(got.cpu) / window,
        "client_us": per_delivery * 1e6,
        "headroom": len(got.cpu) / max(per_delivery, 1e-9) / asked,
    }


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(f[k] for f in runs) for k in runs[0]}


_HEADER = (f"{'in/s':>7} {'received/expected':>19} {'p50 ms':>8} {'p99 ms':>8} "
           f"{'p50 last':>9} {'drain s':>7} {'us/event':>9} {'RSS MB':>7} | {'pub cores':>9} "
           f"{'late ms':>7} {'client us':>9} {'max core':>8} {'headroom':>8} {'load':>5}")


def _row(m: dict[str, float]) -> str:
    return (f"{m['rate_in']:>7,.0f} {m['received']:>9,.0f}/{m['expected']:<9,.0f} "
            f"{m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f} {m['p50_last_ms']:>9.1f} "
            f"{m['drain_s']:>7.1f} {m['relay_us_per_event_cpu']:>9.0f} "
            f"{m['relay_rss_mb']:>7.0f} | {m['publisher_cores']:>9.2f} {m['late_ms']:>7.0f} "
            f"{m['client_us']:>9.1f} {m['client_max_core']:>8.2f} {m['headroom']:>7.1f}x "
            f"{m['load']:>5.1f}" + (f" ({m['sockets_closed']:.0f} sockets closed)"
                                    if m["sockets_closed"] else ""))


def _run(label: str, layout: Layout, load: Load, **kwargs: Any) -> dict[str, float]:
    loadavg = os.getloadavg()[0]
    figures = trial(layout, load, **kwargs)
    figures["load"] = loadavg
    print(f"{label} @ {load.rate}/s, {load.sockets} sockets: " + ", ".join(
        f"{k} {v:,.2f}" for k, v in figures.items()), flush=True)
    return figures


def _legend(seconds: float, repeats: int) -> None:
    print(f"\n{seconds:g} s per run, two sockets per user; medians of {repeats} interleaved "
          f"runs on {os.cpu_count()} cores. load: the 1-minute load average before each run "
          "(a row measured above the core count is not a result). Left of |: the relay; "
          "right: the load (publisher CPU and its worst lateness against its 10 ms "
          "schedule; client CPU per delivery, the busiest client process's share of a "
          "core, headroom = deliveries/s the client processes could take at a core each / "
          "the deliveries/s asked).")


def compare_fanout(args: argparse.Namespace) -> None:
    """Two nodes serving every user against one node, interleaved."""
    rates = [int(r) for r in (args.rates or "5000,1000").split(",")]
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for repeat in range(args.repeats):
        for rate in rates:
            for name, layout in FANOUT.items():
                load = Load(rate, args.seconds, args.sockets, args.client_procs,
                            args.drain_limit)
                runs.setdefault((name, rate), []).append(
                    _run(f"[{repeat + 1}/{args.repeats}] {name}", layout, load))
    _legend(args.seconds, args.repeats)
    print(f"{'layout':<8} {_HEADER}")
    for (name, _), figures in runs.items():
        print(f"{name:<8} {_row(_medians(figures))}")


RELAYS = {"python": Relay, "node": NodeRelay}


def compare_node(args: argparse.Namespace) -> None:
    """progress-sim relay against the Node.js reference relay, the same load through each,
    interleaved; medians per (sockets, rate, relay) and the CPU ratio."""
    rates = [int(r) for r in (args.rates or "1000,3000,5000,12000").split(",")]
    sockets_list = [int(n) for n in (args.sockets_list or "100,500").split(",")]
    seconds, repeats = args.seconds, args.repeats
    if args.quick:
        rates, sockets_list, seconds, repeats = [1000], [100], 2.0, 1
    runs: dict[tuple[int, int, str], list[dict[str, float]]] = {}
    for repeat in range(repeats):
        order = list(RELAYS) if repeat % 2 == 0 else list(reversed(RELAYS))
        for sockets in sockets_list:
            for rate in rates:
                for name in order:
                    load = Load(rate, seconds, sockets, args.client_procs, args.drain_limit)
                    runs.setdefault((sockets, rate, name), []).append(_run(
                        f"[{repeat + 1}/{repeats}] {name}", FANOUT["1 node"], load,
                        relay_class=RELAYS[name]))
    _legend(seconds, repeats)
    print("ratio: the relay's CPU per event over the Node relay's.")
    print(f"{'sockets':>7} {'rate':>6} {'relay':<7} {_HEADER} {'ratio':>6}")
    for sockets in sockets_list:
        for rate in rates:
            medians = {name: _medians(runs[(sockets, rate, name)]) for name in RELAYS}
            for name, m in medians.items():
                ratio = m["relay_us_per_event_cpu"] / medians["node"]["relay_us_per_event_cpu"]
                print(f"{sockets:>7} {rate:>6} {name:<7} {_row(m)} {ratio:>5.2f}x")


def compare_split(args: argparse.Namespace) -> None:
    """One node with every user against two nodes with half of the users each, on
    per-user channels (and on the contract channel, for the cause); capacity at one core
    per node from the busiest node's CPU."""
    _require_user_channels()
    rates = [int(r) for r in (args.rates or "3000,6000,12000").split(",")]
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for repeat in range(args.repeats):
        order = list(SPLIT) if repeat % 2 == 0 else list(reversed(SPLIT))
        for rate in rates:
            for name in order:
                load = Load(rate, args.seconds, args.sockets, args.client_procs,
                            args.drain_limit)
                runs.setdefault((name, rate), []).append(
                    _run(f"[{repeat + 1}/{args.repeats}] {name}", SPLIT[name], load))
    medians = {key: _medians(figures) for key, figures in runs.items()}
    _legend(args.seconds, args.repeats)
    print("1 node: every user on one relay; split: two relays, half of the users each (both "
          "sockets of a user on one), both on per-user channels (--user-channels); split*: "
          "the same split on the contract channel, every node reading every event. "
          "capacity: events/s at one core per node = published / the busiest node's CPU "
          f"seconds. !: p99 above {args.p99_bound_ms:g} ms or deliveries missing.")
    print(f"{'layout':<7} {'rate':>6} {'capacity':>9} {_HEADER}")
    for rate in rates:
        for name in SPLIT:
            m = medians[(name, rate)]
            flag = "" if _held(m, args.p99_bound_ms) else " !"
            print(f"{name:<7} {rate:>6} {m['capacity_per_core']:>9,.0f} {_row(m)}{flag}")
    _split_summary(medians, rates, args.p99_bound_ms)


def _held(m: dict[str, float], p99_bound_ms: float) -> bool:
    return m["received"] >= m["expected"] and m["p99_ms"] <= p99_bound_ms


def _split_summary(medians: dict[tuple[str, int], dict[str, float]], rates: list[int],
                   p99_bound_ms: float) -> None:
    def ratio(name: str, rate: int, one_rate: int) -> str:
        one = medians[("1 node", one_rate)]["capacity_per_core"]
        return f"{medians[(name, rate)]['capacity_per_core'] / one:.2f}x"

    for rate in rates:
        print(f"capacity over 1 node's, all at {rate}/s: split {ratio('split', rate, rate)}, "
              f"split* {ratio('split*', rate, rate)}")
        if rate * 2 in rates:  # then each split node reads what the single node read
            print(f"  at {rate}/s per node (split at {rate * 2}/s): split "
                  f"{ratio('split', rate * 2, rate)}, split* {ratio('split*', rate * 2, rate)}")
    for name in SPLIT:
        held = [rate for rate in rates if _held(medians[(name, rate)], p99_bound_ms)]
        print(f"{name}: highest rate held within p99 {p99_bound_ms:g} ms with every delivery: "
              f"{max(held) if held else 'none'}/s (a capacity only with a core per process)")


def _require_user_channels() -> None:
    """--split needs the relay's per-user channels (issue #18, deliver 3)."""
    out = subprocess.run([sys.executable, "-c", "from simulator.cli import main; main()",
                          "relay", "--help"], capture_output=True, text=True, check=True).stdout
    if "--user-channels" not in out:
        sys.exit("--split: this progress-sim relay has no --user-channels option yet")


def compare_loops(args: argparse.Namespace) -> None:
    """One relay node, the event loop as the only difference, interleaved."""
    rate = int((args.rates or "5000").split(",")[0])
    load = Load(rate, args.seconds, args.sockets, args.client_procs, args.drain_limit)
    runs: dict[str, list[dict[str, float]]] = {"asyncio": [], "uvloop": []}
    for repeat in range(args.repeats):
        for loop, results in runs.items():
            results.append(_run(f"[{repeat + 1}/{args.repeats}] {loop}", FANOUT["1 node"],
                                load, event_loop=loop))
    for loop, figures in runs.items():
        med = _medians(figures)
        print(f"{loop:<8} relay {med['relay_us_per_event_cpu']:.0f} us/event, "
              f"p50 {med['p50_ms']:.1f} ms, p99 {med['p99_ms']:.1f} ms")


def calibrate_publisher(args: argparse.Namespace) -> None:
    """The publisher alone (no relay, no subscriber) at each rate: whether it holds the
    rate by itself, so a trial's shortfall is the machine's contention, not its ceiling."""
    rates = [int(r) for r in (args.rates or "1000,3000,5000,12000").split(",")]
    users = [f"bench-{i}" for i in range(args.sockets // 2)]
    print(f"{'rate':>6} {'in/s':>8} {'CPU us/event':>12} {'cores':>6} {'late ms':>8} {'load':>5}")
    for rate in rates:
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            sent = publish(f"bench-publisher-{uuid.uuid4().hex}", users, rate, args.seconds,
                           per_user=False, timeout=args.seconds * 10 + 60)
            print(f"{rate:>6} {sent['published'] / sent['seconds']:>8,.0f} "
                  f"{sent['cpu'] * 1e6 / sent['published']:>12.1f} "
                  f"{sent['cpu'] / sent['seconds']:>6.2f} {sent['late_max_ms']:>8.0f} "
                  f"{load:>5.1f}", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default=None,
                        help="Comma-separated events/s (default 5000,1000; --vs-node "
                             "1000,3000,5000,12000; --split 3000,6000,12000).")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--client-procs", type=int, default=2,
                        help="Client processes the sockets are spread over (a user's in one).")
    parser.add_argument("--drain-limit", type=float, default=10.0,
                        help="Seconds to wait for the last deliveries after the publisher "
                             "ends (a relay that fell behind is cut off there).")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--vs-node", action="store_true",
                      help="One progress-sim relay against the Node.js reference relay.")
    mode.add_argument("--split", action="store_true",
                      help="Per-user channels: one node against two with half the users each.")
    mode.add_argument("--loops", action="store_true",
                      help="One node at the first rate, uvloop against asyncio.")
    mode.add_argument("--calibrate-publisher", action="store_true",
                      help="The publisher alone at each rate (default 1k/3k/5k/12k).")
    mode.add_argument("--micro", action="store_true",
                      help="Packet encoding and subscription reads per event.")
    parser.add_argument("--sockets-list", default=None,
                        help="With --vs-node: comma-separated socket counts (default 100,500).")
    parser.add_argument("--quick", action="store_true",
                        help="With --vs-node: a smoke run (1000/s, 100 sockets, 2 s, 1 repeat).")
    parser.add_argument("--p99-bound-ms", type=float, default=100.0,
                        help="With --split: the p99 a rate must stay within to count as held.")
    return parser


def main() -> None:
    args = _parser().parse_args()
    sys.path.insert(0, str(HERE.parent.parent))
    if args.micro:
        from relay_micro import micro

        micro(args.repeats)
    elif args.vs_node:
        compare_node(args)
    elif args.split:
        compare_split(args)
    elif args.loops:
        compare_loops(args)
    elif args.calibrate_publisher:
        calibrate_publisher(args)
    else:
        compare_fanout(args)


if __name__ == "__main__":
    main()

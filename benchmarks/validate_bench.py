"""Measure ``progress-sim validate``: events per second and peak memory.

    python benchmarks/validate_bench.py [--events 1000000] [--small 100000] [--keep DIR]
    python benchmarks/validate_bench.py --against /tmp/main-checkout [--events 300000]

Writes NDJSON files of realistic interleaved runs (many media at once, several video and
audio models each, progress events between start and end, some models failing) into a
temporary directory, runs ``progress-sim validate --strict`` on each as a child process
and reports its wall time, events/s and peak RSS (from ``os.wait4``, the child's own
``ru_maxrss``). The small file shows memory does not grow with the number of events.

``--against DIR`` compares this checkout's validator with another one (DIR holds its
``progress_sdk``, e.g. ``git worktree add DIR main``): ``validate_lines`` over the
``--events`` stream in memory, CPU time, each run in a fresh child process, the two
alternated ``--runs`` times; it prints each median and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VIDEO = ["SIGLIP-LSTM-V4", "COLOR-CUES-LSTM-V1", "EFFICIENTNET-B7-V1",
         "EYEBLINK-CNN-LSTM-V1", "CROSS-EFFICIENT-VIT-GAN", "LIP-FD-V1"]
AUDIO = ["SCATTERING-WAVE-V1", "MEL-SPECTROGRAM-CNN-V3", "STFT-SPECTROGRAM-CNN-V3",
         "AUDIO-MFT-CRNN-V1"]
CONCURRENT_MEDIA = 200  # media in flight at once, as on a busy worker fleet
SOURCES = [f"worker-{n}:{4000 + n}:{n:04x}" for n in range(16)]


def media_run(rng: random.Random, number: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (event, message, data) for one media's run, the way the tracking API emits."""
    audio = rng.random() < 0.3
    models = rng.sample(AUDIO if audio else VIDEO, rng.randint(2, 4))
    yield "PROCESSING_STARTED", "Analysis started", {"filename": f"upload-{number}.mp4"}
    for m in models:
        yield "ANALYSIS_QUEUED", f"{m} queued", {"model_name": m}
    completed = 0
    for m in models:
        yield "ANALYSIS_STARTED", f"{m} started", {"model_name": m}
        if audio:
            for phase in ("AUDIO_EXTRACTION_START", "AUDIO_EXTRACTION_COMPLETE",
                          "SPECTROGRAM_GENERATION_START", "SPECTROGRAM_GENERATION_COMPLETE"):
                yield phase, f"{m}: {phase.lower()}", {"model_name": m}
            kind, total = "WINDOW_PROCESSING_PROGRESS", rng.randint(20, 200)
        else:
            kind, total = "FRAME_ANALYSIS_PROGRESS", rng.randint(100, 900)
        # Coalesced by the publisher to ~10 updates a second: a dozen or so per model.
        steps = rng.randint(8, 20)
        for i in range(1, steps + 1):
            done = total * i // steps
            yield kind, f"Analyzed {done}/{total}", {
                "model_name": m, "progress": done, "total": total, "phase": kind.lower(),
            }
        if rng.random() < 0.1:
            yield "ANALYSIS_FAILED", f"{m} failed", {
                "model_name": m, "error_message": "CUDA out of memory",
            }
        else:
            completed += 1
            yield "ANALYSIS_COMPLETED", f"{m} done", {
                "model_name": m, "prediction": rng.choice(["FAKE", "REAL"]),
                "confidence": round(rng.random(), 4),
            }
    if completed:
        yield "PROCESSING_COMPLETED", "Analysis complete", {}
    else:
        yield "PROCESSING_FAILED", "Analysis failed", {"error_message": "every model failed"}


def write_stream(path: Path, events: int, seed: int = 7) -> int:
    """Write about ``events`` events (every started run is finished); return the count."""
    rng = random.Random(seed)
    active: list[tuple[str, str, Iterator[tuple[str, str, dict[str, Any]]]]] = []
    seqs: dict[str, int] = {}
    written = started = 0
    t0 = 1_795_000_000.0
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    with path.open("w") as out:
        while active or written < events:
            while written < events and len(active) < CONCURRENT_MEDIA:
                started += 1
                active.append((f"media-{started:08d}", rng.choice(SOURCES),
                               media_run(rng, started)))
            i = rng.randrange(len(active))
            media_id, source, run = active[i]
            step = next(run, None)
            if step is None:
                active[i] = active[-1]
                active.pop()
                continue
            event, message, data = step
            seq = seqs[media_id] = seqs.get(media_id, 0) + 1
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + written / 1000))
            out.write(dumps({
                "media_id": media_id, "user_id": f"user-{hash(media_id) % 997}",
                "event": event, "message": message, "data": data,
                "schema_version": 1, "seq": seq, "source": source,
                "timestamp": f"{stamp}.{written % 1000:03d}000Z", "run_id": "run-0001",
            }) + "\n")
            if event.startswith("PROCESSING_") and event != "PROCESSING_STARTED":
                del seqs[media_id]
            written += 1
    return written


# Runs the same console entry point with orjson made unimportable, to measure the
# standard-library decoder the validator falls back to.
_WITHOUT_ORJSON = (
    "import sys; sys.modules['orjson'] = None; from simulator.cli import main; "
    "sys.argv[0] = 'progress-sim'; main()"
)


def run_validate(path: Path, stdlib_json: bool = False) -> tuple[float, float, int, str]:
    """Run ``progress-sim validate --strict --json`` on ``path``: (seconds, MiB, rc, out)."""
    if stdlib_json:
        command = [sys.executable, "-c", _WITHOUT_ORJSON]
    else:
        command = [str(Path(sys.executable).with_name("progress-sim"))]
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([*command, "validate", "--strict", "--json", str(path)],
                                stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    return elapsed, usage.ru_maxrss / 1024, proc.returncode, text  # ru_maxrss is KiB


# validate_lines over a file held in memory, in a child: CPU time, events/s on stdout.
_IN_PROCESS = (
    "import sys, time; from progress_sdk.contract import validate_lines; "
    "lines = open(sys.argv[1], 'rb').read().splitlines(); t = time.process_time(); "
    "validate_lines(lines, strict=True); print(len(lines) / (time.process_time() - t))"
)


def compare(path: Path, other: Path, runs: int) -> None:
    """Alternate this checkout's validator and ``other``'s; print medians and the ratio."""
    here = Path(__file__).resolve().parents[1]
    rates: dict[str, list[float]] = {"this checkout": [], str(other): []}
    trees = [(name, tree) for name, tree in zip(rates, (here, other.resolve()), strict=True)]
    for run in range(runs):
        for name, tree in trees if run % 2 == 0 else trees[::-1]:
            env = dict(os.environ, PYTHONPATH=str(tree))
            out = subprocess.run([sys.executable, "-c", _IN_PROCESS, str(path)], env=env,
                                 cwd=tree, capture_output=True, text=True, check=True)
            rates[name].append(float(out.stdout))
    for name, values in rates.items():
        print(f"{name}: median {statistics.median(values):,.0f} events/s "
              f"({', '.join(f'{v:,.0f}' for v in values)})")
    mine, theirs = (statistics.median(v) for v in rates.values())
    print(f"ratio (this checkout / {other}): {mine / theirs:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--stdlib-json", action="store_true",
                        help="run the validator with orjson hidden (standard-library json)")
    parser.add_argument("--against", type=Path,
                        help="compare validate_lines with the checkout in this directory")
    parser.add_argument("--runs", type=int, default=11, help="alternated runs for --against")
    args = parser.parse_args()

    try:
        import orjson  # noqa: F401
        decoder = "standard library json" if args.stdlib_json else "orjson"
    except ImportError:
        decoder = "standard library json (orjson not installed)"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, decoder: {decoder}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if args.against:
            path = folder / f"events-{args.events}.ndjson"
            print(f"{write_stream(path, args.events)} events, {args.runs} alternated runs")
            compare(path, args.against, args.runs)
            return
        tiny = folder / "tiny.ndjson"
        write_stream(tiny, 100)
        _, base_mib, _, _ = run_validate(tiny, args.stdlib_json)
        print(f"baseline (100 events): peak RSS {base_mib:.1f} MiB (interpreter + imports)")
        for n in (args.small, args.events):
            path = folder / f"events-{n}.ndjson"
            count = write_stream(path, n)
            size = path.stat().st_size / 2**20
            seconds, mib, rc, out = run_validate(path, args.stdlib_json)
            report = json.loads(out)
            print(
                f"{count:>9} events ({size:.0f} MiB): {seconds:.2f} s, "
                f"{count / seconds:,.0f} events/s, peak RSS {mib:.1f} MiB, exit {rc}, "
                f"violations {report['violation_count']}, lost {report['lost_events']}"
            )
            if rc != 0:
                sys.exit(f"validate failed on a valid stream: {out[:2000]}")


if __name__ == "__main__":
    main()

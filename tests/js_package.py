"""The browser package (clients/js) for the tests: its npm packages (``npm ci`` from its
package-lock.json when missing, as .ci/run does) one ``tsc`` build per session (a tsc
run costs several seconds), shared by every test that needs ``dist/``, and ``tsc --strict``
over a consumer's sources that import the built package by name."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "clients" / "js"
BIN = PACKAGE / "node_modules" / ".bin"


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (npm ci, tsc) against the other processes of
    this test run (pytest-xdist's workers) and of other runs on the same checkout."""
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"progress-sdk-tests-{key}.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def npm_ci(directory: Path) -> None:
    """Install a directory's locked npm packages when its node_modules is missing or older
    than its package-lock.json (npm writes node_modules/.package-lock.json on install)."""
    with locked(directory):
        _npm_ci(directory)


def _npm_ci(directory: Path) -> None:
    installed = directory / "node_modules" / ".package-lock.json"
    lock = directory / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed for the browser package: apt-get install nodejs npm")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=directory, capture_output=True, text=True, timeout=600,
                          check=False)
    if done.returncode != 0:
        pytest.fail(f"npm ci in {directory} failed: {done.stderr.strip()[-800:]}")


def build() -> Path:
    """``npm ci`` if needed, then ``tsc`` into clients/js/dist; the package's directory.

    Once per test run: pytest-xdist's workers share the run's id, and the first to get
    the lock builds; the others find its mark and use dist/ as it is (a second tsc would
    rewrite files the first worker's tests may be reading)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    mark = PACKAGE / "node_modules" / ".built-by-test-run"  # not in dist/: npm pack takes it
    with locked(PACKAGE):
        _npm_ci(PACKAGE)
        if run is not None and mark.exists() and mark.read_text() == run:
            return PACKAGE
        done = subprocess.run([str(BIN / "tsc"), "-p", "tsconfig.json"], cwd=PACKAGE,
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            pytest.fail(f"tsc failed in clients/js:\n{done.stdout}{done.stderr}")
        if run is not None:
            mark.write_text(run)
    return PACKAGE


def check_strict(package: Path, workdir: Path, sources: dict[str, str]) -> str:
    """tsc --strict over ``sources`` (written to ``workdir``) with the built ``package``
    importable as ``@progress-sdk/client`` (and React's types); tsc's output, "" if clean."""
    for name, source in sources.items():
        (workdir / name).write_text(source)
    modules = package / "node_modules"
    config = {
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "es2022", "lib": ["es2022", "dom"],
            "module": "esnext", "moduleResolution": "bundler", "jsx": "react-jsx",
            "skipLibCheck": False, "types": [], "typeRoots": [str(modules / "@types")],
            "paths": {
                "@progress-sdk/client": [str(package / "dist" / "index.d.ts")],
                "@progress-sdk/client/*": [str(package / "dist" / "*.d.ts")],
                "react": [str(modules / "@types" / "react")],
                "react/*": [str(modules / "@types" / "react" / "*")],
                "*": [str(modules / "*")],
            },
        },
        "files": sorted(sources),
    }
    (workdir / "tsconfig.json").write_text(json.dumps(config))
    done = subprocess.run([str(modules / ".bin" / "tsc"), "-p", "tsconfig.json"], cwd=workdir,
                          capture_output=True, text=True, timeout=300, check=False)
    return "" if done.returncode == 0 else done.stdout + done.stderr

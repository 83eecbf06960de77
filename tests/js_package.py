"""The browser package (clients/js) for the tests: its npm packages (``npm ci`` from its
package-lock.json when missing, as .ci/run does) and one ``tsc`` build per session (a tsc
run costs several seconds), shared by every test that needs ``dist/``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "clients" / "js"
BIN = PACKAGE / "node_modules" / ".bin"


def npm_ci(directory: Path) -> None:
    """Install a directory's locked npm packages when its node_modules is missing or older
    than its package-lock.json (npm writes node_modules/.package-lock.json on install)."""
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
    """``npm ci`` if needed, then ``tsc`` into clients/js/dist; the package's directory."""
    npm_ci(PACKAGE)
    done = subprocess.run([str(BIN / "tsc"), "-p", "tsconfig.json"], cwd=PACKAGE,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"tsc failed in clients/js:\n{done.stdout}{done.stderr}")
    return PACKAGE

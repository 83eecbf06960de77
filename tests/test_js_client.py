"""The browser package (clients/js): generated types without drift, node's test runner on
the store and the conformance suite, ``npm pack`` offline, and the React example of
docs/browser.md under ``tsc --strict``. Issue #19."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from js_package import check_strict

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_generated_types_are_what_the_schemas_make(js_client: Path) -> None:
    """src/generated/ is what scripts/generate.mjs makes of docs/schema/ (both files; the
    channel's schema is itself checked against progress_sdk's models by test_schema.py)."""
    done = run(["node", "scripts/generate.mjs", "--check"], js_client)
    assert done.returncode == 0, done.stderr + "\nrun `npm run generate` in clients/js"


def test_the_pages_bundle_is_built_from_the_package(js_client: Path) -> None:
    """simulator/web/progress-client.js is what esbuild makes of the store's sources now."""
    done = run(["node", "scripts/bundle-page.mjs", "--check"], js_client)
    assert done.returncode == 0, done.stderr + "\nrun `npm run bundle:page` in clients/js"


# A field each schema gains, and the generated file that must then be reported stale (the
# channel's is the one the retired types/ package's drift check covered, issue #20).
SCHEMA_CHANGES = {
    "socket-events.v1.json": ("ProcessingError", "socket.ts", "channel.ts"),
    "progress-event.v1.json": ("ModelFailedData", "channel.ts", "socket.ts"),
}


@pytest.mark.parametrize("changed", sorted(SCHEMA_CHANGES))
def test_the_drift_check_fails_when_a_schema_changes(
    js_client: Path, tmp_path: Path, changed: str
) -> None:
    """A copy of the package whose schema gained a field reports that file stale, only it."""
    definition, stale, fresh = SCHEMA_CHANGES[changed]
    copy = tmp_path / "repo"
    (copy / "docs" / "schema").mkdir(parents=True)
    (copy / "clients" / "js").mkdir(parents=True)
    for name in SCHEMA_CHANGES:
        (copy / "docs" / "schema" / name).write_bytes((ROOT / "docs" / "schema" / name)
                                                      .read_bytes())
    schema = json.loads((copy / "docs" / "schema" / changed).read_text())
    schema["$defs"][definition]["properties"]["code"] = {"type": "string"}
    (copy / "docs" / "schema" / changed).write_text(json.dumps(schema))
    for part in ("scripts", "src"):  # copies: node resolves a symlinked script's own path
        shutil.copytree(js_client / part, copy / "clients" / "js" / part)
    (copy / "clients" / "js" / "node_modules").symlink_to(js_client / "node_modules")
    done = run(["node", "clients/js/scripts/generate.mjs", "--check"], copy)
    assert done.returncode == 1
    assert f"stale: src/generated/{stale}" in done.stderr
    assert fresh not in done.stderr


def test_node_test_runner_passes_the_store_and_the_conformance_suite(js_client: Path) -> None:
    """`node --test` (clients/js/test): the conformance streams, and the store's own tests."""
    done = run(["node", "--test", "test/"], js_client)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"^# pass (\d+)$", done.stdout, re.M)
    assert re.search(r"^# fail 0$", done.stdout, re.M)


def test_the_package_packs_offline_with_esm_and_declarations(
    js_client: Path, tmp_path: Path
) -> None:
    """`npm pack --offline` makes a tarball with ESM, .d.ts and the conformance streams, and
    the package has no runtime dependency (socket.io-client and React are peers)."""
    done = run(["npm", "pack", "--offline", "--ignore-scripts", "--json", "--pack-destination",
                str(tmp_path)], js_client)
    assert done.returncode == 0, done.stderr
    (info,) = json.loads(done.stdout)
    with tarfile.open(tmp_path / info["filename"]) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
    for name in ("dist/index.js", "dist/index.d.ts", "dist/react.js", "dist/react.d.ts",
                 "dist/conformance.js", "conformance/streams.json"):
        assert f"package/{name}" in names
    assert "dependencies" not in manifest
    assert set(manifest["peerDependencies"]) == {"react", "socket.io-client"}
    assert manifest["peerDependenciesMeta"]["react"]["optional"] is True


def docs_examples() -> list[str]:
    """The ```tsx blocks of docs/browser.md."""
    text = (ROOT / "docs" / "browser.md").read_text()
    return re.findall(r"^```tsx\n(.*?)^```$", text, re.M | re.S)


def test_the_react_example_in_the_docs_compiles_under_strict(
    js_client: Path, tmp_path: Path
) -> None:
    """Every ```tsx block of docs/browser.md type-checks with tsc --strict, and a wrong use
    of the payload types next to them does not (so the check can fail)."""
    examples = docs_examples()
    assert examples, "docs/browser.md has no tsx example"
    sources = {f"example{i}.tsx": src for i, src in enumerate(examples)}
    sources["wrong.ts"] = (
        'import type { ProgressUpdate } from "@progress-sdk/client";\n'
        "export const id = (p: ProgressUpdate): string => p.media_id;\n"
    )
    out = check_strict(js_client, tmp_path, sources)
    assert "wrong.ts" in out and "media_id" in out, out
    assert "example" not in out, out

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

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_generated_types_are_what_the_schemas_make(js_client: Path) -> None:
    """src/generated/ is what scripts/generate.mjs makes of docs/schema/ (both files)."""
    done = run(["node", "scripts/generate.mjs", "--check"], js_client)
    assert done.returncode == 0, done.stderr + "\nrun `npm run generate` in clients/js"


def test_the_pages_bundle_is_built_from_the_package(js_client: Path) -> None:
    """simulator/web/progress-client.js is what esbuild makes of the store's sources now."""
    done = run(["node", "scripts/bundle-page.mjs", "--check"], js_client)
    assert done.returncode == 0, done.stderr + "\nrun `npm run bundle:page` in clients/js"


def test_the_drift_check_fails_when_a_schema_changes(js_client: Path, tmp_path: Path) -> None:
    """A copy of the package whose socket schema gained a field is reported stale."""
    copy = tmp_path / "repo"
    (copy / "docs" / "schema").mkdir(parents=True)
    (copy / "clients" / "js").mkdir(parents=True)
    for name in ("progress-event.v1.json", "socket-events.v1.json"):
        (copy / "docs" / "schema" / name).write_bytes((ROOT / "docs" / "schema" / name)
                                                      .read_bytes())
    schema = json.loads((copy / "docs" / "schema" / "socket-events.v1.json").read_text())
    schema["$defs"]["ProcessingError"]["properties"]["code"] = {"type": "string"}
    (copy / "docs" / "schema" / "socket-events.v1.json").write_text(json.dumps(schema))
    for part in ("scripts", "src"):  # copies: node resolves a symlinked script's own path
        shutil.copytree(js_client / part, copy / "clients" / "js" / part)
    (copy / "clients" / "js" / "node_modules").symlink_to(js_client / "node_modules")
    done = run(["node", "clients/js/scripts/generate.mjs", "--check"], copy)
    assert done.returncode == 1
    assert "stale: src/generated/socket.ts" in done.stderr
    assert "channel.ts" not in done.stderr


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


def check_strict(js_client: Path, tmp_path: Path, sources: dict[str, str]) -> str:
    """tsc --strict over ``sources`` with the package importable by name; its output."""
    for name, source in sources.items():
        (tmp_path / name).write_text(source)
    modules = js_client / "node_modules"
    config = {
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "es2022", "lib": ["es2022", "dom"],
            "module": "esnext", "moduleResolution": "bundler", "jsx": "react-jsx",
            "skipLibCheck": False, "types": [], "typeRoots": [str(modules / "@types")],
            "paths": {
                "@progress-sdk/client": [str(js_client / "dist" / "index.d.ts")],
                "@progress-sdk/client/*": [str(js_client / "dist" / "*.d.ts")],
                "react": [str(modules / "@types" / "react")],
                "react/*": [str(modules / "@types" / "react" / "*")],
                "*": [str(modules / "*")],
            },
        },
        "files": sorted(sources),
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    done = run([str(modules / ".bin" / "tsc"), "-p", "tsconfig.json"], tmp_path)
    return "" if done.returncode == 0 else done.stdout + done.stderr


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

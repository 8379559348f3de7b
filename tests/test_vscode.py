"""The VS Code extension builds, passes its own tests against the real server, and packages,
from the npm registry alone (no VS Code window can run here)."""

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parent.parent / "editors" / "vscode"


def npm(*args, env=None):
    proc = subprocess.run(["npm", *args], cwd=EXTENSION, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"npm {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed():
    if not shutil.which("npm"):
        if os.environ.get("FORETELL_REQUIRE_EDITORS"):
            pytest.fail("npm is not installed")
        pytest.skip("npm not installed")
    if not (EXTENSION / "node_modules" / "vscode-languageclient").exists():
        npm("ci", "--no-audit", "--no-fund")


def test_extension_tests_pass_against_the_real_server(installed):
    foretell = shutil.which("foretell")
    assert foretell, "the foretell console script must be on PATH (pip install -e .)"
    out = npm("test", env={**os.environ, "FORETELL_EXECUTABLE": foretell})
    assert "# fail 0" in out and "# pass 10" in out


def test_vsix_packages_with_its_runtime_dependencies(installed):
    npm("run", "package")
    with zipfile.ZipFile(EXTENSION / "foretell.vsix") as vsix:
        names = set(vsix.namelist())
    assert {"extension/package.json", "extension/out/extension.js", "extension/out/server.js"} <= names
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert not any(n.startswith("extension/src/") or n.startswith("extension/out/test/") for n in names)

"""foretell installed like a tool: the wheel built from this checkout, installed (not editable)
into a fresh virtual environment, gives a `foretell` that finds its plugins, builds and uses the
default model, writes the report page from its packaged template and starts the language server.

The fresh environment takes foretell only from the wheel; its dependencies (numpy, pygls, ...)
come from the test environment through a path entry, so the test needs no network. Run from a
folder outside the checkout, so nothing can be imported from the source tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.lsp_raw import RawServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin folder of a fresh venv with foretell installed from its wheel."""
    work = tmp_path_factory.mktemp("install")
    # Built from a copy: setuptools stages in the source's build/, which would keep stale files.
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", "data"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"), str(source)],
                   check=True, capture_output=True, cwd=work)
    wheel = next((work / "dist").glob("foretell-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Dependencies from the test environment (a path entry: its .pth files, the editable
    # install of this checkout among them, are not run).
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, cwd=work)
    return env_dir / "bin"


def run(bin_dir: Path, *args, input=None, cwd, home):
    env = {**os.environ, "FORETELL_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(bin_dir / "foretell"), *args], input=input, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_the_wheel_gives_a_working_foretell(installed, tmp_path):
    home = tmp_path / "home"
    where = subprocess.run([str(installed / "python"), "-c", "import engine; print(engine.__file__)"], capture_output=True, text=True, cwd=tmp_path)
    assert str(installed.parent) in where.stdout, where.stdout + where.stderr  # not the checkout

    backends = run(installed, "backends", cwd=tmp_path, home=home)
    assert backends.returncode == 0, backends.stderr
    assert {line.split()[0] for line in backends.stdout.splitlines()} >= {"ngram", "rnn", "window", "cache", "mix"}

    predicted = run(installed, "predict", "--json", "The return value of the ", cwd=tmp_path, home=home)
    assert predicted.returncode == 0, predicted.stderr
    assert "function" in [p["token"] for p in json.loads(predicted.stdout)["predictions"]]
    assert (home / "models" / "default").is_dir(), "the default model was not saved"

    text = tmp_path / "note.txt"
    text.write_text("A function returns a value to its caller.\n")
    page = tmp_path / "report.html"
    scored = run(installed, "score", "--html", str(page), str(text), cwd=tmp_path, home=home)
    assert scored.returncode == 0, scored.stderr
    assert page.read_text().lstrip().lower().startswith("<!doctype html") and "caller" in page.read_text()

    server = RawServer(env={**os.environ, "FORETELL_HOME": str(home)}, command=[str(installed / "foretell"), "serve"])
    try:
        assert "completionProvider" in server.initialize()["result"]["capabilities"]
    finally:
        server.close()

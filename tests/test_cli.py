"""The command line contracts of DESIGN.md, and one clear sentence for every bad input."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import cli
from tests.conftest import SMALL_TEXT, require_compiled


def run(*args, input=None, ok=True):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def notes(tmp_path):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text(SMALL_TEXT)
    (folder / "sub" / "b.txt").write_text("The cat sat on the warm log. The dog ran.\n")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "data.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "latin.txt").write_bytes("Le café était très bon. The cat agreed.\n".encode("latin-1"))
    (folder / "empty.txt").write_text("")
    return folder


@pytest.fixture
def trained(notes):
    run("train", "--name", "notes", "--order", "3", str(notes))
    return "notes"


def test_train_reads_folders_skips_binary_and_summarises(notes):
    result = run("train", "--name", "notes", "--order", "3", str(notes))
    assert "skipped" in result.output and "image.png" in result.output and "data.bin" in result.output
    assert "Trained 'notes' (ngram): 3 documents" in result.output
    info = json.loads(run("models", "info", "notes", "--json").output)
    assert info["details"]["order"] == 3 and "café" in json.loads((__import__("engine.store", fromlist=["x"]).ModelStore().path("notes") / "vocab.json").read_text())


def test_predict_next_word_and_partial_word_json(trained):
    out = json.loads(run("predict", "-m", trained, "--json", "-k", "3", "The cat sat on the ").output)
    assert out["model"] == trained and out["prefix"] == "" and out["context"] == "The cat sat on the"
    assert out["predictions"][0]["token"] == "mat" and len(out["predictions"]) == 3
    probs = [p["prob"] for p in out["predictions"]]
    assert probs == sorted(probs, reverse=True)
    assert all(p["surprisal_bits"] == pytest.approx(-math.log2(p["prob"])) for p in out["predictions"])
    partial = json.loads(run("predict", "-m", trained, "--json", "The quick br").output)
    assert partial["prefix"] == "br" and partial["predictions"][0]["token"] == "brown"


def test_score_json_offsets_and_totals(trained):
    text = "The cat sat on the mat. Zebras ran."
    out = json.loads(run("score", "-m", trained, "--json", "-", input=text).output)
    tokens = out["tokens"]
    assert set(tokens[0]) == {"token", "start", "end", "logprob", "surprisal_bits", "rank", "entropy_bits", "oov"}
    for t in tokens:
        if t["token"] == "</s>":
            assert t["start"] is None
        else:
            assert text[t["start"] : t["end"]] == t["token"]
    assert [t["token"] for t in tokens if t["oov"]] == ["Zebras"]
    bits = [t["surprisal_bits"] for t in tokens]
    assert out["perplexity"] == pytest.approx(2 ** (sum(bits) / len(bits)))


def test_score_pretokenized_table_is_each_token_formatted(trained, tmp_path):
    """The table of pretokenized text (read in bulk and laid out by numpy) holds, row for row,
    each token's scores as ``stream_scores`` gives them, formatted by the f-string."""
    from engine.cli.common import load_model
    from engine.scoring import stream_scores
    from engine.tokenizer import iter_sentences, split_lines

    text = "the cat  sat\ton the mat\r\n\nZebras ran , fast .\r\nthe dog"
    f = tmp_path / "p.txt"
    f.write_bytes(text.encode("utf-8"))
    rows = run("score", "-m", trained, "--pretokenized", str(f)).output.splitlines()
    scores = list(stream_scores(load_model(trained), iter_sentences(split_lines(text), pretokenized=True)))
    blank = lambda offset: "" if offset is None else offset
    assert rows[0] == "token\tstart\tend\tsurprisal_bits\trank\tentropy_bits\toov"
    assert rows[1:-1] == [f"{s.token}\t{blank(s.start)}\t{blank(s.end)}\t{s.surprisal_bits:.3f}\t{s.rank}\t{s.entropy_bits:.3f}\t{int(s.oov)}" for s in scores]
    assert rows[-1].startswith(f"{len(scores)} tokens ({sum(s.oov for s in scores)} OOV)")


RANKED_IN_BATCHES = """
import sys
import engine.parallel, engine.scoring
from engine.cli.common import load_model
from engine.tokenizer import iter_sentences

model = load_model(sys.argv[1])
lines = ["The cat sat on the mat. The dog ran to the old warm log!", "A fox, a cat and a dog sat."] * 40
whole = list(engine.scoring.stream_scores(model, iter_sentences(lines, False)))
engine.scoring.BATCH_TOKENS = 50
calls, ordered_map, thread_map = [], engine.scoring.ordered_map, engine.scoring.thread_map
engine.scoring.ordered_map = lambda *args, **kw: calls.append("forked" if engine.parallel.two_cores() else "here") or ordered_map(*args, **kw)
engine.scoring.thread_map = lambda *args, **kw: calls.append("thread") or thread_map(*args, **kw)
assert list(engine.scoring.stream_scores(model, iter_sentences(lines, False))) == whole
print(calls)
"""


@pytest.mark.parametrize("compiled", [True, False])
def test_a_text_of_many_batches_is_ranked_beside_the_reading_exactly_as_in_one_go(trained, compiled):
    """On a thread where the n-gram model ranks on both cores itself (its C extension), else
    on two forked processes. (In a fresh process: this one has torch loaded by other tests,
    and never forks then.)"""
    import os
    import subprocess
    import sys

    import plugins.ngram.stats
    from engine.parallel import cores

    if compiled:
        require_compiled(plugins.ngram.stats.Tables, "plugins/ngram/_ranking.c")
    environment = {**os.environ, "FORETELL_NO_COMPILED": "" if compiled else "1"}
    done = subprocess.run([sys.executable, "-c", RANKED_IN_BATCHES, trained], capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr
    expected = "here" if cores() < 2 else "thread" if compiled else "forked"
    assert done.stdout.strip() == f"[{expected!r}]"


def test_score_colours_by_rank_on_request(trained):
    out = run("score", "-m", trained, "--color", "-", input="The cat sat.").output
    assert "\x1b[32m" in out and "perplexity" in out


def test_perplexity_json_shape(trained, tmp_path):
    f = tmp_path / "held.txt"
    f.write_text("The cat sat on the log.\nThe dog ran.\n")
    out = json.loads(run("perplexity", "-m", trained, "--json", str(f)).output)
    assert set(out) == {"model", "backend", "sentences", "tokens", "oov", "log10_prob", "cross_entropy_bits", "perplexity", "perplexity_excluding_oov"}
    assert out["sentences"] == 2 and out["tokens"] == 13  # 7 + 4 tokens, 2 </s>
    assert out["perplexity"] == pytest.approx(10 ** (-out["log10_prob"] / out["tokens"]))
    assert out["perplexity"] == pytest.approx(2 ** out["cross_entropy_bits"])


def test_evaluate_reports_accuracy_and_keystroke_savings(trained, tmp_path):
    f = tmp_path / "held.txt"
    f.write_text("The cat sat on the mat. The dog sat on the log.\n")
    out = json.loads(run("evaluate", "-m", trained, "--json", str(f)).output)
    assert {"model", "perplexity", "top1_accuracy", "top5_accuracy", "keystroke_savings", "tokens"} <= set(out)
    assert 0 < out["top1_accuracy"] <= out["top5_accuracy"] <= 1
    assert 0.3 < out["keystroke_savings"] < 1
    run("train", "--backend", "cache", "--name", "recent", str(f))
    table = run("evaluate", "-m", trained, "-m", "recent", str(f)).output
    assert "keystroke savings" in table and trained in table and "recent" in table and "cache" in table
    both = json.loads(run("evaluate", "-m", trained, "-m", "recent", "--json", str(f)).output)["models"]
    assert [m["model"] for m in both] == [trained, "recent"] and both[0]["keystroke_savings"] == out["keystroke_savings"]


def test_generate_is_reproducible_with_a_seed(trained):
    a = run("generate", "-m", trained, "--seed", "7", "-n", "15", "--prompt", "The").output
    b = run("generate", "-m", trained, "--seed", "7", "-n", "15", "--prompt", "The").output
    assert a == b and a.startswith("The ")
    greedy = run("generate", "-m", trained, "--temperature", "0", "-n", "3", "--prompt", "The cat sat on the").output
    assert greedy.strip() == "The cat sat on the mat."


def test_models_list_default_rm_and_backends(trained):
    assert "notes" in run("models", "list").output
    run("models", "default", "notes")
    assert json.loads(run("predict", "--json", "The cat ").output)["model"] == "notes"
    listing = json.loads(run("models", "list", "--json").output)["models"]
    assert [m["name"] for m in listing if m["default"]] == ["notes"]
    backends = {b["name"]: b for b in json.loads(run("backends", "--json").output)["backends"]}
    assert set(backends) >= {"ngram", "window", "rnn", "cache", "mix"}
    assert backends["ngram"]["distribution"] == "foretell"
    run("models", "rm", "notes")
    assert "notes" not in run("models", "list").output


def test_backend_options_can_be_found_from_the_command_line():
    """`backends --options` and `train --backend NAME --help` list every option of a backend
    from its options dataclass: name, type, default and one line of help."""
    listed = json.loads(run("backends", "--options", "rnn", "--json").output)["backends"]
    assert [b["name"] for b in listed] == ["rnn"]
    options = {o["name"]: o for o in listed[0]["options"]}
    assert {"cell", "hidden", "layers", "bptt", "clip", "lr", "epochs", "max_minutes", "valid", "resume", "seed", "device"} <= set(options)
    assert options["layers"]["type"] == "int" and options["layers"]["default"] == 2 and options["layers"]["help"]
    assert options["hidden"]["type"] == "int" and options["hidden"]["default"] is None and "256 for elman" in options["hidden"]["help"]  # the cell's
    assert all(o["help"] for b in json.loads(run("backends", "--options", "--json").output)["backends"] for o in b["options"])
    text = run("backends", "--options", "ngram").output
    assert "--order" in text and "int = 4" in text and "--smoothing" in text
    help_text = run("train", "--backend", "rnn", "--help").output
    assert "--cell" in help_text and "--bptt" in help_text and "--max-minutes" in help_text
    assert "--smoothing" in run("train", "--help").output  # the default backend's options
    assert "unknown backend 'nope'" in run("backends", "--options", "nope", ok=False).output


def test_neural_training_controls_are_flags_and_backend_options_too(notes, tmp_path):
    run("train", "--backend", "window", "--name", "w", "--epochs", "1", "--seed", "3", "--hidden", "8", "--embedding", "4", str(notes))
    options = json.loads(run("models", "info", "w", "--json").output)["options"]
    assert (options["epochs"], options["seed"], options["hidden"], options["embedding"]) == (1, 3, 8, 4)
    refused = run("train", "--name", "n", "--epochs", "3", str(notes), ok=False)
    assert "--epochs is not an option of the 'ngram' backend" in refused.output
    assert "Invalid value for '--hidden'" in run("train", "--backend", "window", "--hidden", "x", str(notes), ok=False).output


def test_export_and_import_arpa(trained, tmp_path):
    arpa = tmp_path / "notes.arpa.gz"
    run("models", "export", trained, "--format", "arpa", str(arpa))
    run("models", "import", str(arpa), "--name", "again")
    text = "The cat sat on the mat."
    a = json.loads(run("score", "-m", trained, "--json", "-", input=text).output)
    b = json.loads(run("score", "-m", "again", "--json", "-", input=text).output)
    assert [t["logprob"] for t in a["tokens"]] == pytest.approx([t["logprob"] for t in b["tokens"]], abs=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "-m", "nope", "x "], "no model named 'nope'"),
        (["train", "--backend", "nope", "README.md"], "unknown backend 'nope'"),
        (["train", "--order", "12", "README.md"], "order must be between 1 and 9"),
        (["train", "--order", "0", "README.md"], "order must be between 1 and 9"),
        (["train", "--smoothing", "witten-bell", "README.md"], "smoothing must be one of"),
        (["train", "--k", "-1", "--smoothing", "add-k", "README.md"], "k must be a positive number"),
        (["train", "--memory", "8M", "README.md"], "memory must be at least 16M"),
        (["train", "--memory", "lots", "README.md"], "memory must be a size such as 512M or 2G"),
        (["train", "--name", "../x", "README.md"], "invalid model name"),
        (["train", "-O", "nonsense=1", "README.md"], "unknown option 'nonsense'"),
        (["train", "/no/such/folder"], "no usable text found"),
        (["generate", "--temperature", "-1"], "temperature must be 0 or more"),
        (["generate", "--top-p", "0"], "top-p must be in"),
        (["score", "/no/such/file"], "no such file"),
        (["models", "rm", "nope"], "no model named 'nope'"),
        (["models", "import", "pyproject.toml", "--name", "x"], "not a valid ARPA file"),
    ],
)
def test_bad_input_is_one_clear_sentence_and_a_nonzero_exit(args, message):
    result = run(*args, ok=False)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_empty_and_binary_only_corpora_are_clear_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("   \n\n")
    (tmp_path / "blob.dat").write_bytes(b"\x00\x01\x02" * 100)
    result = run("train", str(tmp_path), ok=False)
    assert result.exit_code != 0 and "no usable text found" in result.output and "Traceback" not in result.output


def test_console_script_runs_end_to_end(tmp_path):
    from tests.conftest import run_cli

    f = tmp_path / "t.txt"
    f.write_text(SMALL_TEXT)
    run_cli("train", "--name", "t", str(f))
    out = json.loads(run_cli("predict", "-m", "t", "--json", "The cat sat on the ").stdout)
    assert out["predictions"][0]["token"] == "mat"
    bad = run_cli("predict", "-m", "missing", "x", check=False)
    assert bad.returncode != 0 and bad.stderr.strip().startswith("Error: no model named") and "Traceback" not in bad.stderr


def test_the_quick_exit_keeps_the_status_the_output_and_the_exit_handlers(tmp_path):
    """main() ends the process without Python's teardown (start-up): what a user sees is the
    same, a long output through a pipe arrives whole and atexit handlers still run."""
    import subprocess
    import sys

    f = tmp_path / "t.txt"
    f.write_text(SMALL_TEXT * 40)
    program = "import atexit; atexit.register(print, 'exit handler ran'); from engine.cli import main; main()"
    trained = subprocess.run([sys.executable, "-c", program, "train", "--name", "t", str(f)], capture_output=True, text=True)
    assert trained.returncode == 0 and trained.stdout.endswith("exit handler ran\n")
    scored = subprocess.run([sys.executable, "-c", program, "score", "-m", "t", str(f)], capture_output=True, text=True)
    rows = scored.stdout.splitlines()
    assert scored.returncode == 0 and len(rows) > 3000 and rows[-1] == "exit handler ran"
    assert rows[:-1] == run("score", "-m", "t", str(f)).output.splitlines()
    missing = subprocess.run([sys.executable, "-c", program, "predict", "-m", "missing", "x"], capture_output=True, text=True)
    assert missing.returncode == 1 and "no model named" in missing.stderr and missing.stdout == "exit handler ran\n"


def test_every_command_is_found_through_the_table_of_lazily_imported_modules():
    import importlib

    import click

    from engine.cli import COMMANDS

    for module in {m for modules in COMMANDS.values() for m in modules.split()}:
        group = click.Group()
        importlib.import_module(f"engine.cli.{module}").register(group)
        for name in group.commands:
            assert module in COMMANDS[name].split(), f"{name} (in engine.cli.{module}) is missing from COMMANDS"
    assert all(cli.get_command(None, name) is not None for name in COMMANDS)
    listed = run("--help").output
    assert all(f"  {name} " in listed for name in COMMANDS)


def test_discount_fallback_is_said_aloud_and_can_be_refused(tmp_path):
    """Text with no n-gram seen once gives no modified Kneser-Ney discounts: training says which
    orders took lmplz's fallback ones (so does `models info`), or stops when told to refuse."""
    folder = tmp_path / "repeated"
    folder.mkdir()
    (folder / "a.txt").write_text("The cat sat on the mat. " * 30)
    trained = run("train", "--name", "r", "--order", "3", str(folder))
    assert "note: orders 1, 2, 3: the counts of counts give no modified Kneser-Ney discounts" in trained.output
    details = json.loads(run("models", "info", "r", "--json").output)["details"]
    assert details["discount_fallback"] == {"orders": [1, 2, 3], "discounts": [0.5, 1.0, 1.5]}
    assert details["discounts"][2] == [0.5, 1.0, 1.5]

    refused = run("train", "--name", "r", "--order", "4", "--no-discount-fallback", str(folder), ok=False)
    assert refused.exit_code == 1 and "order 4: n1-n4" in refused.output and "--discount-fallback" in refused.output
    assert json.loads(run("models", "info", "r", "--json").output)["details"]["order"] == 3  # the saved model is untouched
    rng = np.random.default_rng(0)  # text with words seen once, twice, three times...
    (folder / "b.txt").write_text(" ".join(f"w{int(i)}" for i in rng.zipf(1.5, 5000) if i < 2000) + ".\n")
    varied = run("train", "--name", "v", "--order", "2", "--no-discount-fallback", str(folder))
    assert "note:" not in varied.output and "discount_fallback" not in json.loads(run("models", "info", "v", "--json").output)["details"]


def test_keystroke_savings_under_both_conventions(tmp_path):
    """Every known word offered before its first letter: one key each. Ours counts the words'
    letters; Presage's (autospace) the space after each word too, which accepting inserts."""
    corpus = tmp_path / "train.txt"
    corpus.write_text("the cat sat\n" * 20)
    run("train", "--name", "tiny", "--order", "2", str(corpus))
    held = tmp_path / "held.txt"
    held.write_text("the dog sat\n")
    out = json.loads(run("evaluate", "-m", "tiny", "--json", str(held)).output)
    # "the" and "sat": 1 key each; "dog" (unknown) typed out: 3 letters, and its space under autospace.
    assert (out["characters"], out["keystrokes"]) == (9, 5)
    assert (out["autospace_characters"], out["autospace_keystrokes"]) == (12, 6)
    assert out["keystroke_savings"] == pytest.approx(1 - 5 / 9) and out["keystroke_savings_autospace"] == pytest.approx(0.5)
    # Presage's simulator types words only: punctuation counts under ours, not under autospace.
    held.write_text("the dog, sat.\n")
    out = json.loads(run("evaluate", "-m", "tiny", "--json", str(held)).output)
    assert (out["characters"], out["autospace_characters"], out["autospace_keystrokes"]) == (11, 12, 6)


def test_evaluate_learns_each_file_after_typing_it_and_reads_history(tmp_path):
    """--learn-as-you-go: a word the model first met in the file typed before is offered in the
    next (as after saving that file in the editor), and the store keeps no trace of it.
    --history: a cache that has read the user's earlier text offers its words at once."""
    from engine.store import ModelStore

    corpus = tmp_path / "train.txt"
    corpus.write_text("the cat sat\n" * 20)
    run("train", "--name", "tiny", "--order", "2", str(corpus))
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("the dog sat\n")
    second.write_text("the dog sat\n")
    plain = json.loads(run("evaluate", "-m", "tiny", "--json", str(first), str(second)).output)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    learning = json.loads(run("evaluate", "-m", "tiny", "--json", "--learn-as-you-go", str(first), str(empty), str(second)).output)
    assert plain["keystrokes"] == 2 * (1 + 3 + 1)  # "dog" typed out twice
    assert learning["keystrokes"] == plain["keystrokes"] - 2  # the second "dog" offered: one key
    assert learning["perplexity"] < plain["perplexity"]
    assert ModelStore().layer("tiny").documents() == [] and not (ModelStore().root / "adaptation").exists()

    words = "dab dad dam day den dew did dig dim din"  # words a "d" does not tell from "dog"
    corpus.write_text(f"{words}\n" * 20 + "dog\n")
    run("train", "--backend", "cache", "--name", "recent", str(corpus))
    earlier = tmp_path / "earlier.txt"
    earlier.write_text("dog dog dog\n")
    held = tmp_path / "held.txt"
    held.write_text("dog\n")
    cold = json.loads(run("evaluate", "-m", "recent", "--json", str(held)).output)
    warm = json.loads(run("evaluate", "-m", "recent", "--json", "--history", str(earlier), str(held)).output)
    assert (cold["keystrokes"], warm["keystrokes"]) == (3, 1) and warm["perplexity"] < cold["perplexity"]
    refused = run("evaluate", "-m", "recent", "--learn-as-you-go", str(held), ok=False)
    assert refused.exit_code == 1 and "cannot learn online" in refused.output


def test_keystroke_savings_with_phrases_accept_the_inline_continuation_in_one_key(tmp_path):
    """The continuation offered at a sentence's start is its first four words: one key enters
    them all when they are right. Word by word, each known word costs a key."""
    corpus = tmp_path / "train.txt"
    corpus.write_text("the cat sat on the mat\n" * 20)
    run("train", "--name", "tiny", "--order", "3", "--pretokenized", str(corpus))
    held = tmp_path / "held.txt"
    held.write_text("the cat sat on the mat\nthe cat sat on the dog\n")
    out = json.loads(run("evaluate", "-m", "tiny", "--json", "--pretokenized", str(held)).output)
    assert out["keystrokes"] == 6 + 5 + 3  # "dog" (unknown) is typed out
    # "the cat sat on" (1 key) "the mat" (1); "the cat sat on" (1), the offer "the mat" is
    # wrong, so "the" takes a word completion (1) and "dog" its three letters.
    assert out["phrase_keystrokes"] == 2 + 2 + 3
    assert out["keystroke_savings_phrases"] > out["keystroke_savings"]
    # Presage's convention: the spaces count; a word completion inserts its space, a phrase all
    # but the one after its last word (typed: a key more), "dog" costs its space too.
    assert out["autospace_keystrokes"] == 6 + 5 + 4
    assert out["autospace_phrase_keystrokes"] == (1 + 1) + (1 + 1) + (1 + 1) + 1 + (3 + 1)

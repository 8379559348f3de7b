"""Files in the store and files given to import are never trusted: each attack found by the
hostile review, reproduced, ends in one clear sentence and loses nothing."""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.store import ModelStore
from plugins.ngram.packed import PackedKeys
from tests.conftest import SMALL_TEXT


def run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def refused(*args, says: str, input=None):
    result = run(*args, input=input)
    assert result.exit_code == 1, result.output
    assert says in result.output, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    return result


@pytest.fixture
def base(tmp_path):
    """A trained n-gram model 'base' that has learned one document."""
    (tmp_path / "train.txt").write_text(SMALL_TEXT)
    (tmp_path / "doc.txt").write_text("Zebras graze near the river. Zebras run.\n")
    assert run("train", "--name", "base", "--order", "3", str(tmp_path / "train.txt")).exit_code == 0
    assert run("learn", "-m", "base", str(tmp_path / "doc.txt")).exit_code == 0
    return ModelStore()


def layer_file(store, name="base"):
    return store.layer(name).folder / "layer.json"


def edit_layer(store, change):
    path = layer_file(store)
    layer = json.loads(path.read_text())
    change(layer)
    path.write_text(json.dumps(layer))


def test_layer_file_names_are_never_used_as_paths(base, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    array = base.path("base") / "keys2.low.npy"
    for name in (str(victim), "../../models/base/keys2.low.npy", "sub/doc-1.npy", ".hidden"):
        edit_layer(base, lambda layer: layer["documents"][0].update(file=name))
        refused("predict", "-m", "base", "The ", says="its adaptation layer is damaged")
        refused("learn", "-m", "base", str(tmp_path / "doc.txt"), says="forget -m base --all")
        assert victim.read_text() == "keep me" and array.exists()
    assert run("forget", "-m", "base", "--all").exit_code == 0
    assert victim.read_text() == "keep me" and array.exists()
    assert run("predict", "-m", "base", "The ").exit_code == 0


@pytest.mark.parametrize("damage", [
    lambda path: path.write_text("{garbage"),
    lambda path: path.write_text(json.dumps({"documents": [{"key": "k"}], "next": 2})),  # no file
    lambda path: path.write_text(json.dumps({"documents": [], "next": "x"})),
    lambda path: path.write_text("[" * 200_000),
])
def test_a_damaged_layer_is_reported_and_forget_all_clears_it(base, damage):
    damage(layer_file(base))
    refused("predict", "-m", "base", "The ", says="`foretell forget -m base --all` clears it")
    result = run("forget", "-m", "base", "--all")
    assert result.exit_code == 0, result.output
    assert "now includes 0 learned document(s)" in result.output
    assert run("predict", "-m", "base", "The ").exit_code == 0


def test_symlinks_and_devices_in_the_store_are_refused(base):
    vocab = base.path("base") / "vocab.json"
    vocab.unlink()
    vocab.symlink_to("/dev/zero")
    refused("predict", "-m", "base", "The ", says="vocab.json is a symbolic link; refused")
    layer = layer_file(base)
    layer.unlink()
    layer.symlink_to("/dev/zero")
    assert run("forget", "-m", "base", "--all").exit_code == 0
    manifest = base.path("base") / "manifest.json"
    manifest.unlink()
    manifest.symlink_to("/dev/zero")
    rows = json.loads(run("models", "list", "--json").output)["models"]
    assert rows == [{"name": "base", "error": "base: manifest.json is a symbolic link; refused", "default": False}]


@pytest.mark.parametrize("file", ["vocab.json", "manifest.json"])
def test_deep_json_is_refused_and_one_bad_model_never_hides_the_others(base, tmp_path, file):
    (tmp_path / "t.txt").write_text(SMALL_TEXT)
    assert run("train", "--name", "good", str(tmp_path / "t.txt")).exit_code == 0
    (base.path("base") / file).write_text("[" * 200_000)
    refused("predict", "-m", "base", "The ", says="nested deeper than 32 levels")
    listing = run("models", "list", "--json")
    assert listing.exit_code == 0
    rows = {r["name"]: r for r in json.loads(listing.output)["models"]}
    assert "vocabulary" in rows["good"]
    assert file != "manifest.json" or "nested deeper" in rows["base"]["error"]


def test_arrays_and_options_that_disagree_with_each_other_are_refused(base):
    folder = base.path("base")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["options"]["order"] = 2
    (folder / "manifest.json").write_text(json.dumps(manifest))
    refused("predict", "-m", "base", "The ", says="the manifest says order 2 but the model has n-grams of order 3")
    manifest["options"]["order"] = 3
    (folder / "manifest.json").write_text(json.dumps(manifest))
    logp = np.load(folder / "logp1.npy")
    logp[5] = np.nan
    np.save(folder / "logp1.npy", logp)
    refused("predict", "-m", "base", "The ", says="a log-probability is not a finite number at most 0")
    np.save(folder / "logp1.npy", np.nan_to_num(logp, nan=-1.0))
    keys = PackedKeys(np.load(folder / "keys2.low.npy"), np.load(folder / "keys2.blocks.npy"))
    vocabulary = len(json.loads((folder / "vocab.json").read_text()))
    beyond = PackedKeys.of(np.append(np.asarray(keys)[:-1], np.uint64(vocabulary * vocabulary)))  # context index V: none
    np.save(folder / "keys2.low.npy", beyond.low)
    np.save(folder / "keys2.blocks.npy", beyond.blocks)
    refused("learn", "-m", "base", str(folder / "vocab.json"), says="a key names a context that does not exist")


def arpa(tmp_path, body: str, name="m.arpa") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


GOOD_ARPA = "\\data\\\nngram 1=4\n\n\\1-grams:\n-1.0\t<unk>\n-99\t<s>\n-0.5\t</s>\n{p}\tcat\n\n\\end\\\n"


@pytest.mark.parametrize("value", ["nan", "5.0", "-inf", "inf"])
def test_arpa_log_probabilities_must_be_finite_and_at_most_zero(tmp_path, value):
    refused("models", "import", str(arpa(tmp_path, GOOD_ARPA.format(p=value))), "--name", "x",
            says=f"log10 probability {value} is not a finite number at most 0")
    assert run("models", "import", str(arpa(tmp_path, GOOD_ARPA.format(p="-0.3"))), "--name", "x").exit_code == 0


def test_arpa_orders_counts_lines_and_pipes_are_bounded(tmp_path):
    header = "\\data\\\n" + "".join(f"ngram {k}=1\n" for k in range(1, 51))
    refused("models", "import", str(arpa(tmp_path, header)), "--name", "x", says="order 50; foretell reads orders 1-9")
    huge = "\\data\\\nngram 1=1000000000000\n\n\\1-grams:\n-1.0\t<unk>\n\\end\\\n"
    refused("models", "import", str(arpa(tmp_path, huge)), "--name", "x", says="malformed 1-gram line 2")
    long_line = tmp_path / "long.arpa.gz"
    with gzip.open(long_line, "wt") as f:
        f.write("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\t")
        for _ in range(64):
            f.write("x" * (1 << 20))
    refused("models", "import", str(long_line), "--name", "x", says="a line is longer than 1,048,576 characters")
    fifo = tmp_path / "pipe.arpa"
    os.mkfifo(fifo)
    refused("models", "import", str(fifo), "--name", "x", says="not a regular file")


def run_limited(args, file_size: int, env=None):
    """The real CLI in a process that may write files of at most ``file_size`` bytes: what a
    full disk does to a write (a short write, then EFBIG instead of ENOSPC)."""
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", *args], capture_output=True, text=True,
                          preexec_fn=limit, env={**os.environ, **(env or {})}, timeout=300)


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".lock-")}


def test_a_full_disk_says_so_and_leaves_everything_as_it_was(base, tmp_path, isolated_home):
    big = tmp_path / "big.txt"
    big.write_text(" ".join(f"word{i} and word{i * 7 % 5000}." for i in range(40000)))
    before = snapshot(isolated_home)
    for args in (["train", "--name", "base", str(big)], ["learn", "-m", "base", str(big)], ["models", "default", "base"],
                 ["models", "export", "base", str(tmp_path / "out.arpa")]):
        result = run_limited(args, file_size={"default": 2, "export": 300}.get(args[1], 20_000))
        assert result.returncode == 1, (args, result.stderr)
        assert "the disk is full" in result.stderr and "internal error" not in result.stderr, (args, result.stderr)
        assert snapshot(isolated_home) == before, args  # nothing changed, no temporary file left
        assert not (tmp_path / "out.arpa").exists() and not list(tmp_path.glob(".*tmp*"))


def test_json_output_is_valid_utf8_whatever_bytes_come_in(base):
    """Invalid bytes in an argument or on standard input become replacement characters, and
    the offsets still index the decoded text."""
    import subprocess
    import sys

    def cli_bytes(*args, stdin=b""):
        proc = subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", *args], input=stdin, capture_output=True,
                              env={**os.environ, "LC_ALL": "C"}, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.decode("utf-8"))  # strict: raw bytes would fail here

    predicted = cli_bytes("predict", "-m", "base", "--json", os.fsdecode(b"The \xff\xfe cat "))
    assert predicted["context"].startswith("The \ufffd") and predicted["predictions"]
    raw = b"The cat \xff sat on the \xc3( mat.\n"
    scored = cli_bytes("score", "-m", "base", "--json", "-", stdin=raw)
    text = raw.decode("utf-8", "replace")
    assert all(text[t["start"]:t["end"]] == t["token"] for t in scored["tokens"] if t["start"] is not None)
    assert "\ufffd" in [t["token"] for t in scored["tokens"]]


def test_score_streams_so_memory_follows_a_batch_not_the_text(base, tmp_path):
    """`score` of megabytes on standard input, every output form: peak memory stays near what
    one batch of sentences needs (it held the whole text: 10 MB peaked at 2 GB)."""
    import subprocess
    import sys

    text = (SMALL_TEXT + "\n") * 5000  # 2.2 MB, 465,000 tokens (whole, it would peak near 450 MB)
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's size across exec.
    code = ("import sys; from engine.cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')), file=sys.stderr)")
    for form in (["--json"], ["--no-color"], ["--color"]):
        proc = subprocess.run([sys.executable, "-c", code, "score", "-m", "base", *form, "-"], input=text.encode(), capture_output=True, timeout=300)
        peak_mb = int(proc.stderr.decode().split()[-1]) / 1024
        assert proc.returncode == 0 and peak_mb < 200, (form, peak_mb)
        out = proc.stdout.decode()
        if form == ["--json"]:
            scored = json.loads(out)
            assert len(scored["tokens"]) == 5000 * 93 and scored["perplexity"] > 1
        assert form == ["--json"] or out.splitlines()[-1].startswith("465,000 tokens")



@pytest.mark.parametrize("damage", ["missing", "garbage", "pickle", "not a permutation", "wrong shape"])
def test_the_sorted_vocabulary_is_checked_and_a_model_without_it_completes_the_same(tmp_path, damage):
    """The words sorted for completion are kept beside the vocabulary (no sort at each start);
    a model saved before that, or whose file is damaged, sorts them again and completes the same."""
    (tmp_path / "train.txt").write_text(SMALL_TEXT)
    assert run("train", "--name", "plain", "--order", "3", str(tmp_path / "train.txt")).exit_code == 0
    before = run("predict", "-m", "plain", "--json", "the ca").output
    folder = ModelStore().path("plain")
    path = folder / "vocab.order.npy"
    orders = np.load(path)
    assert orders.dtype == np.int32 and orders.shape == (2, len(json.loads((folder / "vocab.json").read_text())) - 3)
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"\x93NUMPY garbage" * 10)
    elif damage == "pickle":
        np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif damage == "not a permutation":
        np.save(path, np.full_like(orders, 3))
    else:
        np.save(path, orders[:, :-1])
    assert run("predict", "-m", "plain", "--json", "the ca").output == before
    assert run("predict", "-m", "plain", "--json", "The Ca").exit_code == 0

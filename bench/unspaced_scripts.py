"""Perplexity, next-unit accuracy and keystroke savings on real text written without word spaces:
Japanese and Chinese manual pages, Thai program messages.

    apt-get install manpages-ja manpages-zh groff-base   # Thai: the gettext catalogs already installed
    python bench/unspaced_scripts.py

Each source is written out as one text file per page or catalog (the man pages rendered by groff,
so the model sees what a reader sees, English option names and all: mixed scripts); every 10th file
is held out. Training and evaluation run through the CLI as a user runs them (`foretell train`,
`foretell evaluate --json`, defaults: Kneser-Ney order 4) with FORETELL_HOME in a temporary folder.

Units are what engine.scripts makes them: one Han or kana character, one Thai grapheme cluster.
Keystroke savings use `foretell evaluate`'s protocol (accepting an offered unit costs one key), so a
one-character unit can save nothing: for Chinese and Japanese the figure that matters is next-unit
accuracy (how often the character a writer wants next is among the five offered).
"""

from __future__ import annotations

import gettext
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAN = Path("/usr/share/man")
THAI = Path("/usr/share/locale/th/LC_MESSAGES")


def rendered_man_pages(language: str):
    """(name, text) for each manual page of a language, as groff renders it for a terminal."""
    for page in sorted((MAN / language).glob("man*/*.gz")):
        source = gzip.decompress(page.read_bytes())
        text = subprocess.run(["groff", "-k", "-Tutf8", "-man", "-rLL=2000n", "-P-cbou"], input=source,
                              capture_output=True).stdout.decode("utf-8", "replace")
        if text.strip():
            yield page.name, text


def thai_catalogs():
    """(name, text) for each Thai message catalog: its translated messages, one paragraph each."""
    for catalog in sorted(THAI.glob("*.mo")):
        with catalog.open("rb") as handle:
            messages = gettext.GNUTranslations(handle)._catalog
        translated = [m if isinstance(m, str) else "" for key, m in messages.items() if key]
        yield catalog.name, "\n\n".join(m for m in translated if m.strip())


SOURCES = {
    "Japanese man pages (manpages-ja)": lambda: rendered_man_pages("ja"),
    "Chinese man pages, simplified (manpages-zh)": lambda: rendered_man_pages("zh_CN"),
    "Chinese man pages, traditional (manpages-zh)": lambda: rendered_man_pages("zh_TW"),
    "Thai program messages (gettext catalogs)": thai_catalogs,
}


def foretell(home: str, *args: str) -> str:
    environment = dict(os.environ, FORETELL_HOME=home)
    done = subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"foretell {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def measure(title: str, documents, work: Path) -> str:
    train, held = work / "train", work / "held"
    train.mkdir()
    held.mkdir()
    characters = 0
    for i, (name, text) in enumerate(documents):
        (held if i % 10 == 9 else train).joinpath(f"{i:04d}-{name}.txt").write_text(text, encoding="utf-8")
        characters += len(text)
    home = str(work / "home")
    started = time.perf_counter()
    foretell(home, "train", "--name", "m", str(train))
    seconds = time.perf_counter() - started
    f = json.loads(foretell(home, "evaluate", "-m", "m", "--json", *map(str, sorted(held.iterdir()))))
    return (f"| {title} | {characters:,} | {seconds:.1f} s | {f['perplexity']:.1f} | {f['top1_accuracy']:.1%} | "
            f"{f['top5_accuracy']:.1%} | {f['keystroke_savings']:.1%} | {f['tokens']:,} |")


def main():
    print("| text | characters | train | perplexity per unit | top-1 | top-5 | keystroke savings | held-out units |")
    print("|---|---|---|---|---|---|---|---|")
    for title, documents in SOURCES.items():
        with tempfile.TemporaryDirectory() as work:
            print(measure(title, documents(), Path(work)), flush=True)


if __name__ == "__main__":
    main()

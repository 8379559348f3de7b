"""ARPA back-off files in and out (plain or gzip), the format KenLM, SRILM and others share."""

from __future__ import annotations

import io
import math
import os
import re
import stat
# (gzip: imported in the functions that use them; foretell's start-up needs none of them)
from array import array
from pathlib import Path

import numpy as np

from engine.errors import ForetellError
from engine.vocab import BOS_ID, SPECIALS, Vocabulary
from plugins.ngram.search import lookup

UNKNOWN_LOG10 = -100.0  # what KenLM assigns <unk> when an ARPA file lacks it


def _open(path: Path, mode: str):
    import gzip
    if str(path).endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, mode.replace("t", "") + "b"), encoding="utf-8", newline="\n")
    return open(path, mode, encoding="utf-8", newline="\n")


ARPA_CHUNK = 1 << 16  # n-grams formatted at a time: memory follows this, not the model


def write_arpa(path: Path, vocab: Vocabulary, keys: list[np.ndarray], logp: list[np.ndarray], backoff: list[np.ndarray]) -> None:
    """Write the model a chunk of n-grams at a time (each one's words recovered from its
    prefixes, so nothing the size of the model is built); values are the shortest decimals that
    read back as the same float32, and every n-gram below the top order carries its backoff, as
    lmplz writes them."""
    words = np.array(vocab.tokens, dtype=object)
    with _open(path, "wt") as f:
        f.write("\\data\\\n")
        for k, key in enumerate(keys, start=1):
            f.write(f"ngram {k}={len(key)}\n")
        for k, key in enumerate(keys, start=1):
            f.write(f"\n\\{k}-grams:\n")
            for lo in range(0, len(key), ARPA_CHUNK):
                hi = min(lo + ARPA_CHUNK, len(key))
                ids = _word_ids(keys, k, lo, hi, len(vocab))
                text = words[ids[0]]
                for column in ids[1:]:
                    text = text + " " + words[column]
                probs = _shortest(logp[k - 1][lo:hi])
                if k < len(keys):
                    f.writelines(f"{p}\t{s}\t{b}\n" for p, s, b in zip(probs, text, _shortest(backoff[k - 1][lo:hi])))
                else:
                    f.writelines(f"{p}\t{s}\n" for p, s in zip(probs, text))
        f.write("\n\\end\\\n")


def _word_ids(keys: list[np.ndarray], k: int, lo: int, hi: int, vocab_size: int) -> np.ndarray:
    """The words of order-k n-grams lo..hi, first word first: a k x n array of ids. A key is
    its prefix's index times V plus its last word, so the words come from walking the prefixes."""
    V = np.uint64(vocab_size)
    out = np.empty((k, hi - lo), dtype=np.int64)
    key = np.asarray(keys[k - 1][lo:hi], dtype=np.uint64)
    for j in range(k - 1, 0, -1):
        out[j] = (key % V).astype(np.int64)
        key = np.asarray(keys[j - 1][(key // V).astype(np.int64)], dtype=np.uint64)  # (packed keys unpack only these)
    out[0] = key.astype(np.int64)
    return out


def _shortest(values: np.ndarray) -> list[str]:
    """Each float32 as the shortest decimal that reads back to it (numpy's unique repr), with
    no ".0" on whole numbers, as lmplz prints them."""
    return [s[:-2] if s.endswith(".0") else s for s in np.asarray(values, dtype=np.float32).astype(str).tolist()]


_COUNT = re.compile(r"^ngram\s+(\d+)\s*=\s*(\d+)\s*$")


MAX_LINE = 1 << 20  # characters; an n-gram line is a number, a few words and a number
MAX_ORDER = 9  # what the n-gram backend models


def read_arpa(path: Path):
    """(vocabulary, keys, logp, backoff) per order from an ARPA file, or a clear error. Only a
    regular file is opened (a pipe would block), lines have a length limit and every value is
    checked, so no file can exhaust memory or put a NaN into a model."""
    import gzip
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ForetellError(f"{path}: not a regular file")
        with _open(path, "rt") as f:
            return _parse(_bounded_lines(f, path), path)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ForetellError(f"{path}: cannot read ({exc})") from None
    except UnicodeDecodeError:
        raise ForetellError(f"{path}: not an ARPA file (not UTF-8 text)") from None


def _bounded_lines(f, path):
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE:
            raise ForetellError(f"{path}: not a valid ARPA file (a line is longer than {MAX_LINE:,} characters)")
        yield line


def _parse(f, path):
    def bad(why):
        return ForetellError(f"{path}: not a valid ARPA file ({why})")

    line = ""
    for line in f:
        if line.strip():
            break
    if line.strip() != "\\data\\":
        raise bad("it does not start with \\data\\")
    sizes = []
    for line in f:
        m = _COUNT.match(line.strip())
        if m:
            if int(m.group(1)) != len(sizes) + 1:
                raise bad("n-gram counts out of order")
            sizes.append(int(m.group(2)))
        elif line.strip():
            break
    if not sizes:
        raise bad("no n-gram counts in the header")
    if len(sizes) > MAX_ORDER:
        raise bad(f"order {len(sizes)}; foretell reads orders 1-{MAX_ORDER}")
    order = len(sizes)
    grams, probs, backs = [], [], []
    for k in range(1, order + 1):
        while line.strip() == "":
            line = next(f, None)
            if line is None:
                raise bad(f"missing \\{k}-grams: section")
        if line.strip() != f"\\{k}-grams:":
            raise bad(f"expected \\{k}-grams:, found {line.strip()[:40]!r}")
        g, p, b = [], array("d"), array("d")  # grown as lines come: the header may lie
        for i in range(sizes[k - 1]):
            parts = next(f, "").split()
            if len(parts) not in (k + 1, k + 2):
                raise bad(f"malformed {k}-gram line {i + 1}")
            try:
                p.append(float(parts[0]))
                b.append(float(parts[-1]) if len(parts) == k + 2 else 0.0)
            except ValueError:
                raise bad(f"a {k}-gram probability is not a number") from None
            if not (math.isfinite(p[-1]) and p[-1] <= 0):
                raise bad(f"{k}-gram line {i + 1}: log10 probability {parts[0]} is not a finite number at most 0")
            if not math.isfinite(b[-1]):
                raise bad(f"{k}-gram line {i + 1}: backoff {parts[-1]} is not a finite number")
            g.append(parts[1 : k + 1])
        grams.append(g)
        probs.append(np.frombuffer(p, dtype=np.float64).astype(np.float32))
        backs.append(np.frombuffer(b, dtype=np.float64).astype(np.float32))
        line = next(f, "")
    return _index(grams, probs, backs, bad)


def _index(grams, probs, backs, bad):
    """Turn word tuples into the prefix-keyed sorted arrays the n-gram model uses."""
    tokens = list(SPECIALS) + [g[0] for g in grams[0] if g[0] not in SPECIALS]
    vocab = Vocabulary(tokens)
    V = len(vocab)
    if len(set(tokens)) != len(tokens):
        raise bad("repeated unigrams")
    uni_p = np.full(V, UNKNOWN_LOG10, np.float32)
    uni_b = np.zeros(V, np.float32)
    order_ids = np.array([vocab.ids[g[0]] for g in grams[0]], dtype=np.int64)
    uni_p[order_ids], uni_b[order_ids] = probs[0], backs[0]
    uni_p[BOS_ID] = 0.0  # context only, as KenLM writes it
    keys, logp, backoff = [np.arange(V, dtype=np.uint64)], [uni_p], [uni_b]
    for k in range(2, len(grams) + 1):
        ids = np.array([[vocab.ids.get(w, -1) for w in g] for g in grams[k - 1]], dtype=np.int64).reshape(-1, k)
        if (ids < 0).any():
            raise bad(f"a {k}-gram uses a word that is not a unigram")
        prefix = ids[:, 0].copy()
        for j in range(1, k - 1):
            prefix = lookup(keys[j], prefix, ids[:, j], V)
            if (prefix < 0).any():
                raise bad(f"a {k}-gram's context is missing from the {j + 1}-grams (pruned ARPA files are not supported)")
        key = prefix.astype(np.uint64) * np.uint64(V) + ids[:, -1].astype(np.uint64)
        order = np.argsort(key, kind="stable")
        key = key[order]
        if len(key) > 1 and (key[1:] == key[:-1]).any():
            raise bad(f"repeated {k}-grams")
        keys.append(key)
        logp.append(probs[k - 1][order])
        backoff.append(backs[k - 1][order])
    return vocab, keys, logp, backoff

"""Secrets are never learned: files that hold keys are not read, and text that looks like a
password, key or access token is blanked before a model ever counts it.

A model offers what it learned as completions, exports it as ARPA and lists it in
``models history``; a password typed once into a note must not come back as a suggestion
(Presage did exactly that: OptiKey/OptiKey#705). What counts as a secret:

- files named like key stores and environment files (``*.pem``, ``*.key``, ``id_rsa``,
  ``*.env``, ``.netrc``, ``credentials``, ...), skipped whole;
- the value after a name that says it is one (``DB_PASSWORD=...``, ``api_key: ...``,
  ``token = ...``);
- tokens in the shape of known credentials (AWS access keys, GitHub, Slack, Stripe, OpenAI,
  Anthropic, Google API tokens, JWTs, private key blocks);
- long random-looking strings: 20 or more characters mixing lower case, upper case and digits
  (prose and lower-case corpora such as PTB have none; a camel-case identifier with a digit
  that long is blanked too, a loss we accept).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import numpy as np

SECRET_FILES = ("*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx", "*.gpg", "*.asc", "id_rsa*", "id_dsa*",
                "id_ecdsa*", "id_ed25519*", "*.env", ".env*", "*.netrc", ".pgpass", "credentials", "credentials.*")
# Names that say the value after them is a secret (matched in lower case), then the value.
_NAMES = ("password", "passwd", "passphrase", "pwd", "pass", "secret", "token", "api_key", "api-key", "apikey",
          "access_key", "access-key", "private_key", "private-key", "credential", "credentials")
_VALUE = re.compile(r"[\"']?[ \t]*(?::=|=>|[:=])[ \t]*[\"']?([^\s\"',;]+)")
_SHAPES = re.compile(
    r"\b(?:A(?:KIA|SIA)[0-9A-Z]{16}"            # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}"              # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"            # Slack
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"    # Stripe
    r"|sk-(?:proj-|ant-(?:api\d+-)?)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
    r"|AIza[0-9A-Za-z_-]{30,}"                  # Google API keys
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"  # JWTs
)
# Candidates for a random string (checked below): runs of at least _LONG_RUN of these.
_RUN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-"
_RUN_TABLE = bytes(1 if byte in _RUN_BYTES else 0 for byte in range(256))  # (for bytes.translate)
_LONG_RUN = 20
_LONG_RUN_MARKS = b"\1" * _LONG_RUN
# Where a secret's name or a credential of a known shape may be, found in one pass over the text
# read backwards. Read forwards they start with letters so common that a pattern tries nearly
# every position, and a search for each name and each shape's start took 33 passes over the
# text, a third of reading pretokenized text for training. Backwards each starts with a rare
# character: a name with the ":" or "=" after it, a shape with the last character of its fixed
# start; the pattern engine skips to the next of those in C. An empty group names the shape and
# ``_SHAPE_STARTS`` its fixed start's length (Stripe's with the letter before it).
_NAME_BEFORE = r"[ \t]*[\"']?(?i:(?P<%s>" + "|".join(re.escape(n[::-1]) for n in sorted(_NAMES, key=len, reverse=True)) + "))"
_BACKWARDS = re.compile(
    "|".join((
        f":(?={_NAME_BEFORE % 'colon'})",
        f"=(?={_NAME_BEFORE % 'equals'})",
        "A(?P<aws>)(?=I[KS]A)",
        "_(?P<github>)(?=[pousr]hg)",
        "-(?P<slack>)(?=[abprs]xox)",
        "_(?P<stripe>)(?=(?:evil|tset)_k[sr])",
        "-(?P<openai>)(?=ks)",  # and Anthropic
        "z(?P<google>)(?=IA)",
        "J(?P<jwt>)(?=ye)",
    ))
)
_SHAPE_STARTS = {"aws": 4, "github": 4, "slack": 5, "stripe": 8, "openai": 3, "google": 3, "jwt": 3}
_NOT_NEWLINE = re.compile(r"[^\n]")
_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^\n]*\n(?:[A-Za-z0-9+/=]+\n)*(?:-----END [A-Z ]*PRIVATE KEY-----)?")


def secret_file(path: Path) -> bool:
    """Whether a file's name says it holds keys or passwords (it is then never read)."""
    name = Path(path).name.lower()
    return any(fnmatch.fnmatch(name, pattern) for pattern in SECRET_FILES)


def redact(text: str) -> str:
    """``text`` with every secret in it blanked (spaces of the same length, so nothing of it is
    learned and the rest keeps its shape and its line breaks)."""
    spans = _random_runs(text) + _named_and_shaped(text)
    spans += [m.span() for m in _KEY_BLOCK.finditer(text)]
    if not spans:
        return text
    pieces, at = [], 0
    for start, end in sorted(spans):
        start = max(start, at)  # spans may overlap
        if end > start:
            pieces += [text[at:start], _NOT_NEWLINE.sub(" ", text[start:end])]
            at = end
    return "".join(pieces) + text[at:]


def redact_lines(lines, batch: int = 2000):
    """``redact`` over a stream of lines, a few thousand lines at a time (the searches run in C
    over the joined text, so clean text costs almost nothing); the lines come out as they went in."""
    pending: list[str] = []
    for line in lines:
        pending.append(line)
        if len(pending) >= batch:
            yield from _redacted(pending)
            pending = []
    if pending:
        yield from _redacted(pending)


def _redacted(lines: list[str]):
    text = "".join(lines)
    clean = redact(text)
    if clean is text:
        yield from lines
        return
    at = 0
    for line in lines:
        yield clean[at : at + len(line)]
        at += len(line)


def _random_runs(text: str) -> list[tuple[int, int]]:
    """Spans of long runs mixing lower case, upper case and digits; none to search for in text
    without capitals (lower-cased corpora) or without digits, which C finds at once."""
    if text.islower() or not any(digit in text for digit in "0123456789"):
        return []
    return [(start, end) for start, end in _long_runs(text) if _mixed(text[start:end])]


def _long_runs(text: str) -> list[tuple[int, int]]:
    """Spans of the runs of ``_RUN_BYTES`` at least ``_LONG_RUN`` long, found in the text's UTF-8
    bytes by C: each byte made 1 inside a run and 0 outside (``bytes.translate``), then each
    long run found by ``bytes.find``: 16 MB in 0.08 s, against 0.15 s for numpy over every byte
    (itself 5 times faster than a pattern). The characters of a run are ASCII, so a run's
    offsets in characters are its offsets in bytes less the continuation bytes before it."""
    data = text.encode("utf-8", "surrogatepass")
    inside = data.translate(_RUN_TABLE)
    spans, at = [], inside.find(_LONG_RUN_MARKS)
    while at >= 0:
        end = inside.find(b"\0", at + _LONG_RUN)
        end = len(inside) if end < 0 else end
        spans.append((at, end))
        at = inside.find(_LONG_RUN_MARKS, end)
    if spans and not text.isascii():
        continuation = np.flatnonzero((np.frombuffer(data, dtype=np.uint8) & 0xC0) == 0x80)
        edges = np.array(spans, dtype=np.int64)
        edges -= np.searchsorted(continuation, edges)
        spans = [tuple(span) for span in edges.tolist()]
    return spans


def _mixed(run: str) -> bool:
    """Lower case, upper case and digits all in one run: a random string, not a word."""
    return any(c.islower() for c in run) and any(c.isupper() for c in run) and any(c.isdigit() for c in run)


def _named_and_shaped(text: str) -> list[tuple[int, int]]:
    """Spans of the values after a secret's name and ``=`` or ``:`` (``DB_PASSWORD=x``,
    ``"api_key": "x"``) and of credentials of a known shape, found from ``_BACKWARDS``: a match
    at ``i`` backwards is at ``len(text) - 1 - i`` forwards."""
    end = len(text)
    spans = []
    for m in _BACKWARDS.finditer(text[::-1]):
        kind = m.lastgroup
        if kind in _SHAPE_STARTS:
            found = _SHAPES.match(text, end - m.start() - _SHAPE_STARTS[kind])
            span = found and found.span()
        else:  # the value, read forwards from the name's end
            found = _VALUE.match(text, end - m.start(kind))
            span = found and found.span(1)
        if span:
            spans.append(span)
    return spans

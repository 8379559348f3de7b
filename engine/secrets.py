"""Secrets are never learned: files that hold keys are not read, and tokens that look like
passwords, keys or access tokens become ``<unk>`` before a model ever counts them.

A model offers what it learned as completions, exports it as ARPA and lists it in
``models history``; a password typed once into a note must not come back as a suggestion
(Presage did exactly that: OptiKey/OptiKey#705). What counts as a secret:

- files named like key stores and environment files (``*.pem``, ``*.key``, ``id_rsa``,
  ``*.env``, ``.netrc``, ``credentials``, ...), skipped whole;
- the value after a name that says it is one (``DB_PASSWORD=...``, ``api_key: ...``,
  ``token = ...``);
- tokens in the shape of known credentials (AWS access keys, GitHub, Slack, Stripe, Google
  API tokens, JWTs, private key blocks);
- long random-looking strings: 20 or more characters mixing lower case, upper case and digits
  (prose, code identifiers and lower-case corpora such as PTB have none).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

SECRET_FILES = ("*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx", "*.gpg", "*.asc", "id_rsa*", "id_dsa*",
                "id_ecdsa*", "id_ed25519*", "*.env", ".env*", "*.netrc", ".pgpass", "credentials", "credentials.*", "*secret*")
_NAMED = re.compile(
    r"(?i)\b[\w.-]*(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)\b"
    r"[\"']?\s*(?::=|=>|[:=])\s*[\"']?([^\s\"',;]+)"
)
_SHAPES = re.compile(
    r"\b(?:A(?:KIA|SIA)[0-9A-Z]{16}"            # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}"              # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"            # Slack
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"    # Stripe
    r"|AIza[0-9A-Za-z_-]{30,}"                  # Google API keys
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"  # JWTs
)
_RANDOM = re.compile(r"(?<![\w+/=-])(?=[A-Za-z0-9+/=_-]*[a-z])(?=[A-Za-z0-9+/=_-]*[A-Z])(?=[A-Za-z0-9+/=_-]*[0-9])[A-Za-z0-9+/=_-]{20,}")
_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def secret_file(path: Path) -> bool:
    """Whether a file's name says it holds keys or passwords (it is then never read)."""
    name = Path(path).name.lower()
    return any(fnmatch.fnmatch(name, pattern) for pattern in SECRET_FILES)


def redact(line: str) -> str:
    """``line`` with every secret in it blanked (spaces of the same length, so nothing of it is
    learned and the rest of the line keeps its shape)."""
    if _KEY_BLOCK.search(line):
        return " " * (len(line) - 1) + line[-1:] if line.endswith("\n") else " " * len(line)
    spans = [m.span(1) for m in _NAMED.finditer(line)] + [m.span() for m in _SHAPES.finditer(line)] + [m.span() for m in _RANDOM.finditer(line)]
    if not spans:
        return line
    chars = list(line)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)

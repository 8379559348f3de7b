"""The user's files, written safely and read without trust.

Writing: atomic replacement and an exclusive lock between processes, used by the store (models,
``config.json``), the adaptation layers and exports, so a crash, a full disk or two processes at
once never leave a half-written file or a stray temporary one. Reading: what the store holds is
opened only as a regular file, within a size and a depth limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Callable, BinaryIO

import numpy as np

from engine.errors import ModelFormatError

try:
    import fcntl
except ImportError:  # Windows: renames are still atomic, concurrent writers are not serialised
    fcntl = None


def write_atomic(path: Path, content: bytes | str | Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` with ``content`` (bytes, text written as UTF-8, or a function that writes
    to a binary file), readable by the user only. The old file stays whole until the new one is
    on disk; on any failure the temporary file is removed and the error raised."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)

    written_whole(path, write)


def written_whole(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary_path)``, then the result renamed to ``path``: a file the user asked for
    (an export) is either whole or not there, never half-written over a good one. The temporary
    name keeps ``path``'s suffixes (``.arpa.gz`` stays compressed)."""
    path = Path(path)
    tmp = path.with_name(f".{os.getpid()}.tmp.{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def locked(lock_file: Path):
    """Hold an exclusive lock on ``lock_file`` (created if need be) for the ``with`` block."""
    with open(lock_file, "a") as fh:
        if fcntl:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl:
                fcntl.flock(fh, fcntl.LOCK_UN)


# -- reading what the store holds: nothing in it is trusted -----------------------------------

JSON_DEPTH = 32  # foretell's own files nest 5 deep
JSON_BYTES = 256 << 20  # a vocabulary of a few million words; anything larger is not ours


def regular_file(path: Path, what: str) -> Path:
    """``path`` if it is a regular file (not a symlink, pipe or device), else ModelFormatError;
    FileNotFoundError if it does not exist."""
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise ModelFormatError(f"{what}: {Path(path).name} is {kind}; refused")
    return path


def read_json(path: Path, what: str, limit: int = JSON_BYTES):
    """The JSON value in ``path``, read only if it is a regular file of at most ``limit`` bytes
    and nested at most JSON_DEPTH deep. Raises FileNotFoundError, or ModelFormatError naming
    ``what`` and the file."""
    return parse_json(read_limited(path, what, limit), path, what)


def read_limited(path: Path, what: str, limit: int = JSON_BYTES) -> bytes:
    """The bytes of ``path``, read only if it is a regular file of at most ``limit`` bytes."""
    regular_file(path, what)
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ModelFormatError(f"{what}: {Path(path).name} is larger than {limit >> 20} MB; not one foretell wrote")
    return data


def parse_json(data: bytes, path: Path, what: str):
    """``read_json``'s value of the bytes read from ``path``."""
    if _depth(data) > JSON_DEPTH:
        raise ModelFormatError(f"{what}: {Path(path).name} is nested deeper than {JSON_DEPTH} levels; not one foretell wrote")
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ModelFormatError(f"{what}: {Path(path).name} is corrupt (not valid JSON)") from None


def _depth(data: bytes) -> int:
    """How deep brackets nest in JSON text (brackets inside strings are ignored); at most the
    number of opening brackets, which settles it without a scan for most files."""
    opening = data.count(b"[") + data.count(b"{")
    if opening <= JSON_DEPTH:
        return opening
    text = re.sub(rb'"(?:[^"\\]|\\.)*"', b"", data)
    opens = np.frombuffer(text, dtype=np.uint8)
    step = np.isin(opens, (ord("["), ord("{"))).astype(np.int64) - np.isin(opens, (ord("]"), ord("}")))
    return int(np.cumsum(step).max()) if len(step) else 0

"""Writing the user's files safely: atomic replacement and an exclusive lock between processes.

The store (models, ``config.json``) and the adaptation layers both use these, so a crash, a
full disk or two processes at once never leave a half-written file or a stray temporary one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, BinaryIO

try:
    import fcntl
except ImportError:  # Windows: renames are still atomic, concurrent writers are not serialised
    fcntl = None


def write_atomic(path: Path, content: bytes | str | Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` with ``content`` (bytes, text written as UTF-8, or a function that writes
    to a binary file), readable by the user only. The old file stays whole until the new one is
    on disk; on any failure the temporary file is removed and the error raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
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

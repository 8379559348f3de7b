"""Deep checks of a model's files, remembered across processes.

A check that reads every byte of a memory-mapped model (keys sorted, codes within their tables)
defeats the mapping: on an 11-million-n-gram model it read about 90 MB at every start (12 ms
with the pages cached, over 100 ms without). So a backend runs it once per version of the files:
the store's ``checked/`` folder remembers, per model folder, each file's size, inode and
modification and change times when the check passed. Any write to a file, a swap of the folder
or a copy changes them (the change time cannot be set back), and the check runs again.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from pathlib import Path


def _signature(folder: Path) -> dict:
    files = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        files.append([entry.name, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns])
    return {"folder": str(folder.resolve()), "files": files}


def _record(folder: Path) -> Path:
    from engine.store import home

    where = str(folder.resolve())
    return home() / "checked" / f"{zlib.crc32(where.encode('utf-8', 'surrogatepass')):08x}.json"


def passed_before(folder: Path) -> bool:
    """Whether ``folder``'s files are exactly those a deep check passed (``remember_passed``)."""
    try:
        return json.loads(_record(folder).read_text(encoding="utf-8")) == _signature(folder)
    except (OSError, ValueError):
        return False


def remember_passed(folder: Path) -> None:
    """Record that a deep check of ``folder``'s files as they are now passed (silently nothing
    where the store cannot be written: the check then runs at every load, as before)."""
    from engine.files import write_atomic

    record = _record(folder)
    try:
        record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(record, json.dumps(_signature(folder)))
    except OSError:
        pass


def forget(folder: Path) -> None:
    """Drop ``folder``'s record (its model was removed)."""
    with contextlib.suppress(OSError):
        _record(folder).unlink()

"""What the user keeps out of every model: an exclusion list of glob patterns, and incognito, a
switch that stops all learning at once. Both are kept in the store's config.json, so the command
line and a running language server (which reads them at each save) follow the same choice.

A pattern without a slash names a file or folder anywhere (``private``, ``*.journal``); one with a
slash matches the whole path (``~/mail/*``; ``*`` crosses folders; a relative one such as
``mail/drafts`` matches wherever those folders are), and a folder's pattern covers everything
under it."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from engine.errors import ForetellError


def excluded_by(path, patterns) -> str | None:
    """The first of ``patterns`` that excludes ``path``, or None."""
    full = Path(os.path.abspath(os.path.expanduser(str(path))))
    for pattern in patterns:
        wanted = os.path.expanduser(pattern).rstrip("/")
        if not wanted:
            continue
        if "/" in wanted:
            whole = wanted if wanted.startswith(("/", "*")) else "*/" + wanted  # relative: anywhere
            if fnmatch.fnmatchcase(str(full), whole) or fnmatch.fnmatchcase(str(full), whole + "/*"):
                return pattern
        elif any(fnmatch.fnmatchcase(part, wanted) for part in full.parts):
            return pattern
    return None


def check_patterns(patterns) -> list[str]:
    """The patterns as given, refusing an empty one (it would say nothing)."""
    out = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ForetellError("an exclusion pattern cannot be empty")
        out.append(pattern.strip())
    return out

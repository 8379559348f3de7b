"""Large results written as JSON off the event loop.

pygls serialises a response on the event loop; for every word's semantic token or the
``foretell/surprisal`` payload of a long document that is tens of milliseconds in which no
request (a completion) is read. These are written on the background lane in steps instead, and
the protocol sends the text as it is.
"""

from __future__ import annotations

import json


class Encoded:
    """A result already written as JSON (in steps, on the background lane): a large result
    (every word's semantic token, the surprisal payload) does not hold the event loop for the
    tens of milliseconds ``json.dumps`` takes, so a completion request is read at once."""

    __slots__ = ("json",)

    def __init__(self, json_text: str):
        self.json = json_text


def json_steps(head: str, items, tail: str, chunk: int = 5000):
    """``head`` + the JSON array of ``items`` + ``tail``, written ``chunk`` items a step (a
    generator that returns the Encoded result)."""
    parts = []
    for start in range(0, len(items), chunk):
        parts.append(json.dumps(items[start : start + chunk], separators=(",", ":"))[1:-1])
        yield
    return Encoded(head + "[" + ",".join(p for p in parts if p) + "]" + tail)

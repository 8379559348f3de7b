"""LSP positions to character offsets: the server's fast path gives what pygls gives."""

import copy

import pytest
from lsprotocol import types
from pygls.workspace import TextDocument

from lsp_server.positions import offset_at

TEXTS = [
    "The cat sat.\n\nA dog ran over the log.\nLast line without an end",
    "Café au lait. Zoë said “hi”.\n😋 emoji line\nplain ascii here\n",
    "Windows\r\nline ends\r\nhere\r\n",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_offsets_equal_pygls_inside_the_text(text):
    doc = TextDocument("file:///t.md", source=text)
    lines = text.split("\n")
    for line, content in enumerate(lines):
        for character in range(len(content) + 1):
            position = types.Position(line=line, character=character)
            assert offset_at(doc, position) == doc.offset_at_position(copy.copy(position)), (line, character)


@pytest.mark.parametrize("text", TEXTS)
def test_positions_past_the_end_stay_in_the_text(text):
    doc = TextDocument("file:///t.md", source=text)
    for line, character in ((0, 10_000), (500, 0), (500, 500)):
        assert 0 <= offset_at(doc, types.Position(line=line, character=character)) <= len(text)

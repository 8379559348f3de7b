"""The bulk path for pretokenized text (split and looked up without token objects) must give
the id stream and the batches of the line-by-line path exactly: perplexity through either is
the same number, for stateful models too; and ``score`` gets the same tokens and offsets."""

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine import scoring
from engine.corpus import iter_line_blocks
from engine.scoring import encode_lines, encode_words, id_batches, pretokenized_batches, sentence_batches, token_batches
from engine.tokenizer import iter_columns, split_lines, tokenize
from engine.errors import ModelFormatError
from engine.token_lines import TokenLines, joined_tokens
from engine.vocab import TokenFile, Vocabulary
from tests.conftest import require_compiled

VOCAB = Vocabulary(["<unk>", "<s>", "</s>", "a", "b", "cat", "café", "x\xa0y"])
pieces = st.sampled_from(["a", "b", "cat", "café", "dog", "x\xa0y", "<s>", "</s>", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\r"])


def line_by_line(text):
    sentences = tokenize(text, pretokenized=True)
    return sentences, encode_words(VOCAB, ([t.text for t in s] for s in sentences))


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=40))
def test_bulk_encoding_equals_line_by_line(parts):
    text = "".join(parts)
    sentences, want = line_by_line(text)
    if not sentences:
        return
    ids, ends = encode_lines(VOCAB, text)
    assert ids.tolist() == want.tolist()
    assert ends.tolist() == np.cumsum([len(s) + 2 for s in sentences]).tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(pieces, max_size=60), st.integers(1, 12), st.integers(1, 30))
def test_batches_of_blocks_equal_batches_of_sentences(parts, max_tokens, block_chars):
    text = "".join(parts)
    sentences, _ = line_by_line(text)
    want = [(encode_words(VOCAB, ([t.text for t in s] for s in batch)).tolist(), len(batch)) for batch in sentence_batches(sentences, max_tokens)]
    blocks = iter_line_blocks(io.StringIO(text), block_chars)
    got = [(ids.tolist(), n) for ids, n in id_batches((encode_lines(VOCAB, b) for b in blocks), max_tokens)]
    assert got == want


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "compiled"])
def test_scored_columns_of_blocks_equal_those_read_line_by_line(compiled):
    """What ``score --pretokenized`` reads in bulk, split by Python or by the C extension
    (engine/_tsv.c, where it was built): every batch's ids, tokens (``</s>`` at each line's
    end) and character offsets into the whole text, batches crossing blocks either way (the C
    extension's tokens as TokenLines; a block with a lone surrogate, which has no UTF-8 form,
    read by Python)."""
    if compiled:
        require_compiled(scoring.tsv, "engine/_tsv.c")

    @settings(max_examples=300, deadline=None)
    @given(st.lists(pieces | st.sampled_from(["\u4e00\U0001f600", "\x00", " \t ", "\ud800"]), max_size=60), st.integers(1, 12), st.integers(1, 30))
    def check(parts, max_tokens, block_chars):
        text = "".join(parts)
        want = token_batches(VOCAB, iter_columns(split_lines(text), pretokenized=True), max_tokens)
        got = pretokenized_batches(VOCAB, iter_line_blocks(io.StringIO(text), block_chars), max_tokens)
        plain = lambda batches: [(ids.tolist(), list(tokens), starts.tolist(), ends.tolist()) for ids, (tokens, starts, ends) in batches]
        assert plain(got) == plain(want)

    used = scoring.USE_COMPILED
    scoring.USE_COMPILED = compiled
    try:
        check()
    finally:
        scoring.USE_COMPILED = used


def test_line_blocks_end_at_line_ends_and_keep_every_character():
    text = "one two\nthree\n" + "long " * 50 + "\nlast"
    blocks = list(iter_line_blocks(io.StringIO(text), 8))
    assert "".join(blocks) == text
    assert all(b.endswith("\n") for b in blocks[:-1])


@pytest.mark.parametrize("ascii_only", [True, False])
def test_utf8_words_find_every_token_of_a_vocabulary_file_as_ids_does(ascii_only):
    """The compiled reader looks words up by their UTF-8 bytes in a table built from the
    vocabulary file's own bytes: tokens written with escapes (quotes, backslashes, \\u) and
    without are found at their ids; a near miss is not."""
    require_compiled(scoring.tsv, "engine/_tsv.c")
    tokens = ["<unk>", "<s>", "</s>", "a", 'say"hi"', "back\\slash", "café", "\u4e00\U0001f600", "x\xa0y", "cafe\u0301"]
    vocab = Vocabulary(TokenFile.of(json.dumps(tokens, ensure_ascii=ascii_only).encode()))
    words = vocab.utf8_words
    assert "ids" not in vocab.__dict__  # (built without a string a word)
    assert [words.get(t.encode()) for t in tokens] == list(range(len(tokens))) == [vocab.ids[t] for t in tokens]
    assert words.get(b"caf") is None and words.get("Café".encode()) is None and words.get(b"") is None


def test_utf8_words_refuse_a_vocabulary_with_a_repeated_token():
    require_compiled(scoring.tsv, "engine/_tsv.c")
    with pytest.raises(ModelFormatError, match="duplicate"):
        Vocabulary(["<unk>", "<s>", "</s>", "a", "b", "a"]).utf8_words


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "</s>", "café", "\u4e00", "", "x y"]).map(lambda t: t.replace(" ", "")), max_size=6), max_size=4),
       st.integers(0, 8), st.integers(0, 8))
def test_token_lines_read_slice_and_join_as_lists_do(pieces, start, stop):
    """TokenLines (a batch's tokens as one UTF-8 text) read, sliced and joined as lists of
    strings do, empty pieces and tokens included."""
    def lines(tokens):
        encoded = [t.encode() for t in tokens]
        ends = np.cumsum([len(e) + 1 for e in encoded], dtype=np.int64) - 1
        return TokenLines(b"\n".join(encoded), ends)

    parts = [lines(p) for p in pieces]
    whole = joined_tokens(parts)
    flat = [t for p in pieces for t in p]
    assert isinstance(whole, TokenLines) and list(whole) == flat and len(whole) == len(flat)
    assert list(whole[start:stop]) == flat[start:stop] and [whole[i] for i in range(len(flat))] == flat
    assert joined_tokens([parts[0], ["b"]] if parts else [["b"]]) == (list(parts[0]) if parts else []) + ["b"]

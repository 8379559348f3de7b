"""The bulk path for pretokenized text (split and looked up without token objects) must give
the id stream and the batches of the line-by-line path exactly: perplexity through either is
the same number, for stateful models too; and ``score`` gets the same tokens and offsets."""

import io

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine import scoring
from engine.corpus import iter_line_blocks
from engine.scoring import encode_lines, encode_words, id_batches, pretokenized_batches, sentence_batches, token_batches
from engine.tokenizer import iter_columns, split_lines, tokenize
from engine.vocab import Vocabulary
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
    end) and character offsets into the whole text, batches crossing blocks either way."""
    if compiled:
        require_compiled(scoring.tsv, "engine/_tsv.c")

    @settings(max_examples=300, deadline=None)
    @given(st.lists(pieces | st.sampled_from(["\u4e00\U0001f600", "\x00", " \t "]), max_size=60), st.integers(1, 12), st.integers(1, 30))
    def check(parts, max_tokens, block_chars):
        text = "".join(parts)
        want = token_batches(VOCAB, iter_columns(split_lines(text), pretokenized=True), max_tokens)
        got = pretokenized_batches(VOCAB, iter_line_blocks(io.StringIO(text), block_chars), max_tokens)
        plain = lambda batches: [(ids.tolist(), tokens, starts.tolist(), ends.tolist()) for ids, (tokens, starts, ends) in batches]
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

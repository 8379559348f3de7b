"""Reading the user's documents: encodings, binary files, links, globs and vocabulary limits."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.corpus import build_corpus
from engine.errors import ForetellError
from engine.vocab import BOS_ID, EOS_ID, UNK_ID

ROOT = Path(__file__).resolve().parent.parent


def test_mixed_folder_learns_good_files_and_skips_bad_ones_with_reasons(tmp_path):
    (tmp_path / "utf8.md").write_text("Héllo wörld from UTF-8.\n")
    (tmp_path / "utf16.txt").write_bytes("Grüße aus UTF-16.\n".encode("utf-16"))
    (tmp_path / "latin1.txt").write_bytes("Déjà vu in Latin-1.\n".encode("latin-1"))
    (tmp_path / "broken.txt").write_bytes(b"Valid start then \xff\xfe bad bytes.\n" * 3)
    (tmp_path / "nul.txt").write_bytes(b"text\x00with\x00nuls" * 10)
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    (tmp_path / "empty.md").write_text("")
    os.symlink(tmp_path / "missing-target", tmp_path / "dangling.md")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    corpus = build_corpus([str(tmp_path)])
    words = set(corpus.vocab.tokens)
    assert {"Héllo", "wörld", "Grüße", "Déjà", "Latin-1", "Valid"} <= words
    reasons = {os.path.basename(s["path"]): s["reason"] for s in corpus.summary["skipped"]}
    assert reasons["nul.txt"].startswith("binary")
    assert reasons["photo.jpg"] == "binary file type"
    assert reasons["empty.md"] == "no text"
    assert "broken" in reasons["dangling.md"]
    assert "HEAD" not in reasons  # hidden folders are not even looked at
    assert corpus.summary["documents"] == 4


def test_a_long_line_without_newline_is_read_whole(tmp_path):
    (tmp_path / "long.txt").write_text("word " * 300_000)
    corpus = build_corpus([str(tmp_path / "long.txt")])
    assert corpus.summary["words"] == 300_000


def test_globs_and_missing_paths(tmp_path):
    (tmp_path / "a.md").write_text("Alpha text.\n")
    (tmp_path / "b.txt").write_text("Beta text.\n")
    corpus = build_corpus([str(tmp_path / "*.md"), str(tmp_path / "nothing-*.rst")])
    assert "Alpha" in corpus.vocab and "Beta" not in corpus.vocab
    assert corpus.summary["skipped"] == [{"path": str(tmp_path / "nothing-*.rst"), "reason": "no file matches this pattern"}]


def test_nothing_usable_is_a_clear_error(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00" * 50)
    with pytest.raises(ForetellError, match="no usable text found .*x.bin: binary"):
        build_corpus([str(tmp_path)])


def test_min_count_and_max_vocab_map_rare_words_to_unk(tmp_path):
    (tmp_path / "t.txt").write_text("a a a b b c d\n", encoding="utf-8")
    corpus = build_corpus([str(tmp_path / "t.txt")], pretokenized=True, min_count=2)
    assert corpus.vocab.tokens == ["<unk>", "<s>", "</s>", "a", "b"]
    assert list(corpus.ids) == [BOS_ID, 3, 3, 3, 4, 4, UNK_ID, UNK_ID, EOS_ID]
    capped = build_corpus([str(tmp_path / "t.txt")], pretokenized=True, max_vocab=4)
    assert capped.vocab.tokens == ["<unk>", "<s>", "</s>", "a"]


def test_structure_tokens_in_the_text_are_not_structure(tmp_path):
    (tmp_path / "t.txt").write_text("<s> a </s> b\n")
    corpus = build_corpus([str(tmp_path / "t.txt")], pretokenized=True)
    assert list(corpus.ids) == [BOS_ID, corpus.vocab.id("a"), corpus.vocab.id("b"), EOS_ID]
    assert np.count_nonzero(corpus.ids == BOS_ID) == 1


def test_pretokenized_training_splits_lines_as_scoring_and_kenlm_do(tmp_path):
    # Tokens lie between spaces or tabs only: a no-break space or a form feed stays inside a
    # token for training as for `score` and `perplexity`; a line's \r\n ending is no token.
    from engine.scoring import encode_lines

    text = "caf\u00e9\u00a0bar  baz\tqux \f\r\n\n  \nlast line"
    (tmp_path / "t.txt").write_bytes(text.encode("utf-8"))
    corpus = build_corpus([str(tmp_path / "t.txt")], pretokenized=True)
    assert corpus.vocab.tokens[3:] == ["caf\u00e9\u00a0bar", "baz", "qux", "\f", "last", "line"]
    ids, ends = encode_lines(corpus.vocab, text)
    assert ids.tolist() == corpus.ids.tolist() and corpus.summary["sentences"] == len(ends) == 4


READ_APART = """
import sys
import engine.corpus as corpus

pretokenized = sys.argv[2] == "pretokenized"
at_once = corpus.build_corpus([sys.argv[1]], pretokenized=pretokenized)
corpus.PARALLEL_BYTES, corpus.PIECE_BYTES, corpus.PROSE_PIECE_BYTES = 0, int(sys.argv[3]), int(sys.argv[3])
pieces = []
real = corpus._read_pieces


def spy(*args):
    for item in real(*args):
        pieces.append(item[3] is not None)
        yield item


corpus._read_pieces = spy
apart = corpus.build_corpus([sys.argv[1]], pretokenized=pretokenized)
assert len(pieces) >= int(sys.argv[4]) and all(pieces), pieces
assert apart.vocab.tokens == at_once.vocab.tokens
assert apart.ids.tolist() == at_once.ids.tolist()
drop = lambda summary: {k: v for k, v in summary.items() if k != "seconds"}
assert drop(apart.summary) == drop(at_once.summary), (apart.summary, at_once.summary)
print(apart.summary["documents"], " ".join(apart.vocab.tokens))
"""


def read_apart_equals_reading_in_turn(folder, pretokenized: bool, piece_bytes: int, min_pieces: int) -> tuple[int, list[str]]:
    """Build the corpus of ``folder`` in turn and read apart on two processes (in a fresh
    interpreter: this one may have loaded torch, after which nothing is forked), check they are
    the same, and give its number of documents and its words."""
    argv = [str(folder), "pretokenized" if pretokenized else "prose", str(piece_bytes), str(min_pieces)]
    result = subprocess.run([sys.executable, "-c", READ_APART, *argv], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    documents, words = result.stdout.split(" ", 1)
    return int(documents), words.split()


def test_files_read_by_two_processes_give_the_corpus_of_reading_them_in_turn(tmp_path):
    # Word ids follow first appearance across the whole corpus (lmplz's tie-break depends on
    # it), and skipped files, secrets and sentence counts come out as when read one by one.
    texts = ["Alpha beta gamma. Beta delta!\n\nGamma alpha.", "", "Zeta eta. Alpha theta.\nAPI_KEY=s3cr3tValue9\n", "Iota beta zeta kappa.", "\x00\x01binary"]
    for n, text in enumerate(texts):
        (tmp_path / f"doc{n}.txt").write_text(text)
    (tmp_path / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\nabc\n")
    _, words = read_apart_equals_reading_in_turn(tmp_path, pretokenized=False, piece_bytes=16 << 20, min_pieces=1)
    assert "s3cr3tValue9" not in words


@pytest.mark.parametrize("pretokenized", [False, True])
def test_many_small_files_read_by_two_processes_give_the_corpus_of_reading_them_in_turn(tmp_path, pretokenized):
    # Each reading process keeps one vocabulary for all the files it reads and sends each word
    # once: the merged ids still follow first appearance across the corpus, a file it cannot
    # read in the middle of the others included.
    for n in range(60):
        words = [f"shared{n % 7}", f"new{n}", "common", f"w{(n * 13) % 31}", f"new{n}", f"later{n // 10}"]
        (tmp_path / f"note{n:02}.txt").write_text(" ".join(words) + (" .\n" if pretokenized else ". Then more.\n"))
    (tmp_path / "note30b.txt").write_bytes(b"\x00\x01\x02binary")
    documents, _ = read_apart_equals_reading_in_turn(tmp_path, pretokenized=pretokenized, piece_bytes=16 << 20, min_pieces=60)
    assert documents == 60


def test_a_reader_takes_back_the_words_of_a_file_it_could_not_read():
    # A reading process keeps its vocabulary between files; the words it gave ids while reading
    # a file that failed are dropped, as a fresh copy's would be, and are never sent.
    import engine.corpus as corpus
    from engine.vocab import SPECIALS, VocabularyBuilder

    reading = corpus.Reading(True, VocabularyBuilder(), key="test")
    reader = corpus._Reader.of(reading)
    assert corpus._Reader.of(reading) is reader
    local = reader.builder(True)
    local.add_pretokenized(["a b\n"])
    assert reader.piece(local, 1).words == ["a", "b"]
    failed = reader.builder(True)
    failed.add_pretokenized(["c a d\n"])
    assert isinstance(reader.piece(failed, corpus.Skipped("f", "read error")), corpus.Skipped)
    assert reader.vocab.tokens == [*SPECIALS, "a", "b"] and "c" not in reader.vocab.ids
    local = reader.builder(True)
    local.add_pretokenized(["d b\n"])
    piece = reader.piece(local, 1)
    assert piece.words == ["d"] and piece.source == reader.source and piece.known == len(SPECIALS)


def test_a_large_pretokenized_file_read_in_pieces_gives_the_corpus_of_reading_it_whole(tmp_path):
    # Its lines are independent sentences, so pieces of whole lines read on both cores and
    # merged in order give the same ids, vocabulary and counts (one document, empty lines too).
    lines = [" ".join(f"w{(i * 7 + j * 13) % 97}" for j in range(i % 9)) for i in range(3000)]
    (tmp_path / "big.txt").write_text("\n".join(lines) + "\n<s> x </s>\n\tcafé  bar \n")
    (tmp_path / "small.txt").write_text("w1 w2 new words here\n")
    documents, _ = read_apart_equals_reading_in_turn(tmp_path, pretokenized=True, piece_bytes=1000, min_pieces=11)
    assert documents == 2


def test_a_large_prose_file_read_in_pieces_gives_the_corpus_of_reading_it_whole(tmp_path):
    # Cut after blank lines and read as a document's start on both cores; where a cut falls
    # inside a code fence, a literal block or after a paragraph ending in "::", the piece is
    # read again from where the one before it left the tokenizer.
    paragraphs = []
    for i in range(400):
        kind = i % 7
        if kind == 0:
            paragraphs.append(f"```\ncode line {i} with words\n\nmore code {i}\n```")
        elif kind == 1:
            paragraphs.append(f"Example number {i} follows::\n\n    literal text {i}\n\n    still literal {i}")
        elif kind == 2:
            paragraphs.append(f"   Indented paragraph {i} of Dr. Smith. It ends here.\r\n   And goes on {i}.")
        else:
            paragraphs.append(f"Plain paragraph {i} about word{i % 13} and word{i % 29}. Another sentence here!")
    (tmp_path / "notes.md").write_text("\n\n".join(paragraphs) + "\n \n\nThe end.\n", newline="")
    documents, words = read_apart_equals_reading_in_turn(tmp_path, pretokenized=False, piece_bytes=500, min_pieces=30)
    assert documents == 1 and "literal" not in words and "code" not in words


def test_pieces_read_apart_follow_a_training_memory_budget():
    """A budget like lmplz's -S bounds the reading processes too: each holds about six times
    its piece (16 MB pieces took each to 165 MB), so a piece is a thirty-second of the budget,
    1 to 16 MB; prose is read in 1 MB pieces whatever the budget."""
    from engine.corpus import piece_bytes

    assert piece_bytes(True) == piece_bytes(True, 1 << 30) == 16 << 20
    assert piece_bytes(True, 64 << 20) == 2 << 20 and piece_bytes(True, 16 << 20) == 1 << 20
    assert piece_bytes(False) == piece_bytes(False, 64 << 20) == 1 << 20


def test_vocabulary_builder_gives_ids_by_first_appearance_however_the_words_arrive():
    # Word ids follow first appearance (lmplz's tie-break depends on it), whether words come a
    # sentence at a time, in one long list, or both; a line's end is NEWLINE, never a word.
    from engine.vocab import NEWLINE, SPECIALS, VocabularyBuilder

    words = "b a b c \n a d d e b <s>".split(" ")
    one, bulk, mixed = VocabularyBuilder(), VocabularyBuilder(), VocabularyBuilder()
    ids = [one.add([w])[0] for w in words]
    assert bulk.add_array(words).tolist() == ids
    assert mixed.add(words[:4]) + mixed.add_array(words[4:8]).tolist() + mixed.add(words[8:]) == ids
    assert one.tokens == bulk.tokens == mixed.tokens == [*SPECIALS, "b", "a", "c", "d", "e"]
    assert ids[4] == NEWLINE and ids[-1] == SPECIALS.index("<s>")
    # A vocabulary that knows nearly every word looks the rest up one by one: the same ids.
    later = words * 30 + ["zz", "b", "zz", "yy"]
    warm = one.copy()
    assert warm.add_array(later).tolist() == [one.add([w])[0] for w in later]
    assert warm.tokens == one.tokens == [*SPECIALS, "b", "a", "c", "d", "e", "zz", "yy"] and len(bulk.tokens) == 8


def test_a_piece_merges_alike_read_on_a_copy_of_the_vocabulary_or_on_its_special_tokens_only(tmp_path, monkeypatch):
    # A reading process goes on from a copy of the corpus's vocabulary, unless it is too large
    # to copy; either way the merged ids and words are those of reading the text in place.
    import engine.corpus as corpus
    from engine.vocab import VocabularyBuilder

    path = tmp_path / "t.txt"
    path.write_text("a b c\nb d e\n" * 50 + "f g\n")
    known = VocabularyBuilder()
    known.add([f"w{i}" for i in range(10)] + ["a", "b"])
    in_place = corpus.CorpusBuilder(True)
    in_place.vocab = known.copy()
    in_place.add_pretokenized([path.read_text()])
    for cap, new_words in ((1 << 17, ["c", "d", "e", "f", "g"]), (3, ["a", "b", "c", "d", "e", "f", "g"])):
        monkeypatch.setattr(corpus, "COPIED_WORDS", cap)
        piece = corpus._read_piece(corpus.Reading(True, known), (path, "utf-8", 0, path.stat().st_size))
        assert piece.words == new_words
        merged = corpus.CorpusBuilder(True)
        merged.vocab = known.copy()
        merged.add_document(piece)
        assert merged.ids.buffer.tolist() == in_place.ids.buffer.tolist() and merged.vocab.tokens == in_place.vocab.tokens

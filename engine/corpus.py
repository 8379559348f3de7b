"""Reading the user's documents: finding files, telling text from binary, decoding, and
streaming them into one compact id array for training.

Nothing here holds the corpus as Python strings: files are read line by line and each sentence
becomes integers in an ``array`` as soon as it is tokenized.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import io
import itertools
import os
# (tempfile: imported in the functions that use them; foretell's start-up needs none of them)
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

from engine.errors import ForetellError
from engine.memory import release_pages
from engine.parallel import ordered_map, two_cores
from engine.privacy import excluded_by
from engine.secrets import redact, redact_lines, secret_file
from engine.tokenizer import ProseTokenizer, iter_words, pretokenized_words, split_lines
from engine.vocab import BOS, BOS_ID, EOS, EOS_ID, UNK_ID, Vocabulary, VocabularyBuilder, sentences_of_lines

PROSE_EXTENSIONS = {".txt", ".text", ".md", ".markdown", ".rst", ".tex", ".org", ".adoc", ".asciidoc"}
BINARY_EXTENSIONS = {
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".pdf", ".zip", ".gz", ".bz2", ".xz",
    ".7z", ".tar", ".rar", ".exe", ".dll", ".so", ".dylib", ".o", ".a", ".pyc", ".class", ".jar",
    ".mp3", ".mp4", ".wav", ".ogg", ".mov", ".avi", ".woff", ".woff2", ".ttf", ".otf", ".sqlite",
    ".db", ".npy", ".npz", ".pt", ".bin", ".docx", ".xlsx", ".pptx", ".odt",
}
SNIFF_BYTES = 64 * 1024
_CONTROL_BYTES = bytes(c for c in range(1, 32) if c not in (9, 10, 12, 13, 27))  # (tab, line ends, form feed, escape are text)
READ_CHUNK = 1 << 20  # characters read at a time: long lines arrive whole, files never do


class NotText(ForetellError):
    """A file that is binary or cannot be read as text."""


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class Corpus:
    """Training text as one id stream: every sentence is ``<s> w1 ... wn </s>``."""

    vocab: Vocabulary
    ids: np.ndarray
    summary: dict = field(default_factory=dict)
    pretokenized: bool = False


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


SECRET_REASON = "may hold keys or passwords (by its name); never read"


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_files(paths: list[str], exclude=()) -> tuple[list[Path], list[Skipped]]:
    """Expand files, folders (recursively) and globs into files to read, noting what is skipped
    (``exclude``: the user's exclusion patterns, engine.privacy)."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    for raw in paths:
        if not Path(raw).exists() and not Path(raw).is_symlink() and _has_glob(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                skipped.append(Skipped(raw, "no file matches this pattern"))
        else:
            matches = [raw]
        for match in matches:
            _collect(Path(match), files, skipped)
    if exclude:
        kept = []
        for path in files:
            pattern = excluded_by(path, exclude)
            if pattern is None:
                kept.append(path)
            else:
                skipped.append(Skipped(str(path), f"excluded by your pattern {pattern!r}"))
        files = kept
    return files, skipped


def _collect(path: Path, files: list[Path], skipped: list[Skipped]) -> None:
    if path.is_dir():
        for sub in sorted(path.rglob("*")):
            if _is_hidden(sub, path) or sub.is_dir():
                continue
            if secret_file(sub):
                skipped.append(Skipped(str(sub), SECRET_REASON))
            elif sub.suffix.lower() in BINARY_EXTENSIONS:
                skipped.append(Skipped(str(sub), "binary file type"))
            elif not sub.is_file():
                skipped.append(Skipped(str(sub), "broken link or not a regular file"))
            else:
                files.append(sub)
    elif path.is_file() and secret_file(path):
        skipped.append(Skipped(str(path), SECRET_REASON))
    elif path.is_file():
        files.append(path)
    elif path.is_symlink():
        skipped.append(Skipped(str(path), "broken symbolic link"))
    elif path.exists():
        skipped.append(Skipped(str(path), "not a regular file"))
    else:
        skipped.append(Skipped(str(path), "no such file or folder"))


def detect_encoding(head: bytes) -> str:
    """The encoding to read a file with, judged from its first bytes; raises NotText for binary."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        raise NotText("binary file (contains NUL bytes)")
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if head and controls / len(head) > 0.05:
        raise NotText("binary file (mostly control bytes)")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < SNIFF_BYTES)
        return "utf-8"
    except UnicodeDecodeError:
        return "cp1252"


def open_text(path: Path) -> tuple[io.TextIOBase, str]:
    """The file opened for reading as text (undecodable bytes replaced), and its encoding."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except PermissionError:
        raise NotText("permission denied") from None
    except OSError as exc:
        raise NotText(exc.strerror or str(exc)) from None
    encoding = detect_encoding(head)
    return open(path, encoding=encoding, errors="replace", newline=""), encoding


@contextlib.contextmanager
def open_stdin():
    """Standard input as UTF-8 text whatever the locale, undecodable bytes replaced (never
    passed on raw), lines split on newlines only; stdin itself is left open."""
    import sys

    wrapper = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="replace", newline="")
    try:
        yield wrapper
    finally:
        wrapper.detach()


@contextlib.contextmanager
def open_input(path: str):
    """A file (or '-', standard input) opened as text to be read as a stream, or a clear error."""
    if path == "-":
        with open_stdin() as f:
            yield f
        return
    p = Path(path)
    if p.is_dir():
        raise ForetellError(f"{path} is a folder; give a file")
    if not p.exists():
        raise ForetellError(f"{path}: no such file")
    try:
        f, _ = open_text(p)
    except NotText as exc:
        raise ForetellError(f"{path}: {exc}") from None
    with f:
        yield f


def clean_argument(text: str) -> str:
    """A command-line argument as valid text: bytes the locale could not decode (which Python
    keeps as lone surrogates) become replacement characters, as in files."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def read_text(path: str) -> str:
    """A whole file as text, or a clear error ('-' reads standard input)."""
    with open_input(path) as f:
        return f.read()


def iter_lines(f: io.TextIOBase) -> Iterator[str]:
    """Lines ending in '\\n' only, as KenLM splits them; long lines arrive whole."""
    for block in iter_line_blocks(f):
        parts = block.split("\n")
        last = parts.pop()
        for part in parts:
            yield part + "\n"
        if last:
            yield last


def _joined(lines: Iterable[str], batch: int = 2000) -> Iterator[str]:
    """Whole lines joined a few thousand at a time."""
    lines = iter(lines)
    while block := "".join(itertools.islice(lines, batch)):
        yield block


def _blocks_of(text: str, size: int | None = None) -> Iterator[str]:
    """``text`` in pieces of about ``size`` (``READ_CHUNK``) characters that end at a line's end
    (or the text's)."""
    size = size or READ_CHUNK
    start = 0
    while start < len(text):
        stop = text.find("\n", start + size) + 1 or len(text)
        yield text[start:stop]
        start = stop


def iter_line_blocks(f: io.TextIOBase, size: int | None = None) -> Iterator[str]:
    """The text in pieces of about ``size`` characters that end at a line's end (or the
    text's): whole lines in bulk, for readers that split them at C speed."""
    pending: list[str] = []
    while True:
        chunk = f.read(size or READ_CHUNK)
        if not chunk:
            break
        cut = chunk.rfind("\n") + 1
        if cut == 0:  # no line ends here: a long line keeps arriving
            pending.append(chunk)
            continue
        yield "".join(pending) + chunk[:cut]
        pending = [chunk[cut:]]
    if "".join(pending):
        yield "".join(pending)


class IdStream:
    """Ids appended as a corpus streams past; beyond a bound they go to an anonymous temporary
    file, and the finished stream is memory-mapped: memory stays bounded whatever the corpus."""

    SPILL = 4_000_000

    def __init__(self, spill: bool = True):
        self.buffer = array("i")
        self.file = None
        self.spilled = 0
        self.spill = spill  # off for one document read apart, whose ids are handed on whole

    def append(self, value: int) -> None:
        self.buffer.append(value)

    def extend(self, values) -> None:
        if isinstance(values, np.ndarray):
            self.buffer.frombytes(memoryview(np.ascontiguousarray(values, dtype=np.int32)).cast("B"))  # (its buffer: no copy in bytes)
        else:
            self.buffer.extend(values)
        if self.spill and len(self.buffer) >= self.SPILL:
            self._spill()

    def _spill(self) -> None:
        import tempfile
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="foretell-ids-")
        self.buffer.tofile(self.file)
        self.spilled += len(self.buffer)
        self.buffer = array("i")

    def finish(self) -> np.ndarray:
        if self.file is None:
            return np.frombuffer(self.buffer, dtype=np.int32)
        self._spill()
        self.file.flush()
        return np.memmap(self.file, dtype=np.int32, mode="r", shape=(self.spilled,))


def chunks(ids: np.ndarray, size: int | None = None):
    """``ids`` a bounded slice at a time (``IdStream.SPILL`` ids unless told); the pages of a
    mapped stream are handed back after each, so a pass over it holds one slice, not the text."""
    size = size or IdStream.SPILL
    for start in range(0, len(ids), size):
        yield np.asarray(ids[start : start + size])
        release_pages(ids)


class CorpusBuilder:
    """Accumulates sentences as ids while documents stream past."""

    LOOKUP_AT_ONCE = 1 << 16  # words of prose looked up together (one lookup a sentence was a tenth of reading)

    def __init__(self, pretokenized: bool = False, known: list[str] | None = None, spill: bool = True):
        self.pretokenized = pretokenized
        self.vocab = VocabularyBuilder(known)
        self.ids = IdStream(spill)
        self.documents = 0
        self.sentences = 0
        self._sources: dict[str, np.ndarray] = {}  # a reading process's ids -> this corpus's (see add_document)

    def add_document(self, piece: "Piece", same_document: bool = False) -> int:
        """Add a document (or, ``same_document``, the next piece of one) that was read apart:
        its ids mapped onto this corpus's, through the mapping of the process that read it
        where it keeps its vocabulary from piece to piece (``_Reader``)."""
        known = self._sources.get(piece.source) if piece.source else None
        if known is None:
            known = np.arange(piece.known, dtype=np.int32)
        mapping = np.concatenate((known, np.array(self.vocab.add(piece.words), dtype=np.int32)))
        if piece.source:
            self._sources[piece.source] = mapping
        if piece.sentences:
            self.ids.extend(mapping[np.frombuffer(piece.ids, dtype=np.int32)])
            self.documents += not same_document
            self.sentences += piece.sentences
        return piece.sentences

    def add_lines(self, lines, tokenizer: ProseTokenizer | None = None) -> int:
        """Add one document's lines (prose read by ``tokenizer`` when given); returns how many
        sentences it held."""
        if self.pretokenized:
            return self.add_pretokenized(_joined(lines))
        added, framed = 0, []  # sentences framed by <s> and </s>, looked up a few thousand at once
        for words in iter_words(redact_lines(lines), tokenizer):  # secrets are never learned
            if BOS in words or EOS in words:  # structure markers are ours, not the text's
                words = [w for w in words if w not in (BOS, EOS)]
            if words:
                framed.append(BOS)
                framed += words
                framed.append(EOS)
                added += 1
                if len(framed) >= self.LOOKUP_AT_ONCE:
                    self.ids.extend(self.vocab.add_array(framed))
                    framed = []
        self.ids.extend(self.vocab.add_array(framed))
        return self._counted(added)

    def add_pretokenized(self, blocks: Iterable[str]) -> int:
        """Add one document of pretokenized text given as blocks of whole lines (every line a
        sentence, empty ones too); returns how many it held. Split, looked up and framed with
        ``<s>``/``</s>`` a block at a time: 3-4 times faster than line by line."""
        added = 0
        for block in blocks:
            if not block:
                continue
            ids = self.vocab.add_array(pretokenized_words(redact(block)))  # secrets are never learned
            markers = (ids == BOS_ID) | (ids == EOS_ID)  # structure markers are ours, not the text's
            ids, ends = sentences_of_lines(ids[~markers] if markers.any() else ids)
            self.ids.extend(ids)
            added += len(ends)
        return self._counted(added)

    def _counted(self, sentences: int) -> int:
        if sentences:
            self.documents += 1
            self.sentences += sentences
        return sentences

    def finish(self, min_count: int = 1, max_vocab: int | None = None, **summary) -> Corpus:
        raw = self.ids.finish()
        words = len(raw) - 2 * self.sentences
        if self.sentences == 0 or (words == 0 and not self.pretokenized):
            raise ForetellError("no usable text found")
        counts = np.zeros(len(self.vocab.tokens), dtype=np.int64)
        for part in chunks(raw):
            counts += np.bincount(part, minlength=len(counts))
        vocab, mapping = self.vocab.finish(counts, min_count=min_count, max_size=max_vocab)
        ids = raw if mapping is None else _remap(raw, mapping)
        oov = counts[0] if mapping is None else int(counts[mapping == UNK_ID].sum())
        summary = {
            "documents": self.documents,
            "sentences": self.sentences,
            "words": int(words),
            "tokens": int(words + self.sentences),
            "oov_in_training": int(oov),
            "pretokenized": self.pretokenized,
            **summary,
        }
        return Corpus(vocab, ids, summary, self.pretokenized)


def _remap(ids: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    import tempfile
    if not isinstance(ids, np.memmap):
        return mapping[ids]
    out = tempfile.TemporaryFile(prefix="foretell-ids-")
    for part in chunks(ids):
        mapping[part].tofile(out)
    out.flush()
    return np.memmap(out, dtype=np.int32, mode="r", shape=(len(ids),))


def build_corpus(
    paths: list[str],
    pretokenized: bool = False,
    min_count: int = 1,
    max_vocab: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    exclude=(),
    memory: int | None = None,
) -> Corpus:
    """Tokenize every readable file under ``paths`` (but those ``exclude`` names) into one id
    stream and its vocabulary. Enough text is read on both cores (see ``_read_pieces``), in
    pieces sized to ``memory``, the training's budget in bytes, where it has one."""
    started = time.perf_counter()
    files, skipped = find_files(paths, exclude)
    sizes = [_size(f) for f in files]
    total, done = sum(sizes), 0
    builder = CorpusBuilder(pretokenized)
    added: list[int | Skipped] = [0] * len(files)  # sentences of each file, or why it was skipped
    states: dict[int, tuple] = {}  # the prose tokenizer's state where a file's last piece ended
    reading = Reading(pretokenized, builder.vocab, os.urandom(8).hex())
    for i, size, job, piece in _read_pieces(files, sizes, reading, piece_bytes(pretokenized, memory)):
        if piece is None:  # read here, into the corpus itself
            added[i] = _read_into(builder, files[i])
        elif not isinstance(added[i], Skipped):
            state = states.get(i)
            if state is not None and not isinstance(piece, Skipped) and not ProseTokenizer.reads_as_plain(state):
                piece = _read_piece(reading, job, state)  # it was read as a document's start in vain
            if isinstance(piece, Skipped):
                added[i] = added[i] or piece  # (sentences of earlier pieces stay learned)
            else:
                states[i] = piece.state
                added[i] += builder.add_document(piece, same_document=added[i] > 0)
        done += size
        if progress:
            progress(done, total)
    for path, result in zip(files, added):
        if isinstance(result, Skipped):
            skipped.append(result)
        elif not result:
            skipped.append(Skipped(str(path), "no text"))
    try:
        return builder.finish(
            min_count,
            max_vocab,
            skipped=[{"path": s.path, "reason": s.reason} for s in skipped],
            seconds=round(time.perf_counter() - started, 3),
        )
    except ForetellError:
        where = ", ".join(paths) if len(paths) <= 3 else f"{len(paths)} paths"
        note = f" ({len(skipped)} skipped: {skipped[0].path}: {skipped[0].reason}{', ...' if len(skipped) > 1 else ''})" if skipped else ""
        raise ForetellError(f"no usable text found in {where}{note}") from None


PARALLEL_BYTES = 4 << 20  # below this much text, starting a worker costs more than it saves
PARALLEL_FILE_BYTES = 64 << 20  # a file read apart whole is held whole (not spilled to disk) until merged
PIECE_BYTES = 16 << 20  # a larger pretokenized file is read in pieces of about this many bytes
PROSE_PIECE_BYTES = 1 << 20  # and a larger prose file in pieces of about this many (it reads 5x slower)
PIECES_IN_BUDGET = 32  # at most this share of a memory budget a piece: each worker holds ~6x its piece


def piece_bytes(pretokenized: bool, memory: int | None = None) -> int:
    """Bytes of a file read apart at once: within a training's memory budget, if it has one
    (16 MB pieces of pretokenized text took each reading process to 165 MB; lmplz -S 64M
    keeps its whole process under 100 MB)."""
    size = PIECE_BYTES if pretokenized else PROSE_PIECE_BYTES
    return size if memory is None else max(1 << 20, min(size, memory // PIECES_IN_BUDGET))


@dataclass
class Piece:
    """A file, or a range of its lines, read apart: its id stream, its number of sentences, and
    the prose tokenizer's state at its end (None for a whole file or pretokenized text). It is
    read against a copy of the corpus's vocabulary as it was when the reading process forked (or
    its special tokens only, see ``_Reader``): ids below ``known`` are the corpus's own, the
    others index the words the copy lacked, in order of first appearance: ``words``, or, for a
    piece from a ``source`` (a process that keeps its vocabulary from piece to piece), those
    words after the ones its earlier pieces brought. Merging pieces in order
    (``CorpusBuilder.add_document``) gives the ids of reading them in turn."""

    words: list[str]
    ids: array
    sentences: int
    known: int
    state: tuple | None = None
    source: str | None = None


class Reading(NamedTuple):
    """What a reading process is given: whether the text is pretokenized, the corpus's
    vocabulary (as of the fork), and the build's key, under which a process keeps one
    vocabulary for the whole files it reads (``_Reader``); None keeps none."""

    pretokenized: bool
    vocab: VocabularyBuilder
    key: str | None = None


def _read_pieces(files: list[Path], sizes: list[int], reading: Reading, piece_bytes: int):
    """(file index, share of its size, job, piece) in order: a piece is what ``_read_piece``
    gives for a file or for a range of whole lines of a large one, or None for a file to read in
    this process. A pretokenized file's lines are independent sentences; a prose file is cut
    after blank lines, each range read as a document's start, which the caller checks against
    where the range before it left the tokenizer. Tokenizing is most of a training's reading
    time, so with enough text the pieces are read on both cores, as ``reading`` says (``Reading``)."""
    pretokenized = reading.pretokenized
    jobs = []
    for i, (path, size) in enumerate(zip(files, sizes)):
        ranges, encoding = _line_ranges(path, size, piece_bytes, not pretokenized) if size > piece_bytes else (None, None)
        if ranges is None and size > PARALLEL_FILE_BYTES:
            jobs = None  # a file read whole must not be held whole
            break
        jobs += [(i, end - start, path, encoding, start, end) for start, end in ranges] if ranges else [(i, size, path, None, 0, None)]
    if jobs is None or sum(sizes) < PARALLEL_BYTES or len(jobs) < 2 or not two_cores():
        for i, size in enumerate(sizes):
            yield i, size, None, None
        return
    # (a worker that had read 300 MB in 2 MB pieces held 140 MB, though nothing of them was alive:
    # each worker reads about PIECE_BYTES before a fresh one takes over; a fork every few small
    # files instead made reading Python's docs a fifth slower)
    per_worker = max(1, PIECE_BYTES * len(jobs) // max(1, sum(job[1] for job in jobs)))
    pieces = ordered_map(_read_piece, [job[2:] for job in jobs], reading, ahead=2 if pretokenized else 16, jobs_per_worker=per_worker)
    yield from ((i, share, tuple(job), piece) for (i, share, *job), piece in zip(jobs, pieces))


def _line_ranges(path: Path, size: int, piece_bytes: int, after_blank_line: bool) -> tuple[list[tuple[int, int]] | None, str | None]:
    """Byte ranges of about ``piece_bytes`` that end at a line's end (``after_blank_line``: at
    the end of a blank line, or the file's), and the file's encoding; no ranges for a file whose
    encoding cannot be cut at a newline byte (UTF-16, UTF-32) or that cannot be read."""
    try:
        with open(path, "rb") as f:
            encoding = detect_encoding(f.read(SNIFF_BYTES))
            if encoding not in ("utf-8", "utf-8-sig", "cp1252"):
                return None, None
            ranges, start = [], 0
            while start < size:
                f.seek(min(start + piece_bytes, size))
                end = f.tell() + len(f.readline())  # the rest of the line it lands in
                while after_blank_line and end < size:
                    line = f.readline()  # (a line blank in bytes is blank to the tokenizer too)
                    end += len(line)
                    if not line.strip():
                        break
                ranges.append((start, end))
                start = end
            return ranges, encoding
    except (OSError, NotText):
        return None, None


def _read_piece(reading: Reading, job: tuple[Path, str | None, int, int | None], state: tuple = ProseTokenizer.PLAIN):
    """A job of ``_read_pieces``: a whole file (``end`` None) or its bytes from ``start`` to
    ``end``, prose read from the tokenizer ``state``."""
    path, encoding, start, end = job
    if end is None:
        return read_document(path, reading)
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
    except OSError as exc:
        return Skipped(str(path), f"read error: {exc.strerror or exc}")
    text = data.decode(encoding if start == 0 else encoding.replace("-sig", ""), errors="replace")
    # (a range may be read again, from another tokenizer state: read on a vocabulary of its own)
    reader = _Reader.of(reading._replace(key=None))
    local = reader.builder(reading.pretokenized)
    tokenizer = None if local.pretokenized else ProseTokenizer(state)
    sentences = local.add_pretokenized(_blocks_of(text)) if local.pretokenized else local.add_lines(split_lines(text), tokenizer)
    return reader.piece(local, sentences, tokenizer and tokenizer.state)


def read_document(path: Path, reading: Reading) -> Piece | Skipped:
    """One whole file read apart (see ``Piece``), or Skipped with the reason."""
    reader = _Reader.of(reading)
    local = reader.builder(reading.pretokenized)
    return reader.piece(local, _read_into(local, path))


COPIED_WORDS = 1 << 17  # a larger vocabulary is not copied for each reading process (about 150 bytes a word in each)


@dataclass
class _Reader:
    """The vocabulary a process reads pieces against. It goes on from a copy of the corpus's
    vocabulary where that is small enough: once the first pieces are merged, few words of a
    piece are new to it, and the known ones are looked up in one pass
    (``VocabularyBuilder.add_array``); otherwise from the special tokens, whose ids are the same
    everywhere. Under a build's key a process keeps it for all the whole files it reads and
    sends each word once, with the first piece that has it: with a fresh copy a file, each
    file's words went back and were looked up again (merging Python's docs, 500 small files,
    took the corpus's process four times the CPU)."""

    vocab: VocabularyBuilder
    known: int  # the copy's words: their ids are the corpus's own
    sent: int  # words sent with pieces so far
    source: str | None  # the pieces' source, None for a vocabulary kept for one piece
    key: tuple | None = None

    @classmethod
    def of(cls, reading: Reading) -> "_Reader":
        """This process's reader for ``reading``'s build (a fresh one without a key)."""
        global _KEPT_READER
        key = (os.getpid(), reading.key)  # (a process forked from one that kept a reader makes its own)
        if reading.key is not None and _KEPT_READER is not None and _KEPT_READER.key == key:
            return _KEPT_READER
        vocab = reading.vocab.copy() if len(reading.vocab.tokens) <= COPIED_WORDS else VocabularyBuilder()
        reader = cls(vocab, len(vocab.tokens), len(vocab.tokens), None if reading.key is None else f"{key[0]}-{os.urandom(6).hex()}", key)
        if reading.key is not None:
            _KEPT_READER = reader
        return reader

    def builder(self, pretokenized: bool) -> "CorpusBuilder":
        """A builder for one piece, on this vocabulary."""
        local = CorpusBuilder(pretokenized, spill=False)
        local.vocab = self.vocab
        return local

    def piece(self, local: "CorpusBuilder", sentences, state: tuple | None = None) -> Piece | Skipped:
        """What ``local`` read, with the words not sent before; a piece that could not be read
        takes back the words it gave ids (as a fresh copy's would be dropped)."""
        if isinstance(sentences, Skipped):
            self.vocab.truncate(self.sent)
            return sentences
        words = self.vocab.tokens[self.sent :]
        self.sent = len(self.vocab.tokens)
        return Piece(words, local.ids.buffer, sentences, self.known, state, self.source)


_KEPT_READER: _Reader | None = None


def _read_into(builder: "CorpusBuilder", path: Path):
    """Add the file's sentences to ``builder``: their number, or Skipped with the reason."""
    try:
        f, _ = open_text(path)
        with f:
            return builder.add_pretokenized(iter_line_blocks(f)) if builder.pretokenized else builder.add_lines(iter_lines(f))
    except NotText as exc:
        return Skipped(str(path), str(exc))
    except OSError as exc:
        return Skipped(str(path), f"read error: {exc.strerror or exc}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def corpus_from_text(text: str, pretokenized: bool = False, **summary) -> Corpus:
    """A training corpus from one string (the default model, tests)."""
    builder = CorpusBuilder(pretokenized)
    builder.add_lines(split_lines(text))
    return builder.finish(skipped=[], **summary)

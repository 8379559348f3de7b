"""The n-gram backend: counts in sorted integer keys, Kneser-Ney (KenLM's), add-k and stupid
backoff, vectorised sequence scoring, incremental state and ARPA in and out."""

from __future__ import annotations

import math
# (tempfile, and the modules that count, estimate, prune, rank and read or write ARPA: imported in
# the functions that use them; a process that only predicts needs none of them)
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.checked import remember_passed
from engine.errors import ForetellError, ModelFormatError
from engine.model import LanguageModel, option, sentence_pieces
from engine.parallel import map_on_two_threads, spare_core
from engine.store import scratch_prefix
from engine.vocab import BOS_ID, EOS_ID, Vocabulary
from plugins.ngram import packed
from plugins.ngram.scratch import DEFAULT_MEMORY, Scratch, parse_memory
from plugins.ngram.search import lookup

LN10 = math.log(10.0)
# Positions ranked at once. Each distinct longer context brings its continuations once per piece
# (thousands for "of the"), so larger pieces share more: at 131,072 (a whole batch of `score`)
# an 11M-n-gram model ranks 116,000 positions a second (8,192: 46,000) and holds about 60 MB
# more while it does.
STATS_CHUNK = 131072
# Streams at least twice this long are scored on two threads (the C extension's call on two, or
# numpy's searches, which let go of the interpreter, on two pieces): an editor's small steps stay on one.
THREAD_PIECE = 16384
SMOOTHINGS = ("kneser-ney", "add-k", "stupid-backoff", "arpa")


@dataclass
class NgramOptions:
    """Training options of the n-gram backend."""

    order: int = option(4, "n-gram order: how many words a prediction looks at, the word itself included (1-9)")
    smoothing: str = option("kneser-ney", "kneser-ney (KenLM's), add-k or stupid-backoff")
    k: float = option(0.1, "add-k's delta")
    alpha: float = option(0.4, "stupid backoff's factor")
    discount_fallback: bool = option(True, "Kneser-Ney: where the text gives no discounts for an order, use lmplz's fallback ones (and say so) instead of stopping")
    memory: str = option(DEFAULT_MEMORY, "working memory training may use, as lmplz's -S (512M, 2G, ...): larger tables go to files in the store's work folder, worked on a block at a time")

    def __post_init__(self):
        if not 1 <= self.order <= 9:
            raise ValueError(f"order must be between 1 and 9, not {self.order}")
        if self.smoothing not in SMOOTHINGS:  # "arpa" marks imported models; users pick the others
            raise ValueError(f"smoothing must be one of {', '.join(SMOOTHINGS[:3])}, not {self.smoothing!r}")
        if not (self.k > 0 and math.isfinite(self.k)):
            raise ValueError(f"k must be a positive number, not {self.k}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, not {self.alpha}")
        parse_memory(self.memory)


class NgramModel(LanguageModel):
    """Backoff n-gram model: Kneser-Ney (as KenLM's), add-k or stupid backoff; ARPA in and out.

    Kneser-Ney and stupid backoff are stored as ARPA-style tables (log10 p, log10 backoff);
    add-k keeps counts and context totals."""

    name = "ngram"
    Options = NgramOptions
    format_version = 2  # 2: the packed layout (plugins.ngram.packed); folders of 1 still load
    sentence_independent = True  # every sentence starts afresh at <s>
    one_malloc_arena = True  # training keeps to --memory (plugins.ngram.scratch)

    def __init__(self, vocab: Vocabulary, options: NgramOptions, keys, logp=None, backoff=None, counts=None, facts=None):
        super().__init__(vocab, options)
        self.keys = keys
        self.logp = logp
        self.backoff = backoff
        self.counts = counts
        self.facts = facts or {}
        self.V = len(vocab)
        self._unigram_summary = None
        self._ranking = {}  # context length -> the contexts ranking has worked out (plugins.ngram.stats)
        if options.smoothing == "add-k":
            self._totals = [self._context_totals(k) for k in range(len(keys))]

    @property
    def order(self) -> int:
        return len(self.keys)

    # -- training --------------------------------------------------------------------------
    @classmethod
    def fit(cls, corpus, options: NgramOptions, progress=None, workdir=None):
        import tempfile

        from plugins.ngram.counts import count_ngrams
        if progress:
            progress("counting n-grams", 0.0)
        spill = None
        if workdir is not None:  # counts of a long text spill beside the store's models, not into a RAM-backed /tmp
            spill = workdir.parent
            spill.mkdir(parents=True, exist_ok=True)
        # The model's large tables are files in this folder, mapped: removed on the way out, they
        # stay readable through their mappings until the model is saved and dropped.
        with tempfile.TemporaryDirectory(prefix=scratch_prefix(), dir=spill, ignore_cleanup_errors=True) as folder:
            scratch = Scratch(Path(folder), parse_memory(options.memory))
            counts = count_ngrams(corpus.ids, options.order, len(corpus.vocab), scratch=scratch)
            if progress:
                progress("estimating probabilities", 0.5)
            return cls._from_counts(corpus.vocab, options, counts, scratch)

    @classmethod
    def _from_counts(cls, vocab: Vocabulary, options: NgramOptions, counts, scratch: Scratch | None = None) -> "NgramModel":
        from plugins.ngram.smoothing import kneser_ney, stupid_backoff

        keys = [o.keys for o in counts.orders]
        raw = [o.counts for o in counts.orders]
        facts = {"ngrams": [len(k) for k in keys]}
        if counts.last is not None:
            facts["last_ngram"] = [int(i) for i in counts.last]  # to add counts later exactly
        if options.smoothing == "kneser-ney":
            tables = kneser_ney(counts, options.discount_fallback, scratch)
        elif options.smoothing == "stupid-backoff":
            tables = stupid_backoff(counts, options.alpha)
        else:
            return cls(vocab, options, keys, counts=raw, facts=facts)
        facts.update(tables.facts)
        return cls(vocab, options, keys, tables.logp, tables.backoff, raw, facts)

    @classmethod
    def training_memory(cls, options: NgramOptions) -> int:
        return parse_memory(options.memory)

    def check_can_learn(self) -> None:
        if self.counts is None and "quantization" in self.facts:
            raise ForetellError("this model is a quantized copy and has no counts to add to; let the model it was made from learn, then optimize again")
        if self.counts is None and "pruned" in self.facts:
            raise ForetellError("this model is a pruned copy and has no counts to add to; let the model it was pruned from learn, then prune again")
        if self.counts is None:
            raise ForetellError("this model was imported from ARPA and has no counts to add to; train it with foretell to let it learn")

    # -- pruning ---------------------------------------------------------------------------
    bytes_per_ngram = 10  # packed: key 4 bytes, log10 p 4, a backoff code 2 (none at the top order)

    def pruned(self, ngrams: int | None = None, min_counts: list[int] | None = None) -> "NgramModel":
        """A copy with at least ``ngrams`` n-grams left by relative entropy (Stolcke 1998), or
        without those seen at most ``min_counts[k]`` times (order k + 2; the last repeats);
        backoffs renormalised. See plugins.ngram.prune."""
        from plugins.ngram import prune

        if self.logp is None:
            raise ForetellError("an add-k model has no backoff weights to renormalise; prune a Kneser-Ney or stupid-backoff model")
        if self.order == 1:
            raise ForetellError("a unigram model has nothing to prune: its n-grams are its vocabulary")
        keys, logp, backoff = self._plain()
        structure = prune.Structure.of(keys, self.V)
        info: dict = {"from_ngrams": [int(len(k)) for k in self.keys]}
        if min_counts is not None:
            if self.counts is None:
                raise ForetellError("this model has no counts (imported from ARPA or pruned already): prune it to a size instead")
            keep = prune.by_counts(self.counts, min_counts, structure)
            info.update(method="count", min_counts=[int(t) for t in min_counts])
        else:
            costs = prune.relative_entropy(logp, backoff, structure)
            keep, threshold = prune.to_size(costs, int(ngrams), structure, self.V)
            info.update(method="relative-entropy", threshold_nats=threshold)
        keys, logp, backoff = prune.apply(keys, logp, backoff, self.V, keep, structure)
        facts = {k: v for k, v in self.facts.items() if k not in ("last_ngram", "pruned", "quantization")}
        facts.update(ngrams=[int(len(k)) for k in keys], pruned=info)
        return type(self)(self.vocab, self.options, keys, logp, backoff, None, facts)

    def with_documents(self, words: list[str], streams: list[np.ndarray]) -> "NgramModel":
        """This model with the n-grams of ``streams`` added to its counts (online adaptation):
        ``words`` extend the vocabulary, the streams are ids over the extended one. Equal to a
        model trained on the original text and those documents together."""
        from plugins.ngram.counts import accumulate, count_ngrams, from_tables

        self.check_can_learn()
        vocab = Vocabulary(self.vocab.tokens + list(words))
        V = len(vocab)
        base = from_tables(self.V, self._plain()[0], list(self.counts), self.facts.get("last_ngram"))
        parts = [base] + [count_ngrams(np.asarray(s, dtype=np.int64), self.order, V) for s in streams if len(s)]
        return self._from_counts(vocab, self.options, accumulate(V, self.order, parts))

    @classmethod
    def from_arpa(cls, path: Path) -> "NgramModel":
        from plugins.ngram.arpa import read_arpa

        vocab, keys, logp, backoff = read_arpa(path)
        options = NgramOptions(order=len(keys), smoothing="arpa")
        return cls(vocab, options, keys, logp, backoff, facts={"ngrams": [len(k) for k in keys], "source": Path(path).name})

    def export_arpa(self, path: Path) -> None:
        from plugins.ngram.arpa import write_arpa

        if self.logp is None:
            raise ForetellError("an add-k model is not a backoff model and has no ARPA form; train with --smoothing kneser-ney")
        write_arpa(path, self.vocab, self.keys, self.logp, self.backoff)

    # -- storage ----------------------------------------------------------------------------
    def save(self, folder: Path) -> dict:
        if self.logp is not None:  # Kneser-Ney, stupid backoff, ARPA: the packed layout
            packed.save(folder, self.keys, self.logp, self.backoff, self.counts)
            return self.facts
        for k in range(self.order):  # add-k scores from its counts: keys and counts, mapped as they are
            np.save(folder / f"keys{k + 1}.npy", np.asarray(self.keys[k]), allow_pickle=False)
            np.save(folder / f"counts{k + 1}.npy", np.asarray(self.counts[k]).astype(np.uint32), allow_pickle=False)
        return self.facts

    @classmethod
    def load(cls, folder: Path, vocab: Vocabulary, options: NgramOptions, facts: dict):
        if packed.is_packed(folder):
            return cls._load_packed(folder, vocab, options, facts)

        def arrays(stem, dtype, optional=False):
            if optional and not all((folder / f"{stem}{k}.npy").exists() for k in range(1, options.order + 1)):
                return None
            return [packed.load_array(folder, f"{stem}{k}.npy", dtype) for k in range(1, options.order + 1)]

        keys = arrays("keys", np.uint64)
        needs_tables = options.smoothing != "add-k"
        logp = arrays("logp", np.float32, optional=not needs_tables)
        backoff = arrays("backoff", np.float32, optional=not needs_tables)
        counts = arrays("counts", np.uint32, optional=needs_tables)
        if (folder / f"keys{options.order + 1}.npy").exists():
            raise ModelFormatError(f"{folder.name}: the manifest says order {options.order} but the model has n-grams of order {options.order + 1}")
        for k, key in enumerate(keys):
            lengths = {len(key)} | {len(a[k]) for a in (logp, backoff, counts) if a is not None}
            if len(lengths) != 1 or (k == 0 and len(key) != len(vocab)):
                raise ModelFormatError(f"{folder.name}: the arrays of order {k + 1} disagree in length")
            tables = [None if column is None else column[k] for column in (logp, backoff)]
            problem = _table_problem(k, key, len(keys[k - 1]) if k else 1, len(vocab), *tables)
            if problem:
                raise ModelFormatError(f"{folder.name}: order {k + 1}: {problem}")
        return cls(vocab, options, keys, logp, backoff, counts, facts)

    @classmethod
    def _load_packed(cls, folder: Path, vocab: Vocabulary, options: NgramOptions, facts: dict):
        if options.smoothing == "add-k":
            raise ModelFormatError(f"{folder.name}: an add-k model is stored with its counts, not packed")
        keys, logp, backoff, counts = packed.load(folder, options.order, len(vocab))
        if len(logp[0]) != len(vocab) or len(backoff[0]) != len(vocab):
            raise ModelFormatError(f"{folder.name}: the arrays of order 1 disagree in length")
        deep = not vocab.checked_before  # every key and code read: once per version of the files (read with the vocabulary)
        for k in range(options.order):
            lengths = {len(keys[k]), len(logp[k]), len(backoff[k])}
            problem = "the arrays disagree in length" if len(lengths) != 1 else None
            if problem is None and k:
                if deep:
                    problem = keys[k].problem() or _packed_values_problem(logp[k], backoff[k])
                if problem is None and len(keys[k]) and int(keys[k][len(keys[k]) - 1]) // len(vocab) >= len(keys[k - 1]):
                    problem = "a key names a context that does not exist"
            elif problem is None:
                problem = _table_problem(0, keys[0], 1, len(vocab), logp[0], backoff[0])
            if problem:
                raise ModelFormatError(f"{folder.name}: order {k + 1}: {problem}")
        if deep:
            remember_passed(folder)
        return cls(vocab, options, keys, logp, backoff, counts, facts)

    def quantized(self) -> "NgramModel":
        """A copy whose log10 probabilities and backoffs above the unigrams are 8-bit codes into
        256 values per order (``foretell models optimize``; plugins.ngram.packed): about 6
        bytes an n-gram. It has no counts: learn on the original and optimize again."""
        if self.logp is None:
            raise ForetellError("an add-k model has no backoff tables to quantize; train with --smoothing kneser-ney")
        if "quantization" in self.facts:
            raise ForetellError("this model is quantized already")
        logp = self.logp[:1] + [packed.CodedValues.quantized(lp) for lp in self.logp[1:]]
        backoff = self.backoff[:1] + [packed.CodedValues.quantized(b, exact_zero=True) for b in self.backoff[1:-1]] + self.backoff[-1:] if self.order > 1 else self.backoff
        facts = {k: v for k, v in self.facts.items() if k != "last_ngram"}
        facts["quantization"] = f"{packed.QUANTIZED_LEVELS} levels per order (equal-count bins, each value to the nearest mean)"
        return type(self)(self.vocab, self.options, self.keys, logp, backoff, None, facts)

    def _plain(self):
        """Keys, log10 probabilities and backoffs as numpy arrays (packed ones unpacked), for
        the whole-model passes: pruning, adding counts."""
        plain = lambda column: None if column is None else [np.asarray(a) for a in column]
        return plain(self.keys), plain(self.logp), plain(self.backoff)

    def describe(self) -> dict:
        info = {"order": self.order, "smoothing": self.options.smoothing, "ngrams": [int(len(k)) for k in self.keys]}
        for key in ("discounts", "discount_fallback", "alpha", "source", "pruned", "quantization"):
            if key in self.facts:
                info[key] = self.facts[key]
        if "discount_fallback" in self.facts:
            from plugins.ngram.smoothing import fallback_note

            info["notes"] = [fallback_note(self.facts["discount_fallback"])]
        if self.options.smoothing == "add-k":
            info["k"] = self.options.k
        return info

    # -- lookups ---------------------------------------------------------------------------
    def _ending_at(self, ids: np.ndarray) -> list[np.ndarray]:
        """For each order k, the index of the k-gram ending at each position (-1 if absent).
        A k-gram's key is its prefix's index times V plus its last word, so each order needs
        the previous order's indices one position back."""
        ids = np.asarray(ids, dtype=np.int64)
        found = [ids.copy()]
        for k in range(1, self.order):
            prefix = np.full(len(ids), -1, dtype=np.int64)
            prefix[1:] = found[-1][:-1]
            found.append(lookup(self.keys[k], prefix, ids, self.V))
        return found

    def _children(self, k: int, context: int) -> slice:
        """The run of order-(k+1) n-grams whose prefix is the order-k n-gram ``context``."""
        keys = self.keys[k]
        lo = np.searchsorted(keys, np.uint64(context) * np.uint64(self.V))
        hi = np.searchsorted(keys, np.uint64(context + 1) * np.uint64(self.V))
        return slice(int(lo), int(hi))

    def _context_totals(self, k: int) -> np.ndarray:
        """Add-k: how often each order-k n-gram (k=0: the empty context) was followed by a word."""
        if k == 0:
            c = self.counts[0].astype(np.float64)
            return np.array([c.sum() - c[BOS_ID]])
        ctx = (self.keys[k] // np.uint64(self.V)).astype(np.int64)
        return np.bincount(ctx, weights=self.counts[k], minlength=len(self.keys[k - 1]))

    def _addk_denominator(self, total):
        return total + self.options.k * (self.V - 1)

    # -- scoring primitives ----------------------------------------------------------------
    def score_ids(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) >= 2 * THREAD_PIECE and spare_core():  # halves of whole sentences on both cores
            halves = sentence_pieces(ids, (len(ids) + 1) // 2)
            if len(halves) > 1:
                return np.concatenate(map_on_two_threads(self._score_ids, halves))
        return self._score_ids(ids)

    def _score_ids(self, ids: np.ndarray, ending: list[np.ndarray] | None = None) -> np.ndarray:
        n = len(ids)
        ending = self._ending_at(ids) if ending is None else ending
        out = np.full(n, np.nan)
        scored = np.flatnonzero(ids != BOS_ID)
        if self.options.smoothing == "add-k":
            return self._score_addk(ids, ending, out, scored)
        # Longest n-gram ending at each position, plus the backoffs of the longer contexts.
        best = np.zeros(n, dtype=np.int64)
        for k in range(self.order):
            best[ending[k] >= 0] = k
        result = np.zeros(n)
        for k in range(self.order):
            here = best == k
            result[here] = self.logp[k][ending[k][here]]
        for k in range(1, self.order):
            context = np.full(n, -1, dtype=np.int64)
            context[1:] = ending[k - 1][:-1]  # the k-gram ending just before
            add = (context >= 0) & (best < k)
            result[add] += self.backoff[k - 1][context[add]]
        out[scored] = result[scored] * LN10
        return out

    def _score_addk(self, ids, ending, out, scored):
        n = len(ids)
        context_len = np.zeros(n, dtype=np.int64)  # longest context seen followed by a word
        context_idx = np.zeros(n, dtype=np.int64)
        for k in range(1, self.order):
            context = np.full(n, -1, dtype=np.int64)
            context[1:] = ending[k - 1][:-1]
            ok = context >= 0
            ok[ok] = self._totals[k][context[ok]] > 0
            context_len[ok], context_idx[ok] = k, context[ok]
        numerator = np.zeros(n)
        total = np.zeros(n)
        for k in range(self.order):
            here = context_len == k
            total[here] = self._totals[k][context_idx[here]]
            hit = here & (ending[k] >= 0) if k > 0 else here
            if k == 0:
                numerator[hit] = self.counts[0][ids[hit]]
            else:
                numerator[hit] = self.counts[k][ending[k][hit]]
        logprob = np.log(numerator + self.options.k) - np.log(self._addk_denominator(total))
        out[scored] = logprob[scored]
        return out

    def token_stats(self, ids: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        if self.logp is None or self.order < 2 or len(ids) == 0 or ids[0] != BOS_ID:
            return super().token_stats(ids)  # add-k, unigram models, streams not opening a sentence
        from plugins.ngram.stats import compiled_ranking, compiled_token_stats

        two = len(ids) >= 2 * THREAD_PIECE and spare_core()
        if compiled_ranking(self):  # (a piece at a time on both cores, one cache of contexts: memory follows a piece)
            stats = [compiled_token_stats(self, piece, threads=2 if two else 1) for piece in sentence_pieces(ids, STATS_CHUNK)]
        elif two:  # whole sentences a piece (one longer than a piece is ranked whole): the expansion below grows with them
            stats = map_on_two_threads(self._token_stats, sentence_pieces(ids, min(STATS_CHUNK, (len(ids) + 1) // 2)))
        else:
            return self._token_stats(ids)
        return stats[0] if len(stats) == 1 else tuple(np.concatenate(column) for column in zip(*stats))

    def token_stats_in_parallel(self) -> bool:
        from plugins.ngram.stats import compiled_ranking

        return self.logp is not None and self.order >= 2 and spare_core() and compiled_ranking(self)

    def _token_stats(self, ids: np.ndarray):
        """``token_stats`` with numpy, on this thread."""
        from plugins.ngram.stats import backoff_token_stats

        ending = self._ending_at(ids)  # (what scoring and ranking both start from)
        logprob = self._score_ids(ids, ending)
        pos, rank, entropy = backoff_token_stats(self, ids, ending, logprob / LN10)
        ranks, entropies = np.zeros(len(ids), dtype=np.int64), np.full(len(ids), np.nan)
        ranks[pos], entropies[pos] = rank, entropy
        return logprob, ranks, entropies

    def initial_state(self):
        return (BOS_ID,)

    def advance(self, state, token_id: int):
        if token_id == EOS_ID:
            return (BOS_ID,)
        return (state + (int(token_id),))[-max(1, self.order - 1):]

    def next_logprobs(self, state) -> np.ndarray:
        ending = self._ending_at(np.array(state, dtype=np.int64)) if self.order > 1 else []
        contexts = [int(e[-1]) for e in ending[: self.order - 1]]
        if self.options.smoothing == "add-k":
            dist = self._addk_distribution(contexts)
        else:
            dist = self.logp[0].astype(np.float64)
            for k, context in enumerate(contexts, start=1):
                if context < 0:
                    continue
                dist += self.backoff[k - 1][context]
                run = self._children(k, context)
                dist[(self.keys[k][run] % np.uint64(self.V)).astype(np.int64)] = self.logp[k][run]
            dist *= LN10
        dist[BOS_ID] = -np.inf
        return dist

    def _addk_distribution(self, contexts):
        k, context = 0, 0
        for j, c in enumerate(contexts, start=1):
            if c >= 0 and self._totals[j][c] > 0:
                k, context = j, c
        denominator = np.log(self._addk_denominator(self._totals[k][context]))
        numerator = np.zeros(self.V)
        if k == 0:
            numerator[:] = self.counts[0]
        else:
            run = self._children(k, context)
            numerator[(self.keys[k][run] % np.uint64(self.V)).astype(np.int64)] = self.counts[k][run]
        return np.log(numerator + self.options.k) - denominator



def _table_problem(k: int, keys, contexts: int, V: int, logp, backoff) -> str | None:
    """What is wrong with the order-(k+1) arrays read from disk, if anything: keys must be sorted,
    unique and name a known context and word; log10 probabilities finite and at most 0,
    backoffs finite. Checked once on load so that no lookup can index out of range."""
    if len(keys):
        if k == 0 and not np.array_equal(keys, np.arange(V, dtype=np.uint64)):
            return "the unigram keys are not the vocabulary's ids"
        if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            return "the keys are not sorted"
        if int(keys[-1]) // V >= contexts:
            return "a key names a context that does not exist"
    if logp is not None and not bool(np.all(np.isfinite(logp) & (logp <= 0))):
        return "a log-probability is not a finite number at most 0"
    if backoff is not None and not bool(np.all(np.isfinite(backoff))):
        return "a backoff weight is not a finite number"
    return None


def _packed_values_problem(logp, backoff) -> str | None:
    """``_table_problem``'s value checks for packed arrays: on each table of distinct values
    (and its codes) rather than every n-gram's copy."""
    for column, what in ((logp, "log-probability"), (backoff, "backoff weight")):
        values = column.values if isinstance(column, packed.CodedValues) else column
        if isinstance(column, packed.CodedValues) and column.problem():
            return column.problem()
        lowest, highest = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)  # NaN spreads to both
        if not (math.isfinite(lowest) and math.isfinite(highest)) or (what == "log-probability" and not highest <= 0):
            return f"a {what} is not a finite number{' at most 0' if what == 'log-probability' else ''}"
    return None

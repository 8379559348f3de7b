"""``foretell train``: files, folders and globs in, a model in the store out."""

from __future__ import annotations

import inspect
import os
import sys
import time

import click

from engine.cli.common import pretokenized_option, store
from engine.corpus import build_corpus
from engine.errors import ForetellError
from engine.model import options_from_strings
from engine.plugins import get_backend
from engine.store import DEFAULT_MODEL, validate_name

MAX_SKIP_LINES = 20


def _parse_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ForetellError(f"--option takes KEY=VALUE, not {pair!r}")
        out[key.strip()] = value.strip()
    return out


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--backend", default="ngram", show_default=True, help="Backend to train (see `foretell backends`).")
@click.option("--name", default=DEFAULT_MODEL, show_default=True, help="Name to save the model under.")
@click.option("--order", type=int, help="n-gram order, 1-9 (ngram; default 4).")
@click.option("--smoothing", help="kneser-ney (default), add-k or stupid-backoff (ngram).")
@click.option("--k", "add_k", type=float, help="add-k's delta (ngram --smoothing add-k; default 0.1).")
@click.option("--min-count", type=int, default=1, show_default=True, help="Words seen fewer times become <unk>.")
@click.option("--max-vocab", type=int, help="Keep at most this many words (most frequent first).")
@click.option("-O", "--option", "extra", multiple=True, metavar="KEY=VALUE", help="Any other backend option.")
@pretokenized_option
def train(paths, backend, name, order, smoothing, add_k, min_count, max_vocab, extra, pretokenized):
    """Train a model on PATHS: files, folders (searched recursively) and glob patterns."""
    validate_name(name)
    cls = get_backend(backend).cls
    values = _parse_pairs(extra)
    for key, value in (("order", order), ("smoothing", smoothing), ("k", add_k)):
        if value is not None:
            values[key] = value
    options = options_from_strings(cls.Options, values)
    if min_count < 1:
        raise ForetellError(f"--min-count must be 1 or more, not {min_count}")
    if max_vocab is not None and max_vocab < 4:
        raise ForetellError(f"--max-vocab must be at least 4, not {max_vocab}")

    started = time.perf_counter()
    interactive = sys.stderr.isatty()
    with click.progressbar(length=1, label="Reading", file=sys.stderr) if interactive else _NoBar() as bar:

        def progress(done, total):
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        corpus = build_corpus(list(paths), pretokenized, min_count, max_vocab, progress=progress)
    for skip in corpus.summary["skipped"][:MAX_SKIP_LINES]:
        click.echo(f"skipped {skip['path']}: {skip['reason']}", err=True)
    more = len(corpus.summary["skipped"]) - MAX_SKIP_LINES
    if more > 0:
        click.echo(f"... and {more} more skipped", err=True)

    def stage(what, fraction):
        if interactive:
            click.echo(f"\r{what[:70]:<70}", nl=False, err=True)

    the_store = store()
    workdir = {"workdir": the_store.workdir(name)} if "workdir" in inspect.signature(cls.fit).parameters else {}
    model = cls.fit(corpus, options, progress=stage, **workdir)
    if interactive:
        click.echo("\r" + " " * 60 + "\r", nl=False, err=True)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun one rank writes the model
    the_store.save(name, model, corpus=corpus.summary, vocabulary={"min_count": min_count, "max_size": max_vocab})
    s = corpus.summary
    described = model.describe()
    ngrams = described.get("ngrams")
    per_order = f", n-grams {'/'.join(f'{n:,}' for n in ngrams)}" if ngrams else ""
    if "best_valid_perplexity" in described:
        per_order += f", validation perplexity {described['best_valid_perplexity']:.1f} after {described.get('epochs_run', '?')} epochs"
    click.echo(
        f"Trained {name!r} ({backend}): {s['documents']:,} document{'' if s['documents'] == 1 else 's'}, {s['tokens']:,} tokens, "
        f"vocabulary {len(model.vocab):,}{per_order}, {time.perf_counter() - started:.1f} s"
    )


class _NoBar:
    length = 1
    pos = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        self.pos += n


def register(cli):
    cli.add_command(train)

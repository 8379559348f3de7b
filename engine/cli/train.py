"""``foretell train``: files, folders and globs in, a model in the store out."""

from __future__ import annotations

import sys
import time

import click

from engine.cli.common import exclude_option, exclusions, pretokenized_option, store
from engine.corpus import build_corpus
from engine.errors import ForetellError
from engine.memory import one_malloc_arena
from engine.model import option_fields, options_from_strings
from engine.plugins import get_backend
from engine.store import DEFAULT_MODEL, validate_name
from engine.train import DEFAULT_BACKEND, train_and_save, writes_the_model

MAX_SKIP_LINES = 20


def _parse_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ForetellError(f"--option takes KEY=VALUE, not {pair!r}")
        out[key.strip()] = value.strip()
    return out


# Training controls that every trainable neural backend shares: real flags of `train` whatever
# the backend (a backend without one says so), listed here once. Every other option of the
# chosen backend becomes a flag of its own (BackendCommand).
COMMON_FLAGS = {
    "epochs": click.option("--epochs", type=int, help="Passes over the text at most (neural backends; default 10, or as many as --max-minutes allows)."),
    "max_minutes": click.option("--max-minutes", type=float, help="Stop after this many minutes, keeping the best model (neural backends)."),
    "valid": click.option("--valid", type=click.Path(exists=True, dir_okay=False), help="Validation text (neural backends; default: every 20th sentence)."),
    "resume": click.option("--resume", is_flag=True, default=None, help="Continue the checkpoint an interrupted training left (neural backends)."),
    "seed": click.option("--seed", type=int, help="Random seed (neural backends; default 0)."),
    "device": click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train (neural backends; default auto)."),
    "threads": click.option("--threads", type=int, help="Torch threads for training (neural backends; default 0: one per core)."),
}


def backend_params(backend: str, taken: set[str]) -> list[click.Option]:
    """A flag for each option of ``backend`` not already a flag: name, type, default, help
    from its options dataclass (an unloadable backend gets none; the command then says why)."""
    try:
        cls = get_backend(backend).cls
    except ForetellError:
        return []
    params = []
    for field in option_fields(cls.Options):
        if field.name in taken:
            continue
        flag = "--" + field.name.replace("_", "-")
        shown = f"{field.help} (default: {field.default})" if field.default not in (None, "") else field.help
        if field.type is bool:
            params.append(click.Option([f"{flag}/--no-{flag[2:]}", field.name], default=None, help=f"{backend}: {shown}"))
        else:
            params.append(click.Option([flag, field.name], type=field.type, default=None, metavar=field.type.__name__.upper(), help=f"{backend}: {shown}"))
    return params


def backend_named(args: list[str]) -> str:
    """The value of --backend among raw arguments (the default backend if none)."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--backend" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return DEFAULT_BACKEND


class BackendCommand(click.Command):
    """``train`` with a flag for every option of the backend being trained, so that
    ``foretell train --backend NAME --help`` lists them."""

    def parse_args(self, ctx, args):
        own = [p for p in self.params if not getattr(p, "from_backend", False)]
        extra = backend_params(backend_named(args), {p.name for p in own})
        for p in extra:
            p.from_backend = True
        self.params = own + extra
        return super().parse_args(ctx, args)


def _with_common_flags(f):
    for decorate in reversed(COMMON_FLAGS.values()):
        f = decorate(f)
    return f


@click.command(cls=BackendCommand)
@click.argument("paths", nargs=-1, required=True)
@click.option("--backend", default=DEFAULT_BACKEND, show_default=True, help="Backend to train (see `foretell backends --options`).")
@click.option("--name", default=DEFAULT_MODEL, show_default=True, help="Name to save the model under.")
@click.option("--min-count", type=int, default=1, show_default=True, help="Words seen fewer times become <unk>.")
@click.option("--max-vocab", type=int, help="Keep at most this many words (most frequent first).")
@_with_common_flags
@click.option("-O", "--option", "extra", multiple=True, metavar="KEY=VALUE", help="Any backend option by name (the flags below are the same).")
@pretokenized_option
@exclude_option
def train(paths, backend, name, min_count, max_vocab, extra, pretokenized, exclude, **flags):
    """Train a model on PATHS: files, folders (searched recursively) and glob patterns.

    Every option of the backend is a flag (listed below for the backend named with --backend)
    and can also be given as -O KEY=VALUE."""
    validate_name(name)
    cls = get_backend(backend).cls
    if cls.one_malloc_arena:
        one_malloc_arena()
    given = {key: value for key, value in flags.items() if value is not None}
    known = {f.name for f in option_fields(cls.Options)}
    for key in given.keys() - known:
        raise ForetellError(f"--{key.replace('_', '-')} is not an option of the {backend!r} backend (see `foretell backends --options {backend}`)")
    values = {**_parse_pairs(extra), **given}
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

        corpus = build_corpus(list(paths), pretokenized, min_count, max_vocab, progress=progress, exclude=exclusions(exclude), memory=cls.training_memory(options))
    for skip in corpus.summary["skipped"][:MAX_SKIP_LINES]:
        click.echo(f"skipped {skip['path']}: {skip['reason']}", err=True)
    more = len(corpus.summary["skipped"]) - MAX_SKIP_LINES
    if more > 0:
        click.echo(f"... and {more} more skipped", err=True)

    def stage(what, fraction):
        if interactive:
            click.echo(f"\r{what[:70]:<70}", nl=False, err=True)

    model = train_and_save(store(), name, corpus, backend, options, stage, vocabulary={"min_count": min_count, "max_size": max_vocab})
    if interactive:
        click.echo("\r" + " " * 60 + "\r", nl=False, err=True)
    if not writes_the_model():
        return
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
    for note in described.get("notes", []):
        click.echo(f"note: {note}")


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

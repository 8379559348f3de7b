"""``foretell models ...`` and ``foretell backends``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from engine.capabilities import ExportsArpa, ImportsArpa, Prunable, Quantizable, backend_with, has_training_curves
from engine.cli.common import echo_json, json_option, load_model, pretokenized_option, store
from engine.corpus import read_text
from engine.errors import ForetellError
from engine.files import written_whole
from engine.model import option_fields
from engine.plugins import backends as discovered_backends, get_backend
from engine.scoring import perplexity as corpus_perplexity
from engine.store import validate_name
from engine.tokenizer import tokenize


def _folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@click.group()
def models():
    """List, inspect, remove, export and import models."""


@models.command("list")
@json_option
def list_models(as_json):
    """The models in the store (* marks the default)."""
    s = store()
    default = s.default_name()
    rows = []
    for name in s.names():
        try:
            m = s.manifest(name)
            rows.append({
                "name": name,
                "backend": m["backend"],
                "options": m["options"],
                "vocabulary": m["vocabulary"]["size"],
                "bytes": _folder_size(s.path(name)),
                "created": m.get("created", ""),
                "default": name == default,
            })
        except ForetellError as exc:
            rows.append({"name": name, "error": str(exc), "default": name == default})
    if as_json:
        echo_json({"models": rows})
        return
    if not rows:
        click.echo(f"No models yet in {s.models}. `foretell train PATH` makes one; the default model is built on first use.")
        return
    for r in rows:
        mark = "*" if r["default"] else " "
        if "error" in r:
            click.echo(f"{mark} {r['name']:<20} unreadable: {r['error']}")
            continue
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items() if k in ("order", "smoothing", "cell", "window"))
        click.echo(f"{mark} {r['name']:<20} {r['backend']:<8} {opts:<32} vocab {r['vocabulary']:>8,}  {_human(r['bytes']):>9}  {r['created'][:10]}")


@models.command()
@click.argument("name")
@json_option
def info(name, as_json):
    """Everything known about model NAME."""
    s = store()
    manifest = s.manifest(validate_name(name))
    model = s.load(name)
    details = {**manifest, "details": model.describe(), "path": str(s.path(name)), "bytes": _folder_size(s.path(name))}
    if as_json:
        echo_json(details)
        return
    click.echo(json.dumps(details, indent=2, ensure_ascii=False))


@models.command()
@click.argument("name")
def rm(name):
    """Remove model NAME."""
    store().remove(validate_name(name))
    click.echo(f"Removed {name!r}.")


@models.command()
@click.argument("name")
def default(name):
    """Make NAME the model used when -m is not given."""
    store().set_default(validate_name(name))
    click.echo(f"{name!r} is now the default model.")


@models.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["arpa"]), default="arpa", show_default=True)
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
def export(name, fmt, file):
    """Write model NAME to FILE (ARPA; .gz compresses)."""
    model = store().load(validate_name(name))
    if not isinstance(model, ExportsArpa):
        raise ForetellError(f"the {model.name!r} backend cannot be exported as ARPA")
    written_whole(Path(file), model.export_arpa)
    click.echo(f"Wrote {file}.")


@models.command()
@click.argument("name")
@click.option("--name", "new_name", metavar="NEW", help="Name of the optimized copy (default: NAME-int8).")
@click.option("--check", "check_file", type=click.Path(exists=True, dir_okay=False), help="Held-out text: compare perplexity before and after.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Largest perplexity increase allowed, in percent.")
@pretokenized_option
def optimize(name, new_name, check_file, tolerance, pretokenized):
    """Save an 8-bit copy of model NAME: a network's int8 weights (smaller, faster on CPU), an
    n-gram model's probabilities and backoffs as 8-bit codes (about 6 bytes an n-gram).

    With --check, the copy is saved only if its perplexity on that text is within --tolerance
    percent of the original's. The original model is never changed."""
    model = load_model(validate_name(name))
    if not isinstance(model, Quantizable):
        raise ForetellError(f"the {model.name!r} backend has no quantized form (the neural and n-gram backends do)")
    new_name = _copy_name(name, new_name, "int8", "optimized")
    optimized = model.quantized()
    change = _perplexity_change(model, optimized, check_file, pretokenized)
    if change is not None and change > tolerance:
        raise ForetellError(f"quantization raised perplexity by {change:.2f} % (more than {tolerance:g} %); nothing saved")
    _save_copy(name, new_name, optimized)
    click.echo(f"Saved {new_name!r}: {_human(_folder_size(store().path(new_name)))} (was {_human(_folder_size(store().path(name)))}).")


def _copy_name(name: str, new_name: str | None, suffix: str, what: str) -> str:
    new_name = validate_name(new_name or f"{name}-{suffix}")
    if new_name == name:
        raise ForetellError(f"the {what} copy needs a name of its own; the original is never overwritten")
    return new_name


def _perplexity_change(model, copy, check_file, pretokenized) -> float | None:
    """With a held-out file, print both perplexities on it and return the change in percent."""
    if not check_file:
        return None
    sentences = tokenize(read_text(check_file), pretokenized)
    before, after = corpus_perplexity(model, sentences).perplexity, corpus_perplexity(copy, sentences).perplexity
    change = 100 * (after / before - 1)
    click.echo(f"perplexity on {check_file}: {before:.4f} before, {after:.4f} after ({change:+.2f} %)")
    return change


def _save_copy(name: str, new_name: str, copy) -> None:
    """Save a smaller copy of model ``name`` with its manifest's corpus and vocabulary facts."""
    manifest = store().manifest(name)
    store().save(new_name, copy, corpus=manifest.get("corpus"), vocabulary=manifest.get("vocabulary"))


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def _size_target(value: str) -> tuple[int, bool]:
    """'500000', '500k', '2M' (n-grams) or '20MB', '1.5GB' (bytes on disk): (amount, is_bytes)."""
    text = value.strip().upper().replace(" ", "")
    number = text.rstrip("KMGB")
    unit = text[len(number):]
    try:
        amount = float(number)
    except ValueError:
        amount = -1
    if unit not in _UNITS or amount <= 0:
        raise click.BadParameter(f"{value!r} is not a size: a number of n-grams (500000, 500k, 2M) or bytes on disk (20MB, 1.5GB)")
    return int(amount * _UNITS[unit]), unit.endswith("B")


def _drop_counts(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        counts = [int(v) for v in value.split(",")]
    except ValueError:
        counts = []
    if not counts or counts[0] != 0 or any(c < 0 for c in counts) or counts != sorted(counts):
        raise click.BadParameter(f"{value!r}: give one count per order from unigrams, comma-separated and non-decreasing, "
                                 "the first 0 (unigrams are the vocabulary), e.g. 0,0,1 (as lmplz --prune)")
    return counts


@models.command()
@click.argument("name")
@click.option("--to", "size", metavar="SIZE", help="Target size: n-grams (500000, 500k, 2M) or bytes on disk (20MB); relative-entropy pruning (Stolcke 1998).")
@click.option("--drop-counts", "counts", metavar="T1,T2,...", help="Instead: drop n-grams seen at most Tk times, one value per order from unigrams, the last repeating (as lmplz --prune: 0,0,1).")
@click.option("--name", "new_name", metavar="NEW", help="Name of the pruned copy (default: NAME-pruned).")
@click.option("--check", "check_file", type=click.Path(exists=True, dir_okay=False), help="Held-out text: print perplexity before and after.")
@pretokenized_option
def prune(name, size, counts, new_name, check_file, pretokenized):
    """Save a smaller copy of n-gram model NAME with fewer n-grams, its backoffs renormalised.

    Either --to a size (the n-grams that change the model least go first, as SRILM's -prune)
    or --drop-counts (rare n-grams go, as lmplz --prune). An n-gram that a kept longer one
    starts or ends with is kept. The original model is never changed."""
    if (size is None) == (counts is None):
        raise click.UsageError("give one of --to SIZE or --drop-counts T1,T2,...")
    target, min_counts = (_size_target(size) if size else None), _drop_counts(counts)
    model = load_model(validate_name(name))
    if not isinstance(model, Prunable):
        raise ForetellError(f"the {model.name!r} backend has no n-grams to prune (n-gram models do)")
    new_name = _copy_name(name, new_name, "pruned", "pruned")
    if target is not None:
        amount, is_bytes = target
        wanted = amount // model.bytes_per_ngram if is_bytes else amount
        pruned = model.pruned(ngrams=wanted)
    else:
        pruned = model.pruned(min_counts=min_counts[1:] or [0])
    _perplexity_change(model, pruned, check_file, pretokenized)
    _save_copy(name, new_name, pruned)
    was, now = pruned.facts["pruned"]["from_ngrams"], pruned.facts["ngrams"]
    if target is not None and sum(now) > wanted * 1.05:
        click.echo(f"As small as it gets: every word of the vocabulary stays, and the n-grams the rest are built on ({sum(now):,}).")
    click.echo(f"Saved {new_name!r}: {sum(now):,} n-grams ({', '.join(f'{n:,}' for n in now)} by order; was {sum(was):,}), "
               f"{_human(_folder_size(store().path(new_name)))} (was {_human(_folder_size(store().path(name)))}).")


@models.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", "plot_file", required=True, type=click.Path(dir_okay=False, writable=True), help="Image to write (.png or .svg).")
def plot(names, plot_file):
    """Draw the training curves of neural models NAMES (needs foretell[plot])."""
    try:
        from engine.plots import curves_figure, save
    except ImportError as exc:
        raise ForetellError(str(exc)) from None
    runs = []
    for name in names:
        model = store().load(validate_name(name))
        if not has_training_curves(model):
            raise ForetellError(f"{name!r} has no training curve (only neural models record one)")
        runs.append((name, model.metrics))
    try:
        save(curves_figure(runs), plot_file)
    except ValueError as exc:
        raise ForetellError(str(exc)) from None
    click.echo(f"Wrote {plot_file}.")


@models.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="Name for the imported model.")
@click.option("--format", "fmt", type=click.Choice(["arpa"]), default="arpa", show_default=True)
def import_model(file, name, fmt):
    """Import FILE (an ARPA model, e.g. from KenLM's lmplz) as NAME."""
    validate_name(name)
    cls = backend_with(ImportsArpa, "read ARPA files").cls
    model = cls.from_arpa(Path(file))
    store().save(name, model, corpus={"imported_from": Path(file).name})
    click.echo(f"Imported {file} as {name!r} (order {model.order}, vocabulary {len(model.vocab):,}).")


@click.command()
@click.option("--options", "options_of", is_flag=False, flag_value="*", default=None, metavar="[NAME]",
              help="Also list each backend's options (or only backend NAME's): name, type, default, help.")
@json_option
def backends(options_of, as_json):
    """The language-model backends found through plugins, where each came from, their options."""
    found = discovered_backends()
    if options_of not in (None, "*") and options_of not in found:
        get_backend(options_of)  # the error that names the backends there are
    chosen = sorted(found.values(), key=lambda b: b.name) if options_of in (None, "*") else [found[options_of]]
    rows = []
    for b in chosen:
        row = {"name": b.name, "distribution": b.distribution, "version": b.version, "description": _summary(b)}
        if options_of is not None:
            row["options"] = _options(b)
        rows.append(row)
    if as_json:
        echo_json({"backends": rows})
        return
    for r in rows:
        click.echo(f"{r['name']:<12} {r['distribution']} {r['version']}  {r['description']}")
        for o in r.get("options", []):
            kind = o["type"] + (" or none" if o["optional"] else "")
            default = "" if o["default"] in (None, "") else f" = {o['default']}"
            click.echo(f"    --{o['name'].replace('_', '-'):<16} {kind}{default}: {o['help']}")


def _options(backend) -> list[dict]:
    try:
        fields = option_fields(backend.cls.Options)
    except ForetellError:
        return []
    return [{"name": f.name, "type": f.type.__name__, "default": f.default, "optional": f.optional, "help": f.help} for f in fields]


def _summary(backend) -> str:
    try:
        doc = backend.cls.__doc__ or ""
    except ForetellError as exc:
        return f"(unavailable: {exc})"
    return doc.strip().splitlines()[0] if doc.strip() else ""


def register(cli):
    cli.add_command(models)
    cli.add_command(backends)

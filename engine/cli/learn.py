"""``foretell learn``, ``foretell forget`` and ``foretell models history``: online adaptation
to the user's documents, visible and exactly undoable (see engine.adaptation)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from engine.capabilities import check_can_learn
from engine.cli.common import echo_json, exclude_option, exclusions, json_option, load_model, model_option, store
from engine.corpus import find_files, read_text
from engine.errors import ForetellError, out_of_space
from engine.files import write_atomic
from engine.store import validate_name


def _model_name(name: str | None) -> str:
    """The model to adapt: NAME, or the default one (built first if need be)."""
    if name is None:
        load_model(None)  # builds the default model on first use
        return store().default_name()
    return validate_name(name)


def _key(path: str) -> str:
    return str(Path(path).resolve())


@click.command()
@model_option
@click.option("--pretokenized/--prose", default=None, help="How to read FILES (default: as the model's training text was read).")
@exclude_option
@click.argument("paths", nargs=-1, required=True)
def learn(model_name, pretokenized, exclude, paths):
    """Add what FILES (or folders) say to a model without retraining it.

    The model's own files are never rewritten: learned documents are kept beside it and can be
    listed (`foretell models history`) and removed exactly (`foretell forget`). Learning a file
    again replaces what it added before. Nothing is learned while incognito is on."""
    s = store()
    if s.incognito():
        raise ForetellError("incognito is on: nothing is learned (`foretell incognito off` to learn again)")
    name = _model_name(model_name)
    base = s.load(name, adapted=False)
    check_can_learn(base)
    if pretokenized is None:
        pretokenized = bool(s.manifest(name).get("corpus", {}).get("pretokenized", False))
    files, skipped = find_files(list(paths), exclusions(exclude))
    for skip in skipped:
        click.echo(f"skipped {skip.path}: {skip.reason}", err=True)
    layer = s.layer(name)
    failed = 0
    for path in files:
        try:
            text = read_text(str(path))
            entry = layer.learn(_key(str(path)), text, base, pretokenized)
        except (ForetellError, OSError) as exc:
            if isinstance(exc, OSError) and out_of_space(exc):
                raise  # not this file's fault: the CLI says the disk is full
            click.echo(f"skipped {path}: {exc}", err=True)
            failed += 1
            continue
        if entry is None:
            click.echo(f"{path}: already learned, unchanged")
            continue
        verb = "relearned" if entry["replaced"] else "learned"
        counts = ", ".join(_counted(entry[key], noun) for key, noun in (("sentences", "sentence"), ("tokens", "token"), ("new_words", "new word")))
        click.echo(f"{path}: {verb} {counts}")
    if failed == len(files):
        raise ForetellError("nothing was learned: no readable text among the paths given")
    model = s.load(name)
    click.echo(f"{name!r} now includes {len(layer.documents())} learned document(s); vocabulary {len(base.vocab):,} -> {len(model.vocab):,}.")


@click.command()
@model_option
@click.option("--all", "forget_all", is_flag=True, help="Forget every learned document.")
@click.argument("paths", nargs=-1)
def forget(model_name, forget_all, paths):
    """Remove exactly what FILES added to a model (as if it had never learned them)."""
    if not paths and not forget_all:
        raise ForetellError("name the files to forget, or pass --all")
    name = _model_name(model_name)
    layer = store().layer(name)
    if forget_all:
        gone = layer.forget(None)  # clears any layer, however damaged, without needing to read it
    else:
        known = {d["key"] for d in layer.documents()}
        gone = layer.forget([p if p in known else _key(p) for p in paths])
    for entry in gone:
        click.echo(f"forgot {entry['key']} ({entry['tokens']:,} tokens)")
    click.echo(f"{name!r} now includes {len(layer.documents())} learned document(s).")


@click.command()
@click.argument("name")
@json_option
@click.option("--export", "export_file", type=click.Path(dir_okay=False, writable=True), help="Write the layer (entries and learned sentences) as JSON.")
def history(name, as_json, export_file):
    """The documents model NAME has learned: when, and how much each added."""
    s = store()
    layer = s.layer(validate_name(name))
    documents = layer.documents()
    if export_file:
        write_atomic(Path(export_file), json.dumps(layer.export(s.load(name, adapted=False)), ensure_ascii=False, indent=1))
        click.echo(f"Wrote {export_file}.")
        return
    if as_json:
        echo_json({"model": name, "documents": [{k: v for k, v in d.items() if k != "file"} for d in documents]})
        return
    if not documents:
        click.echo(f"{name!r} has learned nothing beyond its training text.")
        return
    for d in documents:
        click.echo(f"{d['learned'][:19]}  {d['tokens']:>9,} tokens  {d['sentences']:>7,} sentences  {d['new_words']:>5,} new words  {d['key']}")


def register(cli):
    from engine.cli.models import models

    cli.add_command(learn)
    cli.add_command(forget)
    models.add_command(history)


def _counted(n: int, noun: str) -> str:
    """'1 sentence', '2 sentences', '1,000 tokens'."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")

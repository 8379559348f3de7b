"""``foretell incognito`` and ``foretell exclude``: what never goes into a model (engine.privacy)."""

from __future__ import annotations

import click

from engine.cli.common import echo_json, json_option, store
from engine.errors import ForetellError
from engine.privacy import check_patterns


@click.command()
@click.argument("switch", required=False, type=click.Choice(["on", "off"]))
def incognito(switch):
    """Stop all learning at once (on), or allow it again (off); without SWITCH, say which.

    While on, `foretell learn` refuses and the language server learns nothing on save, whatever
    its settings. Training a model with `foretell train` is still yours to ask for."""
    s = store()
    if switch is not None:
        s.set_incognito(switch == "on")
    if s.incognito():
        click.echo("Incognito is on: nothing you write is learned (`foretell incognito off` to learn again).")
    else:
        click.echo("Incognito is off: `foretell learn` and learning on save (when enabled) add to your models.")


@click.group()
def exclude():
    """Files that are never trained on or learned: glob patterns kept for every command and the
    language server. A pattern without a slash names a file or folder anywhere (`private`,
    `*.journal`); one with a slash matches the path (`~/mail/*`)."""


@exclude.command("add")
@click.argument("patterns", nargs=-1, required=True)
def add(patterns):
    """Exclude files matching PATTERNS from now on."""
    s = store()
    current = s.exclusions()
    s.set_exclusions(current + [p for p in check_patterns(patterns) if p not in current])
    _show(s.exclusions())


@exclude.command("remove")
@click.argument("patterns", nargs=-1, required=True)
def remove(patterns):
    """Stop excluding PATTERNS (as listed by `foretell exclude list`)."""
    s = store()
    current = s.exclusions()
    unknown = [p for p in patterns if p not in current]
    if unknown:
        raise ForetellError(f"not in the exclusion list: {', '.join(map(repr, unknown))} (see `foretell exclude list`)")
    s.set_exclusions([p for p in current if p not in patterns])
    _show(s.exclusions())


@exclude.command("list")
@json_option
def list_(as_json):
    """The exclusion patterns."""
    patterns = store().exclusions()
    if as_json:
        echo_json({"exclude": patterns})
    else:
        _show(patterns)


def _show(patterns: list[str]) -> None:
    if not patterns:
        click.echo("No exclusion patterns: every readable file you name is used (secrets are always left out).")
    for pattern in patterns:
        click.echo(pattern)


def register(cli):
    cli.add_command(incognito)
    cli.add_command(exclude)

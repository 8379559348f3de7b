"""``foretell mix``: an interpolated mixture of trained models, weights fitted by EM."""

from __future__ import annotations

import click

from engine.capabilities import CombinesModels, backend_with
from engine.cli.common import echo_json, json_option, pretokenized_option, store
from engine.corpus import read_text
from engine.errors import ForetellError
from engine.scoring import encode
from engine.store import validate_name
from engine.tokenizer import tokenize


@click.command()
@click.option("--name", required=True, help="Name to save the mixture under.")
@click.option("--fit", "fit_files", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="Held-out text (not used to train the parts) to fit the weights on; repeatable.")
@pretokenized_option
@json_option
@click.argument("models", nargs=-1, required=True)
def mix(name, fit_files, pretokenized, as_json, models):
    """Save MODELS' interpolation as one model, weights fitted by EM on --fit text.

    The mixture refers to its parts by name and uses them as they are when it is loaded
    (including what they have learned); use it with -m NAME like any model."""
    validate_name(name)
    names = [validate_name(m) for m in models]
    if len(set(names)) < 2:
        raise ForetellError("name at least two different models to mix")
    if name in names:
        raise ForetellError("a mixture cannot be saved under the name of one of its parts")
    s = store()
    cls = backend_with(CombinesModels, "mix models").cls
    union = cls.combine(s.load_parts(names), names)
    sentences = [sentence for path in fit_files for sentence in tokenize(read_text(path), pretokenized)]
    model, report = union.fitted(encode(union, sentences))
    s.save(name, model, corpus={"fitted_on": list(fit_files), "tokens": report["tokens"]})
    if as_json:
        echo_json({"model": name, **report})
        return
    for part in report["parts"]:
        click.echo(f"  {part['name']:<20} weight {part['weight']:.4f}  perplexity {part['perplexity']:10.2f}")
    click.echo(f"Saved mixture {name!r}: perplexity {report['perplexity']:.2f} on {report['tokens']:,} held-out tokens "
               f"(EM, {report['iterations']} iterations).")


def register(cli):
    cli.add_command(mix)

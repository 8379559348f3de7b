"""``foretell diagnose gradients``: the vanishing gradient of recurrent models, measured."""

from __future__ import annotations

import click
import numpy as np

from engine.capabilities import DiagnosesGradients, has_training_curves
from engine.cli.common import echo_json, json_option, load_model, pretokenized_option
from engine.corpus import read_text
from engine.errors import ForetellError
from engine.model import options_to_dict
from engine.scoring import encode
from engine.tokenizer import tokenize


@click.group()
def diagnose():
    """Look inside a model."""


@diagnose.command()
@click.option("-m", "--model", "model_names", metavar="NAME", multiple=True, required=True, help="A recurrent model; repeat to compare (e.g. Elman and LSTM).")
@click.option("--distance", type=click.IntRange(1, 500), default=50, show_default=True, help="Largest distance k, in steps.")
@click.option("--samples", type=click.IntRange(1, 100000), default=256, show_default=True, help="Positions averaged over.")
@click.option("-o", "--output", "plot_file", type=click.Path(dir_okay=False, writable=True), help="Plot the norms on a log scale (.png/.svg; needs foretell[plot]).")
@pretokenized_option
@json_option
@click.argument("file")
def gradients(model_names, distance, samples, plot_file, pretokenized, as_json, file):
    """Gradient norm of the loss at step t with respect to the hidden state at step t-k.

    A tanh (Elman) network's signal typically shrinks by orders of magnitude within a few dozen
    steps; an LSTM's much less. Also reports how often clipping fired in training and the
    gradient norms it saw."""
    text = read_text(file)
    results = []
    for name in model_names:
        model = load_model(name)
        if not isinstance(model, DiagnosesGradients):
            raise ForetellError(f"{name!r} is a {model.name!r} model; gradients through time need a recurrent (rnn) model")
        try:
            norms = model.gradient_norms(encode(model, tokenize(text, pretokenized)), distance, samples)
        except ValueError as exc:
            raise ForetellError(f"{file}: {exc}") from None
        results.append({"model": name, "cell": options_to_dict(model.options).get("cell", model.name), "norms": [float(x) for x in norms], "training": _training(model)})
    if plot_file:
        try:
            from engine.plots import gradient_figure, save
        except ImportError as exc:
            raise ForetellError(str(exc)) from None
        save(gradient_figure([(f"{r['model']} ({r['cell']})", r["norms"]) for r in results]), plot_file)
    if as_json:
        echo_json({"distance": distance, "results": results})
        return
    header = "".join(f"{r['model'] + ' (' + r['cell'] + ')':>22}" for r in results)
    click.echo(f"{'k':>4}{header}    mean |d loss_t / d h_(t-k)|")
    for k in sorted({0, 1, 2, 5, *range(10, distance + 1, 10), distance}):
        click.echo(f"{k:>4}" + "".join(f"{r['norms'][k]:>22.3e}" for r in results))
    for r in results:
        decay = r["norms"][distance] / r["norms"][0] if r["norms"][0] else float("nan")
        click.echo(f"{r['model']}: the signal from {distance} steps back is {decay:.2e} of the last step's")
        t = r["training"]
        if t:
            click.echo(f"  training: clipping fired on {t['clipped_share']:.0%} of steps; gradient norm before clipping "
                       f"mean {t['grad_norm_mean']:.3g}" + (f", per-epoch 10-90% range {t['p10']:.3g}-{t['p90']:.3g}, max {t['max']:.3g}" if "p10" in t else ""))
    if plot_file:
        click.echo(f"Wrote {plot_file}.")


def _training(model) -> dict:
    """Clipping and gradient-norm figures over the model's whole training."""
    if not has_training_curves(model):
        return {}
    rows = model.metrics
    out = {"clipped_share": float(np.mean([r["clipped_share"] for r in rows])), "grad_norm_mean": float(np.mean([r["grad_norm_mean"] for r in rows]))}
    if "grad_norm_p10" in rows[0]:
        out.update({"p10": min(r["grad_norm_p10"] for r in rows), "p90": max(r["grad_norm_p90"] for r in rows), "max": max(r["grad_norm_max"] for r in rows)})
    return out


def register(cli):
    cli.add_command(diagnose)

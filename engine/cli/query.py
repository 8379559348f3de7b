"""The commands that use a model: predict, score, perplexity, evaluate, generate."""

from __future__ import annotations

import math
import sys
# (tempfile: imported in the functions that use them; foretell's start-up needs none of them)
from pathlib import Path

import click
import numpy as np

from engine.adaptation import AdaptationLayer
from engine.capabilities import check_can_learn, has_training_curves
from engine.cli.common import bucket_colour, echo_json, json_text, json_option, load_model, model_option, pretokenized_option, use_colour
from engine.complete import predict as predict_words
from engine.corpus import clean_argument, iter_line_blocks, iter_lines, open_input, read_text
from engine.distribution import LOG2E
from engine.errors import ForetellError
from engine.files import write_atomic
from engine.evaluate import evaluate as evaluate_model
from engine.generate import check_sampling, detokenize, generate as generate_tokens
from engine.scoring import Perplexity, encode_lines, id_batches, perplexity_of_bits, perplexity_of_ids, perplexity_of_words, pretokenized_batches, scored_batches, token_batches
from engine.table import ascii_compatible, score_rows, tsv_row
from engine.tokenizer import iter_columns, iter_words, tokenize

HTML_LIMIT = 20_000_000  # characters for --html: its page holds every token (and the text) at once
LINES_READ = 1 << 19  # characters of pretokenized text split and looked up at once (about 100,000 tokens)


def _model_name(model) -> str:
    return model.model_name or "?"


@click.command()
@model_option
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many predictions.")
@json_option
@click.argument("text")
def predict(model_name, k, as_json, text):
    """Next words after TEXT if it ends in a space, else completions of its last, partial word."""
    model = load_model(model_name)
    text = clean_argument(text)
    result = predict_words(model, text, k)
    rows = [{"token": t, "prob": math.exp(lp), "surprisal_bits": -lp * LOG2E} for t, lp in result.predictions]
    if as_json:
        context = " ".join(t.text for t in result.context)
        echo_json({"model": _model_name(model), "context": context, "prefix": result.prefix, "predictions": rows})
        return
    if not rows:
        click.echo(f"No word in the vocabulary starts with {result.prefix!r}.")
    width = max((len(r["token"]) for r in rows), default=0)
    for i, r in enumerate(rows, start=1):
        click.echo(f"{i:3}. {r['token']:<{width}}  p={r['prob']:.4f}  {r['surprisal_bits']:5.2f} bits")


@click.command()
@click.option("-m", "--model", "model_names", metavar="NAME", multiple=True, help="Model to use (default: the default model); with --html, repeat to compare two.")
@json_option
@pretokenized_option
@click.option("--color/--no-color", "colour", default=None, help="Colour tokens by rank (default: on a terminal).")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True), help="Write a self-contained report page to this file.")
@click.argument("file", default="-")
def score(model_names, as_json, pretokenized, colour, html_file, file):
    """Score every token of FILE ('-' for standard input): surprisal, rank, entropy.

    Text of any length is read and scored a batch of sentences at a time (--html, whose page
    holds every token, takes up to 20 million characters)."""
    if html_file:
        text = read_text(file)
        if len(text) > HTML_LIMIT:
            raise ForetellError(f"--html takes up to {HTML_LIMIT:,} characters (the page holds every token); this text has {len(text):,}")
        write_report(model_names, text, pretokenized, html_file, title='standard input' if file == '-' else Path(file).name)
        return
    if len(model_names) > 1:
        raise ForetellError("one model at a time, except with --html (which compares two)")
    model = load_model(model_names[0] if model_names else None)
    with open_input(file) as f:
        colour = use_colour(colour) and not as_json
        if pretokenized and not colour:
            batches = pretokenized_batches(model.vocab, iter_line_blocks(f, LINES_READ))
        else:
            lines = RecordedLines(iter_lines(f)) if colour else iter_lines(f)  # colour prints the text around tokens
            batches = token_batches(model.vocab, iter_columns(lines, pretokenized))
        scores = Totals(scored_batches(model, batches))
        if as_json:
            click.echo(f'{{"model": {json_text(_model_name(model))}, "tokens": [', nl=False)
            for n, batch in enumerate(scores):
                click.echo((", " if n else "") + _json_rows(batch), nl=False)
            click.echo(f'], "perplexity": {json_text(scores.perplexity)}}}')
            return
        if colour:
            for batch in scores:
                for start, end, rank, oov in zip(batch.starts.tolist(), batch.ends.tolist(), batch.rank.tolist(), batch.oov.tolist()):
                    if start >= 0:
                        click.echo(lines.take(start) + click.style(lines.take(end), fg=bucket_colour(rank), underline=oov), nl=False, color=True)
            click.echo(lines.rest().rstrip("\n"), color=True)
            legend = "  ".join(click.style(label, fg=c) for label, c in (("top 10", "green"), ("top 100", "yellow"), ("top 1000", "red"), ("beyond", "magenta")))
            click.echo(f"\nrank: {legend}  (underlined: out of vocabulary)", color=True)
        else:
            click.echo("token\tstart\tend\tsurprisal_bits\trank\tentropy_bits\toov")
            encoding, errors = getattr(sys.stdout, "encoding", None) or "utf-8", getattr(sys.stdout, "errors", None) or "strict"
            by_numpy = ascii_compatible(encoding)
            for batch in scores:
                if by_numpy:
                    click.echo(score_rows(batch.tokens, batch.starts, batch.ends, batch.surprisal_bits, batch.rank, batch.entropy_bits, batch.oov, encoding, errors), nl=False)
                else:
                    click.echo("".join(map(tsv_row, batch.tokens, batch.starts.tolist(), batch.ends.tolist(), batch.surprisal_bits.tolist(),
                                           batch.rank.tolist(), batch.entropy_bits.tolist(), batch.oov.tolist())), nl=False)
    click.echo(f"{scores.tokens:,} tokens ({scores.oov} OOV), {scores.bits:.1f} bits, perplexity {scores.perplexity:.2f}, model {_model_name(model)}")


_JSON_ROW = '{{"token": {}, "start": {}, "end": {}, "logprob": {}, "surprisal_bits": {}, "rank": {}, "entropy_bits": {}, "oov": {}}}'
_JSON_BOOL = {True: "true", False: "false"}


def _json_rows(batch) -> str:
    """A batch's token objects as JSON text, joined by ", ", as ``json_text`` writes them
    (non-finite numbers as null, always valid UTF-8), without building a dict a token: each
    column made text by C functions over all its values (a ``json.dumps`` and three ``repr``
    calls a row took 1.7 microseconds)."""
    from json.encoder import encode_basestring  # (what json.dumps uses for a string, ensure_ascii=False)

    def texts(values, null):
        out = list(map(repr, values.tolist()))
        for i in np.flatnonzero(null).tolist():
            out[i] = "null"
        return out

    numbers = lambda values: texts(values, ~np.isfinite(values))
    offsets = lambda values: texts(values, values < 0)
    rows = map(_JSON_ROW.format, map(encode_basestring, batch.tokens), offsets(batch.starts), offsets(batch.ends), numbers(batch.logprob),
               numbers(batch.surprisal_bits), map(repr, batch.rank.tolist()), numbers(batch.entropy_bits), map(_JSON_BOOL.__getitem__, batch.oov.tolist()))
    return ", ".join(rows).encode("utf-8", "replace").decode("utf-8")


class Totals:
    """Scored batches passed through, counted on the way: the summary line needs no list."""

    def __init__(self, batches):
        self._batches = batches
        self.tokens = self.oov = 0
        self.bits = 0.0

    def __iter__(self):
        for batch in self._batches:
            self.tokens += len(batch)
            self.oov += int(batch.oov.sum())
            self.bits += float(batch.surprisal_bits.sum())
            yield batch

    @property
    def perplexity(self) -> float:
        return perplexity_of_bits(self.bits, self.tokens)


class RecordedLines:
    """Lines as they stream past, kept only until the text up to an offset has been taken
    (colour output prints the text around each token)."""

    def __init__(self, lines):
        self._lines = lines
        self._pending: list[str] = []
        self._text = ""
        self._start = 0  # offset of self._text[0] in the whole input
        self._pos = 0  # offset taken up to

    def __iter__(self):
        for line in self._lines:
            self._pending.append(line)
            yield line

    def take(self, end: int) -> str:
        """The text from where the last take ended up to offset ``end``."""
        if end - self._start > len(self._text):
            self._text += "".join(self._pending)
            self._pending.clear()
        piece = self._text[self._pos - self._start : end - self._start]
        self._pos = end
        if self._pos - self._start > len(self._text) // 2:
            self._text, self._start = self._text[self._pos - self._start :], self._pos
        return piece

    def rest(self) -> str:
        return self.take(self._start + len(self._text) + sum(map(len, self._pending)))


def write_report(model_names, text, pretokenized, html_file, title) -> None:
    from engine.report import check_same_tokens, model_report, render

    if len(model_names) > 2:
        raise ForetellError("the report compares two models at most")
    reports, curves = [], None
    for name in model_names or (None,):
        model = load_model(name)
        reports.append(model_report(model, _model_name(model), text, pretokenized))
        if curves is None and has_training_curves(model):
            curves = training_curves_svg(model)
    check_same_tokens(reports)
    write_atomic(Path(html_file), render(text, reports, f"foretell: {title}", curves))
    summary = "; ".join(f"{r['name']} perplexity {r['perplexity']:.2f}" for r in reports)
    click.echo(f"Wrote {html_file} ({len(reports[0]['bits']):,} words; {summary}).")


def training_curves_svg(model) -> str | None:
    """The model's training curves as inline SVG, when matplotlib is installed."""
    try:
        from engine.plots import curves_figure, svg_of
    except ImportError:
        return None
    return svg_of(curves_figure([(_model_name(model), model.metrics)]))


@click.command()
@model_option
@json_option
@pretokenized_option
@click.argument("files", nargs=-1, required=True)
def perplexity(model_name, as_json, pretokenized, files):
    """Perplexity of FILES with KenLM's conventions (</s> counted, OOVs as <unk>)."""
    model = load_model(model_name)
    total = Perplexity()
    per_file = []
    for path in files:
        with open_input(path) as f:
            if pretokenized:
                result = perplexity_of_ids(model, id_batches(encode_lines(model.vocab, block) for block in iter_line_blocks(f, LINES_READ)))
            else:
                result = perplexity_of_words(model, iter_words(iter_lines(f)))
        total.add(result)
        per_file.append((path, result))
    if as_json:
        echo_json({"model": _model_name(model), "backend": model.name, **total.as_dict()})
        return
    for path, r in per_file + ([("total", total)] if len(files) > 1 else []):
        click.echo(
            f"{path}: perplexity {r.perplexity:.4f} (excluding OOVs {r.perplexity_excluding_oov:.4f}), "
            f"{r.sentences:,} sentences, {r.tokens:,} tokens, {r.oov:,} OOV"
        )


@click.command()
@click.option("-m", "--model", "model_names", metavar="NAME", multiple=True, help="Model to evaluate; repeat to compare several in one table.")
@json_option
@pretokenized_option
@click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True, help="Completions offered per keystroke.")
@click.option("--history", "history_files", metavar="FILE", multiple=True,
              help="Text the user wrote before, read into the model's state but not typed (repeat for several files).")
@click.option("--learn-as-you-go", "learn_as_you_go", is_flag=True, help="Learn each FILE once it is typed, as saving it in the editor does.")
@click.argument("files", nargs=-1, required=True)
def evaluate(model_names, as_json, pretokenized, k, history_files, learn_as_you_go, files):
    """Perplexity, next-word accuracy and keystroke savings on held-out FILES.

    Keystroke savings: a simulated typist is offered the top K completions before each
    keystroke (the next word after a space, the rest of a word inside one; at each letter, new
    words before those offered at the letters before, as Presage and the editor offer them) and
    accepts a correct one with a single keystroke; the figure is the share of characters not
    typed. "autospace"
    is Presage's convention: words only (no punctuation), the space after each counts, and
    accepting inserts it. At a sentence start that takes a capital, as the text's previous
    sentence does, words are offered capitalised, as the editor offers them.
    "phrases" also offers the inline continuation an editor shows (up to four more words), which
    one keystroke accepts when all of it is right.

    The FILES are typed in turn, the model's state (a cache's words, a recurrent network's
    memory) running on from one into the next, after the --history files are read."""
    import tempfile
    texts = [read_text(path) for path in files]
    documents = [tokenize(text, pretokenized) for text in texts]
    history = [s for path in history_files for s in tokenize(read_text(path), pretokenized)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="foretell-evaluate-") as scratch:  # --learn-as-you-go's layers: never the store's
        for n, name in enumerate(model_names or (None,)):
            model = load_model(name)
            learn = None
            if learn_as_you_go:
                check_can_learn(model)
                learn = AdaptationLayer(Path(scratch), f"model-{n}").rehearsal(model, texts, pretokenized)
            figures = evaluate_model(model, documents, k, history, learn).as_dict()
            rows.append({"model": _model_name(model), "backend": model.name, **figures})
    if as_json:
        keys = ("model", "backend", "perplexity", "top1_accuracy", "top5_accuracy", "keystroke_savings", "keystroke_savings_autospace",
                "keystroke_savings_phrases", "keystroke_savings_phrases_autospace", "tokens", "characters", "keystrokes", "autospace_characters",
                "autospace_keystrokes", "phrase_keystrokes", "autospace_phrase_keystrokes")
        objects = [{key: r[key] for key in keys} | {"k": k} for r in rows]
        echo_json(objects[0] if len(objects) == 1 else {"models": objects})
        return
    width = max(len(r["model"]) for r in rows) + 2
    click.echo(f"{'model':<{width}}{'backend':<9}{'perplexity':>11}{'top-1':>8}{'top-5':>8}{'keystroke savings':>19}{'autospace':>11}{'phrases':>9}")
    for r in rows:
        click.echo(f"{r['model']:<{width}}{r['backend']:<9}{r['perplexity']:>11.2f}{r['top1_accuracy']:>8.1%}{r['top5_accuracy']:>8.1%}"
                   f"{r['keystroke_savings']:>19.1%}{r['keystroke_savings_autospace']:>11.1%}{r['keystroke_savings_phrases']:>9.1%}")
    r = rows[-1]
    click.echo(f"{r['tokens']:,} tokens; {r['characters']:,} characters of words; k={k}")


@click.command()
@model_option
@click.option("--prompt", default="", help="Text to continue.")
@click.option("-n", "n", type=click.IntRange(1, 100000), default=30, show_default=True, help="Tokens to generate.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="0 is greedy; higher is more random.")
@click.option("--top-k", type=int, default=0, show_default=True, help="Sample among the k most probable (0: all).")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="Sample within this much probability mass.")
@click.option("--seed", type=int, help="Seed for a reproducible sample.")
def generate(model_name, prompt, n, temperature, top_k, top_p, seed):
    """Generate text, optionally continuing --prompt."""
    check_sampling(temperature, top_k, top_p)
    model = load_model(model_name)
    prompt = clean_argument(prompt)
    tokens = generate_tokens(model, prompt, n, temperature, top_k, top_p, seed)
    click.echo(prompt + detokenize(tokens, after=prompt))


def register(cli):
    for command in (predict, score, perplexity, evaluate, generate):
        cli.add_command(command)

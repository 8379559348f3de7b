"""Helpers the CLI commands share: the store, model loading, JSON and colours."""

from __future__ import annotations

import json
import math
import sys

import click

from engine.default_model import load_model as _load_model
from engine.distribution import rank_buckets
from engine.privacy import check_patterns
from engine.store import ModelStore

model_option = click.option("-m", "--model", "model_name", metavar="NAME", help="Model to use (default: the default model).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
pretokenized_option = click.option(
    "--pretokenized", is_flag=True, help="One sentence a line, tokens split on spaces (as KenLM reads text)."
)


exclude_option = click.option(
    "--exclude", "exclude", multiple=True, metavar="GLOB",
    help="Leave out files matching GLOB (repeatable), besides those of `foretell exclude`.",
)


def exclusions(extra=()) -> list[str]:
    """The user's exclusion patterns (`foretell exclude`) and those given with --exclude."""
    return store().exclusions() + check_patterns(extra)


def store() -> ModelStore:
    return ModelStore()


def load_model(name: str | None):
    return _load_model(store(), name, notify=lambda msg: click.echo(msg, err=True))


def _clean(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def json_text(obj) -> str:
    """``obj`` as JSON, non-finite numbers as null, always valid UTF-8 (inputs are cleaned on
    the way in; this is the net)."""
    return json.dumps(_clean(obj), ensure_ascii=False).encode("utf-8", "replace").decode("utf-8")


def echo_json(obj) -> None:
    click.echo(json_text(obj))


# GLTR's buckets (engine.distribution.rank_buckets): where the word ranked in the prediction.
BUCKET_COLOURS = ("green", "yellow", "red", "magenta")


def bucket_colour(rank: int) -> str:
    return BUCKET_COLOURS[int(rank_buckets(rank))]


def use_colour(flag: bool | None) -> bool:
    return sys.stdout.isatty() if flag is None else flag

"""The n-gram backend, registered through the ``foretell`` entry point like any plugin."""

from engine.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    register("ngram", "plugins.ngram.model:NgramModel")  # (imported when a model of it is used)

"""The n-gram backend, registered through the ``foretell`` entry point like any plugin."""

from engine.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    from plugins.ngram.model import NgramModel

    register(NgramModel)

"""The cache backend (recency model), registered through the ``foretell`` entry point."""

from engine.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    from plugins.cache.model import CacheModel

    register(CacheModel)

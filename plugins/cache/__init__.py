"""The cache backend (recency model), registered through the ``foretell`` entry point."""

from engine.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    register("cache", "plugins.cache.model:CacheModel")  # (imported when a model of it is used)

"""The fixed-window neural backend (torch), registered through the ``foretell`` entry point.
Registered by name so that torch is imported only when this backend is used."""

from engine.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    register("window", "plugins.window.model:WindowModel")

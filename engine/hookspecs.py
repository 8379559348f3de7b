"""The hooks a foretell plugin can implement (entry-point group ``foretell``)."""

import pluggy

hookspec = pluggy.HookspecMarker("foretell")
hookimpl = pluggy.HookimplMarker("foretell")


@hookspec
def register_backends(register):
    """Register language-model backends: call ``register(BackendClass)`` for each, or
    ``register("name", "module:Class")`` to import the class only when the backend is used."""

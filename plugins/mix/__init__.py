"""The mixture backend (interpolated models), registered through the ``foretell`` entry point."""

from engine.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    register("mix", "plugins.mix.model:MixtureModel")  # (imported when a model of it is used)

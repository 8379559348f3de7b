"""The mixture backend (interpolated models), registered through the ``foretell`` entry point."""

from engine.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    from plugins.mix.model import MixtureModel

    register(MixtureModel)

"""The plugin manager, built on first use (never at import) from the ``foretell`` entry points.

``FORETELL_LOAD_PLUGINS`` (comma-separated entry-point names) limits which plugins load, for
debugging; set it to an empty string to load none.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from engine import hookspecs
from engine.entry_points import entry_points
from engine.errors import ForetellError

ENTRY_POINT_GROUP = "foretell"

_manager: pluggy.PluginManager | None = None
_declared_in: dict[str, str] = {}  # plugin name -> the metadata folder of its entry point


@dataclass
class BackendInfo:
    name: str
    target: object  # the class, or "module:Class" imported on first use
    plugin: object = field(repr=False)  # what registered it

    @functools.cached_property
    def origin(self) -> tuple[str, str]:
        """(distribution, version) it came from: read from the installed metadata only when
        asked (parsing every plugin's metadata cost each command's start-up 15-25 ms)."""
        return _origin(get_plugin_manager(), self.plugin)

    @property
    def distribution(self) -> str:
        return self.origin[0]

    @property
    def version(self) -> str:
        return self.origin[1]

    @property
    def cls(self) -> type:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            try:
                self.target = getattr(importlib.import_module(module), attr)
            except ImportError as exc:
                raise ForetellError(f"the {self.name!r} backend cannot load: {exc} (is its dependency installed?)") from None
        return self.target


def _load_entry_points(pm: pluggy.PluginManager, allowed: set[str] | None) -> None:
    """Register the ``foretell`` entry points (only those named in ``allowed``, when given)."""
    found = entry_points(ENTRY_POINT_GROUP)
    if found is None:  # (metadata engine.entry_points does not read: importlib.metadata's way)
        _load_through_importlib(pm, allowed)
        return
    for ep in found:
        if (allowed is None or ep.name in allowed) and pm.get_plugin(ep.name) is None:
            pm.register(ep.load(), name=ep.name)
            _declared_in[ep.name] = ep.distribution


def _load_through_importlib(pm: pluggy.PluginManager, allowed: set[str] | None) -> None:
    if allowed is None:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        return
    from importlib import metadata

    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in allowed and pm.get_plugin(ep.name) is None:
            pm.register(ep.load(), name=ep.name)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading entry points the first time it is asked for."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        pm.add_hookspecs(hookspecs)
        allow = os.environ.get("FORETELL_LOAD_PLUGINS")
        _load_entry_points(pm, None if allow is None else {n.strip() for n in allow.split(",") if n.strip()})
        _manager = pm
    return _manager


def reset_plugin_manager() -> None:
    """Forget the manager so the next call rediscovers plugins (tests use this)."""
    global _manager
    _manager = None
    _declared_in.clear()


def _origin(pm: pluggy.PluginManager, plugin) -> tuple[str, str]:
    for plugin_obj, dist in pm.list_plugin_distinfo():
        if plugin_obj is plugin:
            return dist.project_name, dist.version
    folder = _declared_in.get(pm.get_name(plugin) or "")
    if folder is not None:
        from importlib import metadata

        dist = metadata.PathDistribution(Path(folder))
        return dist.metadata["Name"] or Path(folder).name, dist.version or "-"
    module = getattr(plugin, "__name__", None) or type(plugin).__module__
    return f"registered in-process ({module})", "-"


def backends() -> dict[str, BackendInfo]:
    """Every registered backend by name, with the distribution and version it came from."""
    pm = get_plugin_manager()
    found: dict[str, BackendInfo] = {}
    for impl in pm.hook.register_backends.get_hookimpls():

        def register(cls, target=None, _plugin=impl.plugin):
            """``register(Class)``, or ``register("name", "module:Class")`` to defer the import
            (a backend whose module pulls in torch costs nothing until it is used)."""
            name = cls if isinstance(cls, str) else getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise ForetellError(f"a backend class from {_origin(pm, _plugin)[0]} has no name attribute")
            found.setdefault(name, BackendInfo(name, target if isinstance(cls, str) else cls, _plugin))

        impl.function(register=register)
    return found


def get_backend(name: str) -> BackendInfo:
    """The backend called ``name``, or a clear error naming the ones that exist."""
    found = backends()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        hint = ""
        if os.environ.get("FORETELL_LOAD_PLUGINS") is not None:
            hint = " (FORETELL_LOAD_PLUGINS limits which plugins load)"
        raise ForetellError(f"unknown backend {name!r}; available backends: {known}{hint}")
    return found[name]

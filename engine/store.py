"""The model store: one folder per model under ``FORETELL_HOME`` (or the platform's user data
folder), saved atomically so that a crash, Ctrl-C or a concurrent training never leaves a
half-written or mixed model where a good one was.

Layout: ``ROOT/models/NAME/{manifest.json, vocab.json, <backend arrays>}``, ``ROOT/config.json``.
Folders are created readable by the user only.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
# (shutil, tempfile: imported in the functions that use them; foretell's start-up needs none of them)
import time
from pathlib import Path

from engine import __version__
from engine.adaptation import AdaptationLayer
from engine.capabilities import CombinesModels
from engine.checked import forget as forget_checked
from engine.errors import ForetellError, ModelFormatError
from engine.files import locked, read_json, regular_file, write_atomic
from engine.model import LanguageModel, options_from_strings, options_to_dict
from engine.plugins import get_backend
from engine.vocab import Vocabulary

MANIFEST = "manifest.json"
FORMAT = "foretell-model"
FORMAT_VERSION = 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SCRATCH = ".scratch-"  # then the training's pid: a folder of the store's work/ for intermediate files
DEFAULT_MODEL = "default"
MANIFEST_BYTES = 16 << 20


def home() -> Path:
    root = os.environ.get("FORETELL_HOME")
    if root:
        return Path(root).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("foretell"))


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise ForetellError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (up to 64), no paths"
        )
    return name


def _private_mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)


class ModelStore:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else home()
        self.models = self.root / "models"

    # -- names and paths -------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.models / validate_name(name)

    def exists(self, name: str) -> bool:
        return self._found(name, self.path(name) / MANIFEST, Path.is_file)

    def _found(self, name: str, path: Path, there=Path.exists) -> bool:
        """Whether ``path`` in model ``name``'s folder is ``there``, looked at again after a
        swap in progress is waited out (``_recover``) when it is not."""
        if there(path):
            return True
        self._recover(name)
        return there(path)

    def workdir(self, name: str) -> Path:
        """A private folder for a training's checkpoints (kept if it is interrupted)."""
        return self.root / "work" / validate_name(name)

    def names(self) -> list[str]:
        if not self.models.is_dir():
            return []
        self._sweep()
        # Any folder with a manifest entry, even one that cannot be read: `models list` shows it as unreadable.
        return sorted(p.name for p in self.models.iterdir() if not p.name.startswith(".") and os.path.lexists(p / MANIFEST))

    # -- default model ---------------------------------------------------------------------
    def _config(self) -> dict:
        try:
            config = read_json(self.root / "config.json", "the store's config.json", limit=1 << 20)
            return config if isinstance(config, dict) else {}
        except (OSError, ForetellError):
            return {}

    def default_name(self) -> str:
        name = self._config().get("default_model", DEFAULT_MODEL)
        return name if isinstance(name, str) else DEFAULT_MODEL

    def set_default(self, name: str) -> None:
        if not self.exists(name):
            raise ForetellError(f"no model named {name!r}; see `foretell models list`")
        self._set_config("default_model", name)

    def _set_config(self, key: str, value) -> None:
        config = self._config()
        config[key] = value
        _private_mkdir(self.root)
        write_atomic(self.root / "config.json", json.dumps(config, indent=2))

    # -- privacy (engine.privacy) ------------------------------------------------------------
    def exclusions(self) -> list[str]:
        """The user's exclusion patterns: files matching one are never trained on or learned."""
        patterns = self._config().get("exclude", [])
        return [p for p in patterns if isinstance(p, str) and p] if isinstance(patterns, list) else []

    def set_exclusions(self, patterns: list[str]) -> None:
        self._set_config("exclude", list(patterns))

    def incognito(self) -> bool:
        """Whether learning is switched off (`foretell incognito on`)."""
        return self._config().get("incognito") is True

    def set_incognito(self, on: bool) -> None:
        self._set_config("incognito", bool(on))

    # -- reading ---------------------------------------------------------------------------
    def manifest(self, name: str) -> dict:
        folder = self.path(name)
        if not self._found(name, folder):
            raise ForetellError(f"no model named {name!r}; see `foretell models list`")
        try:
            manifest = read_json(folder / MANIFEST, name, limit=MANIFEST_BYTES)
        except FileNotFoundError:
            raise ModelFormatError(f"{name}: not a foretell model (no {MANIFEST})") from None
        return check_manifest(manifest, name)

    def load(self, name: str, adapted: bool = True) -> LanguageModel:
        """Load a model, with what it learned from the user's documents unless ``adapted`` is
        False. A load that overlaps a swap (another process saving this name) would read files
        of two versions, so it is detected and retried on the version now in place."""
        folder = self.path(name)
        for attempt in range(20):
            before = _identity(folder)
            try:
                model = self._load_once(name)
            except (FileNotFoundError, ModelFormatError):
                if _identity(folder) == before and before is not None:
                    raise
                model = None
            if model is not None and _identity(folder) == before:
                return self.layer(name).apply(model, before) if adapted else model
            time.sleep(0.01 * (attempt + 1))
        raise ModelFormatError(f"{name}: it kept changing while loading; is it being retrained in a loop?")

    def layer(self, name: str) -> AdaptationLayer:
        """The documents model ``name`` has learned (kept apart from its files)."""
        return AdaptationLayer(self.root, name)

    def _load_once(self, name: str) -> LanguageModel:
        manifest = self.manifest(name)
        backend = get_backend_for(manifest, name)
        cls = backend.cls
        if manifest["backend_format_version"] > cls.format_version:
            raise ModelFormatError(f"{name}: made by a newer version of the {manifest['backend']!r} backend; upgrade it")
        try:
            options = options_from_strings(cls.Options, manifest["options"])
        except ForetellError as exc:
            raise ModelFormatError(f"{name}: {MANIFEST} has bad options ({exc})") from None
        folder = self.path(name)
        for entry in folder.iterdir():  # a model folder holds the files its backend wrote, nothing else
            regular_file(entry, name)
        vocab = Vocabulary.load(folder)
        if len(vocab) != manifest["vocabulary"]["size"]:
            raise ModelFormatError(f"{name}: vocabulary size does not match the manifest")
        if isinstance(cls, CombinesModels):
            model = cls.from_parts(self.load_parts(cls.part_names(options), within=name), options)
        else:
            model = cls.load(folder, vocab, options, manifest.get("facts", {}))
        model.model_name = name
        return model

    def load_parts(self, names: list[str], within: str | None = None) -> list[LanguageModel]:
        """The models a combined model (a mixture) is made of, as they are now (with what they
        learned); a combined model cannot be a part, so loading never recurses."""
        parts = []
        for part in names:
            if not self.exists(part):
                if within:
                    raise ForetellError(f"{within}: its part {part!r} is no longer in the store; mix again without it")
                raise ForetellError(f"no model named {part!r}; see `foretell models list`")
            if isinstance(get_backend_for(self.manifest(part), part).cls, CombinesModels):
                raise ForetellError(f"{part!r} is a mixture itself; mix its parts instead")
            parts.append(self.load(part))
        return parts

    # -- writing ---------------------------------------------------------------------------
    def save(self, name: str, model: LanguageModel, corpus: dict | None = None, vocabulary: dict | None = None) -> Path:
        """Write into a temporary folder beside the target, then swap it in under a lock."""
        import shutil
        import tempfile
        target = self.path(name)
        _private_mkdir(self.models)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-{os.getpid()}-", dir=self.models))
        try:
            facts = model.save(tmp) or {}
            model.vocab.save(tmp)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "name": name,
                "backend": model.name,
                "backend_format_version": model.format_version,
                "foretell_version": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "options": options_to_dict(model.options),
                "vocabulary": {"size": len(model.vocab), "file": "vocab.json", **(vocabulary or {})},
                "corpus": corpus or {},
                "facts": facts,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
            for f in tmp.iterdir():
                os.chmod(f, 0o600)
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            with self._lock(name):
                old = None
                if target.exists():
                    old = self.models / f".old-{name}-{os.getpid()}-{time.monotonic_ns()}"
                    os.rename(target, old)
                os.rename(tmp, target)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        model.model_name = name
        return target

    def remove(self, name: str) -> None:
        import shutil
        folder = self.path(name)
        if not self.exists(name):
            raise ForetellError(f"no model named {name!r}; see `foretell models list`")
        with self._lock(name):
            trash = self.models / f".old-{name}-{os.getpid()}-{time.monotonic_ns()}"
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        forget_checked(folder)
        self.layer(name).remove()
        if self._config().get("default_model") == name:
            config = self._config()
            config.pop("default_model", None)
            write_atomic(self.root / "config.json", json.dumps(config, indent=2))

    # -- crash safety ----------------------------------------------------------------------
    def _lock(self, name: str):
        _private_mkdir(self.models)
        return locked(self.models / f".lock-{name}")

    def _recover(self, name: str) -> None:
        """A crash between the two renames of a swap leaves only ``.old-NAME-*``: put it back.
        A swap in progress leaves the same for a moment, under the lock: waited out, so a
        reader that finds no folder sees the new one once it is in place."""
        folder = self.path(name)
        if folder.exists() or not self.models.is_dir():
            return
        olds = sorted(self.models.glob(f".old-{name}-*"))
        if olds:
            with self._lock(name):
                if not folder.exists() and olds[-1].exists():
                    os.rename(olds[-1], folder)

    def _sweep(self) -> None:
        """Remove temporary folders left by trainings that were killed: half-written models,
        and the scratch folders of their large intermediate files (gigabytes at scale)."""
        import shutil
        for tmp, skip in [(t, 2) for t in self.models.glob(".tmp-*")] + [(t, 1) for t in (self.root / "work").glob(SCRATCH + "*")]:
            parts = tmp.name.split("-")
            pid = next((int(p) for p in parts[skip:] if p.isdigit()), None)
            if pid is not None and not _alive(pid):
                shutil.rmtree(tmp, ignore_errors=True)


def scratch_prefix() -> str:
    """How a training names its scratch folders in the store's work/ (``tempfile``'s prefix),
    so that one left by a killed training is swept away."""
    return f"{SCRATCH}{os.getpid()}-"


def _identity(folder: Path):
    """Which directory is at ``folder`` right now (a swap puts a different one there)."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_ctime_ns)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def check_manifest(manifest, name: str) -> dict:
    """Refuse foreign, newer or malformed manifests with a sentence that says which."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFormatError(f"{name}: not a foretell model (the manifest is from another tool)")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ModelFormatError(f"{name}: {MANIFEST} has no valid format_version")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{name}: written by a newer foretell (model format {version}, this one reads up to {FORMAT_VERSION}); upgrade foretell"
        )
    manifest.setdefault("backend_format_version", 1)
    expected = {"backend": str, "options": dict, "vocabulary": dict, "backend_format_version": int}
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind):
            raise ModelFormatError(f"{name}: {MANIFEST} is missing or has a bad {key!r}")
    if not isinstance(manifest["vocabulary"].get("size"), int):
        raise ModelFormatError(f"{name}: {MANIFEST} has no vocabulary size")
    return manifest


def get_backend_for(manifest: dict, name: str):
    try:
        return get_backend(manifest["backend"])
    except ForetellError:
        raise ForetellError(
            f"model {name!r} needs the {manifest['backend']!r} backend, which is not installed (see `foretell backends`)"
        ) from None

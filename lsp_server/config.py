"""Server settings from ``initializationOptions`` and ``workspace/didChangeConfiguration``
(under the key ``foretell``). Invalid values fall back to the default, and each one becomes a
message for the user rather than an error."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from engine.complete import PHRASE_MIN_PROBABILITY, PHRASE_WORDS

# Language ids as editors send them: VS Code, Neovim and Emacs; "text" and "git-commit" are
# Helix's and Kakoune's names.
DEFAULT_LANGUAGES = ("plaintext", "text", "markdown", "rst", "restructuredtext", "tex", "latex", "org", "gitcommit", "git-commit", "asciidoc")


@dataclass(frozen=True)
class SurprisalSettings:
    semanticTokens: bool = True
    inlayHints: bool = False
    diagnostics: bool = False
    threshold: float = 12.0  # bits: words above it get hints and diagnostics
    debounceMs: int = 250


@dataclass(frozen=True)
class InlineSettings:
    enabled: bool = True
    maxWords: int = PHRASE_WORDS
    minProbability: float = PHRASE_MIN_PROBABILITY


@dataclass(frozen=True)
class LearningSettings:
    enabled: bool = False  # learn each document when it is saved (n-gram and neural models; undo: foretell.forgetDocument)


@dataclass(frozen=True)
class HistorySettings:
    enabled: bool = True  # models with memory read the documents opened and saved lately (lsp_server.features.history)


@dataclass(frozen=True)
class Settings:
    model: str | None = None
    maxSuggestions: int = 10
    analysisMemoryMB: int = 300  # analyses kept past this are the least recently used documents', dropped
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    incognito: bool = False  # learn nothing, whatever learning.enabled says (also `foretell incognito on`)
    exclude: tuple[str, ...] = ()  # glob patterns (engine.privacy) never learned, besides `foretell exclude`'s
    surprisal: SurprisalSettings = field(default_factory=SurprisalSettings)
    inlineCompletion: InlineSettings = field(default_factory=InlineSettings)
    learning: LearningSettings = field(default_factory=LearningSettings)
    history: HistorySettings = field(default_factory=HistorySettings)


_CHECKS = {
    "maxSuggestions": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100,
    "analysisMemoryMB": lambda v: isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 1_000_000,
    "model": lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
    "languages": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
    "incognito": lambda v: isinstance(v, bool),
    "exclude": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) and x.strip() for x in v),
    "semanticTokens": lambda v: isinstance(v, bool),
    "inlayHints": lambda v: isinstance(v, bool),
    "diagnostics": lambda v: isinstance(v, bool),
    "threshold": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 100,
    "debounceMs": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10000,
    "enabled": lambda v: isinstance(v, bool),
    "maxWords": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 20,
    "minProbability": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
}


def _merge(current, values, prefix: str, problems: list[str]):
    if not isinstance(values, dict):
        problems.append(f"{prefix.rstrip('.') or 'foretell'} must be an object")
        return current
    changes = {}
    known = {f.name: f for f in fields(current)}
    for key, value in values.items():
        if key not in known:
            problems.append(f"unknown setting {prefix}{key}")
            continue
        default = getattr(type(current)(), key)
        if hasattr(default, "__dataclass_fields__"):
            changes[key] = _merge(getattr(current, key), value, f"{prefix}{key}.", problems)
        elif _CHECKS[key](value):
            changes[key] = tuple(value) if key in ("languages", "exclude") else (float(value) if key in ("threshold", "minProbability") else value)
        else:
            problems.append(f"{prefix}{key}: {value!r} is not valid, using {default!r}")
            changes[key] = default
    return replace(current, **changes)


def parse_settings(values, current: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings updated from a ``foretell`` object, and what was wrong with it."""
    problems: list[str] = []
    base = current or Settings()
    if values is None:
        return base, problems
    return _merge(base, values, "", problems), problems

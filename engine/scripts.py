"""Scripts written without spaces between words: Chinese, Japanese, Thai, Lao, Khmer, Myanmar.

Their text is split into units a model can learn without a dictionary:
- Han and kana: one character. An input method commits whole characters, so a character is never
  half-typed; words are what the model learns to predict one character after another.
- Thai, Lao, Khmer, Myanmar: one cluster, a base letter with the vowel signs and tone marks
  stacked on it (and a Khmer or Myanmar subscript consonant). Cutting inside a cluster gives text
  nobody can read. A Thai or Lao vowel written before its consonant (เ แ โ ใ ไ) is a unit
  with that consonant; typed alone, it is the half-typed unit that completion finishes.
A dictionary-based word segmenter (ICU, MeCab, PyThaiNLP) would be a large dependency with a
dictionary per language that a user's own vocabulary does not follow.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Han (with its radicals, iteration marks and extensions), hiragana, katakana (and half-width).
_IDEOGRAPHIC = [
    (0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3021, 0x3029), (0x3031, 0x3035), (0x3038, 0x303C),
    (0x3041, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F), (0x20000, 0x3134F),
]
_CLUSTERED = [(0x0E01, 0x0E5B), (0x0E81, 0x0EDF), (0x1000, 0x109F), (0x1780, 0x17F9)]
_LEADING_VOWELS = "\u0e40\u0e41\u0e42\u0e43\u0e44\u0ec0\u0ec1\u0ec2\u0ec3\u0ec4"
_SUBSCRIPT_SIGNS = "\u17d2\u1039"  # Khmer coeng, Myanmar virama: the next consonant joins below
# Marks that belong to the character before them wherever they appear.
_ALWAYS_JOINING = [(0x0300, 0x036F), (0x3099, 0x309A), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF)]
# CJK punctuation and full-width forms: written without spaces around them.
_CJK_PUNCTUATION = [(0x3000, 0x303F), (0xFF00, 0xFF65)]


def _chars(ranges, keep=lambda c: True) -> str:
    return "".join(chr(i) for lo, hi in ranges for i in range(lo, hi + 1) if keep(chr(i)))


def _is_mark(c: str) -> bool:
    return unicodedata.category(c) in ("Mn", "Mc")


def _class(chars: str) -> str:
    """A regular-expression character class body for ``chars`` (ranges where consecutive)."""
    out, i, codes = [], 0, sorted(set(map(ord, chars)))
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        out.append(f"\\U{codes[i]:08x}" + (f"-\\U{codes[j]:08x}" if j > i else ""))
        i = j + 1
    return "".join(out)


def _range_class(ranges) -> str:
    """``_class`` straight from code-point ranges: enumerating Han's 90,000 characters at import
    cost every command 70 ms."""
    return "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)


_clustered_marks = _chars(_CLUSTERED, _is_mark)
_clustered_bases = _chars(_CLUSTERED, lambda c: not _is_mark(c) and c not in _LEADING_VOWELS and unicodedata.category(c) != "Cn")
_joining = _range_class(_ALWAYS_JOINING)
IDEOGRAPHIC_CLASS = _range_class(_IDEOGRAPHIC)
UNSPACED_CLASS = IDEOGRAPHIC_CLASS + _range_class(_CLUSTERED)

# One unit (see the module's docstring), as a regular expression.
UNIT = (
    f"[{IDEOGRAPHIC_CLASS}][{_joining}]*"
    f"|[{_class(_LEADING_VOWELS)}]?[{_class(_clustered_bases)}]"
    f"(?:[{_class(_SUBSCRIPT_SIGNS)}][{_class(_clustered_bases)}]|[{_class(_clustered_marks)}{_joining}])*"
    f"|[{_class(_LEADING_VOWELS)}]"
)

_SPACELESS_NEIGHBOUR = UNSPACED_CLASS + _range_class(_CJK_PUNCTUATION)
_leading = frozenset(_LEADING_VOWELS)


@functools.cache
def _matcher(chars: str):
    """A compiled ``[chars]`` match, compiled on first use: these classes of thousands of
    ranges took 5-10 ms each to compile at every process start, needed or not."""
    return re.compile(f"[{chars}]").match


def compile_classes() -> None:
    """Compile the classes now (a language server does this before the first key)."""
    _matcher(UNSPACED_CLASS)
    _matcher(_SPACELESS_NEIGHBOUR)


def is_unspaced(token: str) -> bool:
    """Whether ``token`` is a unit of a script written without spaces."""
    return _matcher(UNSPACED_CLASS)(token) is not None


def is_whole_unit(token: str) -> bool:
    """Whether a unit at the cursor is complete: anything but a vowel still waiting for its
    consonant. The next thing to offer after a whole unit is the next unit, not its completions."""
    return is_unspaced(token) and not (len(token) == 1 and token in _leading)


def joins_without_space(left: str, right: str) -> bool:
    """Whether two adjacent characters are written with no space between them."""
    spaceless = _matcher(_SPACELESS_NEIGHBOUR)
    return spaceless(left) is not None or spaceless(right) is not None

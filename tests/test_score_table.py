"""``score``'s table is laid out by numpy or by C (engine.table); every row must be exactly what
the f-string writes, whatever the token or the number."""

import numpy as np
import pytest

import engine.table
from engine.table import TOKEN_SLOT, ascii_compatible, score_rows
from tests.conftest import require_compiled


@pytest.fixture(autouse=True, params=["numpy", "compiled"])
def layout(request, monkeypatch):
    """Every test on both ways of laying the table out: numpy's, and the C extension's where it
    was built at install (CI requires it: FORETELL_REQUIRE_COMPILED)."""
    if request.param == "compiled":
        require_compiled(engine.table.tsv, "engine/_tsv.c")
    monkeypatch.setattr(engine.table, "USE_COMPILED", request.param == "compiled")
    return request.param

AWKWARD = [0.0, -0.0, 0.0005, 0.0015, 0.0025, 1.2345, 2.5e-4, -1e-4, -7.25, 0.9995, 9.9995, 123456.0005, 1e-20,
           float("nan"), float("inf"), float("-inf"), 1e20, 12345678901234.5]


def fstring_rows(tokens, starts, ends, bits, rank, entropy, oov):
    blank = lambda offset: "" if offset < 0 else offset
    return "".join(f"{t}\t{blank(s)}\t{blank(e)}\t{b:.3f}\t{r}\t{h:.3f}\t{int(o)}\n"
                   for t, s, e, b, r, h, o in zip(tokens, starts.tolist(), ends.tolist(), bits.tolist(), rank.tolist(), entropy.tolist(), oov.tolist()))


@pytest.mark.parametrize("seed", range(40))
def test_rows_are_the_fstrings_rows(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    words = ["the", "</s>", "café", "x\u4e00y", "", "a\x00b", "\x1f", "L" * (TOKEN_SLOT + 1), "é" * (TOKEN_SLOT // 2 + 1), "b" * TOKEN_SLOT]
    tokens = [words[i] for i in rng.integers(0, len(words) if seed % 2 else 3, n)]
    starts = rng.integers(-1, 10 ** int(rng.integers(1, 12)), n)
    ends = np.where(starts < 0, -1, starts + rng.integers(0, 20, n))
    bits = rng.choice(AWKWARD, n) if seed % 4 == 0 else rng.gamma(2, 4, n)
    entropy = rng.normal(0, 5, n) * 10.0 ** rng.integers(-5, 8, n)
    rank, oov = rng.integers(1, 10 ** int(rng.integers(1, 10)), n), rng.random(n) < 0.3
    args = (tokens, starts, ends, bits, rank, entropy, oov)
    assert score_rows(*args).decode("utf-8") == fstring_rows(*args)


def test_three_decimals_round_as_python_does_next_to_every_tie():
    near = np.arange(0, 100_000) / 1000
    values = np.concatenate([near + 0.0005, near + 0.0004999999, near, -(near + 0.0005)])
    n = len(values)
    args = (["w"] * n, np.zeros(n, np.int64), np.full(n, 7), values, np.ones(n, np.int64), values[::-1].copy(), np.zeros(n, bool))
    assert score_rows(*args).decode("ascii") == fstring_rows(*args)


def test_tokens_are_written_in_the_output_encoding():
    args = (["café", "</s>"], np.array([0, -1]), np.array([4, -1]), np.array([1.0, 2.0]), np.array([1, 2]), np.array([3.0, 4.0]), np.array([False, True]))
    assert score_rows(*args, encoding="latin-1").decode("latin-1") == fstring_rows(*args)
    assert ascii_compatible("utf-8") and ascii_compatible("latin-1") and not ascii_compatible("utf-16")
    with pytest.raises(UnicodeEncodeError):
        score_rows(["\u4e00"], *(a[:1] for a in args[1:]), encoding="latin-1")

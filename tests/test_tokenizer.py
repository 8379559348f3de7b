import string

from hypothesis import given, settings, strategies as st

from engine.tokenizer import ProseTokenizer, tokenize, tokenize_block, tokenize_block_steps


def words(text, **kw):
    return [[t.text for t in s] for s in tokenize(text, **kw)]


def test_words_numbers_punctuation_and_offsets():
    text = "Don't re-use state-of-the-art code; it costs 3.14 or 1,000 dollars!"
    sentences = tokenize(text)
    assert [t.text for t in sentences[0]] == [
        "Don't", "re-use", "state-of-the-art", "code", ";", "it", "costs", "3.14", "or", "1,000", "dollars", "!"
    ]
    assert all(text[t.start : t.end] == t.text for t in sentences[0])


def test_sentence_and_paragraph_boundaries_keep_case():
    assert words("One sentence. Another one! A third?\n\nNew paragraph\nstill going.") == [
        ["One", "sentence", "."], ["Another", "one", "!"], ["A", "third", "?"], ["New", "paragraph", "still", "going", "."]
    ]


def test_a_sentence_end_at_a_line_end_ends_lower_case_sentences():
    # Notes in lower case: a period that closes a line ends the sentence; one inside a line
    # before a lower-case word, or an abbreviation at a line end, does not.
    assert words("buy milk.\ncall mum (today.)\nsee dr.\nsmith at 5. then rest") == [
        ["buy", "milk", "."], ["call", "mum", "(", "today", ".", ")"], ["see", "dr", ".", "smith", "at", "5", ".", "then", "rest"]
    ]


def test_abbreviations_do_not_end_sentences():
    assert words("Mr. Smith met Dr. Jones, e.g. at 10:30.") == [["Mr", ".", "Smith", "met", "Dr", ".", "Jones", ",", "e.g.", "at", "10:30", "."]]


def test_markdown_markup_does_not_become_words():
    text = "# Title here\n\nSome **bold** and _it_ `code` with [a link](https://example.org/x).\n\n```python\nx = 1\n```\n\n- item one\n- item two\n"
    assert words(text) == [
        ["Title", "here"], ["Some", "bold", "and", "it", "code", "with", "a", "link", "."], ["item", "one"], ["item", "two"]
    ]


def test_rest_markup_does_not_become_words():
    text = "Section\n=======\n\nSee :func:`print` for more.\n\n.. note:: Be careful.\n\nExample::\n\n    x = compute()\n\nBack to prose.\n"
    assert words(text) == [["Section"], ["See", "print", "for", "more", "."], ["Be", "careful", "."], ["Example", ":", ":"], ["Back", "to", "prose", "."]]


def test_pretokenized_reads_like_kenlm():
    text = " a  b\tc \n\nd\n"
    assert words(text, pretokenized=True) == [["a", "b", "c"], [], ["d"]]
    assert [(t.start, t.end) for t in tokenize(text, pretokenized=True)[2]] == [(10, 11)]


def test_unicode_words():
    assert words("Café naïve Straße — Москва ok") == [["Café", "naïve", "Straße", "—", "Москва", "ok"]]


def test_chinese_and_japanese_split_into_characters_and_sentences():
    assert words("東京は日本の首都です。大阪も大きい！中文也可以？是的") == [
        ["東", "京", "は", "日", "本", "の", "首", "都", "で", "す", "。"], ["大", "阪", "も", "大", "き", "い", "！"],
        ["中", "文", "也", "可", "以", "？"], ["是", "的"],
    ]
    # A combining voiced mark stays on its kana; katakana and the long-vowel mark are units too.
    assert words("か\u3099コーヒー") == [["か\u3099", "コ", "ー", "ヒ", "ー"]]


def test_thai_khmer_and_myanmar_split_into_clusters():
    # A base letter keeps its vowel signs and tone marks; a vowel written before its
    # consonant goes with it; a Khmer subscript consonant stays in its cluster.
    assert words("เขาไปโรงเรียน ที่นี่") == [["เข", "า", "ไป", "โร", "ง", "เรี", "ย", "น", "ที่", "นี่"]]
    assert words("ខ្ញុំស្រលាញ់") == [["ខ្ញុំ", "ស្រ", "លា", "ញ់"]]
    assert words("မြန်မာ") == [["မြ", "န်", "မာ"]]


def test_mixed_scripts_in_one_sentence():
    text = "Pythonの「list」は便利です。Use it with 東京 data."
    assert words(text) == [
        ["Python", "の", "「", "list", "」", "は", "便", "利", "で", "す", "。"], ["Use", "it", "with", "東", "京", "data", "."]
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(string.printable) + list("éß—’“”東京はー。「ภเาี่ខ្ញុំ\u3099\u00a0")), max_size=200))
def test_offsets_always_point_at_the_token_text(text):
    previous_end = 0
    for sentence in tokenize(text):
        for token in sentence:
            assert text[token.start : token.end] == token.text
            assert token.start >= previous_end and token.end > token.start
            assert not any(c.isspace() for c in token.text)
            previous_end = token.end


def read_one_match_at_a_time(text):
    """What the token pattern alone reads (the editor's pausing path): the reference the fast path must equal."""
    steps = tokenize_block_steps(text, 0, ProseTokenizer.PLAIN, 1)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return [list(zip(*s)) for s in done.value[0]]


PIECES = list(string.punctuation + "\x1c\ufeffé東はー。「ภเาี่") + ["www.", "http://a.b/c", "U.S.", "3.14", ":ref:`", "Dr", "x", "7", "word",
                                                                  "don't", "well-known", "...", ":func:"]


def test_reading_runs_of_non_space_equals_reading_match_by_match():
    for a in PIECES:
        text = " ".join(a + b for b in PIECES) + "\n" + " ".join(b + a for b in PIECES)
        assert [list(zip(*s)) for s in tokenize_block(text)[0]] == read_one_match_at_a_time(text), a


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES + [" ", "  ", "\t", "\n", "\x0b"]), max_size=60).map("".join))
def test_reading_runs_of_non_space_equals_reading_match_by_match_anywhere(text):
    assert [list(zip(*s)) for s in tokenize_block(text)[0]] == read_one_match_at_a_time(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=string.ascii_letters + "'-.,", min_size=1, max_size=8), max_size=20))
def test_pretokenized_round_trips(tokens):
    line = " ".join(tokens)
    assert words(line + "\n", pretokenized=True) == [line.split()]


def test_tokenizing_leaves_the_garbage_collector_as_it_found_it():
    import gc

    assert gc.isenabled()
    tokenize("One sentence. Another one.")
    assert gc.isenabled()
    gc.disable()
    try:
        tokenize("One sentence. Another one.")
        assert not gc.isenabled()
    finally:
        gc.enable()

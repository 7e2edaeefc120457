"""notebook.core.search: the tokenizer shared by the search index and search queries."""

from __future__ import annotations

from notebook.core.search import MAX_TOKEN_CHARS, MAX_TOKENS_PER_NOTE, normalize, note_tokens, tokenize


def test_normalize_drops_case_and_accents() -> None:
    assert normalize("Café CRÈME Ärger") == "cafe creme arger"
    assert normalize("Straße") == "strasse"  # casefold, not lower


def test_compatibility_forms_are_folded() -> None:
    assert tokenize("ﬁle") == ["file"]  # the fi ligature
    assert tokenize("ＡＢＣ") == ["abc"]  # full-width letters


def test_words_are_split_on_punctuation_and_whitespace() -> None:
    assert tokenize("Hello, world! It's 9:30 — (really)") == [
        "hello",
        "world",
        "it",
        "s",
        "9",
        "30",
        "really",
    ]


def test_underscore_separates_words() -> None:
    assert tokenize("snake_case__name_") == ["snake", "case", "name"]


def test_tokens_are_distinct_in_order_of_first_appearance() -> None:
    assert tokenize("b a B c A") == ["b", "a", "c"]


def test_the_query_and_the_note_agree() -> None:
    note = note_tokens("Résumé für Zoë", "naïve café")
    for query in ("resume", "RÉSUMÉ", "Fur", "zoe", "NAIVE", "Café"):
        assert all(token in note for token in tokenize(query))


def test_non_latin_scripts_are_words() -> None:
    assert tokenize("Ελληνικά кириллица") == ["ελληνικα", "кириллица"]


def test_nothing_to_search() -> None:
    assert tokenize("") == []
    assert tokenize("  ... !!! ---") == []


def test_long_words_are_truncated() -> None:
    assert tokenize("x" * 200) == ["x" * MAX_TOKEN_CHARS]


def test_note_tokens_cover_title_and_content() -> None:
    assert note_tokens("Shopping list", "milk\neggs") == ["shopping", "list", "milk", "eggs"]


def test_note_tokens_are_bounded() -> None:
    content = " ".join(f"w{i}" for i in range(MAX_TOKENS_PER_NOTE + 100))
    tokens = note_tokens("title", content)
    assert len(tokens) == MAX_TOKENS_PER_NOTE
    assert tokens[0] == "title"

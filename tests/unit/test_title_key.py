"""core.search.title_sort_key: the TITLE_ASC key that ICU collation and code points order alike."""

from __future__ import annotations

import re

from notebook.core.search import TITLE_KEY_CHARS, normalize, title_sort_key

TITLES = ["zebra", "Äpfel", "Éclair", "Ωmega", "Ярослав", "日本語", "_x", "-y", "10", "9", "a b", "ab", "ß"]


def test_the_key_is_lowercase_hex_only() -> None:
    for title in TITLES:
        assert re.fullmatch(r"[0-9a-f]*", title_sort_key(title)), title


def test_keys_order_like_the_normalized_titles() -> None:
    by_key = sorted(TITLES, key=title_sort_key)
    by_text = sorted(TITLES, key=normalize)
    assert [normalize(t) for t in by_key] == [normalize(t) for t in by_text]


def test_case_and_accents_give_the_same_key() -> None:
    assert title_sort_key("Résumé") == title_sort_key("resume") == title_sort_key("RESUME")
    assert title_sort_key("Straße") == title_sort_key("STRASSE")
    assert title_sort_key("apple") != title_sort_key("apples")


def test_a_prefix_sorts_first_and_long_titles_are_cut() -> None:
    assert title_sort_key("app") < title_sort_key("apple")
    long = "x" * (TITLE_KEY_CHARS + 50)
    assert title_sort_key(long) == title_sort_key(long + "more") == "78" * TITLE_KEY_CHARS

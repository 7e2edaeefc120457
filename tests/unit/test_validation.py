"""notebook.core.validation and the id rule of notebook.core.domain."""

from __future__ import annotations

import pytest

from notebook.core import validation
from notebook.core.domain import NOTE_PREFIX, NOTEBOOK_PREFIX, Note, require_id, utc_now
from notebook.core.errors import InvalidInput, PayloadTooLarge


class TestTitle:
    def test_is_stripped(self) -> None:
        assert validation.title("  Groceries \n") == "Groceries"

    @pytest.mark.parametrize("value", ["", "   ", "\n\t"])
    def test_empty_is_rejected(self, value: str) -> None:
        with pytest.raises(InvalidInput) as caught:
            validation.title(value)
        assert caught.value.extensions == {"field": "title"}

    def test_500_characters_is_the_limit(self) -> None:
        assert validation.title("é" * 500) == "é" * 500
        with pytest.raises(InvalidInput):
            validation.title("é" * 501)

    @pytest.mark.parametrize("value", [None, 5, ["a"], b"bytes"])
    def test_non_strings_are_rejected(self, value: object) -> None:
        with pytest.raises(InvalidInput):
            validation.title(value)

    def test_control_characters_are_rejected(self) -> None:
        with pytest.raises(InvalidInput):
            validation.title("bell\x07")

    def test_tabs_and_newlines_inside_are_allowed(self) -> None:
        assert validation.title("a\tb") == "a\tb"


class TestContent:
    def test_exactly_one_mebibyte_is_allowed(self) -> None:
        text = "x" * validation.MAX_CONTENT_BYTES
        assert validation.content(text) == text

    def test_one_byte_more_is_too_large(self) -> None:
        with pytest.raises(PayloadTooLarge) as caught:
            validation.content("x" * (validation.MAX_CONTENT_BYTES + 1))
        assert caught.value.code == "PAYLOAD_TOO_LARGE"

    def test_size_is_counted_in_utf8_bytes(self) -> None:
        # 2 bytes per character: half a mebibyte of characters is a full mebibyte
        validation.content("é" * (validation.MAX_CONTENT_BYTES // 2))
        with pytest.raises(PayloadTooLarge):
            validation.content("é" * (validation.MAX_CONTENT_BYTES // 2 + 1))

    def test_content_is_kept_verbatim(self) -> None:
        assert validation.content("  # heading\n\n") == "  # heading\n\n"

    def test_non_string_is_rejected(self) -> None:
        with pytest.raises(InvalidInput):
            validation.content(42)


class TestTags:
    def test_fifty_tags_are_allowed(self) -> None:
        assert len(validation.tags([f"t{i}" for i in range(50)])) == 50

    def test_fifty_one_tags_are_rejected(self) -> None:
        with pytest.raises(InvalidInput) as caught:
            validation.tags([f"t{i}" for i in range(51)])
        assert caught.value.extensions == {"field": "tags"}

    def test_duplicates_ignoring_case_keep_the_first_spelling(self) -> None:
        assert validation.tags([" Work ", "work", "WORK", "home"]) == ["Work", "home"]

    @pytest.mark.parametrize("value", [[""], ["  "], ["x" * 65], [3], "work", None])
    def test_bad_tags_are_rejected(self, value: object) -> None:
        with pytest.raises(InvalidInput):
            validation.tags(value)

    def test_64_characters_is_allowed(self) -> None:
        assert validation.tags(["x" * 64]) == ["x" * 64]


class TestAccountFields:
    def test_email_is_normalized(self) -> None:
        assert validation.email("  Ada@Example.COM ") == "ada@example.com"

    @pytest.mark.parametrize("value", ["", "ada", "ada@", "@example.com", "a b@example.com", "a@b", 5])
    def test_bad_emails_are_rejected(self, value: object) -> None:
        with pytest.raises(InvalidInput):
            validation.email(value)

    def test_overlong_email_is_rejected(self) -> None:
        with pytest.raises(InvalidInput):
            validation.email("a" * 250 + "@example.com")

    def test_password_length_bounds(self) -> None:
        assert validation.password("x" * 8) == "x" * 8
        assert validation.password("x" * 256) == "x" * 256
        for bad in ("x" * 7, "x" * 257, None):
            with pytest.raises(InvalidInput):
                validation.password(bad)

    def test_password_is_not_stripped(self) -> None:
        assert validation.password("  spaced  ") == "  spaced  "

    def test_display_name(self) -> None:
        assert validation.display_name(None) is None
        assert validation.display_name("  ") is None
        assert validation.display_name(" Ada ") == "Ada"
        with pytest.raises(InvalidInput):
            validation.display_name("x" * 101)


class TestNotebookFields:
    def test_name(self) -> None:
        assert validation.notebook_name(" Work ") == "Work"
        for bad in ("", "  ", "x" * 201, None):
            with pytest.raises(InvalidInput):
                validation.notebook_name(bad)

    def test_description(self) -> None:
        assert validation.description(None) is None
        assert validation.description("   ") is None
        assert validation.description(" about ") == "about"
        with pytest.raises(InvalidInput):
            validation.description("x" * 2001)


class TestPageSize:
    @pytest.mark.parametrize("value", [1, 20, 100])
    def test_allowed(self, value: int) -> None:
        assert validation.page_size(value) == value

    @pytest.mark.parametrize("value", [0, -1, 101, True, "20", 2.0, None])
    def test_rejected(self, value: object) -> None:
        with pytest.raises(InvalidInput):
            validation.page_size(value)


class TestIds:
    def test_an_id_of_the_expected_kind_passes(self) -> None:
        assert require_id("note:abc", NOTE_PREFIX, "note") == "note:abc"

    @pytest.mark.parametrize("value", ["notebook:abc", "abc", "", "note:" + "x" * 100, 12, None])
    def test_other_ids_are_bad_input(self, value: object) -> None:
        with pytest.raises(InvalidInput):
            require_id(value, NOTE_PREFIX, "note")  # type: ignore[arg-type]

    def test_a_note_id_is_not_a_notebook_id(self) -> None:
        with pytest.raises(InvalidInput):
            require_id("note:abc", NOTEBOOK_PREFIX, "notebook")


class TestDomainRules:
    def test_timestamps_sort_as_text_in_time_order(self) -> None:
        stamps = [utc_now() for _ in range(50)]
        assert stamps == sorted(stamps)
        assert all(len(s) == len(stamps[0]) and s.endswith("Z") for s in stamps)

    def test_a_note_is_trashed_when_it_has_a_trash_time(self) -> None:
        note = Note("note:1", "notebook:1", "user:1", "t", "", "x", "x", "user:1", "user:1")
        assert not note.trashed
        note.trashed_at = utc_now()
        assert note.trashed

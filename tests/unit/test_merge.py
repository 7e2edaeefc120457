"""Three-way merge rules for concurrent note versions."""

from __future__ import annotations

from dataclasses import replace

from notebook.core.merge import NoteVersion, merge_tags, merge_text, merge_versions

BASE_TEXT = "First paragraph.\n\nMiddle paragraph.\n\nLast paragraph."


def version(**fields: object) -> NoteVersion:
    defaults: dict[str, object] = {
        "title": "Title",
        "content": BASE_TEXT,
        "tags": ("a", "b"),
        "pinned": False,
        "trashed_at": None,
        "notebook_id": "notebook:1",
        "updated_at": "2026-01-01T00:00:00.000000Z",
        "updated_by": "user:1",
        "version": "2-aaa",
    }
    defaults.update(fields)
    return NoteVersion(**defaults)  # type: ignore[arg-type]


def test_edits_in_different_paragraphs_merge() -> None:
    ours = BASE_TEXT.replace("First paragraph.", "First paragraph, edited.")
    theirs = BASE_TEXT.replace("Last paragraph.", "Last paragraph, edited.")
    assert merge_text(BASE_TEXT, ours, theirs) == (
        "First paragraph, edited.\n\nMiddle paragraph.\n\nLast paragraph, edited."
    )


def test_overlapping_edits_do_not_merge() -> None:
    ours = BASE_TEXT.replace("Middle paragraph.", "Middle, ours.")
    theirs = BASE_TEXT.replace("Middle paragraph.", "Middle, theirs.")
    assert merge_text(BASE_TEXT, ours, theirs) is None


def test_identical_edits_merge_once() -> None:
    edited = BASE_TEXT.replace("Middle paragraph.", "Same change.")
    assert merge_text(BASE_TEXT, edited, edited) == edited
    both = BASE_TEXT + "\nappended"
    assert merge_text(BASE_TEXT, both, both) == both


def test_one_sided_change_wins() -> None:
    edited = BASE_TEXT + "\n\nMore."
    assert merge_text(BASE_TEXT, edited, BASE_TEXT) == edited
    assert merge_text(BASE_TEXT, BASE_TEXT, edited) == edited


def test_insertions_at_the_same_place_conflict() -> None:
    assert merge_text("a\nb\n", "a\nb\nc\n", "a\nb\nd\n") is None


def test_insertions_at_different_places_merge() -> None:
    assert merge_text("a\nb\n", "x\na\nb\n", "a\nb\nd\n") == "x\na\nb\nd\n"


def test_tags_three_way() -> None:
    # ours added c, theirs removed a: both changes survive
    assert set(merge_tags(("a", "b"), ("a", "b", "c"), ("b",))) == {"b", "c"}
    # case-insensitive identity, no duplicates
    assert merge_tags(("a",), ("a", "New"), ("a", "new")) == ("a", "New")


def test_metadata_last_writer_wins_and_title_three_way() -> None:
    base = version()
    ours = version(pinned=True, updated_at="2026-01-02T00:00:00.000000Z", version="3-bbb")
    theirs = version(title="Renamed", updated_at="2026-01-01T12:00:00.000000Z", version="3-ccc")
    merged = merge_versions(base, ours, theirs)
    assert merged.clean
    assert merged.version.pinned is True  # from the later writer
    assert merged.version.title == "Renamed"  # only theirs changed the title
    assert merged.version.version == "3-bbb"


def test_unmergeable_content_is_not_clean() -> None:
    base = version()
    ours = replace(base, content="X", version="3-b", updated_at="2026-01-03T00:00:00.000000Z")
    theirs = replace(base, content="Y", version="3-c")
    merged = merge_versions(base, ours, theirs)
    assert not merged.clean
    assert merged.version.content == "X"  # the later writer's text stays in place until a person decides


def test_without_ancestor_only_identical_content_is_clean() -> None:
    ours = version(content="same", version="3-b")
    theirs = version(content="same", version="3-c", tags=("z",))
    assert merge_versions(None, ours, theirs).clean
    assert not merge_versions(None, ours, replace(theirs, content="other")).clean


def test_a_merge_keeps_the_owner_whoever_edited() -> None:
    base = version(owner_id="user:owner")
    ours = version(
        owner_id="user:owner",
        title="Editor's",
        updated_by="user:editor",
        version="3-bbb",
        updated_at="2026-01-02T00:00:00.000000Z",
    )
    theirs = version(owner_id="user:owner", tags=("a",), updated_by="user:other", version="3-ccc")
    merged = merge_versions(base, ours, theirs).version
    assert merged.updated_by == "user:editor"
    assert merged.owner_id == "user:owner"


def test_notebook_and_owner_come_from_the_same_side() -> None:
    """A move into another owner's notebook, concurrent with an edit: whichever side's notebook
    the merge keeps, the owner is that notebook's, never a mix of the two."""
    base = version(owner_id="user:ada")
    moved = version(
        notebook_id="notebook:bob",
        owner_id="user:bob",
        version="3-bbb",
        updated_at="2026-01-01T00:00:01.000000Z",
    )
    edited = version(
        owner_id="user:ada", title="Edited", version="3-ccc", updated_at="2026-01-01T00:00:02.000000Z"
    )
    for ours, theirs in ((moved, edited), (edited, moved)):
        merged = merge_versions(base, ours, theirs).version
        assert (merged.notebook_id, merged.owner_id) == ("notebook:1", "user:ada")
    later_move = replace(moved, updated_at="2026-01-01T00:00:03.000000Z")
    merged = merge_versions(base, edited, later_move).version
    assert (merged.notebook_id, merged.owner_id) == ("notebook:bob", "user:bob")
    assert merged.title == "Edited"  # the edit is not lost either

"""Three-way merges of concurrent note versions: pure functions, no storage.

Rules (design.md): metadata last writer wins; tags three-way set merge; title three-way with
last writer wins when both changed it; content three-way line merge that refuses overlapping
edits instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher


@dataclass(frozen=True)
class NoteVersion:
    """The mergeable fields of one version of a note, plus what orders writers."""

    title: str
    content: str
    tags: tuple[str, ...]
    pinned: bool
    trashed_at: str | None
    notebook_id: str
    updated_at: str
    updated_by: str
    version: str
    # whose note it is: always the owner of `notebook_id`, so the two move together
    owner_id: str = ""

    @property
    def writer_order(self) -> tuple[str, int, str]:
        """Later write wins; ties go to the longer history, then the higher revision id."""
        generation, _, rev_hash = self.version.partition("-")
        return (self.updated_at, int(generation or 0), rev_hash)


@dataclass(frozen=True)
class Merged:
    version: NoteVersion
    clean: bool  # False when content edits overlap and a person must choose


Hunk = tuple[int, int, list[str]]


def _hunks(base: list[str], other: list[str]) -> list[Hunk]:
    matcher = SequenceMatcher(None, base, other, autojunk=False)
    return [(i1, i2, other[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _overlap(a: Hunk, b: Hunk) -> bool:
    (a1, a2, _), (b1, b2, _) = a, b
    if a1 < b2 and b1 < a2:
        return True
    return a1 == a2 == b1 == b2  # two insertions at the same place: their order is unknowable


def merge_text(base: str, ours: str, theirs: str) -> str | None:
    """Line-based three-way merge; None when both sides changed the same lines differently."""
    if ours == theirs or theirs == base:
        return ours
    if ours == base:
        return theirs
    base_lines = base.splitlines(keepends=True)
    if base_lines and not base_lines[-1].endswith("\n"):
        # a last line without newline must not differ from the same line with one
        base_lines[-1] += "\n"
        ours, theirs = _with_final_newline(ours), _with_final_newline(theirs)
        trailing = False
    else:
        trailing = True
    ours_hunks = _hunks(base_lines, ours.splitlines(keepends=True))
    theirs_hunks = _hunks(base_lines, theirs.splitlines(keepends=True))
    hunks = sorted(ours_hunks + theirs_hunks, key=lambda h: (h[0], h[1]))
    merged: list[str] = []
    position = 0
    previous: Hunk | None = None
    for hunk in hunks:
        if previous is not None and _overlap(previous, hunk):
            if previous == hunk:
                continue  # both sides made the same change
            return None
        start, end, lines = hunk
        merged.extend(base_lines[position:start])
        merged.extend(lines)
        position = max(position, end)
        previous = hunk
    merged.extend(base_lines[position:])
    text = "".join(merged)
    if not trailing and text.endswith("\n"):
        text = text[:-1]
    return text


def _with_final_newline(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"


def merge_tags(base: tuple[str, ...], ours: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[str, ...]:
    """Keep every tag either side added and drop every tag either side removed."""
    base_keys = {t.casefold() for t in base}
    ours_keys = {t.casefold() for t in ours}
    theirs_keys = {t.casefold() for t in theirs}
    result: dict[str, str] = {}
    for tag in (*ours, *theirs, *base):
        key = tag.casefold()
        in_base = key in base_keys
        # a side that changed membership decides; unchanged sides agree with base
        keep = (key in ours_keys) if (key in ours_keys) != in_base else (key in theirs_keys)
        if keep and key not in result:
            result[key] = tag
    return tuple(result.values())


def merge_versions(base: NoteVersion | None, ours: NoteVersion, theirs: NoteVersion) -> Merged:
    """Merge two concurrent versions given their common ancestor (None if it is unknown)."""
    later, earlier = (ours, theirs) if ours.writer_order >= theirs.writer_order else (theirs, ours)
    if base is None:
        # without the ancestor nothing can be merged safely except identical fields
        base = earlier
        content = ours.content if ours.content == theirs.content else None
    else:
        content = merge_text(base.content, later.content, earlier.content)
    if base.title == later.title:
        title = earlier.title
    else:
        title = later.title
    # the notebook and its owner come from one side as a pair: a merge can move a note the way
    # one side moved it, but never give it to someone who does not own its notebook
    placed = later if later.notebook_id else earlier
    merged = NoteVersion(
        title=title,
        content=content if content is not None else later.content,
        tags=merge_tags(base.tags, later.tags, earlier.tags),
        pinned=later.pinned,
        trashed_at=later.trashed_at,
        notebook_id=placed.notebook_id,
        updated_at=later.updated_at,
        updated_by=later.updated_by,
        version=later.version,
        owner_id=placed.owner_id,
    )
    return Merged(merged, clean=content is not None)

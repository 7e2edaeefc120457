"""Notes: reading, listing, writing and their history. A note's permissions are its notebook's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from notebook.core import validation
from notebook.core.activity import Activity, new_activity
from notebook.core.domain import (
    METADATA_REASON,
    NOTE_PREFIX,
    REVISION_PREFIX,
    Note,
    Notebook,
    NoteQuery,
    NoteRevision,
    Page,
    TagCount,
    User,
    require_id,
    utc_now,
)
from notebook.core.errors import DomainError, InvalidInput, NotFound, VersionConflict
from notebook.core.pagination import NOTE_ORDERS
from notebook.core.search import tokenize
from notebook.services.conflict_service import ConflictResolver
from notebook.services.notebook_service import NotebookService
from notebook.services.ports import NoteStore
from notebook.utils.crypto_utils import new_id

MAX_SEARCH_WORDS = 20
PRUNE_EVERY = 10  # revision retention is checked on every tenth edit of a note
IMPORT_BATCH = 500


@dataclass
class ImportResult:
    imported: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _note_event(action: str, actor: User, note: Note, at: str) -> Activity:
    """The record of a change to a note: in its notebook, seen by the notebook's owner (a
    note's owner is its notebook's)."""
    return new_activity(
        action, actor.id, "note", note.id, at, notebook_id=note.notebook_id, notebook_owner_id=note.owner_id
    )


def _generation(version: str | None) -> int:
    return int((version or "0").partition("-")[0] or 0)


class NoteService:
    def __init__(
        self,
        notes: NoteStore,
        notebooks: NotebookService,
        resolver: ConflictResolver,
        revision_retention: int = 100,
        max_tags_listed: int = 1000,
    ) -> None:
        self.notes = notes
        self.notebook_service = notebooks
        self.resolver = resolver
        self.revision_retention = revision_retention
        self.max_tags_listed = max_tags_listed

    # reading ---------------------------------------------------------------------------------
    def get_note(self, actor: User, note_id: str) -> Note:
        require_id(note_id, NOTE_PREFIX, "note")
        note = self.notes.get(note_id)
        if note is None:
            raise NotFound("note not found")
        try:
            self.notebook_service.readable(actor, note.notebook_id)
        except NotFound:
            raise NotFound("note not found") from None
        return note

    def list_notes(
        self,
        actor: User,
        notebook_id: str | None = None,
        first: int = 20,
        after: str | None = None,
        tag: str | None = None,
        search: str | None = None,
        trashed: bool = False,
        order: str = "UPDATED_DESC",
        loaded: tuple[Notebook, str | None] | None = None,
    ) -> Page:
        """`loaded`: the notebook `notebook_id` names, already read, and the actor's role in it."""
        query = self._query(actor, notebook_id, first, after, tag, search, trashed, order, loaded)
        return self.notes.list_page(query)

    def _query(
        self,
        actor: User,
        notebook_id: str | None,
        first: int,
        after: str | None,
        tag: str | None,
        search: str | None,
        trashed: bool,
        order: str,
        loaded: tuple[Notebook, str | None] | None,
    ) -> NoteQuery:
        """A listing's query, once the actor may read it; bad arguments are InvalidInput."""
        if order not in NOTE_ORDERS:
            raise InvalidInput("unknown orderBy", field="orderBy")
        shared: tuple[str, ...] = ()
        if loaded is not None and loaded[0].id == notebook_id:
            scope = "n:" + self.notebook_service.require_loaded(*loaded, "VIEWER").id
        elif notebook_id is not None:
            scope = "n:" + self.notebook_service.readable(actor, notebook_id).id
        else:
            scope = "o:" + actor.id
            shared = self.notebook_service.shared_notebook_ids(actor)
        words = tuple(tokenize(search or ""))
        if len(words) > MAX_SEARCH_WORDS:
            raise InvalidInput(f"search has more than {MAX_SEARCH_WORDS} words", field="search")
        if tag is not None:
            tag = validation.tags([tag])[0]
        return NoteQuery(
            scope=scope,
            trashed=bool(trashed),
            order=order,
            first=validation.page_size(first),
            after=after,
            tag=tag,
            words=words,
            shared=shared,
        )

    def count_notes(
        self,
        actor: User,
        notebook_id: str | None,
        trashed: bool,
        tag: str | None = None,
        search: str | None = None,
        loaded: tuple[Notebook, str | None] | None = None,
    ) -> int:
        """How many notes a listing that has already been allowed covers (with its filters)."""
        if tag is not None or search:
            query = self._query(actor, notebook_id, 1, None, tag, search, trashed, "UPDATED_DESC", loaded)
            return self.notes.count_matching(query)
        if notebook_id:
            return self.notes.count("n:" + notebook_id, trashed)
        return self.notes.count("o:" + actor.id, trashed, self.notebook_service.shared_notebook_ids(actor))

    def own_tags(self, actor: User) -> list[TagCount]:
        """Tags of the live notes in the actor's own notebooks, most used first."""
        return self.notes.tag_counts("o:" + actor.id)

    def tags(self, actor: User) -> list[TagCount]:
        """Tags of every live note the actor can read, own and shared: the `max_tags_listed`
        most used (the store lists them most used first)."""
        counts = self.notes.tag_counts("o:" + actor.id, self.notebook_service.shared_notebook_ids(actor))
        return counts[: self.max_tags_listed]

    # writing ---------------------------------------------------------------------------------
    def _new_note(self, actor: User, notebook: Notebook, fields: Mapping[str, Any]) -> Note:
        now = utc_now()
        return Note(
            id=new_id(NOTE_PREFIX),
            notebook_id=notebook.id,
            owner_id=notebook.owner_id,
            title=validation.title(fields.get("title")),
            content=validation.content(fields.get("content") or ""),
            tags=validation.tags(fields.get("tags") or []),
            pinned=bool(fields.get("pinned") or False),
            created_at=now,
            updated_at=now,
            created_by=actor.id,
            updated_by=actor.id,
        )

    def _target_notebook(self, actor: User, notebook_id: str | None) -> Notebook:
        target = actor.default_notebook_id if notebook_id is None else notebook_id
        if not target:
            raise InvalidInput("notebookId is required", field="notebookId")
        return self.notebook_service.writable(actor, target)

    def create_note(self, actor: User, fields: Mapping[str, Any]) -> Note:
        notebook = self._target_notebook(actor, fields.get("notebook_id"))
        note = self._new_note(actor, notebook, fields)
        self.notes.add(note, events=[_note_event("note.created", actor, note, note.created_at)])
        return note

    def _editable(self, actor: User, note_id: str, minimum: str = "EDITOR") -> Note:
        note = self.get_note(actor, note_id)
        self.notebook_service.require(actor, note.notebook_id, minimum)
        return note

    def update_note(self, actor: User, note_id: str, changes: Mapping[str, Any], version: str) -> Note:
        note = self._editable(actor, note_id)
        if note.version != version:
            raise VersionConflict("the note was changed by someone else", note.version)
        previous = NoteRevision.of(note, "EDIT")
        validation.apply_note_input(note, changes)
        return self._save(actor, note, previous, "note.updated")

    def move_note(self, actor: User, note_id: str, notebook_id: str) -> Note:
        """Move a note; this needs edit rights in both notebooks. It takes the owner of the
        notebook it moves into."""
        note = self._editable(actor, note_id)
        target = self.notebook_service.writable(actor, notebook_id)
        if target.id == note.notebook_id:
            return note
        previous = NoteRevision.of(note, METADATA_REASON)
        note.notebook_id = target.id
        note.owner_id = target.owner_id
        return self._save(actor, note, previous, "note.moved")

    def trash_note(self, actor: User, note_id: str) -> Note:
        note = self._editable(actor, note_id)
        if note.trashed:
            return note
        previous = NoteRevision.of(note, METADATA_REASON)
        note.trashed_at = utc_now()
        return self._save(actor, note, previous, "note.trashed")

    def restore_note(self, actor: User, note_id: str) -> Note:
        note = self._editable(actor, note_id)
        if not note.trashed:
            return note
        previous = NoteRevision.of(note, METADATA_REASON)
        note.trashed_at = None
        return self._save(actor, note, previous, "note.restored")

    def delete_note(self, actor: User, note_id: str) -> bool:
        """Permanent deletion is the notebook owner's; editors trash and restore."""
        note = self._editable(actor, note_id, "OWNER")
        if not note.trashed:
            raise InvalidInput("only a note in the trash can be deleted; trash it first", field="id")
        self.notes.delete(note, events=[_note_event("note.deleted", actor, note, utc_now())])
        return True

    def import_notes(self, actor: User, notebook_id: str, items: Sequence[Mapping[str, Any]]) -> ImportResult:
        """Validate every note, then store the valid ones with one bulk write per batch."""
        notebook = self.notebook_service.writable(actor, notebook_id)
        if len(items) > validation.MAX_IMPORT_NOTES:
            raise InvalidInput(f"import at most {validation.MAX_IMPORT_NOTES} notes at once", field="notes")
        result = ImportResult()
        valid: list[Note] = []
        for index, item in enumerate(items):
            try:
                valid.append(self._new_note(actor, notebook, item))
            except DomainError as exc:
                result.failed += 1
                result.errors.append(f"notes[{index}]: {exc.message}")
        for start in range(0, len(valid), IMPORT_BATCH):
            batch = valid[start : start + IMPORT_BATCH]
            # one record per batch, counting its notes (one per import of up to IMPORT_BATCH)
            record = new_activity(
                "note.imported", actor.id, "notebook", notebook.id, utc_now(),
                notebook_id=notebook.id, notebook_owner_id=notebook.owner_id,
                count=len(batch), detail=f"{len(batch)} notes",
            )  # fmt: skip
            for note, error in zip(batch, self.notes.add_many(batch, events=[record]), strict=True):
                if error is None:
                    result.imported += 1
                else:
                    result.failed += 1
                    result.errors.append(f"{note.title[:40]}: {error}")
        return result

    def _save(self, actor: User, note: Note, previous: NoteRevision, action: str) -> Note:
        """Write the note with the revision keeping the version it replaces: every replaced
        version has one (conflict merges read their base from it); one that differs from the
        new version only in metadata is kept but not listed."""
        if (previous.title, previous.content, previous.tags) == (note.title, note.content, note.tags):
            previous.reason = METADATA_REASON
        note.updated_at = utc_now()
        note.updated_by = actor.id
        self.notes.update(note, previous, events=[_note_event(action, actor, note, note.updated_at)])
        if _generation(note.version) % PRUNE_EVERY == 0:
            self.notes.prune_revisions(note.id, self.revision_retention)
        return note

    # history -----------------------------------------------------------------------------------
    def revisions(self, note: Note, first: int = 20) -> list[NoteRevision]:
        """Earlier versions of a note the caller has already been allowed to read."""
        return self.notes.revisions(note.id, validation.page_size(first))

    def revisions_of_many(self, notes: Sequence[Note], first: int = 20) -> dict[str, list[NoteRevision]]:
        """`revisions` of several notes the caller has already been allowed to read, at once."""
        return self.notes.revisions_of_many([note.id for note in notes], validation.page_size(first))

    def restore_note_revision(self, actor: User, note_id: str, revision_id: str) -> Note:
        note = self._editable(actor, note_id)
        require_id(revision_id, REVISION_PREFIX, "revision")
        revision = self.notes.get_revision(revision_id)
        if revision is None or revision.note_id != note.id:
            raise NotFound("revision not found")
        previous = NoteRevision.of(note, "RESTORE")
        note.title, note.content, note.tags = revision.title, revision.content, list(revision.tags)
        return self._save(actor, note, previous, "note.revision_restored")

    def conflicts(self, note: Note) -> list[Note]:
        """The competing versions replication left on a note, as notes."""
        return self.notes.get_versions(note.id, note.conflict_versions)

    def resolve_note_conflict(
        self, actor: User, note_id: str, keep_version: str | None, merged: Mapping[str, Any] | None
    ) -> Note:
        note = self._editable(actor, note_id)
        return self.resolver.resolve_by_person(actor, note, keep_version, merged)

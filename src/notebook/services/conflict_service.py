"""Settling replication conflicts without losing an edit.

Notes merge field by field (core/merge.py) from their common ancestor, which is found through
the revision documents the write path keeps, so merging still works after compaction. When
content edits overlap, the conflict stays visible (`Note.conflicts`) until a person settles it
with `resolve_note_conflict`. Every replaced version is kept as a revision.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from notebook.core import hlc, validation
from notebook.core.activity import Activity, deterministic_suffix, new_activity
from notebook.core.domain import (
    METADATA_REASON,
    Note,
    NoteRevision,
    User,
    format_time,
    revision_id,
    utc_now,
    visible_version,
)
from notebook.core.errors import InvalidInput, StorageError, VersionConflict
from notebook.core.hlc import stamp_after
from notebook.core.merge import NoteVersion, merge_versions

# the one place a service sees stored documents: merging works on the revision leaves of one
# document, which only the database layer can list (see [tool.importlinter] in pyproject.toml)
from notebook.database.conflicts import ConflictStore, refresh_family_to_revoke
from notebook.services.ports import ResolutionStore
from notebook.utils.metrics import CONFLICTS_DETECTED, CONFLICTS_LEFT_FOR_PEOPLE, CONFLICTS_RESOLVED

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
_MAX_SIGHTINGS = 10_000  # conflicted ids remembered so each is counted once as detected


def _merge_event(result: Note, losing: Sequence[str]) -> Activity:
    """The record of an automatic merge, the same on every node: its time comes from the
    merge's clock stamp and its id from the leaves it settles, so every node's resolver writes
    one identical document (their resolution writes share one write id) instead of one each."""
    parsed = hlc.parse(result.hlc)
    moment = datetime.fromtimestamp(parsed[0] / 1000, UTC) if parsed else datetime.now(UTC)
    at = format_time(moment)
    return new_activity(
        "note.conflict_resolved", None, "note", result.id, at,
        notebook_id=result.notebook_id, notebook_owner_id=result.owner_id,
        unique=deterministic_suffix(result.id, result.version or "", *losing), detail="merged automatically",
    )  # fmt: skip


class BaseNotHereYet(Exception):
    """The revision document of the common ancestor is not on this node (yet)."""


def _fields(version: NoteVersion) -> tuple[str, str, tuple[str, ...]]:
    return (version.title, version.content, version.tags)


def version_of(note: Note | NoteRevision, version: str = "") -> NoteVersion:
    if isinstance(note, NoteRevision):
        return NoteVersion(
            title=note.title,
            content=note.content,
            tags=tuple(note.tags),
            pinned=False,
            trashed_at=None,
            notebook_id="",
            updated_at=note.created_at,
            updated_by=note.author_id or "",
            version=note.replaced_version,
        )
    return NoteVersion(
        title=note.title,
        content=note.content,
        tags=tuple(note.tags),
        pinned=note.pinned,
        trashed_at=note.trashed_at,
        notebook_id=note.notebook_id,
        updated_at=note.updated_at,
        updated_by=note.updated_by,
        version=version or note.version or "",
        owner_id=note.owner_id,
    )


def _loser_reason(loser: Note, result: tuple[str, str, tuple[str, ...]]) -> str:
    """A losing version the result already equals is kept but not listed: nothing was lost."""
    return METADATA_REASON if _fields(version_of(loser)) == result else "CONFLICT_LOSER"


def apply_version(note: Note, merged: NoteVersion) -> Note:
    return replace(
        note,
        title=merged.title,
        content=merged.content,
        tags=list(merged.tags),
        pinned=merged.pinned,
        trashed_at=merged.trashed_at,
        notebook_id=merged.notebook_id or note.notebook_id,
        owner_id=merged.owner_id if merged.notebook_id else note.owner_id,
        updated_at=merged.updated_at,
        updated_by=merged.updated_by,
    )


@dataclass
class ResolverReport:
    resolved: int = 0
    left_for_people: int = 0
    waiting: int = 0  # for the common ancestor's revision to arrive by replication
    other_documents: int = 0
    revoked_families: int = 0  # refresh tokens used twice across nodes
    errors: int = 0
    unresolved_ids: list[str] = field(default_factory=list)


class ConflictResolver:
    """Finds conflicted documents and settles them; safe to run in several processes at once."""

    def __init__(
        self,
        notes: ResolutionStore,
        notes_store: ConflictStore,
        other_stores: Sequence[ConflictStore],
        base_wait_seconds: float = 300.0,
        end_session: Callable[[str, str], None] | None = None,
    ):
        self.notes = notes
        # ends a session (user id, refresh family): its refresh tokens and its access tokens
        self.end_session = end_session
        self.base_wait_seconds = base_wait_seconds
        self.notes_store = notes_store
        self.stores = [notes_store, *other_stores]
        self._sightings: dict[str, None] = {}  # conflicted ids seen and not yet settled, oldest first
        self._sightings_lock = threading.Lock()

    # finding ---------------------------------------------------------------------------------
    def resolve_pending(self) -> ResolverReport:
        """Settle every document the `conflicted` views list now."""
        report = ResolverReport()
        for store in self.stores:
            for doc_id in store.conflicted_ids():
                self._resolve_one(store, doc_id, report)
        return report

    def run(self, stop: threading.Event, poll_seconds: float = 5.0) -> None:
        """Follow the notes changes feed every `poll_seconds` until `stop` is set; sweep the
        `conflicted` views every third round. Feed positions are kept per node by the store
        (a position from one node means nothing on another), and the sweep covers whatever a
        node's feed was not followed for."""
        last_sweep = -float("inf")
        while not stop.is_set():
            try:
                if time.monotonic() - last_sweep >= poll_seconds * 3:
                    last_sweep = time.monotonic()
                    self.resolve_pending()
                ids = self.notes_store.changed_with_leaves()
                report = ResolverReport()
                for doc_id in ids:
                    self._resolve_one(self.notes_store, doc_id, report)
                if not ids:
                    stop.wait(poll_seconds)
            except StorageError as exc:
                log.warning("conflict resolver waiting for the database: %s", exc.reason)
                stop.wait(poll_seconds)
            except Exception:
                # keep the thread alive: one bad document must not stop conflict resolution
                log.exception("conflict resolver round failed")
                stop.wait(poll_seconds)

    def _resolve_one(self, store: ConflictStore, doc_id: str, report: ResolverReport) -> None:
        database = "notes" if store is self.notes_store else "users"
        first_sighting = self._sighted(doc_id)
        if first_sighting:
            CONFLICTS_DETECTED.labels(database).inc()
        try:
            if store is self.notes_store and doc_id.startswith("note:"):
                outcome = self.resolve_note(doc_id)
                if outcome is None:
                    report.waiting += 1
                elif outcome:
                    report.resolved += 1
                    self._settled(doc_id, database, "merged")
                else:
                    report.left_for_people += 1
                    report.unresolved_ids.append(doc_id)
                    if first_sighting:
                        CONFLICTS_LEFT_FOR_PEOPLE.inc()
            else:
                self._revoke_replayed_family(store, doc_id, report)
                if store.settle_by_rule(doc_id):
                    report.other_documents += 1
                    self._settled(doc_id, database, "rule")
        except (StorageError, VersionConflict) as exc:
            report.errors += 1
            log.info("conflict on %s not settled this round: %s", doc_id, exc)

    def _sighted(self, doc_id: str) -> bool:
        """Remember a conflicted document; True the first time it is seen (until settled)."""
        with self._sightings_lock:
            if doc_id in self._sightings:
                return False
            self._sightings[doc_id] = None
            if len(self._sightings) > _MAX_SIGHTINGS:
                self._sightings.pop(next(iter(self._sightings)))
            return True

    def _settled(self, doc_id: str, database: str, how: str) -> None:
        with self._sightings_lock:
            self._sightings.pop(doc_id, None)
        CONFLICTS_RESOLVED.labels(database, how).inc()

    def _revoke_replayed_family(self, store: ConflictStore, doc_id: str, report: ResolverReport) -> None:
        """Revoke a refresh-token family before its conflict is settled (so a failure leaves the
        conflict in place to be seen again); see conflicts.refresh_family_to_revoke."""
        if self.end_session is None or not doc_id.startswith("refresh:"):
            return
        leaves = store.leaves(doc_id)
        family = refresh_family_to_revoke(leaves)
        if family is not None:
            self.end_session(str(leaves[0].doc.get("user_id", "")), family)
            report.revoked_families += 1
            log.warning("refresh token used on two nodes; session revoked", extra={"event": "refresh_reuse"})

    # merging ---------------------------------------------------------------------------------
    def resolve_note(self, note_id: str) -> bool | None:
        """Merge every leaf of a note. True when settled, False when content edits overlap (left
        for a person), None when the common ancestor's revision has not replicated here yet."""
        carried: list[tuple[Note, list[str]]] = []  # losers already deleted by an earlier attempt
        for _ in range(MAX_ATTEMPTS):
            leaves = self.notes_store.leaves(note_id)
            if not leaves:
                return True
            winner_leaf, loser_leaves = leaves[0], leaves[1:]
            if not loser_leaves and not carried:
                return True
            winner = self.notes.from_doc(winner_leaf.doc)
            losers = [(self.notes.from_doc(leaf.doc), leaf.history) for leaf in loser_leaves]
            present = {loser.version for loser, _ in losers}
            losers += [item for item in carried if item[0].version not in present]
            merged = version_of(winner)
            for loser, history in losers:
                try:
                    base = self._common_ancestor(note_id, winner_leaf.history, history)
                except BaseNotHereYet:
                    if self._recent(winner, loser):
                        return None
                    base = None  # long gone (pruned): only identical content merges
                outcome = merge_versions(base, merged, version_of(loser))
                if not outcome.clean:
                    return False
                merged = outcome.version
            result = apply_version(winner, merged)
            # the merge is a write after every leaf: its clock stamp comes after all of theirs,
            # and is the same on every node (a fresh stamp would make each node's answer differ)
            result.hlc = stamp_after(max([winner.hlc] + [loser.hlc for loser, _ in losers]))
            # every replaced version keeps its revision, including the winner's previous state;
            # one whose fields the result already has is kept but not listed (nothing was lost)
            kept = _fields(version_of(result))
            revisions = [NoteRevision.of(loser, _loser_reason(loser, kept)) for loser, _ in losers]
            changed = kept != _fields(version_of(winner))
            revisions.append(NoteRevision.of(winner, "CONFLICT_MERGE" if changed else METADATA_REASON))
            losing = [leaf.rev for leaf in loser_leaves]
            try:
                self.notes.write_resolution(
                    result, losing, revisions, restamp=False, events=[_merge_event(result, losing)]
                )
                return True
            except VersionConflict:
                # the winner moved on; the losers we deleted are merged into the new winner next
                carried = losers
        return False

    def _common_ancestor(self, note_id: str, ours: list[str], theirs: list[str]) -> NoteVersion | None:
        """The fields of the newest version both histories share, from the revision document
        that was written when it was replaced (CouchDB may have compacted its body away).
        None when the histories share nothing."""
        shared = set(theirs)
        ancestor = next((rev for rev in ours if rev in shared), None)
        if ancestor is None:
            return None
        revision = self.notes.get_revision(revision_id(note_id, ancestor))
        if revision is None:
            raise BaseNotHereYet(ancestor)
        return version_of(revision)

    def _recent(self, *notes: Note) -> bool:
        """Whether a missing revision may still be on its way by replication."""
        horizon = format_time(datetime.now(UTC) - timedelta(seconds=self.base_wait_seconds))
        return any(note.updated_at > horizon for note in notes)

    # people ----------------------------------------------------------------------------------
    def resolve_by_person(
        self, actor: User, note: Note, keep_version: str | None, merged: Mapping[str, Any] | None
    ) -> Note:
        """Settle a note's conflict as a person chose: keep one leaf, or write merged fields."""
        leaves = self.notes_store.leaves(note.id)
        if len(leaves) < 2:
            raise InvalidInput("the note has no conflict to resolve", field="id")
        if keep_version is None and not merged:
            raise InvalidInput("give keepVersion or merged", field="keepVersion")
        by_version = {leaf.rev: self.notes.from_doc(leaf.doc) for leaf in leaves}
        winner = by_version[leaves[0].rev]
        if keep_version is not None and keep_version not in by_version:
            raise InvalidInput("keepVersion is not one of the competing versions", field="keepVersion")
        # merged fields without keepVersion go onto the version the person was shown
        shown = visible_version(list(by_version.values()))
        kept = by_version[keep_version] if keep_version is not None else shown
        result = apply_version(winner, version_of(kept))
        result.hlc = max(leaf_note.hlc for leaf_note in by_version.values())
        if merged:
            validation.apply_note_input(result, merged)
        result.updated_at = utc_now()
        result.updated_by = actor.id
        # every leaf is replaced; the kept one only in metadata when no fields were supplied
        revisions = [
            NoteRevision.of(
                leaf_note,
                "CONFLICT_MERGE" if merged else METADATA_REASON if v == kept.version else "CONFLICT_LOSER",
            )
            for v, leaf_note in by_version.items()
        ]
        event = new_activity(
            "note.conflict_resolved", actor.id, "note", result.id, result.updated_at,
            notebook_id=result.notebook_id, notebook_owner_id=result.owner_id, detail="by a person",
        )  # fmt: skip
        self.notes.write_resolution(result, [leaf.rev for leaf in leaves[1:]], revisions, events=[event])
        return result

"""Databases, views and indexes of the application, installed idempotently at start-up.

Every query of the application is served by one of these views: nothing scans all documents.
View functions are plain ES5 so CouchDB 3 and pouchdb-server evaluate them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from notebook.database.couch import CouchDBClient, Database

# note listing views: key [scope, trashed, sort key, id]; scope is "o:<owner>" or "n:<notebook>"
_NOTE_ORDER_VIEW = """function (doc) {
  if (doc.type !== 'note') return;
  var trashed = doc.trashed_at ? true : false;
  emit(['o:' + doc.owner_id, trashed, doc.%(field)s, doc._id], null);
  emit(['n:' + doc.notebook_id, trashed, doc.%(field)s, doc._id], null);
}"""

# search and tag filters: key [scope, 'w' word | 'g' tag, term], value carries the sort keys
_NOTE_TERMS_VIEW = """function (doc) {
  if (doc.type !== 'note') return;
  var value = [doc.trashed_at ? true : false, doc.updated_at, doc.created_at, doc.sort_title];
  var scopes = ['o:' + doc.owner_id, 'n:' + doc.notebook_id];
  for (var s = 0; s < scopes.length; s++) {
    var tokens = doc.tokens || [];
    for (var i = 0; i < tokens.length; i++) emit([scopes[s], 'w', tokens[i]], value);
    var tags = doc.tag_keys || [];
    for (var j = 0; j < tags.length; j++) emit([scopes[s], 'g', tags[j]], value);
  }
}"""

_TAG_COUNTS_VIEW = """function (doc) {
  if (doc.type !== 'note' || doc.trashed_at) return;
  var tags = doc.tags || [];
  for (var i = 0; i < tags.length; i++) {
    emit(['o:' + doc.owner_id, tags[i]], null);
    emit(['n:' + doc.notebook_id, tags[i]], null);
  }
}"""

_NOTE_COUNTS_VIEW = """function (doc) {
  if (doc.type === 'note') emit([doc.notebook_id, doc.trashed_at ? true : false], null);
}"""

_NOTEBOOKS_BY_OWNER_VIEW = """function (doc) {
  if (doc.type === 'notebook') emit([doc.owner_id, doc.created_at], null);
}"""

# [note, listed, time]: versions replaced by metadata-only changes are kept but not listed
_REVISIONS_BY_NOTE_VIEW = """function (doc) {
  if (doc.type === 'note_revision') emit([doc.note_id, doc.reason !== 'METADATA', doc.created_at], null);
}"""

_REVISIONS_OF_NOTE_VIEW = """function (doc) {
  if (doc.type === 'note_revision') emit(doc.note_id, null);
}"""

# documents with conflict leaves, whatever the node or the changes-feed position (see conflicts.py)
_CONFLICTED_VIEW = """function (doc) {
  if (doc._conflicts) emit(doc.type || null, null);
}"""

_REFRESH_BY_FAMILY_VIEW = """function (doc) {
  if (doc.type === 'refresh_token') emit(doc.family, null);
}"""

NOTES_DESIGN = "notebook"
VIEW_BUILD_SECONDS = 600.0
USERS_DESIGN = "users"

ORDER_VIEWS = {
    "UPDATED_DESC": ("notes_by_updated", True),
    "UPDATED_ASC": ("notes_by_updated", False),
    "CREATED_DESC": ("notes_by_created", True),
    "TITLE_ASC": ("notes_by_title", False),
}

NOTES_DESIGN_DOC = {
    "language": "javascript",
    "views": {
        "notes_by_updated": {"map": _NOTE_ORDER_VIEW % {"field": "updated_at"}, "reduce": "_count"},
        "notes_by_created": {"map": _NOTE_ORDER_VIEW % {"field": "created_at"}, "reduce": "_count"},
        "notes_by_title": {"map": _NOTE_ORDER_VIEW % {"field": "sort_title"}, "reduce": "_count"},
        "note_terms": {"map": _NOTE_TERMS_VIEW},
        "tag_counts": {"map": _TAG_COUNTS_VIEW, "reduce": "_count"},
        "note_counts": {"map": _NOTE_COUNTS_VIEW, "reduce": "_count"},
        "notebooks_by_owner": {"map": _NOTEBOOKS_BY_OWNER_VIEW},
        "revisions_by_note": {"map": _REVISIONS_BY_NOTE_VIEW},
        "revisions_of_note": {"map": _REVISIONS_OF_NOTE_VIEW},
        "conflicted": {"map": _CONFLICTED_VIEW},
    },
}

USERS_DESIGN_DOC = {
    "language": "javascript",
    "views": {
        "refresh_by_family": {"map": _REFRESH_BY_FAMILY_VIEW},
        "conflicted": {"map": _CONFLICTED_VIEW},
    },
}


@dataclass(frozen=True)
class Databases:
    """Handles on the application's databases on one client."""

    users: Database
    notes: Database
    activity: Database

    def all(self) -> tuple[Database, ...]:
        return (self.users, self.notes, self.activity)


def database_names(prefix: str) -> dict[str, str]:
    return {"users": f"{prefix}users", "notes": f"{prefix}notes", "activity": f"{prefix}activity"}


def open_databases(client: CouchDBClient, prefix: str) -> Databases:
    names = database_names(prefix)
    return Databases(**{role: client.database(name) for role, name in names.items()})


def ensure_schema(databases: Databases, warm: bool = True) -> None:
    """Create databases and design documents if missing; then build the views once."""
    for db in databases.all():
        db.ensure_exists()
    databases.users.ensure_design(USERS_DESIGN, USERS_DESIGN_DOC)
    databases.notes.ensure_design(NOTES_DESIGN, NOTES_DESIGN_DOC)
    if warm:
        warm_views(databases)


def warm_views(databases: Databases, timeout: float = VIEW_BUILD_SECONDS) -> None:
    """Bring every view up to date. A stale view makes its next query index everything written
    since, which on pouchdb-server can outlast a request timeout (CouchDB 3 indexes in the
    background by itself): run this at start-up and after bulk loads."""
    for db, design, doc in (
        (databases.notes, NOTES_DESIGN, NOTES_DESIGN_DOC),
        (databases.users, USERS_DESIGN, USERS_DESIGN_DOC),
    ):
        for view in doc["views"]:
            db.view(design, view, limit=0, timeout=timeout)

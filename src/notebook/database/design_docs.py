"""Databases, views and indexes of the application, installed idempotently at start-up.

Every query of the application is served by one of these views: nothing scans all documents.
View functions are plain ES5 so CouchDB 3 and pouchdb-server evaluate them the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from notebook.core.search import title_sort_key
from notebook.database.couch import CouchDBClient, Database, DatabaseUnavailable, DocumentNotFound

log = logging.getLogger(__name__)

# note listing views: key [scope, trashed, sort key, id]; scope is "o:<owner>" or "n:<notebook>".
# Every sort key is ordered the same by CouchDB 3 (ICU collation) and pouchdb-server (code
# points): fixed-width timestamps, `title_key` (hex, see core/search.title_sort_key) and note ids
# of one fixed shape ("note:" + 32 hex digits).
_NOTE_ORDER_VIEW = """function (doc) {
  if (doc.type !== 'note') return;
  var trashed = doc.trashed_at ? true : false;
  emit(['o:' + doc.owner_id, trashed, doc.%(field)s, doc._id], null);
  emit(['n:' + doc.notebook_id, trashed, doc.%(field)s, doc._id], null);
}"""

# search and tag filters, in two views that share no row. A note's terms (word hashes 'w', tag
# keys 'g') are emitted once under its owner's scope, in listing order, and once under its
# notebook's scope, in no order.
#
# note_terms_sorted: key [owner scope, kind, term, trashed, updated_at, id], value [created_at,
# title_key]. A filtered page of one's own notes by time updated walks a term from its position
# and stops at the page size (term_search.py); the full path (other orders, totalCount) reads
# each term's range of one trash state, and the value gives it the other sort keys.
_NOTE_TERMS_SORTED_VIEW = """function (doc) {
  if (doc.type !== 'note') return;
  var scope = 'o:' + doc.owner_id, trashed = doc.trashed_at ? true : false, at = doc.updated_at;
  var value = [doc.created_at, doc.title_key];
  var tokens = doc.tokens || [];
  for (var i = 0; i < tokens.length; i++) emit([scope, 'w', tokens[i], trashed, at, doc._id], value);
  var tags = doc.tag_keys || [];
  for (var j = 0; j < tags.length; j++) emit([scope, 'g', tags[j], trashed, at, doc._id], value);
}"""

# note_terms: key [notebook scope, kind, term], value [trashed, updated_at, created_at,
# title_key]: a notebook's filtered listing, and a grantee's shared notebooks (one keyed request
# for every notebook and term)
_NOTE_TERMS_VIEW = """function (doc) {
  if (doc.type !== 'note') return;
  var value = [doc.trashed_at ? true : false, doc.updated_at, doc.created_at, doc.title_key];
  var scope = 'n:' + doc.notebook_id;
  var tokens = doc.tokens || [];
  for (var i = 0; i < tokens.length; i++) emit([scope, 'w', tokens[i]], value);
  var tags = doc.tag_keys || [];
  for (var j = 0; j < tags.length; j++) emit([scope, 'g', tags[j]], value);
}"""

_TAG_COUNTS_VIEW = """function (doc) {
  if (doc.type !== 'note' || doc.trashed_at) return;
  var tags = doc.tag_names || doc.tags || [];
  for (var i = 0; i < tags.length; i++) {
    emit(['o:' + doc.owner_id, tags[i]], null);
    emit(['n:' + doc.notebook_id, tags[i]], null);
  }
}"""

# notes written before `title_key` existed (they still carry the old `sort_title`): rewritten by
# backfill_title_keys, after which this view is empty
_NOTES_WITHOUT_TITLE_KEY_VIEW = """function (doc) {
  if (doc.type === 'note' && typeof doc.title_key !== 'string') emit(null, null);
}"""

_NOTE_COUNTS_VIEW = """function (doc) {
  if (doc.type === 'note') emit([doc.notebook_id, doc.trashed_at ? true : false], null);
}"""

_NOTEBOOKS_BY_OWNER_VIEW = """function (doc) {
  if (doc.type === 'notebook') emit([doc.owner_id, doc.created_at], null);
}"""

# [note, listed, time]: versions replaced by metadata-only changes are kept but not listed
# one row per revision: its note, and whether it is listed (not METADATA) with its time as the
# value, so the revisions of a whole page of notes are one request by `keys` and pruning reads
# one key (an earlier [note, listed, created_at] view emitted a second row per revision)
_REVISIONS_OF_NOTE_VIEW = """function (doc) {
  if (doc.type === 'note_revision') emit(doc.note_id, [doc.reason !== 'METADATA', doc.created_at]);
}"""

# documents with conflict leaves, whatever the node or the changes-feed position (see conflicts.py)
_CONFLICTED_VIEW = """function (doc) {
  if (doc._conflicts) emit(doc.type || null, null);
}"""

_REFRESH_BY_FAMILY_VIEW = """function (doc) {
  if (doc.type === 'refresh_token') emit(doc.family, null);
}"""

# abuse limits (database/throttle_repository.py): one document per counted attempt
_ATTEMPTS_VIEW = """function (doc) {
  if (doc.type !== 'attempt') return;
  for (var i = 0; i < doc.keys.length; i++) emit([doc.keys[i], doc.bucket], null);
}"""

_ATTEMPTS_BY_BUCKET_VIEW = """function (doc) {
  if (doc.type === 'attempt') emit(doc.bucket, doc._rev);
}"""

# sharing ---------------------------------------------------------------------------------------
# memberships are documents `member:<notebook uuid>:<user id>` in the notes database

_MEMBERSHIPS_BY_USER_VIEW = """function (doc) {
  if (doc.type === 'membership') emit([doc.user_id, doc.notebook_id], doc.role);
}"""

_MEMBERSHIPS_BY_NOTEBOOK_VIEW = """function (doc) {
  if (doc.type === 'membership') emit(doc.notebook_id, doc.role);
}"""

# every notebook a user can open, own and shared, in one keyset-paginated range: a membership
# row links to its notebook ({_id}), so include_docs returns the notebook itself
_NOTEBOOKS_BY_USER_VIEW = """function (doc) {
  if (doc.type === 'notebook') emit([doc.owner_id, doc.created_at, doc._id], null);
  if (doc.type === 'membership') {
    emit([doc.user_id, doc.notebook_created_at, doc.notebook_id], {_id: doc.notebook_id});
  }
}"""

# what key rotation has left to do (database/key_rotation.py): notes and revisions per data key
# id (the second part of `sealed`), notes per index key id (`ix`), and documents still in clear
_SEALED_KEYS_VIEW = """function (doc) {
  if (doc.type !== 'note' && doc.type !== 'note_revision') return;
  emit(doc.sealed ? doc.sealed.split('.')[1] : 'clear', null);
  if (doc.type === 'note' && doc.ix) emit(doc.ix, null);
}"""

# the notes of shared notebooks, fetched for many notebooks at once with `keys`; the value
# carries the sort keys and tags so that listings and tag counts need no documents
_NOTES_BY_NOTEBOOK_VIEW = """function (doc) {
  if (doc.type !== 'note') return;
  emit([doc.notebook_id, doc.trashed_at ? true : false],
       [doc.updated_at, doc.created_at, doc.title_key, doc.tag_keys || [], doc.tag_names || doc.tags || []]);
}"""

_REFRESH_BY_USER_VIEW = """function (doc) {
  if (doc.type === 'refresh_token') emit(doc.user_id, null);
}"""

# activity (database/activity_repository.py): the same views in the notes, users and activity
# databases, since a record lives in the database of the change it records
_ACTIVITY_FEED_VIEW = """function (doc) {
  if (doc.type !== 'activity') return;
  if (doc.security) { emit(['s:', doc.at, doc._id], null); return; }
  if (doc.actor_id) emit(['u:' + doc.actor_id, doc.at, doc._id], null);
  if (doc.notebook_id) emit(['n:' + doc.notebook_id, doc.at, doc._id], null);
  if (doc.notebook_owner_id && doc.notebook_owner_id !== doc.actor_id) {
    emit(['o:' + doc.notebook_owner_id, doc.at, doc._id], null);
  }
}"""

# counts with a built-in reduce (_sum of `count`): ['a', actor, 15-minute bucket, action] for
# per-user figures in any time zone, ['d', day, actor] for active users, ['w', day] for writes,
# ['x', action, day] for totals of one action
_ACTIVITY_COUNTS_VIEW = """function (doc) {
  if (doc.type !== 'activity' || doc.security || typeof doc.at !== 'string') return;
  var n = doc.count || 1;
  var minute = Math.floor(parseInt(doc.at.substr(14, 2), 10) / 15) * 15;
  var bucket = doc.at.substr(0, 14) + (minute < 10 ? '0' : '') + minute;
  var day = doc.at.substr(0, 10);
  if (doc.actor_id) {
    emit(['a', doc.actor_id, bucket, doc.action], n);
    emit(['d', day, doc.actor_id], 1);
  }
  if (doc.target_type === 'note' || doc.target_type === 'notebook') emit(['w', day], n);
  emit(['x', doc.action, day], n);
}"""

# retention: every record by time, security events included
_ACTIVITY_BY_TIME_VIEW = """function (doc) {
  if (doc.type === 'activity') emit(doc.at, null);
}"""

ACTIVITY_DESIGN = "activity"
ACTIVITY_DESIGN_DOC = {
    "language": "javascript",
    "views": {
        "feed": {"map": _ACTIVITY_FEED_VIEW},
        "counts": {"map": _ACTIVITY_COUNTS_VIEW, "reduce": "_sum"},
        "by_time": {"map": _ACTIVITY_BY_TIME_VIEW},
    },
}

# analytics: live and trashed notes and their words per owner, and ['*', trashed] for everyone
_NOTE_STATS_VIEW = """function (doc) {
  if (doc.type !== 'note') return;
  var trashed = doc.trashed_at ? true : false;
  emit([doc.owner_id, trashed], doc.word_count || 0);
  emit(['*', trashed], doc.word_count || 0);
}"""

_NOTEBOOK_COUNTS_VIEW = """function (doc) {
  if (doc.type === 'notebook') emit(doc.owner_id, null);
}"""

_USER_COUNTS_VIEW = """function (doc) {
  if (doc.type === 'user') emit(null, null);
}"""

SHARING_VIEWS = {
    "memberships_by_user": {"map": _MEMBERSHIPS_BY_USER_VIEW},
    "memberships_by_notebook": {"map": _MEMBERSHIPS_BY_NOTEBOOK_VIEW},
    "notebooks_by_user": {"map": _NOTEBOOKS_BY_USER_VIEW},
    "notes_by_notebook": {"map": _NOTES_BY_NOTEBOOK_VIEW},
}

NOTES_DESIGN = "notebook"
VIEW_BUILD_SECONDS = 600.0
USERS_DESIGN = "users"
THROTTLE_DESIGN = "throttle"

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
        "notes_by_title": {"map": _NOTE_ORDER_VIEW % {"field": "title_key"}, "reduce": "_count"},
        "notes_without_title_key": {"map": _NOTES_WITHOUT_TITLE_KEY_VIEW},
        "sealed_keys": {"map": _SEALED_KEYS_VIEW, "reduce": "_count"},
        "note_terms": {"map": _NOTE_TERMS_VIEW},
        "note_terms_sorted": {"map": _NOTE_TERMS_SORTED_VIEW},
        "tag_counts": {"map": _TAG_COUNTS_VIEW, "reduce": "_count"},
        "note_counts": {"map": _NOTE_COUNTS_VIEW, "reduce": "_count"},
        "notebooks_by_owner": {"map": _NOTEBOOKS_BY_OWNER_VIEW},
        "revisions_of_note": {"map": _REVISIONS_OF_NOTE_VIEW},
        "conflicted": {"map": _CONFLICTED_VIEW},
        "note_stats": {"map": _NOTE_STATS_VIEW, "reduce": "_stats"},
        "notebook_counts": {"map": _NOTEBOOK_COUNTS_VIEW, "reduce": "_count"},
        **SHARING_VIEWS,
    },
}

# a user's API keys (services/api_key_service.py), newest last
_API_KEYS_BY_USER_VIEW = """function (doc) {
  if (doc.type === 'api_key') emit([doc.user_id, doc.created_at], null);
}"""

USERS_DESIGN_DOC = {
    "language": "javascript",
    "views": {
        "api_keys_by_user": {"map": _API_KEYS_BY_USER_VIEW},
        "refresh_by_family": {"map": _REFRESH_BY_FAMILY_VIEW},
        "refresh_by_user": {"map": _REFRESH_BY_USER_VIEW},
        "conflicted": {"map": _CONFLICTED_VIEW},
        "user_counts": {"map": _USER_COUNTS_VIEW, "reduce": "_count"},
    },
}


THROTTLE_DESIGN_DOC = {
    "language": "javascript",
    "views": {
        "attempts": {"map": _ATTEMPTS_VIEW, "reduce": "_count"},
        "attempts_by_bucket": {"map": _ATTEMPTS_BY_BUCKET_VIEW},
    },
}


@dataclass(frozen=True)
class Databases:
    """Handles on the application's databases on one client."""

    users: Database
    notes: Database
    activity: Database
    throttle: Database

    def all(self) -> tuple[Database, ...]:
        return (self.users, self.notes, self.activity, self.throttle)


def database_names(prefix: str) -> dict[str, str]:
    return {
        "users": f"{prefix}users",
        "notes": f"{prefix}notes",
        "activity": f"{prefix}activity",
        # replicated like the others, so limits hold across nodes once replication delivers
        "throttle": f"{prefix}throttle",
    }


def open_databases(client: CouchDBClient, prefix: str) -> Databases:
    names = database_names(prefix)
    return Databases(**{role: client.database(name) for role, name in names.items()})


def ensure_schema(databases: Databases, warm: bool = True, members: Sequence[str] = ()) -> None:
    """Create databases and design documents if missing; then build the views once.

    Creating a database, changing `_security` and writing a design document need a server
    admin; when they already exist as wanted, a database member can run this too (it then only
    reads). `members`: CouchDB user names to add to each database's `_security` members, the
    account the app sends its requests with (docs/operations.md).
    """
    for db in databases.all():
        try:
            db.info()
        except DocumentNotFound:
            db.ensure_exists()
        if members:
            ensure_members(db, members)
    databases.users.ensure_design(USERS_DESIGN, USERS_DESIGN_DOC)
    databases.notes.ensure_design(NOTES_DESIGN, NOTES_DESIGN_DOC)
    databases.throttle.ensure_design(THROTTLE_DESIGN, THROTTLE_DESIGN_DOC)
    for db in (databases.notes, databases.users, databases.activity):
        db.ensure_design(ACTIVITY_DESIGN, ACTIVITY_DESIGN_DOC)
    if warm:
        warm_views(databases)


def ensure_members(db: Database, names: Sequence[str]) -> bool:
    """Add these user names to the database's `_security` members, keeping everything else
    (roles an operator added, the admins); True when it was changed."""
    path = f"{quote(db.name, safe='')}/_security"
    security = db.client.request("GET", path) or {}
    members = security.setdefault("members", {})
    current = list(members.get("names") or [])
    missing = [name for name in names if name not in current]
    if not missing:
        return False
    members["names"] = current + missing
    members.setdefault("roles", [])
    security.setdefault("admins", {"names": [], "roles": []})
    db.client.request("PUT", path, body=security)
    return True


def schema_views(databases: Databases) -> list[tuple[Database, str, str]]:
    """Every (database, design, view) of the application, in the order they are built: the
    throttle's first, because login and register need them and they are small."""
    return [
        (db, design, view)
        for db, design, doc in (
            (databases.throttle, THROTTLE_DESIGN, THROTTLE_DESIGN_DOC),
            (databases.notes, NOTES_DESIGN, NOTES_DESIGN_DOC),
            (databases.users, USERS_DESIGN, USERS_DESIGN_DOC),
            (databases.notes, ACTIVITY_DESIGN, ACTIVITY_DESIGN_DOC),
            (databases.users, ACTIVITY_DESIGN, ACTIVITY_DESIGN_DOC),
            (databases.activity, ACTIVITY_DESIGN, ACTIVITY_DESIGN_DOC),
        )
        for view in doc["views"]
    ]


def warm_views(databases: Databases, timeout: float = VIEW_BUILD_SECONDS) -> None:
    """Bring every view up to date. A stale view makes its next query index everything written
    since, which on pouchdb-server can outlast a request timeout (CouchDB 3 indexes in the
    background by itself): run this after bulk loads. At start-up notebook.warmup does it in
    a background thread."""
    for db, design, view in schema_views(databases):
        build_view(db, design, view, timeout)


def build_view(db: Database, design: str, view: str, timeout: float = VIEW_BUILD_SECONDS) -> None:
    """Query one view (limit 0) until its index is up to date, for at most `timeout` seconds.

    CouchDB 3 gives up waiting for an index after its own `[fabric] request_timeout` (60 s) and
    answers 500 "timeout" while the build goes on in the background; the client reports that
    as DatabaseUnavailable. Such a query is repeated until the index is ready (each attempt
    waits up to 60 s, so this loop is bounded by `timeout`); any other error is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.view(design, view, limit=0, timeout=max(1.0, deadline - time.monotonic()))
            return
        except DatabaseUnavailable as exc:
            if "500 timeout " not in exc.reason or time.monotonic() >= deadline:
                raise
            log.info("index still building; asking again", extra={"db": db.name, "view": view})


def backfill_title_keys(notes: Database, batch: int = 200) -> int:
    """Give notes stored before `title_key` existed their key (and drop the old `sort_title`);
    returns how many were rewritten. Idempotent; a note changed meanwhile keeps its new version
    (its own write already carries the key)."""
    rewritten = 0
    while True:
        rows = notes.view(NOTES_DESIGN, "notes_without_title_key", include_docs=True, limit=batch)["rows"]
        docs = [row["doc"] for row in rows if row.get("doc")]
        for doc in docs:
            doc.pop("sort_title", None)
            doc["title_key"] = title_sort_key(str(doc.get("title", "")))
        if not docs:
            return rewritten
        written = [result for result in notes.bulk_docs(docs) if not result.get("error")]
        rewritten += len(written)
        if not written:
            return rewritten  # every write conflicted: leave the rest to the next start-up

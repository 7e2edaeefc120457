"""Repositories: domain objects in, domain objects out; CouchDB documents stay in here."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from notebook.core.activity import Activity, activity_id, count_words
from notebook.core.domain import (
    DELETED_USER_NAME,
    MEMBER_PREFIX,
    Membership,
    Note,
    Notebook,
    NoteQuery,
    NoteRevision,
    Page,
    RefreshToken,
    TagCount,
    User,
    claim_order,
    email_claim_id,
    membership_id,
    visible_version,
)
from notebook.core.errors import EmailTaken, NotFound, VersionConflict
from notebook.core.hlc import HybridClock, process_clock
from notebook.core.pagination import decode_cursor, encode_cursor
from notebook.core.search import note_tokens, title_sort_key
from notebook.database.activity_repository import with_events
from notebook.database.couch import DERIVED_PREFIX, Database, DocumentConflict, resolution_write_id
from notebook.database.design_docs import NOTES_DESIGN, ORDER_VIEWS, USERS_DESIGN
from notebook.database.note_codec import NoteCodec
from notebook.database.term_search import every_row, sorted_matches

PLAIN = NoteCodec()  # notes stored in clear (ENCRYPTION_ENABLED=false)
# fields of a note document that sealing replaces or removes (none may survive a re-seal)
_CLEAR_FIELDS = ("title", "content", "tags", "sealed", "tag_names", "ix", "_conflicts")

# the last possible key inside a view key range, in CouchDB collation
_HIGH: dict[str, Any] = {}


def _user_to_doc(user: User) -> dict[str, Any]:
    doc = {
        "_id": user.id,
        "type": "user",
        "email": user.email,
        "display_name": user.display_name,
        "is_admin": user.is_admin,
        "password_hash": user.password_hash,
        "default_notebook_id": user.default_notebook_id,
        "created_at": user.created_at,
        "session_epoch": user.session_epoch,
        "ended_sessions": dict(user.ended_sessions),
    }
    if user.email_conflict:
        doc["email_conflict"] = True
    if user.version:
        doc["_rev"] = user.version
    return doc


def _user_from_doc(doc: dict[str, Any]) -> User:
    return User(
        id=doc["_id"],
        email=doc["email"],
        display_name=doc.get("display_name"),
        created_at=doc["created_at"],
        is_admin=bool(doc.get("is_admin")),
        password_hash=doc.get("password_hash", ""),
        default_notebook_id=doc.get("default_notebook_id"),
        version=doc.get("_rev"),
        session_epoch=int(doc.get("session_epoch") or 0),
        ended_sessions=dict(doc.get("ended_sessions") or {}),
        email_conflict=bool(doc.get("email_conflict")),
    )


# what stays of a deleted account: its id, so that notes it wrote in other people's notebooks
# still name an author ("deleted account"); no e-mail, no password, no sessions
DELETED_USER_TYPE = "deleted_user"


def _deleted_user_from_doc(doc: dict[str, Any]) -> User:
    return User(id=doc["_id"], email="", display_name=DELETED_USER_NAME, created_at=doc["created_at"])


def claimants(leaves: Sequence[Mapping[str, Any]]) -> list[str]:
    """The accounts that claimed one address, from the live leaves of its claim document: the
    holder first (the earliest claim, core/domain.claim_order), then every account a claim
    displaced, here or in an earlier settlement (`displaced`), in claim order."""
    claims = sorted(
        (doc for doc in leaves if doc.get("user_id")),
        key=lambda doc: claim_order(doc.get("hlc"), str(doc.get("created_at") or ""), str(doc["user_id"])),
    )
    ids = [str(doc["user_id"]) for doc in claims]
    for doc in claims:
        ids += [str(uid) for uid in doc.get("displaced") or []]
    return list(dict.fromkeys(ids))


def _claim_leaves(db: Database, email: str) -> list[dict[str, Any]]:
    """Every live leaf of an address's claim: one request, two when replication left competing
    claims (registrations on both sides of a partition)."""
    claim = db.get_or_none(email_claim_id(email), conflicts=True)
    if claim is None:
        return []
    others = claim.pop("_conflicts", None)
    leaves = [claim]
    if others:
        leaves += [doc for doc in db.open_revs(claim["_id"], others) if not doc.get("_deleted")]
    return leaves


class UserRepository:
    """Users, with e-mail uniqueness enforced by one claim document per address.

    Two nodes cut apart can each accept a claim of the same address; when they heal, the
    earliest claim keeps the address and the others are flagged (docs/replication.md,
    "Uniqueness across partitions"). Reads apply that rule even before the conflict resolver
    has settled the claim document."""

    def __init__(self, db: Database, clock: HybridClock | None = None) -> None:
        self.db = db
        self.clock = clock or process_clock()

    def _claim(self, user: User, email: str) -> None:
        claim = {
            "_id": email_claim_id(email),
            "type": "email_claim",
            "user_id": user.id,
            "created_at": user.created_at,
            "hlc": self.clock.now(),
        }
        try:
            self.db.put(claim)
        except DocumentConflict:
            raise EmailTaken(email) from None

    def add(self, user: User, *, events: Sequence[Activity] = ()) -> None:
        """Store a new user (with the activity records of its registration); raise EmailTaken
        if another account has this address."""
        self._claim(user, user.email)
        results = write_with_events(self.db, [self._stamped(_user_to_doc(user))], events)
        user.version = _raise_unless_written(results, user.id)

    def _stamped(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A clock stamp on the write: of two leaves that nodes wrote apart, the settlement
        keeps the later one (conflicts.ConflictStore.settle_by_rule)."""
        doc["hlc"] = self.clock.now()
        return doc

    def get(self, user_id: str) -> User:
        doc = self.db.get_or_none(user_id) if user_id.startswith("user:") else None
        if doc is None or doc.get("type") != "user":
            raise NotFound("user not found")
        self.clock.observe(doc.get("hlc"))  # a change written after this read is later than it
        return _user_from_doc(doc)

    def get_many(self, user_ids: Iterable[str]) -> dict[str, User]:
        """Users by id, for display: a deleted account comes back as its placeholder."""
        wanted = [uid for uid in user_ids if uid and uid.startswith("user:")]
        found: dict[str, User] = {}
        for doc_id, doc in self.db.get_many(wanted).items():
            if doc.get("type") == "user":
                found[doc_id] = _user_from_doc(doc)
            elif doc.get("type") == DELETED_USER_TYPE:
                found[doc_id] = _deleted_user_from_doc(doc)
        return found

    def change(self, user_id: str, apply: Callable[[User], None], *, events: Sequence[Activity] = ()) -> User:
        """Apply `apply` to the current user and store it, with the change's activity records;
        retried if the user changes meanwhile."""
        for _ in range(5):
            user = self.get(user_id)
            apply(user)
            results = write_with_events(self.db, [self._stamped(_user_to_doc(user))], events)
            try:
                user.version = _raise_unless_written(results, user.id)
            except DocumentConflict:
                events = fresh_ids(events)
                continue
            return user
        raise VersionConflict("the account keeps changing; try again", self.get(user_id).version)

    def delete(self, user: User, *, events: Sequence[Activity] = ()) -> None:
        """Replace the account by its placeholder (with the activity records of the deletion)
        and free its e-mail address."""
        stub = {
            "_id": user.id,
            "type": DELETED_USER_TYPE,
            "created_at": user.created_at,
            "session_epoch": user.session_epoch + 1,
        }
        current = self.db.get_or_none(user.id)
        if current is not None:
            stub["_rev"] = current["_rev"]
        _raise_unless_written(write_with_events(self.db, [self._stamped(stub)], events), user.id)
        self._release(user.id, user.email)

    def _release(self, user_id: str, email: str) -> None:
        """Free an address if this account holds it (a displaced account does not)."""
        claim = self.db.get_or_none(email_claim_id(email))
        if claim is not None and claim.get("user_id") == user_id:
            self.db.bulk_docs([{"_id": claim["_id"], "_rev": claim["_rev"], "_deleted": True}])

    def get_by_email(self, email: str) -> User | None:
        """The account that holds the address (the earliest claim), if any."""
        ids = claimants(_claim_leaves(self.db, email))
        if not ids:
            return None
        try:
            return self.get(ids[0])
        except NotFound:
            return None

    def login_candidates(self, email: str) -> list[User]:
        """The accounts registered with this address: its holder first, then any that a
        partition let claim it too, flagged `email_conflict` (they sign in with their own
        password and must confirm a new address). Accounts that have moved to another
        address are left out. Two requests, as for one account, unless the claim is contested."""
        ids = claimants(_claim_leaves(self.db, email))
        if not ids:
            return []
        if len(ids) == 1:
            try:
                found = {ids[0]: self.get(ids[0])}
            except NotFound:
                return []
        else:
            found = {uid: user for uid, user in self.get_many(ids).items() if user.email == email}
        users = [found[uid] for uid in ids if uid in found and found[uid].email == email]
        for user in users:
            if user.id != ids[0]:
                user.email_conflict = True
        return users

    def change_email(self, user_id: str, email: str, *, events: Sequence[Activity] = ()) -> User:
        """Move an account to another address: claim the new one (EmailTaken if it is held),
        then write the account, then free the old address if the account held it."""
        user = self.get(user_id)
        old = user.email
        self._claim(user, email)

        def apply(current: User) -> None:
            current.email = email
            current.email_conflict = False

        changed = self.change(user_id, apply, events=events)
        if old != email:
            self._release(user_id, old)
        return changed

    def set_admin(self, user_id: str, is_admin: bool) -> User:
        """Grant or revoke the admin flag (operators' scripts); retried if the user changes meanwhile."""
        for _ in range(5):
            user = self.get(user_id)
            user.is_admin = is_admin
            try:
                user.version = self.db.put(self._stamped(_user_to_doc(user)))
            except DocumentConflict:
                continue
            return user
        raise VersionConflict("the user keeps changing; try again", self.get(user_id).version)


class RefreshTokenRepository:
    """Refresh tokens, stored by the SHA-256 of the token: the token itself is never stored."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _doc_id(token_hash: str) -> str:
        return f"refresh:{token_hash}"

    def add(self, token: RefreshToken, *, events: Sequence[Activity] = ()) -> None:
        """Store a new token, with the activity records of the sign-in it belongs to."""
        doc = {
            "_id": self._doc_id(token.token_hash),
            "type": "refresh_token",
            "user_id": token.user_id,
            "family": token.family,
            "expires_at": token.expires_at,
            "used": False,
            "revoked": False,
        }
        token.version = _raise_unless_written(write_with_events(self.db, [doc], events), str(doc["_id"]))

    @staticmethod
    def _family_id(family: str) -> str:
        return f"refresh_family:{family}"

    def get(self, token_hash: str) -> RefreshToken | None:
        """The token; revoked also when its family's revocation marker is here."""
        doc = self.db.get_or_none(self._doc_id(token_hash))
        if doc is None:
            return None
        marker = None if doc.get("revoked") else self.db.get_or_none(self._family_id(doc["family"]))
        return RefreshToken(
            token_hash=token_hash,
            user_id=doc["user_id"],
            family=doc["family"],
            expires_at=doc["expires_at"],
            used=doc.get("used", False),
            revoked=doc.get("revoked", False) or marker is not None,
            version=doc["_rev"],
        )

    def mark_used(self, token: RefreshToken) -> bool:
        """Mark a token used; False if someone else used it first (a replay)."""
        doc = self.db.get(self._doc_id(token.token_hash))
        if doc["_rev"] != token.version or doc.get("used") or doc.get("revoked"):
            return False
        doc["used"] = True
        try:
            self.db.put(doc)
        except DocumentConflict:
            return False
        return True

    def revoke_family(self, family: str) -> int:
        """Revoke every token of one login session; returns how many were revoked here.

        A token of the family may still be on its way from another node (issued there before
        replication brought the revocation): the family's marker document, which replicates
        too, makes `get` refuse it wherever it lands."""
        rows = self.db.view(USERS_DESIGN, "refresh_by_family", key=family, include_docs=True)["rows"]
        docs = [row["doc"] for row in rows if row.get("doc") and not row["doc"].get("revoked")]
        for doc in docs:
            doc["revoked"] = True
        revoked = len(docs)
        marker_id = self._family_id(family)
        if self.db.get_or_none(marker_id) is None:
            # written once; a concurrent writer on another node makes an equal conflict leaf
            docs.append({"_id": marker_id, "type": "refresh_family", "revoked": True})
        if docs:
            self.db.bulk_docs(docs)
        return revoked

    def revoke_user(self, user_id: str) -> int:
        """Revoke every token of every session of a user; returns how many were revoked."""
        rows = self.db.view(USERS_DESIGN, "refresh_by_user", key=user_id, include_docs=True)["rows"]
        docs = [row["doc"] for row in rows if row.get("doc") and not row["doc"].get("revoked")]
        for doc in docs:
            doc["revoked"] = True
        self.db.bulk_docs(docs)
        return len(docs)

    def delete_user_tokens(self, user_id: str) -> int:
        """Delete every refresh token of a user (account deletion)."""
        rows = self.db.view(USERS_DESIGN, "refresh_by_user", key=user_id)["rows"]
        tombstones = _tombstones(self.db, [row["id"] for row in rows])
        self.db.bulk_docs(tombstones)
        return len(tombstones)


def _membership_to_doc(membership: Membership) -> dict[str, Any]:
    doc = {
        "_id": membership.id,
        "type": "membership",
        "notebook_id": membership.notebook_id,
        "user_id": membership.user_id,
        "role": membership.role,
        "created_at": membership.created_at,
        "notebook_created_at": membership.notebook_created_at,
    }
    if membership.version:
        doc["_rev"] = membership.version
    return doc


def _membership_from_doc(doc: dict[str, Any]) -> Membership:
    return Membership(
        notebook_id=doc["notebook_id"],
        user_id=doc["user_id"],
        role=doc["role"],
        created_at=doc["created_at"],
        notebook_created_at=doc["notebook_created_at"],
        version=doc.get("_rev"),
    )


def _memberships_key(user_id: str) -> str:
    return f"{DERIVED_PREFIX}memberships/{user_id}"


def memberships_changed_by(doc_id: str) -> list[str]:
    """The read cache's derived entries a change of `doc_id` makes stale: a membership document
    (`member:<notebook>:<user>`) invalidates its user's list of memberships."""
    if not doc_id.startswith(MEMBER_PREFIX):
        return []
    _, _, user_id = doc_id[len(MEMBER_PREFIX) :].partition(":")
    return [_memberships_key(user_id)] if user_id else []


class MembershipRepository:
    """Who may open a notebook besides its owner: one document per (notebook, user). A pair
    given a role on two nodes apart keeps the later one (by clock stamp) when they heal."""

    def __init__(self, db: Database, clock: HybridClock | None = None) -> None:
        self.db = db
        self.clock = clock or process_clock()

    def put(self, membership: Membership, *, events: Sequence[Activity] = ()) -> None:
        """Create the membership, or change the role of an existing one, with the activity
        records of the change."""
        for _ in range(5):
            current = self.db.get_or_none(membership.id)
            if current is not None and current.get("type") == "membership":
                self.clock.observe(current.get("hlc"))
                membership.version = current["_rev"]
                membership.created_at = current["created_at"]
            doc = {**_membership_to_doc(membership), "hlc": self.clock.now()}
            try:
                membership.version = _raise_unless_written(
                    write_with_events(self.db, [doc], events), doc["_id"]
                )
                return
            except DocumentConflict:
                events = fresh_ids(events)
                continue
        raise VersionConflict("the membership keeps changing; try again", None)

    def get(self, notebook_id: str, user_id: str) -> Membership | None:
        doc = self.db.get_or_none(membership_id(notebook_id, user_id))
        if doc is None or doc.get("type") != "membership":
            return None
        return _membership_from_doc(doc)

    def roles(self, user_id: str, notebook_ids: Iterable[str]) -> dict[str, str]:
        """The user's role in each of these notebooks where it has one, in one request."""
        ids = {membership_id(nb, user_id): nb for nb in notebook_ids}
        return {ids[doc_id]: doc["role"] for doc_id, doc in self.db.get_many(ids).items() if "role" in doc}

    def for_user(self, user_id: str) -> list[Membership]:
        """The user's memberships. Every listing asks for them, so they are kept in the read
        cache until one of the user's membership documents changes (`memberships_changed_by`)."""

        def read() -> list[dict[str, Any]]:
            rows, docs = self.db.view_docs(
                NOTES_DESIGN, "memberships_by_user", startkey=[user_id], endkey=[user_id, _HIGH]
            )
            return [docs[row["id"]] for row in rows if row["id"] in docs]

        return [_membership_from_doc(doc) for doc in self.db.cached_derived(_memberships_key(user_id), read)]

    def for_notebooks(self, notebook_ids: Sequence[str]) -> dict[str, list[Membership]]:
        """Members of each notebook, in one request."""
        members: dict[str, list[Membership]] = {nb: [] for nb in notebook_ids}
        if not notebook_ids:
            return members
        rows = self.db.view(
            NOTES_DESIGN, "memberships_by_notebook", keys=list(dict.fromkeys(notebook_ids)), include_docs=True
        )["rows"]
        for row in rows:
            if row.get("doc"):
                membership = _membership_from_doc(row["doc"])
                members.setdefault(membership.notebook_id, []).append(membership)
        for listed in members.values():
            listed.sort(key=lambda m: (m.created_at, m.user_id))
        return members

    def remove(self, notebook_id: str, user_id: str, *, events: Sequence[Activity] = ()) -> bool:
        """End a membership (with the activity records of the change); False if there was none."""
        tombstones = _tombstones(self.db, [membership_id(notebook_id, user_id)])
        if tombstones:
            write_with_events(self.db, tombstones, events)
        return bool(tombstones)

    def remove_all(self, memberships: Iterable[Membership]) -> None:
        self.db.bulk_docs(_tombstones(self.db, [m.id for m in memberships]))


def _notebook_to_doc(notebook: Notebook) -> dict[str, Any]:
    doc = {
        "_id": notebook.id,
        "type": "notebook",
        "name": notebook.name,
        "description": notebook.description,
        "owner_id": notebook.owner_id,
        "is_default": notebook.is_default,
        "created_at": notebook.created_at,
        "updated_at": notebook.updated_at,
    }
    if notebook.version:
        doc["_rev"] = notebook.version
    return doc


def _notebook_from_doc(doc: dict[str, Any]) -> Notebook:
    return Notebook(
        id=doc["_id"],
        name=doc["name"],
        owner_id=doc["owner_id"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        description=doc.get("description"),
        is_default=bool(doc.get("is_default")),
        version=doc.get("_rev"),
    )


def _current_rev(db: Database, doc_id: str) -> str | None:
    current = db.get_or_none(doc_id)
    return current["_rev"] if current else None


def _newest(rows: Sequence[dict[str, Any]], note_id: str, listed: bool) -> list[str]:
    """The ids of a note's revisions among `revisions_of_note` rows that are (or are not)
    listed, newest first."""
    found = []
    for row in rows:
        value = row.get("value")
        if row.get("key") == note_id and isinstance(value, list) and len(value) == 2 and value[0] is listed:
            found.append((str(value[1]), str(row["id"])))
    return [rid for _, rid in sorted(found, reverse=True)]


def _tombstones(db: Database, doc_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Deletion stubs for the current revisions of the documents that still exist."""
    rows = db.all_docs(doc_ids, include_docs=False)
    return [
        {"_id": row["id"], "_rev": row["value"]["rev"], "_deleted": True}
        for row in rows
        if "value" in row and not row["value"].get("deleted")
    ]


def result_for(results: Sequence[dict[str, Any]], doc_id: str) -> dict[str, Any]:
    """The `_bulk_docs` result of one document. Results are matched by id, never by position:
    pouchdb-server does not always answer in the order of the request."""
    for result in results:
        if result.get("id") == doc_id:
            return result
    return {"id": doc_id, "error": "missing_result"}


def write_with_events(
    db: Database, docs: Sequence[dict[str, Any]], events: Sequence[Activity], write_id: str | None = None
) -> list[dict[str, Any]]:
    """Write `docs` and the activity records of the change in one `_bulk_docs` round trip.

    `_bulk_docs` is not atomic: when the first document (the change itself) is refused, the
    records written beside it are deleted again, so that no record stands for a change that
    did not happen (docs/analytics.md)."""
    results = db.bulk_docs(with_events(docs, events), write_id=write_id)
    if events and docs and result_for(results, str(docs[0]["_id"])).get("error"):
        written = [result_for(results, event.id) for event in events]
        undo = [
            {"_id": r["id"], "_rev": r["rev"], "_deleted": True}
            for r in written
            if r.get("rev") and not r.get("error")
        ]
        if undo:
            db.bulk_docs(undo)
    return results


def fresh_ids(events: Sequence[Activity]) -> list[Activity]:
    """The same records under new ids, for another attempt of a write that was refused."""
    return [replace(event, id=activity_id(event.at)) for event in events]


def _raise_unless_written(results: Sequence[dict[str, Any]], doc_id: str) -> str:
    """The new revision of `doc_id`; DocumentConflict or RuntimeError when it was refused."""
    result = result_for(results, doc_id)
    if result.get("error") == "conflict":
        raise DocumentConflict(409, "conflict", f"{doc_id}: document update conflict")
    if result.get("error"):
        raise RuntimeError(f"write of {doc_id} failed: {result['error']}")
    return str(result["rev"])


class NotebookRepository:
    """Notebooks; each write carries a clock stamp, so that of two edits made on nodes apart
    the later one is kept when they heal."""

    def __init__(self, db: Database, clock: HybridClock | None = None) -> None:
        self.db = db
        self.clock = clock or process_clock()

    def add(self, notebook: Notebook, *, events: Sequence[Activity] = ()) -> None:
        doc = {**_notebook_to_doc(notebook), "hlc": self.clock.now()}
        notebook.version = _raise_unless_written(write_with_events(self.db, [doc], events), notebook.id)

    def get(self, notebook_id: str) -> Notebook | None:
        doc = self.db.get_or_none(notebook_id)
        if doc is None or doc.get("type") != "notebook":
            return None
        self.clock.observe(doc.get("hlc"))  # an update written after this read is later than it
        return _notebook_from_doc(doc)

    def get_many(self, notebook_ids: Iterable[str]) -> dict[str, Notebook]:
        return {
            doc_id: _notebook_from_doc(doc)
            for doc_id, doc in self.db.get_many(notebook_ids).items()
            if doc.get("type") == "notebook"
        }

    def list_for_user(self, user_id: str, first: int, after: Notebook | None = None) -> list[Notebook]:
        """Notebooks the user owns or is a member of, oldest first, `first` after `after`."""
        start: list[Any] = [user_id] if after is None else [user_id, after.created_at, after.id]
        rows = self.db.view(
            NOTES_DESIGN,
            "notebooks_by_user",
            startkey=start,
            endkey=[user_id, _HIGH],
            include_docs=True,
            limit=first + 1,
        )["rows"]
        notebooks = [
            _notebook_from_doc(row["doc"])
            for row in rows
            if row.get("doc")
            and row["doc"].get("type") == "notebook"
            and (after is None or row["key"][2] != after.id)
        ]
        return notebooks[:first]

    def count_owned(self, owner_id: str, up_to: int) -> int:
        """How many notebooks the user owns, counted up to `up_to`."""
        rows = self.db.view(
            NOTES_DESIGN,
            "notebooks_by_owner",
            startkey=[owner_id],
            endkey=[owner_id, _HIGH],
            limit=up_to,
        )["rows"]
        return len(rows)

    def list_owned(self, owner_id: str) -> list[Notebook]:
        rows = self.db.view(
            NOTES_DESIGN,
            "notebooks_by_owner",
            startkey=[owner_id],
            endkey=[owner_id, _HIGH],
            include_docs=True,
        )["rows"]
        return [_notebook_from_doc(row["doc"]) for row in rows if row.get("doc")]

    def update(self, notebook: Notebook, *, events: Sequence[Activity] = ()) -> None:
        """Write changes made to `notebook` with their activity records; its `version` must
        still be current."""
        doc = {**_notebook_to_doc(notebook), "hlc": self.clock.now()}
        try:
            notebook.version = _raise_unless_written(write_with_events(self.db, [doc], events), notebook.id)
        except DocumentConflict:
            current = _current_rev(self.db, notebook.id)
            raise VersionConflict("the notebook was changed by someone else", current) from None

    def note_counts(self, notebook_ids: Sequence[str]) -> dict[str, int]:
        """Live (not trashed) notes per notebook, in one request."""
        if not notebook_ids:
            return {}
        keys = [[nid, False] for nid in dict.fromkeys(notebook_ids)]
        rows = self.db.view(NOTES_DESIGN, "note_counts", keys=keys, group=True)["rows"]
        counts = dict.fromkeys(notebook_ids, 0)
        for row in rows:
            counts[row["key"][0]] = row["value"]
        return counts

    def delete_with_notes(
        self, notebook: Notebook, *, events: Sequence[Activity] = (), batch: int = 500
    ) -> int:
        """Delete a notebook and every document that belongs to it; returns notes deleted. The
        activity records go with the notebook's own deletion, the last write."""
        deleted = 0
        for trashed in (False, True):
            while True:
                rows = self.db.view(
                    NOTES_DESIGN,
                    "notes_by_updated",
                    reduce=False,
                    limit=batch,
                    startkey=[f"n:{notebook.id}", trashed],
                    endkey=[f"n:{notebook.id}", trashed, _HIGH],
                )["rows"]
                if not rows:
                    break
                note_ids = [row["id"] for row in rows]
                revisions = self.db.view(NOTES_DESIGN, "revisions_of_note", keys=note_ids)["rows"]
                tombstones = _tombstones(self.db, note_ids + [row["id"] for row in revisions])
                written = [r for r in self.db.bulk_docs(tombstones) if not r.get("error")]
                if not written:
                    break  # nothing could be deleted: stop rather than loop on the same rows
                deleted += len(note_ids)
        members = self.db.view(NOTES_DESIGN, "memberships_by_notebook", key=notebook.id)["rows"]
        docs = _tombstones(self.db, [row["id"] for row in members])
        mine = {"_id": notebook.id, "_rev": notebook.version, "_deleted": True}
        write_with_events(self.db, [mine, *docs], events)
        return deleted


def note_to_doc(note: Note) -> dict[str, Any]:
    doc = {
        "_id": note.id,
        "type": "note",
        "notebook_id": note.notebook_id,
        "owner_id": note.owner_id,
        "title": note.title,
        "content": note.content,
        "tags": list(note.tags),
        "tag_keys": [tag.casefold() for tag in note.tags],
        "pinned": note.pinned,
        "created_at": note.created_at,
        "updated_at": note.updated_at,
        "trashed_at": note.trashed_at,
        "created_by": note.created_by,
        "updated_by": note.updated_by,
        "title_key": title_sort_key(note.title),
        "tokens": note_tokens(note.title, note.content),
        "word_count": count_words(note.title, note.content),
        "hlc": note.hlc,
    }
    if note.version:
        doc["_rev"] = note.version
    return doc


def note_from_doc(doc: dict[str, Any], codec: NoteCodec = PLAIN) -> Note:
    fields = codec.open_fields(doc)
    return Note(
        id=doc["_id"],
        notebook_id=doc["notebook_id"],
        owner_id=doc["owner_id"],
        title=fields["title"],
        content=fields["content"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        created_by=doc["created_by"],
        updated_by=doc["updated_by"],
        tags=list(fields["tags"]),
        pinned=bool(doc.get("pinned")),
        trashed_at=doc.get("trashed_at"),
        version=doc.get("_rev"),
        conflict_versions=list(doc.get("_conflicts", [])),
        hlc=str(doc.get("hlc") or ""),
    )


def revision_to_doc(revision: NoteRevision, note: Note) -> dict[str, Any]:
    return {
        "_id": revision.id,
        "type": "note_revision",
        "note_id": revision.note_id,
        "notebook_id": note.notebook_id,
        "owner_id": note.owner_id,
        "title": revision.title,
        "content": revision.content,
        "tags": list(revision.tags),
        "created_at": revision.created_at,
        "author_id": revision.author_id,
        "reason": revision.reason,
        "replaced_version": revision.replaced_version,
    }


def revision_from_doc(doc: dict[str, Any], codec: NoteCodec = PLAIN) -> NoteRevision:
    fields = codec.open_fields(doc)
    return NoteRevision(
        id=doc["_id"],
        note_id=doc["note_id"],
        title=fields["title"],
        content=fields["content"],
        tags=list(fields["tags"]),
        created_at=doc["created_at"],
        author_id=doc.get("author_id"),
        reason=doc["reason"],
        replaced_version=doc["replaced_version"],
    )


def _fields(note: Note) -> tuple[str, str, list[str]]:
    return (note.title, note.content, note.tags)


_SORT_FIELD = {"UPDATED_DESC": 1, "UPDATED_ASC": 1, "CREATED_DESC": 2, "TITLE_ASC": 3}


# position of each order's sort key in the value of the notes_by_notebook view
_SHARED_SORT_FIELD = {"UPDATED_DESC": 0, "UPDATED_ASC": 0, "CREATED_DESC": 1, "TITLE_ASC": 2}


class NoteRepository:
    """Notes and their revisions. Every note write carries a hybrid-logical-clock stamp
    (`hlc`), and every read moves this process's clock past the stamps it sees; a note whose
    leaves replication could not merge shows its latest stamped leaf (`_visible`)."""

    def __init__(self, db: Database, clock: HybridClock | None = None, codec: NoteCodec = PLAIN) -> None:
        self.db = db
        self.clock = clock or process_clock()
        self.codec = codec

    # documents -------------------------------------------------------------------------------
    def to_doc(self, note: Note, deterministic: bool = False) -> dict[str, Any]:
        return self.codec.seal_note(note_to_doc(note), deterministic)

    def from_doc(self, doc: dict[str, Any]) -> Note:
        return note_from_doc(doc, self.codec)

    def _revision_doc(
        self, revision: NoteRevision, note: Note, deterministic: bool = False
    ) -> dict[str, Any]:
        return self.codec.seal_revision(revision_to_doc(revision, note), deterministic)

    def resealed(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A stored note or revision document sealed again with the active keys, on the same
        revision and with nothing else changed (key rotation: database/key_rotation.py)."""
        if doc.get("type") == "note":
            note = note_from_doc(doc, self.codec)
            body = self.to_doc(note)
            return {**{k: v for k, v in doc.items() if k not in _CLEAR_FIELDS}, **body}
        fields = self.codec.open_fields(doc)
        body = {k: v for k, v in doc.items() if k != "sealed"} | fields
        return self.codec.seal_revision(body)

    def _stamp(self, note: Note) -> None:
        """A new stamp for a write replacing `note`'s version: later than the version it
        replaces, and than anything this process has read or written."""
        self.clock.observe(note.hlc)
        note.hlc = self.clock.now()

    def _visible(self, docs: Mapping[str, dict[str, Any]]) -> dict[str, Note]:
        """Notes from their winning documents (read with conflicts=true). Only a conflicted
        document costs more: one request for its other leaves, and the note is the leaf with
        the latest stamp, not the one CouchDB's winner rule (by revision hash) picks; every
        other leaf stays listed in `conflict_versions`."""
        notes: dict[str, Note] = {}
        for doc_id, doc in docs.items():
            if doc.get("type") != "note":
                continue
            note = self.from_doc(doc)
            self.clock.observe(note.hlc)
            if note.conflict_versions:
                leaves = [note] + self.get_versions(doc_id, note.conflict_versions)
                note = visible_version(leaves)
                note.conflict_versions = [leaf.version or "" for leaf in leaves if leaf is not note]
            notes[doc_id] = note
        return notes

    def add(self, note: Note, *, events: Sequence[Activity] = ()) -> None:
        self._stamp(note)
        note.version = _raise_unless_written(write_with_events(self.db, [self.to_doc(note)], events), note.id)

    def add_many(self, notes: Sequence[Note], *, events: Sequence[Activity] = ()) -> list[str | None]:
        """Store new notes in one round trip with the import's activity records; per note,
        None or the error."""
        for note in notes:
            self._stamp(note)
        docs = [self.to_doc(note) for note in notes]
        errors: list[str | None] = []
        results = self.db.bulk_docs(with_events(docs, events))
        for note in notes:
            result = result_for(results, note.id)
            if result.get("error"):
                errors.append(str(result.get("reason") or result["error"]))
            else:
                note.version = result["rev"]
                errors.append(None)
        return errors

    def get(self, note_id: str) -> Note | None:
        """The note as shown: its visible version, the other leaves in `conflict_versions`."""
        doc = self.db.get_or_none(note_id, conflicts=True)
        if doc is None:
            return None
        return self._visible({note_id: doc}).get(note_id)

    def get_many(self, note_ids: Iterable[str]) -> dict[str, Note]:
        return self._visible(self.db.get_many(note_ids, conflicts=True))

    def get_versions(self, note_id: str, versions: Sequence[str]) -> list[Note]:
        """Specific versions of a note (conflict leaves), in one request."""
        if not versions:
            return []
        docs = self.db.open_revs(note_id, versions)
        found = [self.from_doc(doc) for doc in docs if not doc.get("_deleted")]
        for note in found:
            self.clock.observe(note.hlc)
        return found

    def update(
        self, note: Note, revision: NoteRevision | None = None, *, events: Sequence[Activity] = ()
    ) -> None:
        """Write changes made to `note` (its `version` must be current: the visible leaf, or
        any other leaf, which the write extends) together with the revision that keeps the
        replaced version and the change's activity records, in one round trip."""
        self._stamp(note)
        doc = self.to_doc(note)
        docs = [doc] if revision is None else [doc, self._revision_doc(revision, note)]
        result = result_for(write_with_events(self.db, docs, events), note.id)
        if result.get("error") == "conflict":
            raise VersionConflict("the note was changed by someone else", self._visible_rev(note.id))
        if result.get("error"):
            raise RuntimeError(f"write of {note.id} failed: {result['error']}")
        note.version = result["rev"]

    def _visible_rev(self, note_id: str) -> str | None:
        current = self.get(note_id)
        return current.version if current else None

    def delete(self, note: Note, *, events: Sequence[Activity] = ()) -> None:
        """Delete a note and every revision of it, with the deletion's activity records."""
        rows = self.db.view(NOTES_DESIGN, "revisions_of_note", key=note.id)["rows"]
        docs = [{"_id": note.id, "_rev": note.version, "_deleted": True}]
        docs += _tombstones(self.db, [row["id"] for row in rows])
        if result_for(write_with_events(self.db, docs, events), note.id).get("error") == "conflict":
            raise VersionConflict("the note was changed by someone else", self._visible_rev(note.id))

    def write_resolution(
        self,
        note: Note,
        losing_versions: Sequence[str],
        revisions: Sequence[NoteRevision],
        *,
        restamp: bool = True,
        events: Sequence[Activity] = (),
    ) -> None:
        """Settle a conflict in one round trip: the winner, a deletion per losing leaf, the
        revisions keeping every replaced version and the activity record. Raises
        VersionConflict if the winner moved on.

        `restamp=False` keeps the stamp the caller gave: the resolver's, which every node's
        resolver computes alike from the leaves, so that their answers are one revision."""
        if restamp:
            self._stamp(note)
        else:
            self.clock.observe(note.hlc)
        # the resolvers' answer is sealed deterministically: identical on every node, so that
        # their writes are one revision (resolution_write_id), not new conflicts
        doc = self.to_doc(note, deterministic=not restamp)
        doc.pop("_conflicts", None)
        docs = [doc]
        docs += [{"_id": note.id, "_rev": version, "_deleted": True} for version in losing_versions]
        docs += [self._revision_doc(revision, note, deterministic=not restamp) for revision in revisions]
        # the same answer from every node's resolver is the same revision (resolution_write_id)
        replaced = [note.version or "", *losing_versions]
        results = write_with_events(self.db, docs, events, write_id=resolution_write_id(note.id, replaced))
        written = {
            r["rev"] for r in results if r.get("id") == note.id and r.get("rev") and not r.get("error")
        }
        # the winner and the deletions share one id, so read back which leaf won
        current = self.db.get_or_none(note.id, conflicts=True)
        stored = self.from_doc(current) if current else None
        if stored is None or stored.version not in written or _fields(stored) != _fields(note):
            raise VersionConflict(
                "the note changed while its conflict was settled", stored.version if stored else None
            )
        note.version = stored.version
        note.conflict_versions = stored.conflict_versions

    # history -----------------------------------------------------------------------------------
    def revisions(self, note_id: str, first: int) -> list[NoteRevision]:
        """Listed revisions of a note, newest first."""
        return self.revisions_of_many([note_id], first)[note_id]

    def revisions_of_many(self, note_ids: Sequence[str], first: int) -> dict[str, list[NoteRevision]]:
        """Listed revisions of each note, newest first, at most `first` each: two requests for
        any number of notes (the view's rows, then the chosen documents)."""
        ids = list(dict.fromkeys(note_ids))
        rows = self.db.view(NOTES_DESIGN, "revisions_of_note", keys=ids)["rows"] if ids else []
        chosen = {note_id: _newest(rows, note_id, listed=True)[:first] for note_id in ids}
        docs = self.db.get_many(rid for wanted in chosen.values() for rid in wanted)
        return {
            note_id: [revision_from_doc(docs[rid], self.codec) for rid in wanted if rid in docs]
            for note_id, wanted in chosen.items()
        }

    def get_revision(self, revision_id: str) -> NoteRevision | None:
        doc = self.db.get_or_none(revision_id)
        if doc is None or doc.get("type") != "note_revision":
            return None
        return revision_from_doc(doc, self.codec)

    def prune_revisions(self, note_id: str, keep: int) -> int:
        """Delete the oldest revisions beyond `keep`, listed and metadata-only ones each;
        returns how many were deleted."""
        rows = self.db.view(NOTES_DESIGN, "revisions_of_note", key=note_id)["rows"]
        doomed = [rid for listed in (True, False) for rid in _newest(rows, note_id, listed)[keep:]]
        tombstones = _tombstones(self.db, doomed)
        self.db.bulk_docs(tombstones)
        return len(tombstones)

    # listing ---------------------------------------------------------------------------------
    def list_page(self, query: NoteQuery) -> Page:
        """One page of notes in `query.order`, filtered by tag and words through the term index."""
        if query.tag is not None or query.words:
            return self._list_filtered(query)
        if query.shared:
            return self._list_with_shared(query)
        if query.order == "TITLE_ASC" and self.codec.sealed:
            return self._list_by_sealed_title(query)
        view, descending = ORDER_VIEWS[query.order]
        low = [query.scope, query.trashed]
        high = [query.scope, query.trashed, _HIGH]
        start = high if descending else low
        if query.after:
            sort_key, doc_id = decode_cursor(query.after, query.order)
            start = [query.scope, query.trashed, sort_key, doc_id]
        rows, docs = self.db.view_docs(
            NOTES_DESIGN,
            view,
            {"conflicts": True},
            reduce=False,
            descending=descending,
            startkey=start,
            endkey=low if descending else high,
            limit=query.first + 2,
        )
        rows = [row for row in rows if row["id"] in docs]
        if query.after:
            rows = [row for row in rows if row["key"][2:] != [sort_key, doc_id]]
        page_rows = rows[: query.first]
        visible = self._visible({row["id"]: docs[row["id"]] for row in page_rows})
        page_rows = [row for row in page_rows if row["id"] in visible]
        notes = [visible[row["id"]] for row in page_rows]
        cursors = [encode_cursor(query.order, row["key"][2], row["id"]) for row in page_rows]
        return Page(notes, cursors, has_next_page=len(rows) > query.first)

    def _list_by_sealed_title(self, query: NoteQuery) -> Page:
        """TITLE_ASC over sealed title keys: they do not sort in the index, so every index row of
        the scope is read (one request) and its key opened here. The one listing whose cost
        grows with the scope's notes when encryption is on (docs/security.md)."""
        view = ORDER_VIEWS[query.order][0]
        rows = self.db.view(
            NOTES_DESIGN,
            view,
            reduce=False,
            startkey=[query.scope, query.trashed],
            endkey=[query.scope, query.trashed, _HIGH],
        )["rows"]
        keyed = sorted((self.codec.title_order(row["id"], row["key"][2]), row["id"]) for row in rows)
        if query.after:
            cursor = decode_cursor(query.after, query.order)
            keyed = [item for item in keyed if item > cursor]
        page = keyed[: query.first]
        docs = self.get_many(doc_id for _, doc_id in page)
        found = [(key, doc_id) for key, doc_id in page if doc_id in docs]
        return Page(
            [docs[doc_id] for _, doc_id in found],
            [encode_cursor(query.order, key, doc_id) for key, doc_id in found],
            has_next_page=len(keyed) > query.first,
        )

    def _shared_rows(self, notebook_ids: Sequence[str], trashed: bool) -> list[dict[str, Any]]:
        """The index rows of every note of these notebooks, in one request."""
        keys = [[nb, trashed] for nb in dict.fromkeys(notebook_ids)]
        return self.db.view(NOTES_DESIGN, "notes_by_notebook", keys=keys)["rows"] if keys else []

    def _list_with_shared(self, query: NoteQuery) -> Page:
        """The caller's own notes (one ranged page) merged with the notes of shared notebooks
        (their index rows carry the sort keys), then the documents of the page."""
        own = self.list_page(replace(query, shared=()))
        descending = ORDER_VIEWS[query.order][1]
        field = _SHARED_SORT_FIELD[query.order]
        keyed: list[tuple[tuple[str, str], Note | None]] = [
            (decode_cursor(cursor, query.order), note)
            for cursor, note in zip(own.cursors, own.items, strict=True)
        ]
        shared: list[tuple[tuple[str, str], Note | None]] = [
            ((self._sort_value(query.order, row["id"], row["value"][field]), row["id"]), None)
            for row in self._shared_rows(query.shared, query.trashed)
        ]
        if query.after:
            cursor = decode_cursor(query.after, query.order)
            shared = [(k, n) for k, n in shared if (k < cursor if descending else k > cursor)]
        merged = sorted(keyed + shared, key=lambda item: item[0], reverse=descending)
        page = merged[: query.first]
        docs = self.get_many([key[1] for key, note in page if note is None])
        notes: list[Note] = []
        cursors: list[str] = []
        for (sort_key, doc_id), note in page:
            found = note if note is not None else docs.get(doc_id)
            if found is not None:
                notes.append(found)
                cursors.append(encode_cursor(query.order, sort_key, doc_id))
        has_next = own.has_next_page or len(merged) > query.first
        return Page(notes, cursors, has_next_page=has_next)

    def count(self, scope: str, trashed: bool, shared: Sequence[str] = ()) -> int:
        result = self.db.view(
            NOTES_DESIGN,
            "notes_by_updated",
            reduce=True,
            startkey=[scope, trashed],
            endkey=[scope, trashed, _HIGH],
        )
        rows = result["rows"]
        total = rows[0]["value"] if rows else 0
        if shared:
            keys = [[nb, trashed] for nb in dict.fromkeys(shared)]
            counted = self.db.view(NOTES_DESIGN, "note_counts", keys=keys, group=True)["rows"]
            total += sum(row["value"] for row in counted)
        return total

    def _list_filtered(self, query: NoteQuery) -> Page:
        """A filtered page: walked in listing order where the sorted term index serves the query
        (term_search.py: one's own notes by time updated, one index key in use), else every match
        is read (`_list_all_matches`)."""
        terms = self._terms(query)
        if (
            query.order in ("UPDATED_DESC", "UPDATED_ASC")
            and query.scope.startswith("o:")
            and not query.shared
            and all(len(variants) == 1 for _, variants in terms)
        ):
            after = decode_cursor(query.after, query.order) if query.after else None
            positions, more = sorted_matches(
                self.db,
                query.scope,
                [(kind, variants[0]) for kind, variants in terms],
                descending=query.order == "UPDATED_DESC",
                first=query.first,
                after=after,
                trashed=query.trashed,
            )
            docs = self.get_many(doc_id for _, doc_id in positions)
            page = [(key, doc_id) for key, doc_id in positions if doc_id in docs]
            notes = [docs[doc_id] for _, doc_id in page]
            cursors = [encode_cursor(query.order, key, doc_id) for key, doc_id in page]
            return Page(notes, cursors, has_next_page=more)
        return self._list_all_matches(query)

    def count_matching(self, query: NoteQuery) -> int:
        """How many notes a filtered listing covers (its totalCount): every match is read."""
        return self._list_all_matches(replace(query, first=1, after=None), fetch=False).total_count or 0

    def _terms(self, query: NoteQuery) -> list[tuple[str, list[str]]]:
        """(kind, index terms) of a filtered query: the tag ('g') first, then each word ('w')."""
        terms = [("g", self.codec.tag_terms(query.tag.casefold()))] if query.tag is not None else []
        return terms + [("w", self.codec.word_terms(word)) for word in dict.fromkeys(query.words)]

    def _list_all_matches(self, query: NoteQuery, fetch: bool = True) -> Page:
        """Intersect the index rows of every term, sort by their stored keys, then fetch one page.
        With encryption on, a term is its keyed hash under each index key in use (two while the
        index key is rotated): a note matches a term through any of them."""
        terms = self._terms(query)
        # a note is under exactly one of these scopes: the caller's own, or one shared notebook's
        scopes = [query.scope] + [f"n:{nb}" for nb in dict.fromkeys(query.shared)]
        term_of: dict[tuple[str, str], int] = {}
        for number, (kind, variants) in enumerate(terms):
            for variant in variants:
                term_of.setdefault((kind, variant), number)
        hits: dict[str, set[int]] = {}
        values: dict[str, list[Any]] = {}
        for doc_id, term, value in self._term_rows(scopes, list(term_of), query.trashed):
            values[doc_id] = value
            hits.setdefault(doc_id, set()).add(term_of[term])
        wanted = len(terms)
        field = _SORT_FIELD[query.order]
        descending = ORDER_VIEWS[query.order][1]
        matches = sorted(
            (
                (self._sort_value(query.order, doc_id, values[doc_id][field]), doc_id)
                for doc_id, found in hits.items()
                if len(found) >= wanted
            ),
            reverse=descending,
        )
        total = len(matches)
        if query.after:
            cursor = decode_cursor(query.after, query.order)
            matches = [m for m in matches if (m < cursor if descending else m > cursor)]
        page = matches[: query.first]
        docs = self.get_many(doc_id for _, doc_id in page) if fetch else {}
        notes = [docs[doc_id] for _, doc_id in page if doc_id in docs]
        cursors = [encode_cursor(query.order, key, doc_id) for key, doc_id in page if doc_id in docs]
        return Page(notes, cursors, has_next_page=len(matches) > query.first, total_count=total)

    def _term_rows(
        self, scopes: Sequence[str], terms: Sequence[tuple[str, str]], trashed: bool
    ) -> Iterator[tuple[str, tuple[str, str], list[Any]]]:
        """(note id, (kind, term), [trashed, updated_at, created_at, title_key]) of every note
        under `scopes` in that trash state with one of `terms`. An owner's terms are ranges of
        `note_terms_sorted` (one request per term); notebooks' are one keyed `note_terms`
        request for all of them."""
        owners = [scope for scope in scopes if scope.startswith("o:")]
        for scope in owners:
            for kind, term in terms:
                for doc_id, updated_at, value in every_row(self.db, scope, kind, term, trashed):
                    yield doc_id, (kind, term), [trashed, updated_at, *value]
        keys = [[scope, kind, term] for scope in scopes if scope not in owners for kind, term in terms]
        if keys:
            for row in self.db.view(NOTES_DESIGN, "note_terms", keys=keys)["rows"]:
                if row["value"][0] == trashed:
                    yield row["id"], (row["key"][1], row["key"][2]), row["value"]

    def _sort_value(self, order: str, doc_id: str, value: str) -> str:
        """A sort key from a view row; a sealed title key is opened."""
        return self.codec.title_order(doc_id, value) if order == "TITLE_ASC" else value

    def tag_counts(self, scope: str, shared: Sequence[str] = ()) -> list[TagCount]:
        """Live notes per tag; spellings that differ only in case count as one tag, shown as
        its most used spelling (the tag filter ignores case too)."""
        rows = self.db.view(NOTES_DESIGN, "tag_counts", group=True, startkey=[scope], endkey=[scope, _HIGH])[
            "rows"
        ]
        counted: dict[str, int] = {}
        for row in rows:
            tag = self.codec.tag_spelling(row["key"][1])
            counted[tag] = counted.get(tag, 0) + row["value"]
        for row in self._shared_rows(shared, False):
            for tag in self.codec.tag_spellings(row["value"][4]):
                counted[tag] = counted.get(tag, 0) + 1
        totals: dict[str, int] = {}
        spelling: dict[str, tuple[int, str]] = {}
        for tag, count in counted.items():
            key = tag.casefold()
            totals[key] = totals.get(key, 0) + count
            spelling[key] = max(spelling.get(key, (0, tag)), (count, tag))
        counts = [TagCount(spelling[key][1], total) for key, total in totals.items()]
        # rows arrive in the server's collation order (ICU or code points): sort on Python keys
        # only, down to the exact spelling, so both servers give the same list
        return sorted(counts, key=lambda tc: (-tc.count, title_sort_key(tc.tag), tc.tag))

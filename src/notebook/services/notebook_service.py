"""Notebooks: creating, renaming, deleting and sharing them, and who may do what in each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from notebook.core import validation
from notebook.core.activity import Activity, new_activity
from notebook.core.domain import (
    NOTEBOOK_PREFIX,
    ROLES,
    USER_PREFIX,
    Membership,
    Notebook,
    User,
    require_id,
    role_at_least,
    utc_now,
)
from notebook.core.errors import Forbidden, InvalidInput, NotFound, VersionConflict
from notebook.services.ports import MembershipStore, NotebookStore, UserDirectory
from notebook.services.rate_limits import NoShareMissLimit, ShareMissLimit
from notebook.utils.crypto_utils import new_id

MAX_NOTEBOOK_PAGE = 500


def _notebook_event(
    action: str, actor: User, notebook: Notebook, at: str, detail: str | None = None
) -> Activity:
    return new_activity(
        action, actor.id, "notebook", notebook.id, at,
        notebook_id=notebook.id, notebook_owner_id=notebook.owner_id, detail=detail,
    )  # fmt: skip


class NotebookService:
    """Notebooks and their members. A notebook's role decides everything about it and its notes:
    OWNER (its creator) does everything, EDITOR writes notes, VIEWER reads."""

    def __init__(
        self,
        notebooks: NotebookStore,
        memberships: MembershipStore,
        users: UserDirectory,
        max_notebooks_per_user: int = 500,
        max_members_per_notebook: int = 100,
        share_misses: ShareMissLimit | None = None,
    ) -> None:
        self.notebooks = notebooks
        self.memberships = memberships
        self.users = users
        self.max_notebooks_per_user = max_notebooks_per_user
        self.max_members_per_notebook = max_members_per_notebook
        self.share_misses = share_misses or NoShareMissLimit()

    # roles -------------------------------------------------------------------------------------
    def role_of(self, actor: User, notebook: Notebook) -> str | None:
        """The actor's role in the notebook, read from the database on every call so that a
        removed member loses access on the next request, on every app instance."""
        if notebook.owner_id == actor.id:
            return "OWNER"
        membership = self.memberships.get(notebook.id, actor.id)
        return membership.role if membership else None

    def roles_of(self, actor: User, notebooks: Sequence[Notebook]) -> dict[str, str | None]:
        """The actor's role in each notebook, with one request for all the shared ones."""
        shared = [nb.id for nb in notebooks if nb.owner_id != actor.id]
        found = self.memberships.roles(actor.id, shared) if shared else {}
        return {nb.id: "OWNER" if nb.owner_id == actor.id else found.get(nb.id) for nb in notebooks}

    def require(self, actor: User, notebook_id: str, minimum: str) -> Notebook:
        """The notebook if the actor's role in it is at least `minimum`. A notebook the actor
        cannot open at all is NOT_FOUND (its existence is not revealed); one it can open but
        not change this way is FORBIDDEN."""
        require_id(notebook_id, NOTEBOOK_PREFIX, "notebook")
        notebook = self.notebooks.get(notebook_id)
        role = self.role_of(actor, notebook) if notebook is not None else None
        if notebook is None:
            raise NotFound("notebook not found")
        return self.require_loaded(notebook, role, minimum)

    @staticmethod
    def require_loaded(notebook: Notebook, role: str | None, minimum: str) -> Notebook:
        """`require` for a notebook already read, with the actor's role in it (`roles_of`), so a
        list of notebooks costs no second read of each."""
        if role is None:
            raise NotFound("notebook not found")
        if not role_at_least(role, minimum):
            raise Forbidden(f"this needs the {minimum} role in the notebook; yours is {role}")
        return notebook

    def readable(self, actor: User, notebook_id: str) -> Notebook:
        return self.require(actor, notebook_id, "VIEWER")

    def writable(self, actor: User, notebook_id: str) -> Notebook:
        return self.require(actor, notebook_id, "EDITOR")

    def shared_notebook_ids(self, actor: User) -> tuple[str, ...]:
        """Notebooks others shared with the actor: listings, tags and search cover them."""
        return tuple(m.notebook_id for m in self.memberships.for_user(actor.id))

    # notebooks ---------------------------------------------------------------------------------
    def list_notebooks(
        self, actor: User, first: int | None = None, after: str | None = None
    ) -> list[Notebook]:
        """Own and shared notebooks, oldest first; `after` is the id of the last one seen."""
        size = MAX_NOTEBOOK_PAGE if first is None else first
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_NOTEBOOK_PAGE:
            raise InvalidInput(f"first must be between 1 and {MAX_NOTEBOOK_PAGE}", field="first")
        previous = self.readable(actor, after) if after is not None else None
        return self.notebooks.list_for_user(actor.id, size, previous)

    def create_notebook(self, actor: User, name: str, description: str | None = None) -> Notebook:
        if self.notebooks.count_owned(actor.id, self.max_notebooks_per_user) >= self.max_notebooks_per_user:
            raise InvalidInput(
                f"you already have {self.max_notebooks_per_user} notebooks, the most one account may have",
                field="name",
                reason="NOTEBOOK_LIMIT",
            )
        now = utc_now()
        notebook = Notebook(
            id=new_id(NOTEBOOK_PREFIX),
            name=validation.notebook_name(name),
            description=validation.description(description),
            owner_id=actor.id,
            created_at=now,
            updated_at=now,
        )
        self.notebooks.add(notebook, events=[_notebook_event("notebook.created", actor, notebook, now)])
        return notebook

    def update_notebook(
        self, actor: User, notebook_id: str, changes: Mapping[str, Any], version: str
    ) -> Notebook:
        notebook = self.require(actor, notebook_id, "OWNER")
        if notebook.version != version:
            raise VersionConflict("the notebook was changed by someone else", notebook.version)
        if changes.get("name") is not None:
            notebook.name = validation.notebook_name(changes["name"])
        if "description" in changes:
            notebook.description = validation.description(changes["description"])
        notebook.updated_at = utc_now()
        event = _notebook_event("notebook.updated", actor, notebook, notebook.updated_at)
        self.notebooks.update(notebook, events=[event])
        return notebook

    def delete_notebook(self, actor: User, notebook_id: str) -> bool:
        """Delete a notebook with its notes, their revisions and its memberships."""
        notebook = self.require(actor, notebook_id, "OWNER")
        if notebook.is_default or notebook.id == actor.default_notebook_id:
            raise Forbidden("the default notebook cannot be deleted")
        event = _notebook_event("notebook.deleted", actor, notebook, utc_now())
        self.notebooks.delete_with_notes(notebook, events=[event])
        return True

    def note_counts(self, notebook_ids: Sequence[str]) -> dict[str, int]:
        return self.notebooks.note_counts(notebook_ids)

    def get_many(self, notebook_ids: Sequence[str]) -> dict[str, Notebook]:
        """Notebooks by id, for display of notes the caller has already been allowed to read."""
        return self.notebooks.get_many(notebook_ids)

    # sharing -----------------------------------------------------------------------------------
    def share(self, actor: User, notebook_id: str, email: str, role: str) -> Notebook:
        """Give the user with this e-mail `role` (EDITOR or VIEWER) in the notebook, or change
        the role they have. Owner only."""
        notebook = self.require(actor, notebook_id, "OWNER")
        if role not in ROLES or role == "OWNER":
            raise InvalidInput("share as EDITOR or VIEWER; a notebook has one owner", field="role")
        if not isinstance(email, str):
            raise InvalidInput("email must be a string", field="email")
        self.share_misses.before_share(actor.id)
        grantee = self.users.get_by_email(email.strip().lower())
        if grantee is None:
            self.share_misses.share_missed(actor.id)
            raise NotFound("no account has this e-mail address", field="email")
        if grantee.id == notebook.owner_id:
            raise InvalidInput("the owner already has every right in the notebook", field="email")
        self._require_room_for(notebook, grantee)
        now = utc_now()
        event = _notebook_event("notebook.shared", actor, notebook, now, detail=f"{role} for {grantee.id}")
        self.memberships.put(
            Membership(notebook.id, grantee.id, role, now, notebook.created_at), events=[event]
        )
        return notebook

    def unshare(self, actor: User, notebook_id: str, user_id: str) -> Notebook:
        """Take a member's access away; it ends with the member's next request. Owner only."""
        notebook = self.require(actor, notebook_id, "OWNER")
        require_id(user_id, USER_PREFIX, "user")
        event = _notebook_event("notebook.unshared", actor, notebook, utc_now(), detail=user_id)
        if not self.memberships.remove(notebook.id, user_id, events=[event]):
            raise NotFound("this user is not a member of the notebook", field="userId")
        return notebook

    def members(self, notebook_ids: Sequence[str]) -> dict[str, list[Membership]]:
        """Members of each notebook besides its owner, in one request."""
        return self.memberships.for_notebooks(notebook_ids)

    def _require_room_for(self, notebook: Notebook, grantee: User) -> None:
        """A new member only while the notebook has fewer than the most members allowed; a
        member's role can always change."""
        members = self.memberships.for_notebooks([notebook.id]).get(notebook.id, [])
        if len(members) >= self.max_members_per_notebook and all(m.user_id != grantee.id for m in members):
            raise InvalidInput(
                f"a notebook may have at most {self.max_members_per_notebook} member(s) besides its owner",
                field="email",
                reason="MEMBER_LIMIT",
            )

"""Who may call what: one table with a rule for every operation of every API, checked in one place.

Every GraphQL root field (`Query.x`, `Mutation.y`) and every REST route (`REST.endpoint`) has a
rule here. The API layer runs `PermissionPolicy.authorize` before each of them (build_schema wraps
every root resolver; the REST blueprint checks before each request); an operation without a rule
is refused, so a new one cannot be forgotten. The services check roles again where they load the
documents (moving a note checks both notebooks), with the same role order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from notebook.core.domain import API_KEY_SCOPES as API_KEY_ORDER
from notebook.core.domain import NOTE_PREFIX, ROLES, Note, User, require_id
from notebook.core.errors import Forbidden, NotFound, Unauthenticated
from notebook.services.notebook_service import NotebookService

PUBLIC = "PUBLIC"
AUTHENTICATED = "AUTHENTICATED"
ADMIN = "ADMIN"
NOTEBOOK_ROLE = "NOTEBOOK_ROLE"


@dataclass(frozen=True)
class Target:
    """Where an operation names the notebook it acts on: an argument holding a notebook id or
    a note id (the note's notebook counts). `path` follows nested input objects; a missing
    optional argument means the caller's default notebook, which is their own."""

    path: tuple[str, ...]
    kind: str = "notebook"  # or "note"

    def value(self, args: Mapping[str, Any]) -> Any:
        current: Any = args
        for name in self.path:
            if not isinstance(current, Mapping):
                return None
            current = current.get(name)
        return current


@dataclass(frozen=True)
class Rule:
    kind: str
    min_role: str | None = None
    targets: tuple[Target, ...] = ()


def notebook_role(min_role: str, *targets: Target) -> Rule:
    assert min_role in ROLES and targets
    return Rule(NOTEBOOK_ROLE, min_role, targets)


def notebook(*path: str) -> Target:
    return Target(path, "notebook")


def note(*path: str) -> Target:
    return Target(path, "note")


_PUBLIC = Rule(PUBLIC)
_AUTHENTICATED = Rule(AUTHENTICATED)
_ADMIN = Rule(ADMIN)

# argument names are the resolvers' (snake_case)
OPERATIONS: dict[str, Rule] = {
    # queries
    "Query.me": _PUBLIC,  # null without a token
    "Query.notebooks": _AUTHENTICATED,  # own and shared ones only
    "Query.notebook": notebook_role("VIEWER", notebook("id")),
    "Query.note": notebook_role("VIEWER", note("id")),
    "Query.notes": notebook_role("VIEWER", notebook("notebook_id")),  # none: everything readable
    "Query.tags": _AUTHENTICATED,
    "Query.activity": notebook_role("VIEWER", notebook("notebook_id")),
    "Query.myStats": _AUTHENTICATED,
    "Query.systemStats": _ADMIN,
    "Query.securityEvents": _ADMIN,
    "Query.replicationStatus": _ADMIN,
    "Query.apiKeys": _AUTHENTICATED,
    # accounts: the credentials in the arguments are the permission
    "Mutation.register": _PUBLIC,
    "Mutation.login": _PUBLIC,
    "Mutation.refreshToken": _PUBLIC,
    "Mutation.logout": _PUBLIC,
    "Mutation.changePassword": _AUTHENTICATED,
    "Mutation.logoutEverywhere": _AUTHENTICATED,
    "Mutation.confirmNewEmail": _AUTHENTICATED,  # its own account only
    "Mutation.deleteAccount": _AUTHENTICATED,
    "Mutation.createApiKey": _AUTHENTICATED,
    "Mutation.revokeApiKey": _AUTHENTICATED,
    # notebooks
    "Mutation.createNotebook": _AUTHENTICATED,
    "Mutation.updateNotebook": notebook_role("OWNER", notebook("id")),
    "Mutation.deleteNotebook": notebook_role("OWNER", notebook("id")),
    "Mutation.shareNotebook": notebook_role("OWNER", notebook("id")),
    "Mutation.unshareNotebook": notebook_role("OWNER", notebook("id")),
    # notes
    "Mutation.createNote": notebook_role("EDITOR", notebook("input", "notebook_id")),
    "Mutation.updateNote": notebook_role("EDITOR", note("id")),
    "Mutation.moveNote": notebook_role("EDITOR", note("id"), notebook("notebook_id")),
    "Mutation.trashNote": notebook_role("EDITOR", note("id")),
    "Mutation.restoreNote": notebook_role("EDITOR", note("id")),
    "Mutation.deleteNote": notebook_role("OWNER", note("id")),
    "Mutation.restoreNoteRevision": notebook_role("EDITOR", note("id")),
    "Mutation.resolveNoteConflict": notebook_role("EDITOR", note("id")),
    "Mutation.importNotes": notebook_role("EDITOR", notebook("notebook_id")),
    # the operators' REST API (blueprint endpoints)
    "REST.replication.openapi": _PUBLIC,
    "REST.replication.replication_status": _ADMIN,
    "REST.replication.operator_status": _ADMIN,
    "REST.replication.replication_setup": _ADMIN,
    "REST.replication.replication_teardown": _ADMIN,
    "REST.replication.replication_lag": _ADMIN,
    "REST.replication.add_node": _ADMIN,
    "REST.replication.remove_node": _ADMIN,
}


# What an API key may call (docs/security.md, "API keys"): READ keys every query below, WRITE
# keys also the note and notebook mutations. An operation not listed here (accounts, API keys,
# administration, the operators' REST API) refuses every API key: fail closed, like OPERATIONS.
API_KEY_SCOPES: dict[str, str] = {
    **{
        op: "READ"
        for op in (
            "Query.me",
            "Query.notebooks",
            "Query.notebook",
            "Query.note",
            "Query.notes",
            "Query.tags",
            "Query.activity",
            "Query.myStats",
        )
    },  # fmt: skip
    **{
        op: "WRITE"
        for op in OPERATIONS
        if op.startswith("Mutation.")
        and (OPERATIONS[op].kind == NOTEBOOK_ROLE or op == "Mutation.createNotebook")
    },
}


class PermissionPolicy:
    """Checks the rule of an operation for a caller before the operation runs."""

    def __init__(
        self,
        notebooks: NotebookService,
        find_note: Callable[[str], Note | None],
        operations: Mapping[str, Rule] = OPERATIONS,
    ) -> None:
        self.notebooks = notebooks
        self.find_note = find_note
        self.operations = operations

    def rule(self, operation: str) -> Rule:
        rule = self.operations.get(operation)
        if rule is None:
            # fail closed: an operation nobody wrote a rule for is nobody's
            raise Forbidden(f"{operation} has no permission rule")
        return rule

    def authorize(
        self,
        operation: str,
        caller: Callable[[], User | None],
        args: Mapping[str, Any],
        key_scope: Callable[[], str | None] = lambda: None,
    ) -> None:
        """Raise unless the caller may run `operation` with `args`. `caller` is called only when
        the rule needs it (it may raise for a malformed token); `key_scope` then says whether
        the caller came with an API key, and of which scope (None: a signed-in session)."""
        rule = self.rule(operation)
        if rule.kind == PUBLIC:
            return
        user = caller()
        if user is None:
            raise Unauthenticated("sign in first")
        scope = key_scope()
        if scope is not None:
            allowed = API_KEY_SCOPES.get(operation)
            if allowed is None or API_KEY_ORDER.index(scope) < API_KEY_ORDER.index(allowed):
                raise Forbidden(
                    f"an API key with scope {scope} may not call {operation}", reason="API_KEY_SCOPE"
                )
        if rule.kind == AUTHENTICATED:
            return
        if rule.kind == ADMIN:
            if not user.is_admin:
                raise Forbidden("administrators only")
            return
        assert rule.kind == NOTEBOOK_ROLE and rule.min_role is not None
        for target in rule.targets:
            self._check_target(user, target, args, rule.min_role)

    def _check_target(self, user: User, target: Target, args: Mapping[str, Any], min_role: str) -> None:
        value = target.value(args)
        if value is None:
            return  # an optional notebook left out: the caller's own default or everything readable
        if target.kind == "notebook":
            self.notebooks.require(user, value, min_role)
            return
        require_id(value, NOTE_PREFIX, "note")
        found = self.find_note(value)
        if found is None:
            raise NotFound("note not found")
        try:
            self.notebooks.require(user, found.notebook_id, min_role)
        except NotFound:
            raise NotFound("note not found") from None

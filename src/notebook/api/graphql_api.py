"""GraphQL resolvers: read the arguments, call one service, shape the answer. No rules here."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

from ariadne import (
    MutationType,
    ObjectType,
    QueryType,
    ScalarType,
    load_schema_from_path,
    make_executable_schema,
)
from graphql import (
    GraphQLFieldResolver,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    default_field_resolver,
)

from notebook.bootstrap import Services
from notebook.core.activity import Activity
from notebook.core.domain import ApiKey, Membership, Note, Notebook, NoteRevision, Page, User
from notebook.core.errors import Unauthenticated
from notebook.services.analytics_service import SystemStats, UserStats
from notebook.services.auth_service import AuthResult
from notebook.services.replication_service import ReplicationStatus

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "core" / "schema"


class Loader:
    """Per-request cache that fetches many ids in one call, so lists cost O(1) requests."""

    def __init__(self, fetch_many: Callable[[list[Any]], dict[Any, Any]]) -> None:
        self._fetch_many = fetch_many
        self._cache: dict[Any, Any] = {}

    def prime(self, keys: Iterable[Hashable]) -> None:
        missing = [key for key in dict.fromkeys(keys) if key is not None and key not in self._cache]
        if missing:
            found = self._fetch_many(missing)
            for key in missing:
                self._cache[key] = found.get(key)

    def put(self, values: dict[Any, Any]) -> None:
        """Values read by other means (a list of them): their ids need no fetch."""
        self._cache.update(values)

    def load(self, key: Hashable) -> Any:
        self.prime([key])
        return self._cache.get(key)


class RequestContext:
    """What resolvers of one request share: the services, the caller and the loaders."""

    def __init__(self, services: Services, authorization: str | None, client_ip: str = "") -> None:
        self.services = services
        self._authorization = authorization
        self.client_ip = client_ip  # the caller's address, for abuse limits (api/client_ip.py)
        self._user: User | None = None
        self.key_scope: str | None = None  # the scope of the API key the caller came with
        self.users = Loader(services.users.get_many)
        self.notebooks = Loader(services.notebooks.get_many)
        self.note_counts = Loader(services.notebooks.note_counts)
        self.members = Loader(services.notebooks.members)
        self._roles: dict[str, str | None] = {}
        # the notebooks a list returned: the first role or member list asked for fetches theirs too
        self.listed_notebooks: list[Notebook] = []
        # the notes lists returned: the first revisions asked for fetch those of all of them
        self.listed_notes: list[Note] = []
        self._revisions: dict[tuple[str, int], list[NoteRevision]] = {}

    def revisions_of(self, note: Note, first: int) -> list[NoteRevision]:
        """A note's revisions; those of every listed note in the same two requests, and their
        authors in one more."""
        if (note.id, first) not in self._revisions:
            wanted = {n.id: n for n in [note, *self.listed_notes] if (n.id, first) not in self._revisions}
            found = self.services.notes.revisions_of_many(list(wanted.values()), first)
            self._revisions.update({(note_id, first): found.get(note_id, []) for note_id in wanted})
            self.users.prime(revision.author_id for listed in found.values() for revision in listed)
        return self._revisions[(note.id, first)]

    def role(self, notebook: Notebook) -> str | None:
        """The caller's role in the notebook; the roles of every listed notebook in one request."""
        if notebook.id not in self._roles:
            wanted = [nb for nb in [notebook, *self.listed_notebooks] if nb.id not in self._roles]
            self._roles.update(self.services.notebooks.roles_of(self.user, wanted))
        return self._roles.get(notebook.id)

    def members_of(self, notebook: Notebook) -> list[Membership]:
        """A notebook's members; those of every listed notebook in one request."""
        self.members.prime([notebook.id, *(nb.id for nb in self.listed_notebooks)])
        return self.members.load(notebook.id) or []

    @property
    def user_or_none(self) -> User | None:
        if self._user is None and self._authorization:
            scheme, _, token = self._authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("use the header 'Authorization: Bearer <accessToken>'")
            self._user, self.key_scope = self.services.authenticate(token.strip(), self.client_ip)
        return self._user

    @property
    def user(self) -> User:
        user = self.user_or_none
        if user is None:
            raise Unauthenticated("sign in first")
        return user


def ctx(info: GraphQLResolveInfo) -> RequestContext:
    return info.context


class NoteConnection:
    """A page of notes plus what is needed to count the whole list only if asked."""

    def __init__(self, page: Page, count: Callable[[], int]) -> None:
        self.page = page
        self._count = count

    @property
    def edges(self) -> list[dict[str, Any]]:
        return [{"cursor": c, "node": n} for c, n in zip(self.page.cursors, self.page.items, strict=True)]

    @property
    def page_info(self) -> dict[str, Any]:
        cursors = self.page.cursors
        return {"has_next_page": self.page.has_next_page, "end_cursor": cursors[-1] if cursors else None}

    @property
    def total_count(self) -> int:
        if self.page.total_count is None:
            self.page.total_count = self._count()
        return self.page.total_count


query = QueryType()
mutation = MutationType()
datetime_scalar = ScalarType("DateTime")
notebook_type = ObjectType("Notebook")
note_type = ObjectType("Note")
revision_type = ObjectType("NoteRevision")
conflict_type = ObjectType("NoteConflict")
activity_type = ObjectType("Activity")
user_stats_type = ObjectType("UserStats")
system_stats_type = ObjectType("SystemStats")


@datetime_scalar.serializer
def serialize_datetime(value: str) -> str:
    return value


def _list_notes(
    info: GraphQLResolveInfo, notebook_id: str | None, args: dict[str, Any], parent: Notebook | None = None
) -> NoteConnection:
    """`parent`: the Notebook whose `notes` these are, already read (its role is batched)."""
    context = ctx(info)
    actor = context.user
    page = context.services.notes.list_notes(
        actor,
        notebook_id=notebook_id,
        first=args.get("first", 20),
        after=args.get("after"),
        tag=args.get("tag"),
        search=args.get("search"),
        trashed=args.get("trashed", False),
        order=args.get("order_by", "UPDATED_DESC"),
        loaded=(parent, context.role(parent)) if parent is not None else None,
    )
    context.notebooks.prime(note.notebook_id for note in page.items)
    listed = {note.notebook_id: context.notebooks.load(note.notebook_id) for note in page.items}
    context.listed_notebooks += [nb for nb in listed.values() if nb is not None]
    context.listed_notes += page.items
    context.users.prime(uid for note in page.items for uid in (note.created_by, note.updated_by))
    trashed = bool(args.get("trashed", False))
    loaded = (parent, context.role(parent)) if parent is not None else None
    return NoteConnection(
        page,
        lambda: context.services.notes.count_notes(
            actor, notebook_id, trashed, args.get("tag"), args.get("search"), loaded
        ),
    )


# queries --------------------------------------------------------------------------------------
@query.field("me")
def resolve_me(_: Any, info: GraphQLResolveInfo) -> User | None:
    return ctx(info).user_or_none


@query.field("notebooks")
def resolve_notebooks(
    _: Any, info: GraphQLResolveInfo, first: int | None = None, after: str | None = None
) -> list[Notebook]:
    context = ctx(info)
    notebooks = context.services.notebooks.list_notebooks(context.user, first, after)
    context.note_counts.prime(nb.id for nb in notebooks)
    context.users.prime(nb.owner_id for nb in notebooks)
    # a copy: the listings below add to it, and graphql-core is iterating `notebooks` (the same
    # list extended by Notebook.notes made `notebooks { notes { ... } }` never end)
    context.listed_notebooks = list(notebooks)
    context.notebooks.put({nb.id: nb for nb in notebooks})  # their notes' `notebook` is known
    return notebooks


@query.field("notebook")
def resolve_notebook(_: Any, info: GraphQLResolveInfo, id: str) -> Notebook:
    context = ctx(info)
    return context.services.notebooks.readable(context.user, id)


@query.field("note")
def resolve_note(_: Any, info: GraphQLResolveInfo, id: str) -> Note:
    context = ctx(info)
    return context.services.notes.get_note(context.user, id)


@query.field("notes")
def resolve_notes(
    _: Any, info: GraphQLResolveInfo, notebook_id: str | None = None, **args: Any
) -> NoteConnection:
    return _list_notes(info, notebook_id, args)


@query.field("tags")
def resolve_tags(_: Any, info: GraphQLResolveInfo) -> list[Any]:
    context = ctx(info)
    return context.services.notes.tags(context.user)


def _activity_connection(info: GraphQLResolveInfo, page: Page) -> dict[str, Any]:
    ctx(info).users.prime(item.actor_id for item in page.items)
    cursors = page.cursors
    return {
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, page.items, strict=True)],
        "page_info": {"has_next_page": page.has_next_page, "end_cursor": cursors[-1] if cursors else None},
    }


@query.field("activity")
def resolve_activity(
    _: Any,
    info: GraphQLResolveInfo,
    notebook_id: str | None = None,
    first: int = 50,
    after: str | None = None,
) -> dict[str, Any]:
    context = ctx(info)
    return _activity_connection(info, context.services.activity.feed(context.user, notebook_id, first, after))


@query.field("securityEvents")
def resolve_security_events(
    _: Any, info: GraphQLResolveInfo, first: int = 50, after: str | None = None
) -> dict[str, Any]:
    return _activity_connection(info, ctx(info).services.activity.security_events(first, after))


@query.field("myStats")
def resolve_my_stats(_: Any, info: GraphQLResolveInfo, days: int = 30, timezone: str = "UTC") -> UserStats:
    context = ctx(info)
    return context.services.analytics.my_stats(context.user, days, timezone)


@query.field("systemStats")
def resolve_system_stats(_: Any, info: GraphQLResolveInfo, days: int = 30) -> SystemStats:
    return ctx(info).services.analytics.system_stats(days)


@query.field("replicationStatus")
def resolve_replication_status(_: Any, info: GraphQLResolveInfo) -> ReplicationStatus:
    return ctx(info).services.replication.status()


# mutations ------------------------------------------------------------------------------------
@mutation.field("register")
def resolve_register(
    _: Any, info: GraphQLResolveInfo, email: str, password: str, display_name: str | None = None
) -> AuthResult:
    context = ctx(info)
    return context.services.auth.register(email, password, display_name, client_ip=context.client_ip)


@mutation.field("login")
def resolve_login(_: Any, info: GraphQLResolveInfo, email: str, password: str) -> AuthResult:
    context = ctx(info)
    return context.services.auth.login(email, password, client_ip=context.client_ip)


@mutation.field("refreshToken")
def resolve_refresh_token(_: Any, info: GraphQLResolveInfo, refresh_token: str) -> AuthResult:
    context = ctx(info)
    return context.services.auth.refresh(refresh_token, client_ip=context.client_ip)


@mutation.field("logout")
def resolve_logout(_: Any, info: GraphQLResolveInfo, refresh_token: str) -> bool:
    return ctx(info).services.auth.logout(refresh_token)


@mutation.field("createNotebook")
def resolve_create_notebook(_: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> Notebook:
    context = ctx(info)
    return context.services.notebooks.create_notebook(context.user, input["name"], input.get("description"))


@mutation.field("updateNotebook")
def resolve_update_notebook(
    _: Any, info: GraphQLResolveInfo, id: str, input: dict[str, Any], version: str
) -> Notebook:
    context = ctx(info)
    return context.services.notebooks.update_notebook(context.user, id, input, version)


@mutation.field("deleteNotebook")
def resolve_delete_notebook(_: Any, info: GraphQLResolveInfo, id: str) -> bool:
    context = ctx(info)
    return context.services.notebooks.delete_notebook(context.user, id)


@mutation.field("shareNotebook")
def resolve_share_notebook(_: Any, info: GraphQLResolveInfo, id: str, email: str, role: str) -> Notebook:
    context = ctx(info)
    return context.services.notebooks.share(context.user, id, email, role)


@mutation.field("unshareNotebook")
def resolve_unshare_notebook(_: Any, info: GraphQLResolveInfo, id: str, user_id: str) -> Notebook:
    context = ctx(info)
    return context.services.notebooks.unshare(context.user, id, user_id)


@mutation.field("changePassword")
def resolve_change_password(
    _: Any, info: GraphQLResolveInfo, current_password: str, new_password: str
) -> AuthResult:
    context = ctx(info)
    return context.services.auth.change_password(
        context.user, current_password, new_password, client_ip=context.client_ip
    )


@mutation.field("confirmNewEmail")
def resolve_confirm_new_email(_: Any, info: GraphQLResolveInfo, email: str) -> User:
    context = ctx(info)
    return context.services.auth.confirm_new_email(context.user, email)


@mutation.field("logoutEverywhere")
def resolve_logout_everywhere(_: Any, info: GraphQLResolveInfo) -> bool:
    context = ctx(info)
    return context.services.auth.logout_everywhere(context.user)


@mutation.field("deleteAccount")
def resolve_delete_account(_: Any, info: GraphQLResolveInfo, password: str) -> bool:
    context = ctx(info)
    deleted = context.services.auth.delete_account(context.user, password, client_ip=context.client_ip)
    if deleted:  # its keys stopped working with the account; their documents go too
        context.services.api_keys.forget_user(context.user.id)
    return deleted


@query.field("apiKeys")
def resolve_api_keys(_: Any, info: GraphQLResolveInfo) -> list[ApiKey]:
    context = ctx(info)
    return context.services.api_keys.list(context.user)


@mutation.field("createApiKey")
def resolve_create_api_key(
    _: Any, info: GraphQLResolveInfo, name: str, scope: str, expires_in_days: int | None = None
) -> dict[str, Any]:
    context = ctx(info)
    key, secret = context.services.api_keys.create(context.user, name, scope, expires_in_days)
    return {"api_key": key, "secret": secret}


@mutation.field("revokeApiKey")
def resolve_revoke_api_key(_: Any, info: GraphQLResolveInfo, id: str) -> bool:
    context = ctx(info)
    return context.services.api_keys.revoke(context.user, id)


@mutation.field("createNote")
def resolve_create_note(_: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> Note:
    context = ctx(info)
    return context.services.notes.create_note(context.user, input)


@mutation.field("updateNote")
def resolve_update_note(
    _: Any, info: GraphQLResolveInfo, id: str, input: dict[str, Any], version: str
) -> Note:
    context = ctx(info)
    return context.services.notes.update_note(context.user, id, input, version)


@mutation.field("moveNote")
def resolve_move_note(_: Any, info: GraphQLResolveInfo, id: str, notebook_id: str) -> Note:
    context = ctx(info)
    return context.services.notes.move_note(context.user, id, notebook_id)


@mutation.field("trashNote")
def resolve_trash_note(_: Any, info: GraphQLResolveInfo, id: str) -> Note:
    context = ctx(info)
    return context.services.notes.trash_note(context.user, id)


@mutation.field("restoreNote")
def resolve_restore_note(_: Any, info: GraphQLResolveInfo, id: str) -> Note:
    context = ctx(info)
    return context.services.notes.restore_note(context.user, id)


@mutation.field("deleteNote")
def resolve_delete_note(_: Any, info: GraphQLResolveInfo, id: str) -> bool:
    context = ctx(info)
    return context.services.notes.delete_note(context.user, id)


@mutation.field("importNotes")
def resolve_import_notes(
    _: Any, info: GraphQLResolveInfo, notebook_id: str, notes: list[dict[str, Any]]
) -> Any:
    context = ctx(info)
    return context.services.notes.import_notes(context.user, notebook_id, notes)


@mutation.field("restoreNoteRevision")
def resolve_restore_note_revision(_: Any, info: GraphQLResolveInfo, id: str, revision_id: str) -> Note:
    context = ctx(info)
    return context.services.notes.restore_note_revision(context.user, id, revision_id)


@mutation.field("resolveNoteConflict")
def resolve_resolve_note_conflict(
    _: Any,
    info: GraphQLResolveInfo,
    id: str,
    keep_version: str | None = None,
    merged: dict[str, Any] | None = None,
) -> Note:
    context = ctx(info)
    return context.services.notes.resolve_note_conflict(context.user, id, keep_version, merged)


# object fields --------------------------------------------------------------------------------
@notebook_type.field("owner")
def resolve_notebook_owner(notebook: Notebook, info: GraphQLResolveInfo) -> User | None:
    return ctx(info).users.load(notebook.owner_id)


@notebook_type.field("myRole")
def resolve_my_role(notebook: Notebook, info: GraphQLResolveInfo) -> str | None:
    return ctx(info).role(notebook)


@notebook_type.field("members")
def resolve_members(notebook: Notebook, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    """The owner first, then the members in the order they joined."""
    context = ctx(info)
    members = context.members_of(notebook)
    context.users.prime([notebook.owner_id] + [m.user_id for m in members])
    listed = [{"user": context.users.load(notebook.owner_id), "role": "OWNER"}]
    listed += [{"user": context.users.load(m.user_id), "role": m.role} for m in members]
    return [entry for entry in listed if entry["user"] is not None]


@notebook_type.field("noteCount")
def resolve_note_count(notebook: Notebook, info: GraphQLResolveInfo) -> int:
    return ctx(info).note_counts.load(notebook.id) or 0


@notebook_type.field("notes")
def resolve_notebook_notes(notebook: Notebook, info: GraphQLResolveInfo, **args: Any) -> NoteConnection:
    return _list_notes(info, notebook.id, args, parent=notebook)


@note_type.field("notebook")
def resolve_note_notebook(note: Note, info: GraphQLResolveInfo) -> Notebook | None:
    return ctx(info).notebooks.load(note.notebook_id)


@note_type.field("createdBy")
def resolve_created_by(note: Note, info: GraphQLResolveInfo) -> User | None:
    return ctx(info).users.load(note.created_by)


@note_type.field("updatedBy")
@conflict_type.field("updatedBy")
def resolve_updated_by(note: Note, info: GraphQLResolveInfo) -> User | None:
    return ctx(info).users.load(note.updated_by)


@note_type.field("revisions")
def resolve_revisions(note: Note, info: GraphQLResolveInfo, first: int = 20) -> list[NoteRevision]:
    return ctx(info).revisions_of(note, first)


@note_type.field("conflicts")
def resolve_conflicts(note: Note, info: GraphQLResolveInfo) -> list[Note]:
    if not note.conflict_versions:
        return []
    return ctx(info).services.notes.conflicts(note)


@activity_type.field("actor")
def resolve_activity_actor(item: Activity, info: GraphQLResolveInfo) -> User | None:
    return ctx(info).users.load(item.actor_id) if item.actor_id else None


@user_stats_type.field("topTags")
def resolve_top_tags(stats: UserStats, _: GraphQLResolveInfo, limit: int = 10) -> list[Any]:
    return stats.top_tags(limit)


@system_stats_type.field("activeUsers")
def resolve_active_users(stats: SystemStats, _: GraphQLResolveInfo, days: int = 1) -> int:
    return stats.active_users(days)


@revision_type.field("author")
def resolve_revision_author(revision: NoteRevision, info: GraphQLResolveInfo) -> User | None:
    return ctx(info).users.load(revision.author_id)


def _authorized(operation: str, resolve: GraphQLFieldResolver) -> GraphQLFieldResolver:
    """`resolve`, run only after the permission policy allowed `operation` for the caller."""

    def resolver(parent: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        context = ctx(info)
        context.services.permissions.authorize(
            operation, lambda: context.user_or_none, args, key_scope=lambda: context.key_scope
        )
        return resolve(parent, info, **args)

    return resolver


def guard_root_fields(schema: GraphQLSchema) -> GraphQLSchema:
    """Put every query and mutation behind the permission policy (services/permissions.py):
    one place, so no operation can skip it; one without a rule is refused."""
    for root in (schema.query_type, schema.mutation_type):
        if isinstance(root, GraphQLObjectType):
            for name, field in root.fields.items():
                field.resolve = _authorized(f"{root.name}.{name}", field.resolve or default_field_resolver)
    return schema


def build_schema() -> GraphQLSchema:
    """The executable schema: the contract's type definitions bound to these resolvers, every
    root field behind the permission policy."""
    type_defs = load_schema_from_path(str(SCHEMA_DIR))
    return guard_root_fields(
        make_executable_schema(
            type_defs,
            query,
            mutation,
            datetime_scalar,
            notebook_type,
            note_type,
            revision_type,
            conflict_type,
            activity_type,
            user_stats_type,
            system_stats_type,
            convert_names_case=True,
        )
    )

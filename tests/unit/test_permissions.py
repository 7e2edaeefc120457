"""The permission table covers every operation, and the policy applies each kind of rule."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from graphql import GraphQLInputObjectType, GraphQLNonNull, GraphQLObjectType

from notebook.api.graphql_api import build_schema
from notebook.api.replication_routes import blueprint
from notebook.core.domain import NOTEBOOK_PREFIX, USER_PREFIX, Membership, Note, Notebook, User, utc_now
from notebook.core.errors import Forbidden, NotFound, Unauthenticated
from notebook.services.notebook_service import NotebookService
from notebook.services.permissions import NOTEBOOK_ROLE, OPERATIONS, PUBLIC, PermissionPolicy
from notebook.utils.crypto_utils import new_id
from tests.unit.fakes import (
    FakeMembershipRepository,
    FakeNotebookRepository,
    FakeNoteStore,
    FakeUserRepository,
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _root_operations() -> dict[str, GraphQLObjectType]:
    schema = build_schema()
    roots = [schema.query_type, schema.mutation_type]
    return {f"{root.name}.{name}": root for root in roots if root for name in root.fields}


class TestEveryOperationHasARule:
    def test_every_query_and_mutation_field(self) -> None:
        operations = _root_operations()
        missing = sorted(name for name in operations if name not in OPERATIONS)
        assert missing == [], f"operations without a permission rule: {missing}"
        assert len(operations) >= 34  # the walk really saw the schema

    def test_no_rule_names_an_operation_that_does_not_exist(self) -> None:
        operations = _root_operations()
        stale = [name for name in OPERATIONS if not name.startswith("REST.") and name not in operations]
        assert stale == []

    def test_every_rest_route(self) -> None:
        app = Flask(__name__)
        app.register_blueprint(blueprint)
        endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
        assert len(endpoints) >= 7
        assert sorted(e for e in endpoints if f"REST.{e}" not in OPERATIONS) == []
        admin_only = [e for e in endpoints if e != "replication.openapi"]
        assert all(OPERATIONS[f"REST.{e}"].kind == "ADMIN" for e in admin_only)

    def test_targets_name_real_arguments(self) -> None:
        """A typo in a target's argument would silently skip the check: every path must exist."""
        schema = build_schema()
        for name, rule in OPERATIONS.items():
            if rule.kind != NOTEBOOK_ROLE:
                continue
            root_name, field_name = name.split(".")
            root = schema.get_type(root_name)
            assert isinstance(root, GraphQLObjectType)
            args = {_snake(arg): spec.type for arg, spec in root.fields[field_name].args.items()}
            for target in rule.targets:
                head, *rest = target.path
                assert head in args, (name, target.path)
                kind = args[head]
                for part in rest:
                    kind = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
                    assert isinstance(kind, GraphQLInputObjectType), (name, target.path)
                    fields = {_snake(f): spec.type for f, spec in kind.fields.items()}
                    assert part in fields, (name, target.path)
                    kind = fields[part]

    def test_admin_queries_are_admin_only(self) -> None:
        assert OPERATIONS["Query.systemStats"].kind == "ADMIN"
        assert OPERATIONS["Query.replicationStatus"].kind == "ADMIN"
        public = sorted(name for name, rule in OPERATIONS.items() if rule.kind == PUBLIC)
        assert public == [
            "Mutation.login",
            "Mutation.logout",
            "Mutation.refreshToken",
            "Mutation.register",
            "Query.me",
            "REST.replication.openapi",
        ]


class World:
    def __init__(self) -> None:
        self.store = FakeNoteStore()
        self.users = FakeUserRepository()
        self.memberships = FakeMembershipRepository(self.store)
        self.notebooks = NotebookService(FakeNotebookRepository(self.store), self.memberships, self.users)
        self.policy = PermissionPolicy(self.notebooks, self.store.notes.get)

    def user(self, name: str, admin: bool = False) -> User:
        user = User(new_id(USER_PREFIX), f"{name}@example.com", name, utc_now(), is_admin=admin)
        self.users.add(user)
        return user

    def notebook(self, owner: User) -> Notebook:
        return self.notebooks.create_notebook(owner, "Shared")

    def grant(self, notebook: Notebook, user: User, role: str) -> None:
        self.memberships.put(Membership(notebook.id, user.id, role, utc_now(), notebook.created_at))

    def note(self, notebook: Notebook) -> Note:
        now = utc_now()
        note = Note(new_id("note:"), notebook.id, notebook.owner_id, "t", "", now, now, "x", "x")
        self.store.notes[note.id] = note
        return note


@pytest.fixture
def world() -> World:
    return World()


def _never() -> User:
    raise AssertionError("a public operation must not look at the caller")


class TestPolicy:
    def test_unknown_operation_is_refused(self, world: World) -> None:
        with pytest.raises(Forbidden, match="no permission rule"):
            world.policy.authorize("Mutation.somethingNew", lambda: world.user("ada", admin=True), {})

    def test_public_does_not_read_the_caller(self, world: World) -> None:
        world.policy.authorize("Mutation.login", _never, {})

    def test_authenticated_needs_a_caller(self, world: World) -> None:
        with pytest.raises(Unauthenticated):
            world.policy.authorize("Query.tags", lambda: None, {})
        world.policy.authorize("Query.tags", lambda: world.user("ada"), {})

    def test_admin(self, world: World) -> None:
        with pytest.raises(Forbidden):
            world.policy.authorize("Query.systemStats", lambda: world.user("ada"), {})
        with pytest.raises(Unauthenticated):
            world.policy.authorize("REST.replication.add_node", lambda: None, {})
        world.policy.authorize("Query.systemStats", lambda: world.user("root", admin=True), {})

    @pytest.mark.parametrize(
        ("role", "outcome"),
        [("OWNER", None), ("EDITOR", None), ("VIEWER", Forbidden), (None, NotFound)],
    )
    def test_editing_a_note_needs_the_editor_role(
        self, world: World, role: str | None, outcome: type | None
    ) -> None:
        owner = world.user("owner")
        notebook = world.notebook(owner)
        note = world.note(notebook)
        caller = owner if role == "OWNER" else world.user("other")
        if role in ("EDITOR", "VIEWER"):
            world.grant(notebook, caller, role)
        args = {"id": note.id, "input": {"title": "x"}, "version": "1"}
        if outcome is None:
            world.policy.authorize("Mutation.updateNote", lambda: caller, args)
        else:
            with pytest.raises(outcome):
                world.policy.authorize("Mutation.updateNote", lambda: caller, args)

    def test_sharing_is_the_owners(self, world: World) -> None:
        owner, editor = world.user("owner"), world.user("editor")
        notebook = world.notebook(owner)
        world.grant(notebook, editor, "EDITOR")
        args = {"id": notebook.id, "email": "x@example.com", "role": "VIEWER"}
        with pytest.raises(Forbidden):
            world.policy.authorize("Mutation.shareNotebook", lambda: editor, args)
        world.policy.authorize("Mutation.shareNotebook", lambda: owner, args)

    def test_moving_needs_edit_rights_on_both_notebooks(self, world: World) -> None:
        owner, editor = world.user("owner"), world.user("editor")
        source, target = world.notebook(owner), world.notebook(owner)
        note = world.note(source)
        world.grant(source, editor, "EDITOR")
        world.grant(target, editor, "VIEWER")
        args = {"id": note.id, "notebook_id": target.id}
        with pytest.raises(Forbidden):
            world.policy.authorize("Mutation.moveNote", lambda: editor, args)
        world.grant(target, editor, "EDITOR")
        world.policy.authorize("Mutation.moveNote", lambda: editor, args)

    def test_nested_and_optional_targets(self, world: World) -> None:
        owner, stranger = world.user("owner"), world.user("stranger")
        notebook = world.notebook(owner)
        with pytest.raises(NotFound):
            world.policy.authorize(
                "Mutation.createNote", lambda: stranger, {"input": {"notebook_id": notebook.id, "title": "t"}}
            )
        # no notebook named: the caller's own default notebook, checked by the service
        world.policy.authorize("Mutation.createNote", lambda: stranger, {"input": {"title": "t"}})
        world.policy.authorize("Query.notes", lambda: stranger, {"first": 20})

    def test_a_removed_member_is_refused_at_once(self, world: World) -> None:
        owner, viewer = world.user("owner"), world.user("viewer")
        notebook = world.notebook(owner)
        world.grant(notebook, viewer, "VIEWER")
        world.policy.authorize("Query.notebook", lambda: viewer, {"id": notebook.id})
        world.notebooks.unshare(owner, notebook.id, viewer.id)
        with pytest.raises(NotFound):
            world.policy.authorize("Query.notebook", lambda: viewer, {"id": notebook.id})

    def test_a_bad_id_is_bad_input_not_a_crash(self, world: World) -> None:
        owner = world.user("owner")
        with pytest.raises(Exception) as caught:
            world.policy.authorize("Mutation.trashNote", lambda: owner, {"id": NOTEBOOK_PREFIX + "x"})
        assert getattr(caught.value, "code", None) == "BAD_USER_INPUT"


class TestEveryResolverAsksThePolicyFirst:
    def test_no_root_field_runs_without_a_rule(self) -> None:
        """With an empty rule table every query and mutation is refused before its resolver runs."""
        from types import SimpleNamespace

        schema = build_schema()
        policy = PermissionPolicy(notebooks=None, find_note=lambda _: None, operations={})  # type: ignore[arg-type]
        context = SimpleNamespace(services=SimpleNamespace(permissions=policy), user_or_none=None)
        info = SimpleNamespace(context=context)
        checked = 0
        for root in (schema.query_type, schema.mutation_type):
            assert root is not None
            for name, spec in root.fields.items():
                assert spec.resolve is not None
                with pytest.raises(Forbidden, match=f"{root.name}.{name} has no permission rule"):
                    spec.resolve(None, info)
                checked += 1
        assert checked == len(_root_operations())

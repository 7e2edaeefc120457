"""NotebookService and NoteService against in-memory repositories: the rules of notebooks and notes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from notebook.core.domain import NOTEBOOK_PREFIX, USER_PREFIX, Notebook, User, utc_now
from notebook.core.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    VersionConflict,
)
from notebook.services.note_service import MAX_SEARCH_WORDS, NoteService
from notebook.services.notebook_service import NotebookService
from notebook.utils.crypto_utils import new_id
from tests.unit.fakes import (
    FakeMembershipRepository,
    FakeNotebookRepository,
    FakeNoteRepository,
    FakeNoteStore,
    FakeUserRepository,
)


@dataclass
class World:
    store: FakeNoteStore
    notebooks: NotebookService
    notes: NoteService
    users: FakeUserRepository

    def user(self, name: str) -> User:
        """A user with a default notebook, as registration leaves it."""
        user = User(
            id=new_id(USER_PREFIX),
            email=f"{name}@example.com",
            display_name=name,
            created_at=utc_now(),
            default_notebook_id=new_id(NOTEBOOK_PREFIX),
        )
        self.users.add(user)
        now = utc_now()
        self.notebooks.notebooks.add(
            Notebook(user.default_notebook_id or "", "My notes", user.id, now, now, is_default=True)
        )
        return user


@pytest.fixture
def world() -> World:
    store = FakeNoteStore()
    users = FakeUserRepository()
    notebooks = NotebookService(FakeNotebookRepository(store), FakeMembershipRepository(store), users)
    # replication conflicts are settled elsewhere (conflict_service); these tests never reach it
    notes = NoteService(FakeNoteRepository(store), notebooks, resolver=None)  # type: ignore[arg-type]
    return World(store, notebooks, notes, users)


@pytest.fixture
def ada(world: World) -> User:
    return world.user("ada")


@pytest.fixture
def bob(world: World) -> User:
    return world.user("bob")


class TestNotebooks:
    def test_create_and_list(self, world: World, ada: User) -> None:
        created = world.notebooks.create_notebook(ada, "  Work ", " things ")
        assert (created.name, created.description, created.owner_id) == ("Work", "things", ada.id)
        names = [nb.name for nb in world.notebooks.list_notebooks(ada)]
        assert sorted(names) == ["My notes", "Work"]

    def test_invalid_name(self, world: World, ada: User) -> None:
        with pytest.raises(InvalidInput):
            world.notebooks.create_notebook(ada, " ")
        assert len(world.store.notebooks) == 1

    def test_update_with_current_version(self, world: World, ada: User) -> None:
        created = world.notebooks.create_notebook(ada, "Work")
        updated = world.notebooks.update_notebook(ada, created.id, {"name": "Job"}, created.version or "")
        assert updated.name == "Job"
        assert updated.version != created.version

    def test_stale_version_conflicts_and_changes_nothing(self, world: World, ada: User) -> None:
        created = world.notebooks.create_notebook(ada, "Work")
        current = world.notebooks.update_notebook(ada, created.id, {"name": "Job"}, created.version or "")
        with pytest.raises(VersionConflict) as caught:
            world.notebooks.update_notebook(ada, created.id, {"name": "Stale"}, created.version or "")
        assert caught.value.current_version == current.version
        assert world.notebooks.readable(ada, created.id).name == "Job"

    def test_another_users_notebook_is_not_found(self, world: World, ada: User, bob: User) -> None:
        private = world.notebooks.create_notebook(ada, "Private")
        for attempt in (
            lambda: world.notebooks.readable(bob, private.id),
            lambda: world.notebooks.update_notebook(bob, private.id, {"name": "x"}, private.version or ""),
            lambda: world.notebooks.delete_notebook(bob, private.id),
        ):
            with pytest.raises(NotFound):
                attempt()
        assert world.notebooks.readable(ada, private.id).name == "Private"

    def test_default_notebook_cannot_be_deleted(self, world: World, ada: User) -> None:
        with pytest.raises(Forbidden):
            world.notebooks.delete_notebook(ada, ada.default_notebook_id or "")
        assert world.notebooks.readable(ada, ada.default_notebook_id or "").is_default

    def test_delete_removes_its_notes_only(self, world: World, ada: User) -> None:
        doomed = world.notebooks.create_notebook(ada, "Doomed")
        in_doomed = world.notes.create_note(ada, {"notebook_id": doomed.id, "title": "gone"})
        kept = world.notes.create_note(ada, {"title": "kept"})
        assert world.notebooks.delete_notebook(ada, doomed.id) is True
        with pytest.raises(NotFound):
            world.notes.get_note(ada, in_doomed.id)
        assert world.notes.get_note(ada, kept.id).title == "kept"

    def test_note_counts_exclude_the_trash(self, world: World, ada: User) -> None:
        first = world.notes.create_note(ada, {"title": "one"})
        world.notes.create_note(ada, {"title": "two"})
        world.notes.trash_note(ada, first.id)
        default = ada.default_notebook_id or ""
        assert world.notebooks.note_counts([default]) == {default: 1}

    def test_wrong_kind_of_id_is_bad_input(self, world: World, ada: User) -> None:
        note = world.notes.create_note(ada, {"title": "a note"})
        with pytest.raises(InvalidInput):
            world.notebooks.readable(ada, note.id)


class TestNotes:
    def test_create_in_the_default_notebook(self, world: World, ada: User) -> None:
        note = world.notes.create_note(
            ada, {"title": " Hello ", "content": "**hi**", "tags": ["a", "A", "b"]}
        )
        assert note.notebook_id == ada.default_notebook_id
        assert (note.title, note.content, note.tags, note.pinned) == ("Hello", "**hi**", ["a", "b"], False)
        assert note.created_by == note.updated_by == ada.id
        assert world.notes.get_note(ada, note.id) == note

    @pytest.mark.parametrize(
        ("fields", "error"),
        [
            ({"title": ""}, InvalidInput),
            ({"title": "x" * 501}, InvalidInput),
            ({"title": "ok", "tags": [f"t{i}" for i in range(51)]}, InvalidInput),
            ({"title": "ok", "content": "x" * (1024 * 1024 + 1)}, PayloadTooLarge),
        ],
    )
    def test_invalid_notes_are_not_stored(self, world: World, ada: User, fields: dict, error: type) -> None:
        with pytest.raises(error):
            world.notes.create_note(ada, fields)
        assert world.store.notes == {}

    def test_an_empty_notebook_id_is_not_the_default_notebook(self, world: World, ada: User) -> None:
        with pytest.raises(InvalidInput):
            world.notes.create_note(ada, {"notebook_id": "", "title": "lost"})
        assert world.store.notes == {}

    def test_update(self, world: World, ada: User) -> None:
        note = world.notes.create_note(ada, {"title": "draft"})
        updated = world.notes.update_note(
            ada, note.id, {"title": "final", "pinned": True}, note.version or ""
        )
        assert (updated.title, updated.pinned, updated.content) == ("final", True, "")
        assert updated.version != note.version
        assert updated.updated_at >= note.updated_at

    def test_stale_version_conflicts_and_changes_nothing(self, world: World, ada: User) -> None:
        note = world.notes.create_note(ada, {"title": "v1"})
        current = world.notes.update_note(ada, note.id, {"title": "v2"}, note.version or "")
        with pytest.raises(VersionConflict) as caught:
            world.notes.update_note(ada, note.id, {"title": "v3"}, note.version or "")
        assert caught.value.current_version == current.version
        assert world.notes.get_note(ada, note.id).title == "v2"

    def test_invalid_update_changes_nothing(self, world: World, ada: User) -> None:
        note = world.notes.create_note(ada, {"title": "kept", "tags": ["x"]})
        for changes in ({"title": " "}, {"tags": [f"t{i}" for i in range(51)]}, {"content": 5}):
            with pytest.raises(InvalidInput):
                world.notes.update_note(ada, note.id, changes, note.version or "")
        assert world.notes.get_note(ada, note.id) == note

    def test_move(self, world: World, ada: User) -> None:
        target = world.notebooks.create_notebook(ada, "Target")
        note = world.notes.create_note(ada, {"title": "wanderer"})
        moved = world.notes.move_note(ada, note.id, target.id)
        assert moved.notebook_id == target.id
        assert world.notebooks.note_counts([target.id]) == {target.id: 1}

    def test_trash_restore_and_delete(self, world: World, ada: User) -> None:
        note = world.notes.create_note(ada, {"title": "temp"})
        with pytest.raises(InvalidInput):
            world.notes.delete_note(ada, note.id)
        assert world.notes.trash_note(ada, note.id).trashed
        assert not world.notes.restore_note(ada, note.id).trashed
        world.notes.trash_note(ada, note.id)
        assert world.notes.delete_note(ada, note.id) is True
        with pytest.raises(NotFound):
            world.notes.get_note(ada, note.id)

    def test_trash_and_restore_are_idempotent(self, world: World, ada: User) -> None:
        note = world.notes.create_note(ada, {"title": "temp"})
        trashed = world.notes.trash_note(ada, note.id)
        assert world.notes.trash_note(ada, note.id).trashed_at == trashed.trashed_at
        world.notes.restore_note(ada, note.id)
        assert world.notes.restore_note(ada, note.id).trashed_at is None

    def test_another_users_note_is_not_found(self, world: World, ada: User, bob: User) -> None:
        note = world.notes.create_note(ada, {"title": "secret"})
        bobs_note = world.notes.create_note(bob, {"title": "bob's"})
        attempts = [
            lambda: world.notes.get_note(bob, note.id),
            lambda: world.notes.update_note(bob, note.id, {"title": "pwned"}, note.version or ""),
            lambda: world.notes.trash_note(bob, note.id),
            lambda: world.notes.restore_note(bob, note.id),
            lambda: world.notes.delete_note(bob, note.id),
            lambda: world.notes.move_note(bob, note.id, bob.default_notebook_id or ""),
            lambda: world.notes.move_note(bob, bobs_note.id, ada.default_notebook_id or ""),
            lambda: world.notes.create_note(bob, {"notebook_id": ada.default_notebook_id, "title": "x"}),
            lambda: world.notes.list_notes(bob, notebook_id=ada.default_notebook_id),
            lambda: world.notes.import_notes(bob, ada.default_notebook_id or "", [{"title": "x"}]),
        ]
        for attempt in attempts:
            with pytest.raises(NotFound):
                attempt()
        assert world.notes.get_note(ada, note.id) == note
        assert world.notes.get_note(bob, bobs_note.id).notebook_id == bob.default_notebook_id
        assert world.notes.list_notes(ada).items == [note]

    def test_import_keeps_the_valid_notes(self, world: World, ada: User) -> None:
        items = [{"title": "one"}, {"title": ""}, {"title": "two", "tags": ["t"] * 51}, {"title": "three"}]
        result = world.notes.import_notes(ada, ada.default_notebook_id or "", items)
        assert (result.imported, result.failed) == (2, 2)
        assert [e.split(":")[0] for e in result.errors] == ["notes[1]", "notes[2]"]
        titles = sorted(n.title for n in world.store.notes.values())
        assert titles == ["one", "three"]


class TestListing:
    def test_filters_and_orders(self, world: World, ada: User) -> None:
        world.notes.create_note(ada, {"title": "Banana bread", "content": "flour sugar", "tags": ["Baking"]})
        world.notes.create_note(ada, {"title": "apple pie", "content": "Flour, apples", "tags": ["baking"]})
        trashed = world.notes.create_note(ada, {"title": "Cherry", "content": "flour"})
        world.notes.trash_note(ada, trashed.id)

        def titles(**kwargs: object) -> list[str]:
            return [n.title for n in world.notes.list_notes(ada, **kwargs).items]  # type: ignore[arg-type]

        assert titles(order="TITLE_ASC") == ["apple pie", "Banana bread"]
        assert titles(order="CREATED_DESC") == ["apple pie", "Banana bread"]
        assert titles(search="FLOUR", order="TITLE_ASC") == ["apple pie", "Banana bread"]
        assert titles(search="flour apples") == ["apple pie"]
        assert titles(tag="BAKING", order="TITLE_ASC") == ["apple pie", "Banana bread"]
        assert titles(search="flour", trashed=True) == ["Cherry"]

    def test_pages_cover_everything_once(self, world: World, ada: User) -> None:
        for i in range(11):
            world.notes.create_note(ada, {"title": f"note {i:02d}"})
        seen: list[str] = []
        after = None
        while True:
            page = world.notes.list_notes(ada, first=3, after=after, order="TITLE_ASC")
            seen += [n.title for n in page.items]
            if not page.has_next_page:
                break
            after = page.cursors[-1]
        assert seen == [f"note {i:02d}" for i in range(11)]

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"order": "RANDOM"},
            {"first": 0},
            {"first": 101},
            {"after": "garbage"},
            {"search": " ".join(f"w{i}" for i in range(MAX_SEARCH_WORDS + 1))},
            {"tag": ""},
            {"notebook_id": "note:abc"},
        ],
    )
    def test_bad_arguments(self, world: World, ada: User, kwargs: dict) -> None:
        world.notes.create_note(ada, {"title": "x"})
        with pytest.raises(InvalidInput):
            world.notes.list_notes(ada, **kwargs)

    def test_tags_of_the_caller_only(self, world: World, ada: User, bob: User) -> None:
        world.notes.create_note(ada, {"title": "x", "tags": ["work", "home"]})
        world.notes.create_note(ada, {"title": "y", "tags": ["work"]})
        world.notes.create_note(bob, {"title": "z", "tags": ["bob-only"]})
        assert [(t.tag, t.count) for t in world.notes.tags(ada)] == [("work", 2), ("home", 1)]


class TestSharing:
    @pytest.fixture
    def shared(self, world: World, ada: User, bob: User) -> Notebook:
        notebook = world.notebooks.create_notebook(ada, "Team")
        world.notebooks.share(ada, notebook.id, "BOB@example.com ", "EDITOR")
        return notebook

    def test_roles(self, world: World, ada: User, bob: User, shared: Notebook) -> None:
        carol = world.user("carol")
        assert world.notebooks.role_of(ada, shared) == "OWNER"
        assert world.notebooks.role_of(bob, shared) == "EDITOR"
        assert world.notebooks.role_of(carol, shared) is None
        world.notebooks.share(ada, shared.id, "bob@example.com", "VIEWER")  # a new role replaces the old
        assert world.notebooks.roles_of(bob, [shared]) == {shared.id: "VIEWER"}

    def test_share_refuses_bad_input(self, world: World, ada: User, bob: User, shared: Notebook) -> None:
        with pytest.raises(InvalidInput):
            world.notebooks.share(ada, shared.id, "bob@example.com", "OWNER")
        with pytest.raises(InvalidInput):
            world.notebooks.share(ada, shared.id, "ada@example.com", "VIEWER")
        with pytest.raises(NotFound):
            world.notebooks.share(ada, shared.id, "nobody@example.com", "VIEWER")
        with pytest.raises(Forbidden):  # an editor cannot share further
            world.notebooks.share(bob, shared.id, "ada@example.com", "VIEWER")
        assert world.notebooks.role_of(bob, shared) == "EDITOR"

    def test_grantee_sees_shared_notes_in_lists_tags_and_search(
        self, world: World, ada: User, bob: User, shared: Notebook
    ) -> None:
        world.notes.create_note(ada, {"notebook_id": shared.id, "title": "plan", "tags": ["team"]})
        world.notes.create_note(ada, {"title": "private diary", "tags": ["secret"]})
        world.notes.create_note(bob, {"title": "bob's own", "tags": ["team"]})
        titles = sorted(n.title for n in world.notes.list_notes(bob).items)
        assert titles == ["bob's own", "plan"]
        assert [n.title for n in world.notes.list_notes(bob, search="plan").items] == ["plan"]
        assert world.notes.list_notes(bob, search="diary").items == []
        assert [(t.tag, t.count) for t in world.notes.tags(bob)] == [("team", 2)]
        assert world.notes.count_notes(bob, None, False) == 2
        assert [nb.id for nb in world.notebooks.list_notebooks(bob)] == [bob.default_notebook_id, shared.id]

    def test_editor_edits_and_updated_by_says_who(
        self, world: World, ada: User, bob: User, shared: Notebook
    ) -> None:
        note = world.notes.create_note(ada, {"notebook_id": shared.id, "title": "plan"})
        edited = world.notes.update_note(bob, note.id, {"title": "better plan"}, note.version or "")
        assert (edited.updated_by, edited.created_by, edited.owner_id) == (bob.id, ada.id, ada.id)
        trashed = world.notes.trash_note(bob, note.id)
        assert world.notes.restore_note(bob, trashed.id).trashed_at is None
        world.notes.trash_note(bob, note.id)
        with pytest.raises(Forbidden):  # permanent deletion is the owner's
            world.notes.delete_note(bob, note.id)
        assert note.id in world.store.notes

    def test_viewer_only_reads(self, world: World, ada: User, bob: User, shared: Notebook) -> None:
        note = world.notes.create_note(ada, {"notebook_id": shared.id, "title": "plan"})
        world.notebooks.share(ada, shared.id, "bob@example.com", "VIEWER")
        assert world.notes.get_note(bob, note.id).title == "plan"
        for attempt in (
            lambda: world.notes.update_note(bob, note.id, {"title": "x"}, note.version or ""),
            lambda: world.notes.trash_note(bob, note.id),
            lambda: world.notes.create_note(bob, {"notebook_id": shared.id, "title": "x"}),
            lambda: world.notes.move_note(bob, note.id, bob.default_notebook_id or ""),
        ):
            with pytest.raises(Forbidden):
                attempt()
        assert world.notes.get_note(ada, note.id) == note

    def test_moving_needs_edit_rights_on_both(
        self, world: World, ada: User, bob: User, shared: Notebook
    ) -> None:
        note = world.notes.create_note(ada, {"notebook_id": shared.id, "title": "plan"})
        ada_private = world.notebooks.create_notebook(ada, "Private")
        with pytest.raises(NotFound):
            world.notes.move_note(bob, note.id, ada_private.id)
        moved = world.notes.move_note(bob, note.id, bob.default_notebook_id or "")
        # it takes the owner of the notebook it moved into
        assert (moved.notebook_id, moved.owner_id, moved.updated_by) == (
            bob.default_notebook_id,
            bob.id,
            bob.id,
        )

    def test_unshare_ends_access(self, world: World, ada: User, bob: User, shared: Notebook) -> None:
        note = world.notes.create_note(ada, {"notebook_id": shared.id, "title": "plan"})
        world.notebooks.unshare(ada, shared.id, bob.id)
        with pytest.raises(NotFound):
            world.notes.get_note(bob, note.id)
        assert world.notes.list_notes(bob).items == []
        with pytest.raises(NotFound):
            world.notebooks.unshare(ada, shared.id, bob.id)

    def test_deleting_a_shared_notebook_ends_its_memberships(
        self, world: World, ada: User, bob: User, shared: Notebook
    ) -> None:
        world.notebooks.delete_notebook(ada, shared.id)
        assert world.store.memberships == {}
        assert [nb.id for nb in world.notebooks.list_notebooks(bob)] == [bob.default_notebook_id]


class TestNotebookLimits:
    def test_notebooks_per_user_are_capped(self, world: World, ada: User) -> None:
        world.notebooks.max_notebooks_per_user = 3  # the default notebook is one
        world.notebooks.create_notebook(ada, "two")
        world.notebooks.create_notebook(ada, "three")
        with pytest.raises(InvalidInput) as caught:
            world.notebooks.create_notebook(ada, "four")
        assert caught.value.extensions["reason"] == "NOTEBOOK_LIMIT"
        assert len(world.store.notebooks) == 3

    def test_notebooks_are_paginated(self, world: World, ada: User) -> None:
        created = [world.notebooks.create_notebook(ada, f"nb {i}") for i in range(4)]
        everything = [nb.id for nb in world.notebooks.list_notebooks(ada)]
        first = world.notebooks.list_notebooks(ada, first=2)
        rest = world.notebooks.list_notebooks(ada, first=10, after=first[-1].id)
        assert [nb.id for nb in first + rest] == everything
        assert len(everything) == 5 and {nb.id for nb in created} <= set(everything)
        for bad in (0, 501):
            with pytest.raises(InvalidInput):
                world.notebooks.list_notebooks(ada, first=bad)

    def test_members_per_notebook_are_capped(self, world: World, ada: User, bob: User) -> None:
        world.notebooks.max_members_per_notebook = 2
        carol, dan = world.user("carol"), world.user("dan")
        notebook = world.notebooks.create_notebook(ada, "Team")
        world.notebooks.share(ada, notebook.id, "bob@example.com", "EDITOR")
        world.notebooks.share(ada, notebook.id, "carol@example.com", "VIEWER")
        with pytest.raises(InvalidInput) as caught:
            world.notebooks.share(ada, notebook.id, "dan@example.com", "VIEWER")
        assert caught.value.extensions["reason"] == "MEMBER_LIMIT"
        assert "at most 2 member" in str(caught.value)
        assert world.notebooks.role_of(dan, notebook) is None
        world.notebooks.share(ada, notebook.id, "carol@example.com", "EDITOR")  # a role change still works
        assert world.notebooks.role_of(carol, notebook) == "EDITOR"

    def test_tags_list_only_the_most_used(self, world: World, ada: User) -> None:
        world.notes.max_tags_listed = 2
        world.notes.create_note(ada, {"title": "x", "tags": ["work", "home", "rare"]})
        world.notes.create_note(ada, {"title": "y", "tags": ["work", "home"]})
        world.notes.create_note(ada, {"title": "z", "tags": ["work"]})
        assert [(t.tag, t.count) for t in world.notes.tags(ada)] == [("work", 3), ("home", 2)]


class ShareMissRecorder:
    """A share-miss limit that records what share asked and refuses once `allowed` misses were counted."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.calls: list[tuple[str, str]] = []

    def before_share(self, user_id: str) -> None:
        self.calls.append(("before", user_id))
        if sum(call == ("missed", user_id) for call in self.calls) >= self.allowed:
            raise RateLimited("too many attempts; try again later", retryAfter=60)

    def share_missed(self, user_id: str) -> None:
        self.calls.append(("missed", user_id))


class TestShareMisses:
    def test_only_misses_count_and_a_refusal_hides_whether_the_address_exists(
        self, world: World, ada: User, bob: User
    ) -> None:
        limit = ShareMissRecorder(allowed=1)
        world.notebooks.share_misses = limit
        notebook = world.notebooks.create_notebook(ada, "Team")
        world.notebooks.share(ada, notebook.id, "bob@example.com", "VIEWER")
        assert limit.calls == [("before", ada.id)]  # a hit is not counted
        with pytest.raises(NotFound):
            world.notebooks.share(ada, notebook.id, "nobody@example.com", "VIEWER")
        assert limit.calls[-1] == ("missed", ada.id)
        for email in ("nobody@example.com", "bob@example.com"):  # known or not: the same answer
            with pytest.raises(RateLimited):
                world.notebooks.share(ada, notebook.id, email, "EDITOR")
        assert world.notebooks.role_of(bob, notebook) == "VIEWER"

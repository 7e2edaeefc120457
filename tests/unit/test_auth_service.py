"""AuthService against in-memory repositories: accounts, login throttling, refresh-token rotation."""

from __future__ import annotations

import copy
import time

import pytest
from argon2 import PasswordHasher

from notebook.core.domain import Membership, Note, utc_now
from notebook.core.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthenticated
from notebook.services.auth_service import DEFAULT_NOTEBOOK_NAME, AuthService
from notebook.services.rate_limits import (
    AbuseLimits,
    AttemptCounter,
    LoginLimits,
    PasswordHashing,
    RegisterLimits,
)
from notebook.utils import crypto_utils
from tests.unit.fakes import (
    FakeAttemptStore,
    FakeMembershipRepository,
    FakeNotebookRepository,
    FakeNoteStore,
    FakeRefreshTokenRepository,
    FakeUserRepository,
)

SECRET = "unit-test-secret-key-of-sufficient-length"
PASSWORD = "correct horse battery"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth(clock: FakeClock) -> AuthService:
    store = FakeNoteStore()
    return AuthService(
        users=FakeUserRepository(),
        tokens=FakeRefreshTokenRepository(),
        notebooks=FakeNotebookRepository(store),
        memberships=FakeMembershipRepository(store),
        secret_key=SECRET,
        access_token_seconds=900,
        refresh_token_seconds=3600,
        limits=AbuseLimits(
            AttemptCounter(FakeAttemptStore(), 3600, cache_size=100, clock=clock),
            LoginLimits(window_seconds=60, per_account_ip=3, per_ip=6, per_account=50),
            RegisterLimits(window_seconds=3600, per_ip=5),
        ),
        hashing=PasswordHashing(concurrency=2, wait_seconds=5),
    )


class TestRegister:
    def test_creates_the_user_with_a_default_notebook(self, auth: AuthService) -> None:
        result = auth.register(" Ada@Example.com ", PASSWORD, "Ada")
        assert result.user.email == "ada@example.com"
        assert result.expires_in == 900
        notebooks = auth.notebooks.list_owned(result.user.id)
        assert [(nb.name, nb.is_default) for nb in notebooks] == [(DEFAULT_NOTEBOOK_NAME, True)]
        assert notebooks[0].id == result.user.default_notebook_id

    def test_password_is_stored_hashed(self, auth: AuthService) -> None:
        user = auth.register("ada@example.com", PASSWORD).user
        stored = auth.users.get(user.id)
        assert stored.password_hash.startswith("$argon2id$")
        assert PASSWORD not in stored.password_hash

    def test_duplicate_email_is_bad_input(self, auth: AuthService) -> None:
        auth.register("ada@example.com", PASSWORD)
        with pytest.raises(InvalidInput) as caught:
            auth.register("ADA@example.com", "another password")
        assert caught.value.extensions == {"field": "email"}

    @pytest.mark.parametrize(("email", "password"), [("not-an-email", PASSWORD), ("a@example.com", "short")])
    def test_invalid_fields(self, auth: AuthService, email: str, password: str) -> None:
        with pytest.raises(InvalidInput):
            auth.register(email, password)
        assert auth.users.users == {}

    def test_access_token_identifies_the_user(self, auth: AuthService) -> None:
        result = auth.register("ada@example.com", PASSWORD)
        assert auth.authenticate(result.access_token).id == result.user.id


class TestLogin:
    def test_right_password(self, auth: AuthService) -> None:
        user = auth.register("ada@example.com", PASSWORD).user
        assert auth.login("Ada@Example.com", PASSWORD).user.id == user.id

    def test_wrong_password_and_unknown_account_look_the_same(self, auth: AuthService) -> None:
        auth.register("ada@example.com", PASSWORD)
        with pytest.raises(Unauthenticated) as wrong:
            auth.login("ada@example.com", "wrong password")
        with pytest.raises(Unauthenticated) as unknown:
            auth.login("bob@example.com", PASSWORD)
        assert wrong.value.message == unknown.value.message

    def test_too_many_failures_from_one_address_refuse_it_even_the_right_password(
        self, auth: AuthService, clock: FakeClock
    ) -> None:
        auth.register("ada@example.com", PASSWORD)
        for _ in range(3):
            with pytest.raises(Unauthenticated):
                auth.login("ada@example.com", "wrong password", client_ip="203.0.113.9")
        with pytest.raises(RateLimited) as limited:
            auth.login("ada@example.com", PASSWORD, client_ip="203.0.113.9")
        assert 1 <= limited.value.extensions["retryAfter"] <= 120
        # the owner, elsewhere, is not affected; nor is another account from the same address
        assert (
            auth.login("ada@example.com", PASSWORD, client_ip="198.51.100.7").user.email == "ada@example.com"
        )
        with pytest.raises(Unauthenticated):
            auth.login("bob@example.com", "wrong password", client_ip="203.0.113.9")
        clock.now += 121
        assert (
            auth.login("ada@example.com", PASSWORD, client_ip="203.0.113.9").user.email == "ada@example.com"
        )

    def test_refused_logins_cost_no_password_hash(self, auth: AuthService) -> None:
        auth.register("ada@example.com", PASSWORD)
        for _ in range(3):
            with pytest.raises(Unauthenticated):
                auth.login("ada@example.com", "wrong password", client_ip="203.0.113.9")
        hashed = auth.hashing.operations
        for _ in range(5):
            with pytest.raises(RateLimited):
                auth.login("ada@example.com", PASSWORD, client_ip="203.0.113.9")
        assert auth.hashing.operations == hashed

    def test_unknown_email_and_wrong_password_cost_the_same(self, auth: AuthService) -> None:
        auth.register("ada@example.com", PASSWORD)
        store = auth.limits.counter.store
        before = (auth.hashing.operations, store.requests)
        with pytest.raises(Unauthenticated) as wrong:
            auth.login("ada@example.com", "wrong password", client_ip="203.0.113.9")
        middle = (auth.hashing.operations, store.requests)
        with pytest.raises(Unauthenticated) as unknown:
            auth.login("nobody@example.com", "wrong password", client_ip="203.0.113.9")
        after = (auth.hashing.operations, store.requests)
        assert (wrong.value.message, wrong.value.extensions) == (
            unknown.value.message,
            unknown.value.extensions,
        )
        # one argon2 verification and the same throttle requests each
        assert middle[0] - before[0] == after[0] - middle[0] == 1
        assert middle[1] - before[1] == after[1] - middle[1]


class TestRegisterLimit:
    def test_each_address_registers_a_bounded_number_of_accounts(self, auth: AuthService) -> None:
        for n in range(5):
            auth.register(f"user{n}@example.com", PASSWORD, client_ip="203.0.113.9")
        with pytest.raises(RateLimited) as limited:
            auth.register("user5@example.com", PASSWORD, client_ip="203.0.113.9")
        assert limited.value.extensions["retryAfter"] >= 1
        assert auth.users.get_by_email("user5@example.com") is None
        # a taken email counts too: the answer about existence is rate limited
        with pytest.raises(RateLimited):
            auth.register("user0@example.com", PASSWORD, client_ip="203.0.113.9")
        assert auth.register("user5@example.com", PASSWORD, client_ip="198.51.100.7").user.email


class TestRefresh:
    def test_rotation_issues_a_new_pair(self, auth: AuthService) -> None:
        first = auth.register("ada@example.com", PASSWORD)
        second = auth.refresh(first.refresh_token)
        assert second.refresh_token != first.refresh_token
        assert second.user.id == first.user.id
        assert auth.authenticate(second.access_token).id == first.user.id
        assert auth.refresh(second.refresh_token).user.id == first.user.id

    def test_tokens_are_stored_only_as_digests(self, auth: AuthService) -> None:
        result = auth.register("ada@example.com", PASSWORD)
        stored = auth.tokens.tokens
        assert crypto_utils.token_digest(result.refresh_token) in stored
        assert result.refresh_token not in stored
        assert all(result.refresh_token not in repr(token) for token in stored.values())

    def test_reuse_revokes_the_whole_family(self, auth: AuthService) -> None:
        first = auth.register("ada@example.com", PASSWORD)
        other_session = auth.login("ada@example.com", PASSWORD)
        second = auth.refresh(first.refresh_token)
        with pytest.raises(Unauthenticated):
            auth.refresh(first.refresh_token)
        with pytest.raises(Unauthenticated):
            auth.refresh(second.refresh_token)
        # a separate login is a separate family
        assert auth.refresh(other_session.refresh_token).user.id == first.user.id

    def test_unknown_token(self, auth: AuthService) -> None:
        with pytest.raises(Unauthenticated):
            auth.refresh("no-such-token")

    def test_expired_token(self, auth: AuthService) -> None:
        result = auth.register("ada@example.com", PASSWORD)
        auth.tokens.tokens[crypto_utils.token_digest(result.refresh_token)].expires_at = time.time() - 1
        with pytest.raises(Unauthenticated):
            auth.refresh(result.refresh_token)

    def test_logout_revokes_the_session(self, auth: AuthService) -> None:
        first = auth.register("ada@example.com", PASSWORD)
        second = auth.refresh(first.refresh_token)
        assert auth.logout(second.refresh_token) is True
        with pytest.raises(Unauthenticated):
            auth.refresh(second.refresh_token)

    def test_logout_of_an_unknown_token(self, auth: AuthService) -> None:
        assert auth.logout("no-such-token") is False


class TestAuthenticate:
    def test_expired_access_token(self, auth: AuthService) -> None:
        user = auth.register("ada@example.com", PASSWORD).user
        token = crypto_utils.issue_access_token(SECRET, user.id, 900, now=time.time() - 901)
        with pytest.raises(Unauthenticated):
            auth.authenticate(token)

    def test_token_of_another_server(self, auth: AuthService) -> None:
        user = auth.register("ada@example.com", PASSWORD).user
        token = crypto_utils.issue_access_token("some-other-secret-key-0123456789", user.id, 900)
        with pytest.raises(Unauthenticated):
            auth.authenticate(token)

    def test_token_of_a_deleted_account(self, auth: AuthService) -> None:
        user = auth.register("ada@example.com", PASSWORD).user
        token = auth.login("ada@example.com", PASSWORD).access_token
        del auth.users.users[user.id]
        with pytest.raises(Unauthenticated):
            auth.authenticate(token)


class TestSessions:
    def test_logout_ends_that_sessions_access_token_only(self, auth: AuthService) -> None:
        phone = auth.register("ada@example.com", PASSWORD)
        laptop = auth.login("ada@example.com", PASSWORD)
        assert auth.logout(phone.refresh_token) is True
        with pytest.raises(Unauthenticated, match="ended"):
            auth.authenticate(phone.access_token)
        assert auth.authenticate(laptop.access_token).id == phone.user.id

    def test_refresh_reuse_ends_the_familys_access_tokens(self, auth: AuthService) -> None:
        first = auth.register("ada@example.com", PASSWORD)
        second = auth.refresh(first.refresh_token)
        with pytest.raises(Unauthenticated):
            auth.refresh(first.refresh_token)  # replayed
        with pytest.raises(Unauthenticated):
            auth.authenticate(second.access_token)

    def test_logout_everywhere(self, auth: AuthService) -> None:
        phone = auth.register("ada@example.com", PASSWORD)
        laptop = auth.login("ada@example.com", PASSWORD)
        assert auth.logout_everywhere(phone.user) is True
        for session in (phone, laptop):
            with pytest.raises(Unauthenticated):
                auth.authenticate(session.access_token)
            with pytest.raises(Unauthenticated):
                auth.refresh(session.refresh_token)
        fresh = auth.login("ada@example.com", PASSWORD)
        assert auth.authenticate(fresh.access_token).id == phone.user.id

    def test_account_password_checks_are_rate_limited_like_logins(self, auth: AuthService) -> None:
        # the fixture allows 3 failures per account and address: a stolen access token must not
        # turn changePassword or deleteAccount into an unlimited password oracle
        session = auth.register("ada@example.com", PASSWORD, client_ip="10.0.0.1")
        for _ in range(3):
            with pytest.raises(Forbidden):
                auth.change_password(session.user, "wrong password!", "a new long password", "10.0.0.9")
        with pytest.raises(RateLimited):
            auth.delete_account(session.user, PASSWORD, "10.0.0.9")
        assert auth.users.get(session.user.id).id == session.user.id  # nothing was deleted
        assert auth.delete_account(session.user, PASSWORD, "10.0.0.2")  # the owner, elsewhere

    def test_change_password(self, auth: AuthService) -> None:
        phone = auth.register("ada@example.com", PASSWORD)
        with pytest.raises(Forbidden):
            auth.change_password(phone.user, "wrong password!", "a new long password")
        with pytest.raises(InvalidInput):
            auth.change_password(phone.user, PASSWORD, "short")
        assert auth.authenticate(phone.access_token).id == phone.user.id  # nothing changed yet
        fresh = auth.change_password(phone.user, PASSWORD, "a new long password")
        with pytest.raises(Unauthenticated):
            auth.authenticate(phone.access_token)
        with pytest.raises(Unauthenticated):
            auth.refresh(phone.refresh_token)
        assert auth.authenticate(fresh.access_token).id == phone.user.id
        assert auth.refresh(fresh.refresh_token).user.id == phone.user.id
        with pytest.raises(Unauthenticated):
            auth.login("ada@example.com", PASSWORD)
        assert auth.login("ada@example.com", "a new long password").user.id == phone.user.id

    def test_ended_sessions_are_forgotten_once_their_tokens_expired(self, auth: AuthService) -> None:
        first = auth.register("ada@example.com", PASSWORD)
        auth.logout(first.refresh_token)
        auth.clock = lambda: time.time() + 901  # past the access tokens' lifetime
        second = auth.login("ada@example.com", PASSWORD)
        auth.logout(second.refresh_token)
        assert len(auth.users.get(first.user.id).ended_sessions) == 1


class TestDeleteAccount:
    def test_removes_own_data_memberships_and_sessions(self, auth: AuthService) -> None:
        ada = auth.register("ada@example.com", PASSWORD)
        bob = auth.register("bob@example.com", PASSWORD)
        store = auth.notebooks.store
        now = utc_now()
        ada_book = ada.user.default_notebook_id or ""
        bob_book = bob.user.default_notebook_id or ""
        store.notes["note:a"] = Note(
            "note:a", ada_book, ada.user.id, "mine", "", now, now, ada.user.id, ada.user.id
        )
        store.notes["note:b"] = Note(
            "note:b", bob_book, bob.user.id, "bob's", "", now, now, ada.user.id, ada.user.id
        )
        auth.memberships.put(Membership(bob_book, ada.user.id, "EDITOR", now, now))
        auth.memberships.put(Membership(ada_book, bob.user.id, "VIEWER", now, now))
        with pytest.raises(Forbidden):
            auth.delete_account(ada.user, "not the password")
        assert ada.user.id in auth.users.users
        assert auth.delete_account(auth.users.get(ada.user.id), PASSWORD) is True
        assert list(store.notebooks) == [bob_book]
        assert list(store.notes) == ["note:b"]  # what ada wrote in bob's notebook is bob's
        assert store.memberships == {}
        assert all(t.user_id != ada.user.id for t in auth.tokens.tokens.values())
        with pytest.raises(NotFound):
            auth.users.get(ada.user.id)
        with pytest.raises(Unauthenticated):
            auth.authenticate(ada.access_token)
        assert auth.users.get_many([ada.user.id])[ada.user.id].email == ""  # shown as deleted
        assert auth.register("ada@example.com", PASSWORD).user.id != ada.user.id  # address is free

    def test_other_users_are_untouched(self, auth: AuthService) -> None:
        ada = auth.register("ada@example.com", PASSWORD)
        bob = auth.register("bob@example.com", PASSWORD)
        auth.delete_account(ada.user, PASSWORD)
        assert auth.authenticate(bob.access_token).id == bob.user.id
        assert [nb.id for nb in auth.notebooks.list_owned(bob.user.id)] == [bob.user.default_notebook_id]


class TestRehash:
    def test_login_rehashes_with_new_parameters(self, auth: AuthService) -> None:
        auth.hashing.hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
        user = auth.register("ada@example.com", PASSWORD).user
        old_hash = auth.users.get(user.id).password_hash
        auth.login("ada@example.com", PASSWORD)
        assert auth.users.get(user.id).password_hash == old_hash  # same settings: left alone
        auth.hashing.hasher = PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1)
        auth.login("ada@example.com", PASSWORD)
        new_hash = auth.users.get(user.id).password_hash
        assert new_hash != old_hash and "t=2" in new_hash
        assert auth.login("ada@example.com", PASSWORD).user.id == user.id


class TestEmailRegisteredOnBothSidesOfAPartition:
    """Two accounts with one address, as replication leaves them after a partition: the
    earliest keeps the address, the other signs in with its own password and moves."""

    @staticmethod
    def _second_account(auth: AuthService, email: str, password: str) -> str:
        first = auth.users.login_candidates(email)[0]
        other = copy.deepcopy(first)
        other.id = crypto_utils.new_id("user:")
        other.created_at = "9999-01-01T00:00:00.000000Z"  # registered later
        other.password_hash = auth.hashing.hash(password)
        auth.users.add_across_partition(other)
        return other.id

    def test_each_person_signs_in_to_their_own_account(self, auth: AuthService) -> None:
        first = auth.register("ada@example.com", PASSWORD).user
        second_id = self._second_account(auth, "ada@example.com", "the other password")
        mine = auth.login("ada@example.com", PASSWORD)
        assert mine.user.id == first.id and not mine.email_conflict
        theirs = auth.login("ada@example.com", "the other password")
        assert theirs.user.id == second_id and theirs.email_conflict
        # the flag is kept on the account, so its tokens show it too
        assert auth.authenticate(theirs.access_token).email_conflict
        with pytest.raises(Unauthenticated):
            auth.login("ada@example.com", "neither password")

    def test_the_displaced_account_confirms_a_new_address(self, auth: AuthService) -> None:
        first = auth.register("ada@example.com", PASSWORD).user
        self._second_account(auth, "ada@example.com", "the other password")
        theirs = auth.login("ada@example.com", "the other password")
        actor = auth.authenticate(theirs.access_token)
        with pytest.raises(InvalidInput) as taken:
            auth.confirm_new_email(actor, "ada@example.com")
        assert taken.value.extensions == {"field": "email"}
        moved = auth.confirm_new_email(actor, "ada2@example.com")
        assert moved.email == "ada2@example.com" and not moved.email_conflict
        assert auth.login("ada2@example.com", "the other password").user.id == moved.id
        assert auth.login("ada@example.com", PASSWORD).user.id == first.id

    def test_an_account_that_holds_its_address_has_nothing_to_confirm(self, auth: AuthService) -> None:
        result = auth.register("ada@example.com", PASSWORD)
        with pytest.raises(InvalidInput):
            auth.confirm_new_email(auth.authenticate(result.access_token), "new@example.com")
        assert auth.users.get(result.user.id).email == "ada@example.com"

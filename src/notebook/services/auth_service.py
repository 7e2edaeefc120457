"""Accounts: registration, login, rotating refresh tokens, and who is calling."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher

from notebook.core import validation
from notebook.core.domain import NOTEBOOK_PREFIX, USER_PREFIX, Notebook, User, utc_now
from notebook.core.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthenticated
from notebook.database.repository import (
    EmailTaken,
    MembershipRepository,
    NotebookRepository,
    RefreshToken,
    RefreshTokenRepository,
    UserRepository,
)
from notebook.utils import crypto_utils

DEFAULT_NOTEBOOK_NAME = "My notes"


def family_session_id(family: str) -> str:
    """The session id access tokens carry: derived from the refresh family, never the family
    itself (which would let an access token's holder name a refresh family)."""
    return crypto_utils.token_digest(family)[:32]


@dataclass
class AuthResult:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User


class LoginThrottle:
    """At most `attempts` failed logins per key in a sliding window (per process)."""

    def __init__(self, attempts: int, window_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.attempts = attempts
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        with self._lock:
            failures = self._recent(key)
            if len(failures) >= self.attempts:
                raise RateLimited("too many failed logins; try again later")

    def record_failure(self, key: str) -> None:
        with self._lock:
            self._recent(key).append(self.clock())

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        horizon = self.clock() - self.window
        while failures and failures[0] < horizon:
            failures.popleft()
        return failures


class AuthService:
    def __init__(
        self,
        users: UserRepository,
        tokens: RefreshTokenRepository,
        notebooks: NotebookRepository,
        secret_key: str,
        access_token_seconds: int,
        refresh_token_seconds: int,
        throttle: LoginThrottle,
        memberships: MembershipRepository | None = None,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = users
        self.tokens = tokens
        self.notebooks = notebooks
        self.secret_key = secret_key
        self.access_token_seconds = access_token_seconds
        self.refresh_token_seconds = refresh_token_seconds
        self.throttle = throttle
        self.memberships = memberships
        # argon2 parameters from the settings; hashes made with others are redone at login
        self.hasher = hasher or PasswordHasher()
        self.clock = clock

    def register(self, email: str, password: str, display_name: str | None = None) -> AuthResult:
        """Create an account with its default notebook and log it in."""
        email = validation.email(email)
        password = validation.password(password)
        display_name = validation.display_name(display_name)
        now = utc_now()
        user = User(
            id=crypto_utils.new_id(USER_PREFIX),
            email=email,
            display_name=display_name,
            created_at=now,
            password_hash=crypto_utils.hash_password(password, self.hasher),
            default_notebook_id=crypto_utils.new_id(NOTEBOOK_PREFIX),
        )
        try:
            self.users.add(user)
        except EmailTaken:
            raise InvalidInput("an account with this email already exists", field="email") from None
        self.notebooks.add(
            Notebook(
                id=user.default_notebook_id or "",
                name=DEFAULT_NOTEBOOK_NAME,
                owner_id=user.id,
                created_at=now,
                updated_at=now,
                is_default=True,
            )
        )
        return self._issue(user, family=crypto_utils.random_token())

    def login(self, email: str, password: str) -> AuthResult:
        key = str(email).strip().lower()
        self.throttle.check(key)
        user = self.users.get_by_email(key) if isinstance(email, str) else None
        if (
            not crypto_utils.verify_password(user.password_hash if user else None, str(password), self.hasher)
            or not user
        ):
            self.throttle.record_failure(key)
            raise Unauthenticated("wrong email or password")
        self.throttle.reset(key)
        user = self._rehash_if_needed(user, str(password))
        return self._issue(user, family=crypto_utils.random_token())

    def refresh(self, refresh_token: str) -> AuthResult:
        """Trade a refresh token for a new pair; a reused token revokes its whole family."""
        stored = self.tokens.get(crypto_utils.token_digest(refresh_token))
        if stored is None or stored.revoked or stored.expires_at < time.time():
            raise Unauthenticated("invalid refresh token")
        if stored.used or not self.tokens.mark_used(stored):
            self.end_session(stored.user_id, stored.family)
            raise Unauthenticated("refresh token was already used; the session is revoked")
        return self._issue(self.users.get(stored.user_id), family=stored.family)

    def logout(self, refresh_token: str) -> bool:
        """End the session of this refresh token: its refresh tokens and its access tokens."""
        stored = self.tokens.get(crypto_utils.token_digest(refresh_token))
        if stored is None:
            return False
        self.end_session(stored.user_id, stored.family)
        return True

    def authenticate(self, access_token: str) -> User:
        """The user an access token belongs to, if its session has not ended. The user document
        is read on every request, so an ended session stops working at once on every instance."""
        try:
            claims = crypto_utils.read_access_token(self.secret_key, access_token)
        except crypto_utils.InvalidToken as exc:
            raise Unauthenticated(str(exc)) from None
        try:
            user = self.users.get(claims["sub"])
        except NotFound:
            raise Unauthenticated("the account no longer exists") from None
        if claims.get("ep", 0) != user.session_epoch or claims.get("sid") in user.ended_sessions:
            raise Unauthenticated("this session has ended; sign in again")
        return user

    def set_admin(self, email: str, is_admin: bool = True) -> User:
        """Grant or take away the admin flag (operators' command line, never the API)."""
        user = self.users.get_by_email(str(email).strip().lower())
        if user is None:
            raise NotFound(f"no account has the e-mail address {email}")

        def apply(current: User) -> None:
            current.is_admin = is_admin

        return self.users.change(user.id, apply)

    # the caller's account ----------------------------------------------------------------------
    def change_password(self, actor: User, current_password: str, new_password: str) -> AuthResult:
        """Set a new password, end every session of the account and open a fresh one."""
        self._check_password(actor, current_password)
        new_hash = crypto_utils.hash_password(validation.password(new_password), self.hasher)

        def apply(user: User) -> None:
            user.password_hash = new_hash
            self._new_epoch(user)

        user = self.users.change(actor.id, apply)
        self.tokens.revoke_user(actor.id)
        return self._issue(user, family=crypto_utils.random_token())

    def logout_everywhere(self, actor: User) -> bool:
        """End every session of the account, on every device."""
        self.users.change(actor.id, self._new_epoch)
        self.tokens.revoke_user(actor.id)
        return True

    def delete_account(self, actor: User, password: str) -> bool:
        """Remove the account with its notebooks (shared ones too: their members lose access),
        their notes and revisions, its memberships in other people's notebooks and its sessions.
        Notes it wrote in other people's notebooks belong to those notebooks and stay."""
        self._check_password(actor, password)
        user = self.users.change(actor.id, self._new_epoch)  # its tokens stop working first
        self.tokens.revoke_user(user.id)
        for notebook in self.notebooks.list_owned(user.id):
            self.notebooks.delete_with_notes(notebook)
        if self.memberships is not None:
            self.memberships.remove_all(self.memberships.for_user(user.id))
        self.tokens.delete_user_tokens(user.id)
        self.users.delete(user)
        return True

    def _check_password(self, actor: User, password: str) -> None:
        if not isinstance(password, str) or not crypto_utils.verify_password(
            actor.password_hash, password, self.hasher
        ):
            raise Forbidden("the password is wrong", field="password")

    @staticmethod
    def _new_epoch(user: User) -> None:
        user.session_epoch += 1
        user.ended_sessions = {}  # the new epoch ends them all

    def end_session(self, user_id: str, family: str) -> None:
        """Revoke a session's refresh tokens and note on the user that its access tokens end;
        the note is kept as long as one of them could still be valid."""
        self.tokens.revoke_family(family)
        now = self.clock()

        def apply(user: User) -> None:
            horizon = now - self.access_token_seconds
            user.ended_sessions = {sid: at for sid, at in user.ended_sessions.items() if at >= horizon}
            user.ended_sessions[family_session_id(family)] = now

        try:
            self.users.change(user_id, apply)
        except NotFound:
            pass  # the account is gone, and its tokens with it

    def _rehash_if_needed(self, user: User, password: str) -> User:
        """Redo a hash made with other argon2 parameters than the current settings."""
        if not crypto_utils.password_needs_rehash(user.password_hash, self.hasher):
            return user
        new_hash = crypto_utils.hash_password(password, self.hasher)

        def apply(current: User) -> None:
            current.password_hash = new_hash

        return self.users.change(user.id, apply)

    def _issue(self, user: User, family: str) -> AuthResult:
        refresh_token = crypto_utils.random_token()
        self.tokens.add(
            RefreshToken(
                token_hash=crypto_utils.token_digest(refresh_token),
                user_id=user.id,
                family=family,
                expires_at=time.time() + self.refresh_token_seconds,
            )
        )
        access = crypto_utils.issue_access_token(
            self.secret_key,
            user.id,
            self.access_token_seconds,
            ep=user.session_epoch,
            sid=family_session_id(family),
        )
        return AuthResult(access, refresh_token, self.access_token_seconds, user)

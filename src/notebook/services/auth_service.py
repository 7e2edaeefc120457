"""Accounts: registration, login, rotating refresh tokens, and who is calling."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from notebook.core import validation
from notebook.core.domain import NOTEBOOK_PREFIX, USER_PREFIX, Notebook, User, utc_now
from notebook.core.errors import InvalidInput, NotFound, RateLimited, Unauthenticated
from notebook.database.repository import (
    EmailTaken,
    NotebookRepository,
    RefreshToken,
    RefreshTokenRepository,
    UserRepository,
)
from notebook.utils import crypto_utils

DEFAULT_NOTEBOOK_NAME = "My notes"


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
    ) -> None:
        self.users = users
        self.tokens = tokens
        self.notebooks = notebooks
        self.secret_key = secret_key
        self.access_token_seconds = access_token_seconds
        self.refresh_token_seconds = refresh_token_seconds
        self.throttle = throttle

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
            password_hash=crypto_utils.hash_password(password),
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
        if not crypto_utils.verify_password(user.password_hash if user else None, str(password)) or not user:
            self.throttle.record_failure(key)
            raise Unauthenticated("wrong email or password")
        self.throttle.reset(key)
        return self._issue(user, family=crypto_utils.random_token())

    def refresh(self, refresh_token: str) -> AuthResult:
        """Trade a refresh token for a new pair; a reused token revokes its whole family."""
        stored = self.tokens.get(crypto_utils.token_digest(refresh_token))
        if stored is None or stored.revoked or stored.expires_at < time.time():
            raise Unauthenticated("invalid refresh token")
        if stored.used or not self.tokens.mark_used(stored):
            self.tokens.revoke_family(stored.family)
            raise Unauthenticated("refresh token was already used; the session is revoked")
        return self._issue(self.users.get(stored.user_id), family=stored.family)

    def logout(self, refresh_token: str) -> bool:
        stored = self.tokens.get(crypto_utils.token_digest(refresh_token))
        if stored is None:
            return False
        self.tokens.revoke_family(stored.family)
        return True

    def authenticate(self, access_token: str) -> User:
        """The user an access token belongs to."""
        try:
            claims = crypto_utils.read_access_token(self.secret_key, access_token)
        except crypto_utils.InvalidToken as exc:
            raise Unauthenticated(str(exc)) from None
        try:
            return self.users.get(claims["sub"])
        except NotFound:
            raise Unauthenticated("the account no longer exists") from None

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
        access = crypto_utils.issue_access_token(self.secret_key, user.id, self.access_token_seconds)
        return AuthResult(access, refresh_token, self.access_token_seconds, user)

"""Accounts: registration, login, rotating refresh tokens, and who is calling."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from notebook.core import validation
from notebook.core.domain import NOTEBOOK_PREFIX, USER_PREFIX, Notebook, User, utc_now
from notebook.core.errors import InvalidInput, NotFound, Unauthenticated
from notebook.database.repository import (
    EmailTaken,
    NotebookRepository,
    RefreshToken,
    RefreshTokenRepository,
    UserRepository,
)
from notebook.services.rate_limits import AbuseLimits, PasswordHashing
from notebook.utils import crypto_utils

security_log = logging.getLogger("notebook.security")

DEFAULT_NOTEBOOK_NAME = "My notes"


@dataclass
class AuthResult:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User


class AuthService:
    def __init__(
        self,
        users: UserRepository,
        tokens: RefreshTokenRepository,
        notebooks: NotebookRepository,
        secret_key: str,
        access_token_seconds: int,
        refresh_token_seconds: int,
        limits: AbuseLimits,
        hashing: PasswordHashing,
    ) -> None:
        self.users = users
        self.tokens = tokens
        self.notebooks = notebooks
        self.secret_key = secret_key
        self.access_token_seconds = access_token_seconds
        self.refresh_token_seconds = refresh_token_seconds
        self.limits = limits
        self.hashing = hashing

    def register(
        self, email: str, password: str, display_name: str | None = None, client_ip: str = ""
    ) -> AuthResult:
        """Create an account with its default notebook and log it in.

        A taken email is answered as such: see docs/security.md for why, and for the per-address
        limit that keeps that answer from serving as a fast directory of accounts."""
        email = validation.email(email)
        password = validation.password(password)
        display_name = validation.display_name(display_name)
        self.limits.before_register(client_ip)
        now = utc_now()
        user = User(
            id=crypto_utils.new_id(USER_PREFIX),
            email=email,
            display_name=display_name,
            created_at=now,
            password_hash=self.hashing.hash(password),
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

    def login(self, email: str, password: str, client_ip: str = "") -> AuthResult:
        """Log in; an unknown email and a wrong password get the same answer after the same work
        (one argon2 verification and one counted failure)."""
        key = str(email).strip().lower()
        self.limits.before_login(key, client_ip)
        user = self.users.get_by_email(key) if isinstance(email, str) else None
        if not self.hashing.verify(user.password_hash if user else None, str(password)) or not user:
            self.limits.login_failed(key, client_ip)
            security_log.info("login failed", extra={"event": "login_failed", "client_ip": client_ip})
            raise Unauthenticated("wrong email or password")
        return self._issue(user, family=crypto_utils.random_token())

    def refresh(self, refresh_token: str, client_ip: str = "") -> AuthResult:
        """Trade a refresh token for a new pair; a reused token revokes its whole family (on
        every node: see RefreshTokenRepository.revoke_family and the conflict rule)."""
        stored = self.tokens.get(crypto_utils.token_digest(str(refresh_token)))
        if stored is None or stored.revoked or stored.expires_at < time.time():
            security_log.warning(
                "refresh refused", extra={"event": "refresh_invalid", "client_ip": client_ip}
            )
            raise Unauthenticated("invalid refresh token")
        if stored.used or not self.tokens.mark_used(stored):
            self.tokens.revoke_family(stored.family)
            security_log.warning(
                "refresh token reused; session revoked",
                extra={"event": "refresh_reuse", "user_id": stored.user_id, "client_ip": client_ip},
            )
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
            # the reason only: the token itself never reaches the logs
            security_log.warning("access token refused", extra={"event": "token_refused", "reason": str(exc)})
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

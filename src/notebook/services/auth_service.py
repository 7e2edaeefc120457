"""Accounts: registration, login, rotating refresh tokens, and who is calling."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from notebook.core import validation
from notebook.core.activity import Activity, new_activity
from notebook.core.domain import NOTEBOOK_PREFIX, USER_PREFIX, Notebook, RefreshToken, User, utc_now
from notebook.core.errors import EmailTaken, Forbidden, InvalidInput, NotFound, RateLimited, Unauthenticated
from notebook.services.activity_service import ActivityService
from notebook.services.ports import MembershipStore, NotebookStore, RefreshTokenStore, UserStore
from notebook.services.rate_limits import AbuseLimits, PasswordHashing
from notebook.utils import crypto_utils

security_log = logging.getLogger("notebook.security")

DEFAULT_NOTEBOOK_NAME = "My notes"


def _account_event(action: str, user: User, at: str) -> Activity:
    return new_activity(action, user.id, "user", user.id, at)


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

    @property
    def email_conflict(self) -> bool:
        """The account must confirm a new e-mail address (see `confirm_new_email`)."""
        return self.user.email_conflict


class AuthService:
    def __init__(
        self,
        users: UserStore,
        tokens: RefreshTokenStore,
        notebooks: NotebookStore,
        secret_key: str,
        access_token_seconds: int,
        refresh_token_seconds: int,
        limits: AbuseLimits,
        hashing: PasswordHashing,
        memberships: MembershipStore | None = None,
        clock: Callable[[], float] = time.time,
        activity: ActivityService | None = None,
    ) -> None:
        self.users = users
        self.tokens = tokens
        self.notebooks = notebooks
        self.secret_key = secret_key
        self.access_token_seconds = access_token_seconds
        self.refresh_token_seconds = refresh_token_seconds
        self.limits = limits
        self.hashing = hashing
        self.memberships = memberships
        self.clock = clock
        self.activity = activity  # security events (failed sign-ins, limits, token reuse)

    def _security_event(self, action: str, target_type: str, target_id: str, **fields: str | None) -> None:
        if self.activity is not None:
            self.activity.security_event(action, target_type, target_id, **fields)  # type: ignore[arg-type]

    def _limited(self, check: Callable[[], None], key: str, client_ip: str) -> None:
        """Run a rate-limit check; a refusal is recorded (once a minute per key) and raised."""
        try:
            check()
        except RateLimited:
            self._security_event(
                "security.rate_limited", "client", client_ip or "unknown",
                detail=f"from {client_ip or 'an unknown address'}", dedupe=f"{key}|{client_ip}",
            )  # fmt: skip
            raise

    def register(
        self, email: str, password: str, display_name: str | None = None, client_ip: str = ""
    ) -> AuthResult:
        """Create an account with its default notebook and log it in.

        A taken email is answered as such: see docs/security.md for why, and for the per-address
        limit that keeps that answer from serving as a fast directory of accounts."""
        email = validation.email(email)
        password = validation.password(password)
        display_name = validation.display_name(display_name)
        self._limited(lambda: self.limits.before_register(client_ip), "register", client_ip)
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
            self.users.add(user, events=[_account_event("user.registered", user, now)])
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
        self._limited(lambda: self.limits.before_login(key, client_ip), f"login|{key}", client_ip)
        user = self._verified(key, str(password)) if isinstance(email, str) else None
        if user is None:
            self.limits.login_failed(key, client_ip)
            security_log.info("login failed", extra={"event": "login_failed", "client_ip": client_ip})
            # the address is named by a digest only: the record must not collect e-mail addresses
            self._security_event(
                "security.login_failed", "account", crypto_utils.token_digest(key)[:32],
                detail=f"from {client_ip or 'an unknown address'}",
            )  # fmt: skip
            raise Unauthenticated("wrong email or password")
        if user.email_conflict:
            user = self._flag_email_conflict(user)
        user = self._rehash_if_needed(user, str(password))
        login = _account_event("user.login", user, utc_now())
        return self._issue(user, family=crypto_utils.random_token(), events=[login])

    def _verified(self, email: str, password: str) -> User | None:
        """The account of this address whose password this is. Usually one candidate and one
        argon2 verification (a dummy one when there is none); an address that a partition let
        two accounts register has one candidate more per account (docs/replication.md)."""
        candidates = self.users.login_candidates(email)
        for candidate in candidates:
            if self.hashing.verify(candidate.password_hash, password):
                return candidate
        if not candidates:
            self.hashing.verify(None, password)
        return None

    def _flag_email_conflict(self, user: User) -> User:
        """Keep the flag on the account, so its tokens and `me` show it until it is settled."""
        security_log.warning(
            "sign-in of an account whose e-mail address another account holds",
            extra={"event": "email_conflict_login", "user_id": user.id},
        )

        def apply(current: User) -> None:
            current.email_conflict = True

        return self.users.change(user.id, apply)

    def confirm_new_email(self, actor: User, email: str) -> User:
        """Move an account flagged `email_conflict` to a new address of its own."""
        if not actor.email_conflict:
            raise InvalidInput("this account's e-mail address is its own; nothing to confirm", field="email")
        email = validation.email(email)
        try:
            event = _account_event("user.email_changed", actor, utc_now())
            user = self.users.change_email(actor.id, email, events=[event])
        except EmailTaken:
            raise InvalidInput("an account with this email already exists", field="email") from None
        security_log.warning(
            "an account displaced from its e-mail address confirmed a new one",
            extra={"event": "email_conflict_settled", "user_id": user.id},
        )
        return user

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
            self.end_session(stored.user_id, stored.family)
            self._security_event(
                "security.refresh_reuse", "user", stored.user_id,
                actor_id=stored.user_id, detail=f"from {client_ip or 'an unknown address'}",
            )  # fmt: skip
            security_log.warning(
                "refresh token reused; session revoked",
                extra={"event": "refresh_reuse", "user_id": stored.user_id, "client_ip": client_ip},
            )
            raise Unauthenticated("refresh token was already used; the session is revoked")
        return self._issue(self.users.get(stored.user_id), family=stored.family)

    def logout(self, refresh_token: str) -> bool:
        """End the session of this refresh token: its refresh tokens and its access tokens."""
        stored = self.tokens.get(crypto_utils.token_digest(refresh_token))
        if stored is None:
            return False
        self.end_session(stored.user_id, stored.family, action="user.logout")
        return True

    def authenticate(self, access_token: str) -> User:
        """The user an access token belongs to, if its session has not ended. The user document
        is read on every request, so an ended session stops working at once on every instance."""
        try:
            claims = crypto_utils.read_access_token(self.secret_key, access_token)
        except crypto_utils.InvalidToken as exc:
            # the reason only: the token itself never reaches the logs
            security_log.warning("access token refused", extra={"event": "token_refused", "reason": str(exc)})
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

        changed = self.users.change(user.id, apply)
        action = "security.admin_granted" if is_admin else "security.admin_revoked"
        self._security_event(action, "user", user.id, detail="by the create-admin command")
        return changed

    # the caller's account ----------------------------------------------------------------------
    def change_password(
        self, actor: User, current_password: str, new_password: str, client_ip: str = ""
    ) -> AuthResult:
        """Set a new password, end every session of the account and open a fresh one."""
        self._check_password(actor, current_password, client_ip)
        new_hash = self.hashing.hash(validation.password(new_password))

        def apply(user: User) -> None:
            user.password_hash = new_hash
            self._new_epoch(user)

        user = self.users.change(
            actor.id, apply, events=[_account_event("user.password_changed", actor, utc_now())]
        )
        self.tokens.revoke_user(actor.id)
        return self._issue(user, family=crypto_utils.random_token())

    def logout_everywhere(self, actor: User) -> bool:
        """End every session of the account, on every device."""
        event = _account_event("user.logout_everywhere", actor, utc_now())
        self.users.change(actor.id, self._new_epoch, events=[event])
        self.tokens.revoke_user(actor.id)
        return True

    def delete_account(self, actor: User, password: str, client_ip: str = "") -> bool:
        """Remove the account with its notebooks (shared ones too: their members lose access),
        their notes and revisions, its memberships in other people's notebooks and its sessions.
        Notes it wrote in other people's notebooks belong to those notebooks and stay."""
        self._check_password(actor, password, client_ip)
        user = self.users.change(actor.id, self._new_epoch)  # its tokens stop working first
        self.tokens.revoke_user(user.id)
        for notebook in self.notebooks.list_owned(user.id):
            self.notebooks.delete_with_notes(notebook)
        if self.memberships is not None:
            self.memberships.remove_all(self.memberships.for_user(user.id))
        self.tokens.delete_user_tokens(user.id)
        if self.activity is not None:
            self.activity.forget(user.id)
        self.users.delete(user, events=[_account_event("user.deleted", user, utc_now())])
        return True

    def _check_password(self, actor: User, password: str, client_ip: str) -> None:
        """A wrong password here counts as a failed login: a stolen access token must not become
        an unlimited password oracle."""
        self.limits.before_login(actor.email, client_ip)
        if not isinstance(password, str) or not self.hashing.verify(actor.password_hash, password):
            self.limits.login_failed(actor.email, client_ip)
            raise Forbidden("the password is wrong", field="password")

    @staticmethod
    def _new_epoch(user: User) -> None:
        user.session_epoch += 1
        user.ended_sessions = {}  # the new epoch ends them all

    def end_session(self, user_id: str, family: str, action: str | None = None) -> None:
        """Revoke a session's refresh tokens and note on the user that its access tokens end;
        the note is kept as long as one of them could still be valid. `action` (a sign-out)
        is recorded with the change of the user."""
        self.tokens.revoke_family(family)
        now = self.clock()

        def apply(user: User) -> None:
            horizon = now - self.access_token_seconds
            user.ended_sessions = {sid: at for sid, at in user.ended_sessions.items() if at >= horizon}
            user.ended_sessions[family_session_id(family)] = now

        events: list[Activity] = []
        if action is not None:
            events.append(new_activity(action, user_id, "user", user_id, utc_now()))
        try:
            self.users.change(user_id, apply, events=events)
        except NotFound:
            pass  # the account is gone, and its tokens with it

    def _rehash_if_needed(self, user: User, password: str) -> User:
        """Redo a hash made with other argon2 parameters than the current settings."""
        if not self.hashing.needs_rehash(user.password_hash):
            return user
        new_hash = self.hashing.hash(password)

        def apply(current: User) -> None:
            current.password_hash = new_hash

        return self.users.change(user.id, apply)

    def _issue(self, user: User, family: str, events: Sequence[Activity] = ()) -> AuthResult:
        refresh_token = crypto_utils.random_token()
        self.tokens.add(
            RefreshToken(
                token_hash=crypto_utils.token_digest(refresh_token),
                user_id=user.id,
                family=family,
                expires_at=time.time() + self.refresh_token_seconds,
            ),
            events=events,
        )
        access = crypto_utils.issue_access_token(
            self.secret_key,
            user.id,
            self.access_token_seconds,
            ep=user.session_epoch,
            sid=family_session_id(family),
        )
        return AuthResult(access, refresh_token, self.access_token_seconds, user)

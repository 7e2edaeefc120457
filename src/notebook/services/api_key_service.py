"""API keys for scripts (docs/security.md, "API keys").

- The secret is `nbk_<key id>_<43 random characters>`: the `nbk_` prefix lets secret scanners
  and people spot a leaked one, the key id finds its document in one read. Only its SHA-256 is
  stored (the secret has 256 random bits, so a fast hash is as safe as argon2 here, and a
  request with a key costs no password hash); it is shown once, at creation.
- Scope READ allows queries only; WRITE also note and notebook mutations; neither allows
  account, API-key or admin operations. services/permissions.py enforces it, in the same table
  as every other rule.
- A key works while the account's session epoch is the one it was made under: changing the
  password, signing out everywhere and deleting the account end every key at once (they are
  what a person does when they suspect a credential leaked), with no write per key. Deleting the
  account also deletes the key documents.
- The key document is read on every request that uses it, so a revocation is effective on
  every instance at the next request. `lastUsedAt` is written at most once per
  LAST_USED_RESOLUTION_SECONDS per key, not once per request.
- A wrong or unknown key counts against the caller's address like a failed login, and is
  refused with RATE_LIMITED past the limit; checking a key costs one document read and a
  SHA-256, so guessing costs the caller, not the server.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Protocol

from notebook.core.activity import Activity, new_activity
from notebook.core.domain import API_KEY_PREFIX, API_KEY_SCOPES, ApiKey, User, format_time, utc_now
from notebook.core.errors import InvalidInput, NotFound, Unauthenticated
from notebook.utils.crypto_utils import token_digest

SECRET_PREFIX = "nbk_"
MAX_KEYS_PER_USER = 50
MAX_EXPIRY_DAYS = 3650
MAX_NAME_CHARS = 100
LAST_USED_RESOLUTION_SECONDS = 3600


class ApiKeyStore(Protocol):
    def add(self, key: ApiKey, *, events: tuple[Activity, ...] | list[Activity] = ()) -> None: ...

    def get(self, key_id: str) -> ApiKey | None: ...

    def for_user(self, user_id: str) -> list[ApiKey]: ...

    def update(self, key: ApiKey, *, events: tuple[Activity, ...] | list[Activity] = ()) -> bool: ...

    def delete_for_user(self, user_id: str) -> int: ...


class KeyFailures(Protocol):
    """Where wrong keys are counted (services/rate_limits.AbuseLimits)."""

    def before_api_key(self, client_ip: str) -> None: ...

    def api_key_failed(self, client_ip: str) -> None: ...


class UserSource(Protocol):
    def get(self, user_id: str) -> User: ...


def _event(action: str, user: User, key: ApiKey, at: str) -> Activity:
    return new_activity(action, user.id, "api_key", key.id, at, detail=f"{key.name}, {key.scope}")


def looks_like_api_key(token: str) -> bool:
    return token.startswith(SECRET_PREFIX)


class ApiKeyService:
    def __init__(
        self, keys: ApiKeyStore, users: UserSource, failures: KeyFailures, max_keys: int = MAX_KEYS_PER_USER
    ) -> None:
        self.max_keys = max_keys
        self.keys = keys
        self.users = users
        self.failures = failures

    def create(self, user: User, name: str, scope: str, expires_in_days: int | None) -> tuple[ApiKey, str]:
        name = str(name or "").strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise InvalidInput(f"name must be 1 to {MAX_NAME_CHARS} characters", field="name")
        if scope not in API_KEY_SCOPES:
            raise InvalidInput("scope must be READ or WRITE", field="scope")
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise InvalidInput(f"expiresInDays must be 1 to {MAX_EXPIRY_DAYS}", field="expiresInDays")
        live = [k for k in self.keys.for_user(user.id) if k.revoked_at is None]
        if len(live) >= self.max_keys:
            raise InvalidInput(
                f"at most {self.max_keys} API keys per account", field="name", reason="KEY_LIMIT"
            )
        key_hex = secrets.token_hex(8)
        secret = f"{SECRET_PREFIX}{key_hex}_{secrets.token_urlsafe(32)}"
        now = utc_now()
        expires = (
            format_time(datetime.now(UTC) + timedelta(days=expires_in_days)) if expires_in_days else None
        )
        key = ApiKey(
            id=f"{API_KEY_PREFIX}{key_hex}",
            user_id=user.id,
            name=name,
            scope=scope,
            created_at=now,
            secret_hash=token_digest(secret),
            session_epoch=user.session_epoch,
            expires_at=expires,
        )
        self.keys.add(key, events=[_event("api_key.created", user, key, now)])
        return key, secret

    def list(self, user: User) -> list[ApiKey]:
        return [k for k in self.keys.for_user(user.id) if k.revoked_at is None]

    def revoke(self, user: User, key_id: str) -> bool:
        key = self.keys.get(str(key_id))
        if key is None or key.user_id != user.id or key.revoked_at is not None:
            raise NotFound("API key not found")
        now = utc_now()
        for _ in range(5):
            key.revoked_at = now
            if self.keys.update(key, events=[_event("api_key.revoked", user, key, now)]):
                return True
            fresh = self.keys.get(key.id)  # lastUsedAt moved meanwhile: revoke the new version
            if fresh is None or fresh.revoked_at is not None:
                return True
            key = fresh
        raise RuntimeError(f"{key.id} could not be revoked")

    def authenticate(self, secret: str, client_ip: str = "") -> tuple[User, ApiKey]:
        """The user and key of a secret; Unauthenticated (or RateLimited) otherwise."""
        self.failures.before_api_key(client_ip)
        key_hex = secret[len(SECRET_PREFIX) :].split("_", 1)[0]
        key = self.keys.get(f"{API_KEY_PREFIX}{key_hex}") if key_hex.isalnum() else None
        if key is None or not hmac.compare_digest(key.secret_hash, token_digest(secret)):
            self.failures.api_key_failed(client_ip)
            raise Unauthenticated("invalid API key")
        now = utc_now()
        if key.revoked_at is not None:
            raise Unauthenticated("this API key was revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthenticated("this API key has expired")
        try:
            user = self.users.get(key.user_id)
        except NotFound:
            raise Unauthenticated("the account no longer exists") from None
        if user.session_epoch != key.session_epoch:
            raise Unauthenticated("this API key ended with a password change or sign-out everywhere")
        self._touch(user, key, now)
        return user, key

    def _touch(self, user: User, key: ApiKey, now: str) -> None:
        """Record the use: the first one with an activity record, then at most hourly."""
        first = key.last_used_at is None
        horizon = format_time(datetime.now(UTC) - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS))
        if not first and key.last_used_at is not None and key.last_used_at > horizon:
            return
        key.last_used_at = now
        events = [_event("api_key.first_used", user, key, now)] if first else []
        self.keys.update(key, events=events)  # lost to a concurrent use: that one recorded it

    def forget_user(self, user_id: str) -> int:
        return self.keys.delete_for_user(user_id)

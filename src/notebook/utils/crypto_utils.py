"""Password hashing, random tokens and signed access tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
_JWT_ALGORITHM = "HS256"
# a real hash to check against when the account does not exist, so timing does not tell
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class InvalidToken(Exception):
    """The token is malformed, tampered with, expired or of the wrong kind."""


def hash_password(password: str, hasher: PasswordHasher = _HASHER) -> str:
    return hasher.hash(password)


def verify_password(password_hash: str | None, password: str, hasher: PasswordHasher = _HASHER) -> bool:
    """Constant-work check; False for a wrong password or a missing account."""
    try:
        return hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str, hasher: PasswordHasher = _HASHER) -> bool:
    """Whether a stored hash was made with other parameters than `hasher`'s."""
    try:
        return hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def random_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored for a refresh token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_access_token(
    secret: str, user_id: str, ttl_seconds: int, now: float | None = None, **extra: Any
) -> str:
    """A signed access token; `extra` claims (session epoch, session id) are checked by the caller."""
    issued = int(now if now is not None else time.time())
    claims = {**extra, "sub": user_id, "iat": issued, "exp": issued + ttl_seconds, "typ": "access"}
    return jwt.encode(claims, secret, algorithm=_JWT_ALGORITHM)


def read_access_token(secret: str, token: str) -> dict[str, Any]:
    """Verify signature, expiry and kind; return the claims."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[_JWT_ALGORITHM], options={"require": ["sub", "exp", "iat"]}
        )
    except jwt.PyJWTError:
        raise InvalidToken("invalid or expired access token") from None
    if claims.get("typ") != "access" or not isinstance(claims.get("sub"), str):
        raise InvalidToken("invalid access token")
    return claims

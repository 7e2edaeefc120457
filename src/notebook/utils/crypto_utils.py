"""Password hashing, random tokens, signed access tokens, and the primitives of encryption at rest."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

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


# -- encryption at rest (docs/security.md, "Encryption at rest") -------------------------------
# Envelope encryption: a master key (ENCRYPTION_KEY_PATH) wraps the data keys and index keys;
# data keys seal note fields with AES-256-GCM, a fresh 96-bit nonce per seal, and the document
# id (plus what the field is) as associated data, so a ciphertext moved to another document or
# field does not open. Index keys make the blind index: HMAC-SHA256 of normalized words and tags,
# and AES-SIV (deterministic) for the tag spellings that `tags` lists.

KEY_BYTES = 32
_NONCE_BYTES = 12
SEALED_VERSION = "v1"


class DecryptionError(Exception):
    """A ciphertext that does not open: tampered, moved to another document, or under a key
    this process does not hold. The message names what failed, never key material."""


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(key: bytes, key_id: str, plaintext: bytes, associated: str, deterministic: bool = False) -> str:
    """`v1.<key id>.<nonce + ciphertext + tag>`: AES-256-GCM under `key`, bound to `associated`
    (the key id is bound too, so relabelling a ciphertext with another key id fails).

    The nonce is random, except with `deterministic`: then it is derived from the message
    itself (a keyed hash of the associated data and the plaintext, under a key derived apart),
    so the same plaintext in the same place gives the same value and a different one a
    different nonce. Conflict resolvers on several nodes need that: their identical answers
    must be identical documents to replicate into one revision (database/repository.py)."""
    aad = f"{key_id}\x00{associated}".encode()
    if deterministic:
        nonce_key = hmac.new(key, b"notebook nonce key", hashlib.sha256).digest()
        nonce = hmac.new(nonce_key, aad + b"\x00" + plaintext, hashlib.sha256).digest()[:_NONCE_BYTES]
    else:
        nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext, aad)
    return f"{SEALED_VERSION}.{key_id}.{_b64(nonce + sealed)}"


def sealed_key_id(sealed: str) -> str:
    """The id of the key a sealed value needs; DecryptionError when it is not a sealed value."""
    parts = sealed.split(".") if isinstance(sealed, str) else []
    if len(parts) != 3 or parts[0] != SEALED_VERSION or not parts[1]:
        raise DecryptionError("not a sealed value")
    return parts[1]


def open_sealed(key: bytes, sealed: str, associated: str) -> bytes:
    key_id = sealed_key_id(sealed)
    try:
        raw = _unb64(sealed.split(".")[2])
        nonce, body = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        return AESGCM(key).decrypt(nonce, body, f"{key_id}\x00{associated}".encode())
    except (InvalidTag, ValueError, binascii.Error):
        raise DecryptionError("ciphertext does not open (tampered, moved or wrong key)") from None


def blind_hash(index_key: bytes, purpose: str, text: str) -> str:
    """The blind-index entry of `text`: equal words give equal entries, nothing else is kept.
    128 bits, hex: collisions are negligible at any note count."""
    return hmac.digest(index_key, f"{purpose}\x00{text}".encode(), "sha256").hex()[:32]


def seal_deterministic(index_key: bytes, key_id: str, text: str) -> str:
    """AES-SIV of `text`: the same text gives the same value (so a view can group it), and the
    value opens again to the text. Used for tag spellings only."""
    sealed = AESSIV(_siv_key(index_key)).encrypt(text.encode(), [key_id.encode()])
    return f"{key_id}.{_b64(sealed)}"


def open_deterministic(index_key: bytes, value: str) -> str:
    key_id, _, body = value.partition(".")
    try:
        return AESSIV(_siv_key(index_key)).decrypt(_unb64(body), [key_id.encode()]).decode()
    except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
        raise DecryptionError("tag value does not open (tampered or wrong index key)") from None


def _siv_key(index_key: bytes) -> bytes:
    # AES-SIV takes a double-length key: derive it from the index key, apart from the HMAC use
    return hashlib.sha512(b"notebook tag names\x00" + index_key).digest()


def wrap_key(master: bytes, key_id: str, key: bytes, deterministic: bool = False) -> str:
    """A data or index key sealed under the master key, bound to its id."""
    return seal(master, "master", key, f"key:{key_id}", deterministic)


def unwrap_key(master: bytes, key_id: str, wrapped: str) -> bytes:
    return open_sealed(master, wrapped, f"key:{key_id}")

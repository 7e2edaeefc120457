"""notebook.utils.crypto_utils: password hashes, refresh-token digests and access tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import jwt
import pytest

from notebook.utils import crypto_utils
from notebook.utils.crypto_utils import InvalidToken, issue_access_token, read_access_token

SECRET = "unit-test-secret-key-of-sufficient-length"


class TestPasswords:
    def test_hash_is_argon2id_and_salted(self) -> None:
        first = crypto_utils.hash_password("correct horse")
        second = crypto_utils.hash_password("correct horse")
        assert first.startswith("$argon2id$")
        assert first != second
        assert "correct horse" not in first

    def test_verify(self) -> None:
        stored = crypto_utils.hash_password("correct horse")
        assert crypto_utils.verify_password(stored, "correct horse")
        assert not crypto_utils.verify_password(stored, "correct horsE")
        assert not crypto_utils.verify_password(stored, "")

    def test_missing_account_never_verifies(self) -> None:
        assert not crypto_utils.verify_password(None, "anything")
        assert not crypto_utils.verify_password("", "anything")

    def test_garbage_hash_does_not_raise(self) -> None:
        assert not crypto_utils.verify_password("not-a-hash", "anything")


class TestRefreshTokens:
    def test_random_tokens_are_long_and_distinct(self) -> None:
        tokens = {crypto_utils.random_token() for _ in range(100)}
        assert len(tokens) == 100
        assert all(len(token) >= 40 for token in tokens)

    def test_digest_is_sha256_hex(self) -> None:
        assert crypto_utils.token_digest("abc") == hashlib.sha256(b"abc").hexdigest()

    def test_new_ids_carry_their_prefix(self) -> None:
        assert crypto_utils.new_id("note:").startswith("note:")
        assert crypto_utils.new_id("note:") != crypto_utils.new_id("note:")


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class TestAccessTokens:
    def test_round_trip(self) -> None:
        token = issue_access_token(SECRET, "user:1", 900)
        claims = read_access_token(SECRET, token)
        assert claims["sub"] == "user:1"
        assert claims["typ"] == "access"
        assert claims["exp"] - claims["iat"] == 900

    def test_expired_token_is_invalid(self) -> None:
        token = issue_access_token(SECRET, "user:1", 900, now=time.time() - 3600)
        with pytest.raises(InvalidToken):
            read_access_token(SECRET, token)

    def test_token_signed_with_another_secret_is_invalid(self) -> None:
        token = issue_access_token("another-secret-key-of-sufficient-length", "user:1", 900)
        with pytest.raises(InvalidToken):
            read_access_token(SECRET, token)

    def test_tampered_payload_is_invalid(self) -> None:
        header, _, signature = _segments(issue_access_token(SECRET, "user:1", 900))
        now = int(time.time())
        forged = _b64({"sub": "user:admin", "iat": now, "exp": now + 900, "typ": "access"})
        with pytest.raises(InvalidToken):
            read_access_token(SECRET, f"{header}.{forged}.{signature}")

    def test_tampered_signature_is_invalid(self) -> None:
        header, payload, signature = _segments(issue_access_token(SECRET, "user:1", 900))
        flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
        with pytest.raises(InvalidToken):
            read_access_token(SECRET, f"{header}.{payload}.{flipped}")

    def test_unsigned_token_is_invalid(self) -> None:
        now = int(time.time())
        claims = {"sub": "user:1", "iat": now, "exp": now + 900, "typ": "access"}
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
        with pytest.raises(InvalidToken):
            read_access_token(SECRET, token)

    def test_token_of_another_kind_is_invalid(self) -> None:
        now = int(time.time())
        token = jwt.encode({"sub": "user:1", "iat": now, "exp": now + 900, "typ": "refresh"}, SECRET)
        with pytest.raises(InvalidToken):
            read_access_token(SECRET, token)

    @pytest.mark.parametrize("missing", ["sub", "exp", "iat"])
    def test_token_without_a_required_claim_is_invalid(self, missing: str) -> None:
        now = int(time.time())
        claims = {"sub": "user:1", "iat": now, "exp": now + 900, "typ": "access"}
        del claims[missing]
        with pytest.raises(InvalidToken):
            read_access_token(SECRET, jwt.encode(claims, SECRET))

    @pytest.mark.parametrize("token", ["", "abc", "a.b.c", "Bearer x"])
    def test_garbage_is_invalid(self, token: str) -> None:
        with pytest.raises(InvalidToken):
            read_access_token(SECRET, token)

"""Accounts over the HTTP API: register, login, refresh-token rotation, logout, me, bad tokens."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt

from notebook.utils.crypto_utils import issue_access_token

ME = "{ me { id email displayName isAdmin createdAt } }"
LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { accessToken refreshToken expiresIn user { id email } }
}"""
REFRESH = """mutation($token: String!) {
  refreshToken(refreshToken: $token) { accessToken refreshToken expiresIn user { id } }
}"""
LOGOUT = "mutation($token: String!) { logout(refreshToken: $token) }"
NOTEBOOKS = "{ notebooks { id name noteCount myRole } }"
PASSWORD = "correct horse battery"


def test_register_returns_tokens_and_a_default_notebook(gql: Any) -> None:
    account = gql.register("Ada@Example.com")
    assert account["user"]["email"] == "ada@example.com"
    assert account["expiresIn"] == 900
    assert account["refreshToken"] and account["refreshToken"] != account["accessToken"]
    me = gql.data(ME, token=account["token"])["me"]
    assert me["id"] == account["user"]["id"]
    assert (me["displayName"], me["isAdmin"]) == ("Tester", False)
    notebooks = gql.data(NOTEBOOKS, token=account["token"])["notebooks"]
    assert [(nb["name"], nb["noteCount"], nb["myRole"]) for nb in notebooks] == [("My notes", 0, "OWNER")]


def test_me_without_a_token_is_null(gql: Any) -> None:
    assert gql.data(ME) == {"me": None}


def test_duplicate_email_is_rejected(gql: Any) -> None:
    gql.register("ada@example.com")
    query = 'mutation { register(email: "ADA@example.com ", password: "another password") { accessToken } }'
    body = gql(query)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["data"] is None


def test_register_validates_its_fields(gql: Any) -> None:
    for email, password in (("not-an-email", PASSWORD), ("ok@example.com", "short")):
        code = gql.error_code(
            "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { accessToken } }",
            {"e": email, "p": password},
        )
        assert code == "BAD_USER_INPUT"
    assert gql.error_code(LOGIN, {"email": "ok@example.com", "password": "short"}) == "UNAUTHENTICATED"


def test_login(gql: Any) -> None:
    account = gql.register("ada@example.com")
    session = gql.data(LOGIN, {"email": "ADA@example.com", "password": PASSWORD})["login"]
    assert session["user"]["id"] == account["user"]["id"]
    assert gql.data(ME, token=session["accessToken"])["me"]["email"] == "ada@example.com"


def test_wrong_password_and_unknown_account(gql: Any) -> None:
    gql.register("ada@example.com")
    wrong = gql(LOGIN, {"email": "ada@example.com", "password": "wrong password"})
    unknown = gql(LOGIN, {"email": "nobody@example.com", "password": PASSWORD})
    assert wrong["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert unknown["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert wrong["errors"][0]["message"] == unknown["errors"][0]["message"]


def test_login_rate_limit(gql: Any, config: Any) -> None:
    gql.register("ada@example.com")
    for _ in range(config.login_failures_per_account_ip):
        assert (
            gql.error_code(LOGIN, {"email": "ada@example.com", "password": "wrong password"})
            == "UNAUTHENTICATED"
        )
    # now even the right password is refused for a while, from this client
    response = gql.post(LOGIN, {"email": "Ada@Example.com", "password": PASSWORD})
    error = response.get_json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 0 < error["extensions"]["retryAfter"] <= config.login_window_seconds
    assert response.headers["Retry-After"] == str(error["extensions"]["retryAfter"])


def test_refresh_rotates_the_tokens(gql: Any) -> None:
    account = gql.register()
    second = gql.data(REFRESH, {"token": account["refreshToken"]})["refreshToken"]
    assert second["refreshToken"] != account["refreshToken"]
    assert second["user"]["id"] == account["user"]["id"]
    assert gql.data(ME, token=second["accessToken"])["me"]["id"] == account["user"]["id"]
    third = gql.data(REFRESH, {"token": second["refreshToken"]})["refreshToken"]
    assert third["refreshToken"] not in (account["refreshToken"], second["refreshToken"])


def test_reusing_a_refresh_token_revokes_its_family(gql: Any) -> None:
    account = gql.register("ada@example.com")
    other_session = gql.data(LOGIN, {"email": "ada@example.com", "password": PASSWORD})["login"]
    second = gql.data(REFRESH, {"token": account["refreshToken"]})["refreshToken"]

    assert gql.error_code(REFRESH, {"token": account["refreshToken"]}) == "UNAUTHENTICATED"
    # the thief's (or the owner's) newer token of the same family is dead too
    assert gql.error_code(REFRESH, {"token": second["refreshToken"]}) == "UNAUTHENTICATED"
    # another login is another family and still works
    assert gql.data(REFRESH, {"token": other_session["refreshToken"]})["refreshToken"]["user"]["id"]


def test_logout_revokes_the_refresh_token(gql: Any) -> None:
    account = gql.register()
    second = gql.data(REFRESH, {"token": account["refreshToken"]})["refreshToken"]
    assert gql.data(LOGOUT, {"token": second["refreshToken"]}) == {"logout": True}
    assert gql.error_code(REFRESH, {"token": second["refreshToken"]}) == "UNAUTHENTICATED"
    assert gql.data(LOGOUT, {"token": "not-a-token"}) == {"logout": False}


def test_garbage_refresh_token(gql: Any) -> None:
    assert gql.error_code(REFRESH, {"token": "garbage"}) == "UNAUTHENTICATED"
    assert gql.error_code(REFRESH, {"token": ""}) == "UNAUTHENTICATED"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _assert_unauthenticated(gql: Any, token: str) -> None:
    for query in (ME, NOTEBOOKS, '{ note(id: "note:x") { id } }'):
        body = gql(query, token=token)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", (query, body)
        assert "Traceback" not in json.dumps(body)


def test_expired_access_token(gql: Any, config: Any) -> None:
    account = gql.register()
    expired = issue_access_token(config.secret_key, account["user"]["id"], 900, now=time.time() - 3600)
    _assert_unauthenticated(gql, expired)


def test_tampered_access_tokens(gql: Any, config: Any) -> None:
    ada = gql.register()
    bob = gql.register()
    header, _, signature = ada["accessToken"].split(".")
    now = int(time.time())
    # Ada's signature on a payload naming Bob
    swapped = f"{header}.{_b64({'sub': bob['user']['id'], 'iat': now, 'exp': now + 900, 'typ': 'access'})}"
    forged = [
        f"{swapped}.{signature}",
        ada["accessToken"][:-4] + ("AAAA" if not ada["accessToken"].endswith("AAAA") else "BBBB"),
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{swapped.split('.')[1]}.",
        jwt.encode({"sub": ada["user"]["id"], "iat": now, "exp": now + 900, "typ": "access"}, "x" * 40),
        jwt.encode(
            {"sub": ada["user"]["id"], "iat": now, "exp": now + 900, "typ": "refresh"}, config.secret_key
        ),
        ada["refreshToken"],
        "not-a-jwt",
    ]
    for token in forged:
        _assert_unauthenticated(gql, token)


def test_malformed_authorization_headers(client: Any) -> None:
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc"):
        response = client.post("/graphql", json={"query": ME}, headers={"Authorization": header})
        body = response.get_json()
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", (header, body)


def test_token_of_a_user_on_another_deployment(gql: Any, config: Any) -> None:
    # a well-signed token whose user does not exist here
    token = issue_access_token(config.secret_key, "user:0123456789abcdef", 900)
    _assert_unauthenticated(gql, token)


def test_every_other_operation_needs_a_token(gql: Any) -> None:
    for query in (
        NOTEBOOKS,
        "{ notes { totalCount } }",
        "{ tags { tag } }",
        '{ notebook(id: "notebook:x") { id } }',
        'mutation { createNote(input: {title: "x"}) { id } }',
        'mutation { createNotebook(input: {name: "x"}) { id } }',
    ):
        assert gql.error_code(query) == "UNAUTHENTICATED", query

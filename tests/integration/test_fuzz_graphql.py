"""Fuzz the GraphQL endpoint with schemathesis (GraphQL mode): no 5xx, nothing internal leaked.

Schemathesis loads the schema by introspection and generates valid queries and mutations for
every root field, with arguments and selections drawn by Hypothesis; they are sent through the
app's WSGI interface with a registered user's token, so the resolvers and services run against
the real database node. The run is bounded by FUZZ_EXAMPLES (default 300 cases) and derandomized,
so `make test` repeats the same cases; set FUZZ_SEED to explore others.

Operations that end the session (logoutEverywhere always can; changePassword and deleteAccount
when the fuzzer hits the password) are left out: one success would turn every later case into
UNAUTHENTICATED. The permission matrix covers them.
"""

from __future__ import annotations

import builtins
import inspect
import os
import re
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
import schemathesis

import notebook.core.errors
import notebook.database.couch
import notebook.database.replication
from notebook.services.permissions import OPERATIONS, PUBLIC

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
SEED = os.environ.get("FUZZ_SEED")
SESSION_ENDING = {"Mutation.logoutEverywhere", "Mutation.changePassword", "Mutation.deleteAccount"}
# of the cases sent to operations that need a token, at most this share may be refused as
# UNAUTHENTICATED: more means the token stopped working and the run exercised nothing
MAX_UNAUTHENTICATED_SHARE = 0.05


def _internal_exception_names() -> set[str]:
    """Python's exception classes and the project's own, as they would appear in a leak."""
    names = {
        name
        for name, value in vars(builtins).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and name.endswith(("Error", "Exception"))
    }
    for module in (notebook.core.errors, notebook.database.couch, notebook.database.replication):
        names |= {
            name
            for name, value in vars(module).items()
            if inspect.isclass(value)
            and issubclass(value, BaseException)
            and value.__module__ == module.__name__
        }
    # domain errors whose names are ordinary words ("Forbidden") reach clients only as codes
    return {name for name in names if name.endswith(("Error", "Exception"))} | {"CouchError"}


LEAK_PATTERNS = [
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'File "[^"]+", line \d+'),
    re.compile(r"(/[\w.-]+)+\.py\b"),
    re.compile(r"site-packages"),
    re.compile(r"\b(" + "|".join(sorted(_internal_exception_names())) + r")\b"),
]


def assert_clean(status: int, text: str, query: Any) -> None:
    assert status < 500, f"{status} for {query!r}: {text[:500]}"
    for pattern in LEAK_PATTERNS:
        found = pattern.search(text)
        assert found is None, f"{found.group(0)!r} leaked for {query!r}: {text[:500]}"


@pytest.mark.slow
def test_fuzzed_operations_never_fail_or_leak(app: Any, gql: Any) -> None:
    token = gql.register()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.graphql.from_wsgi("/graphql", app)
    every_operation = [result.ok() for result in schema.get_all_operations()]
    names = {operation.label for operation in every_operation}
    assert {"Query.notes", "Mutation.createNote", "Query.me"} | SESSION_ENDING <= names, names
    operations = [operation for operation in every_operation if operation.label not in SESSION_ENDING]
    strategy = st.one_of(*(operation.as_strategy() for operation in operations))
    seen: dict[str, int] = {}
    statuses: dict[int, int] = {}
    authenticated = {"cases": 0, "refused": 0}

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=SEED is None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    )
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        seen[case.operation.label] = seen.get(case.operation.label, 0) + 1
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert_clean(response.status_code, response.text, case.body)
        if OPERATIONS[case.operation.label].kind != PUBLIC:
            authenticated["cases"] += 1
            authenticated["refused"] += "UNAUTHENTICATED" in _error_codes(response)

    if SEED is not None:
        run = hypothesis.seed(int(SEED))(run)
    run()
    print(
        f"fuzz: {sum(seen.values())} requests, statuses {statuses}, operations {seen}, "
        f"authenticated {authenticated}"
    )
    # the run reached most operations and got real answers, not only refusals
    assert len(seen) >= len(operations) // 2, seen
    assert statuses.get(200, 0) >= EXAMPLES // 4, statuses
    # the token stayed valid: operations behind it ran instead of answering UNAUTHENTICATED
    assert authenticated["cases"] >= EXAMPLES // 2, authenticated
    assert authenticated["refused"] <= MAX_UNAUTHENTICATED_SHARE * authenticated["cases"], authenticated


def _error_codes(response: Any) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [
        str((error.get("extensions") or {}).get("code")) for error in errors or [] if isinstance(error, dict)
    ]


@pytest.mark.parametrize(
    "text",
    [
        'Traceback (most recent call last):\n  File "/srv/app.py", line 3',
        "boom in /work/src/notebook/api/app.py",
        "CouchError: 500 from node",
        "KeyError: '_rev'",
        "DatabaseUnavailable... AttributeError",
    ],
)
def test_the_leak_check_recognises_internals(text: str) -> None:
    with pytest.raises(AssertionError):
        assert_clean(200, text, "probe")


def test_the_leak_check_lets_client_errors_through() -> None:
    assert_clean(
        400, '{"errors": [{"message": "Syntax Error: Unexpected Name \\"x\\".", "extensions": {}}]}', "q"
    )
    assert_clean(200, '{"data": {"notes": {"totalCount": 0}}}', "q")

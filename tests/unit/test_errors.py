"""notebook.api.errors: the one place where errors become `extensions.code`."""

from __future__ import annotations

import json
import logging

import pytest
from graphql import GraphQLError, Source

from notebook.api.errors import (
    INTERNAL_MESSAGE,
    error_body,
    format_graphql_error,
    graphql_error_formatter,
    internal_error_extensions,
)
from notebook.core import errors
from notebook.database.couch import DatabaseUnavailable, DocumentConflict
from notebook.utils.logging import request_id_var


def _resolver_error(original: Exception) -> GraphQLError:
    """What graphql-core hands the formatter when a resolver raised `original`."""
    return GraphQLError(str(original), path=["note"], original_error=original)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.Unauthenticated("sign in"), "UNAUTHENTICATED"),
        (errors.Forbidden("no"), "FORBIDDEN"),
        (errors.NotFound("note not found"), "NOT_FOUND"),
        (errors.InvalidInput("bad title", field="title"), "BAD_USER_INPUT"),
        (errors.VersionConflict("stale", "2-abc"), "CONFLICT"),
        (errors.RateLimited("slow down"), "RATE_LIMITED"),
        (errors.QueryTooComplex("too deep"), "QUERY_TOO_COMPLEX"),
        (errors.PayloadTooLarge("too big"), "PAYLOAD_TOO_LARGE"),
        (errors.ServiceUnavailable("down"), "SERVICE_UNAVAILABLE"),
    ],
)
def test_each_domain_error_maps_to_its_code(error: errors.DomainError, code: str) -> None:
    formatted = format_graphql_error(_resolver_error(error))
    assert formatted["extensions"]["code"] == code
    assert formatted["message"] == error.message
    assert formatted["path"] == ["note"]


def test_conflict_carries_the_current_version() -> None:
    formatted = format_graphql_error(_resolver_error(errors.VersionConflict("stale", "3-current")))
    assert formatted["extensions"] == {"code": "CONFLICT", "currentVersion": "3-current"}


def test_invalid_input_names_the_field() -> None:
    formatted = format_graphql_error(_resolver_error(errors.InvalidInput("bad", field="title")))
    assert formatted["extensions"] == {"code": "BAD_USER_INPUT", "field": "title"}


def test_database_outage_is_service_unavailable_without_internals() -> None:
    outage = DatabaseUnavailable("ConnectError from http://10.0.0.7:5984/")
    formatted = format_graphql_error(_resolver_error(outage))
    assert formatted["extensions"] == {"code": "SERVICE_UNAVAILABLE"}
    assert "10.0.0.7" not in json.dumps(formatted)


@pytest.mark.parametrize(
    "original",
    [
        RuntimeError("password=hunter2 at /srv/app/secret.py line 3"),
        KeyError("_rev"),
        DocumentConflict(409, "conflict", "Document update conflict."),
        ZeroDivisionError("division by zero"),
    ],
)
@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_errors_leak_nothing(
    original: Exception, debug: bool, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        raise original
    except Exception as exc:  # give it a real traceback, as in a resolver
        error = _resolver_error(exc)
    with caplog.at_level(logging.ERROR, logger="notebook.api.errors"):
        formatted = format_graphql_error(error, debug=debug)
    assert formatted["message"] == INTERNAL_MESSAGE
    assert formatted["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    text = json.dumps(formatted)
    for leak in (
        "hunter2",
        "Traceback",
        "_rev",
        "conflict",
        "division",
        "secret.py",
        type(original).__name__,
    ):
        assert leak not in text
    # the details go to the log, for the operator
    assert any(record.exc_info for record in caplog.records)


def test_syntax_and_validation_errors_are_bad_user_input() -> None:
    syntax = GraphQLError("Syntax Error: Unexpected '}'.", source=Source("{ }"), positions=[2])
    formatted = format_graphql_error(syntax)
    assert formatted["extensions"] == {"code": "BAD_USER_INPUT"}
    assert formatted["locations"] == [{"line": 1, "column": 3}]
    assert "path" not in formatted


def test_a_document_too_deep_to_parse_is_too_complex() -> None:
    # what Ariadne hands over when graphql-core's parser exhausts the stack
    try:
        raise RecursionError("maximum recursion depth exceeded while calling a Python object")
    except RecursionError as exc:
        error = GraphQLError(str(exc), original_error=exc)
    formatted = format_graphql_error(error)
    assert formatted["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
    assert "recursion" not in formatted["message"]


def test_an_error_with_its_own_code_keeps_it() -> None:
    too_deep = GraphQLError("query is nested too deep", extensions={"code": "QUERY_TOO_COMPLEX"})
    assert format_graphql_error(too_deep)["extensions"] == {"code": "QUERY_TOO_COMPLEX"}


def test_variable_coercion_error_without_path_is_bad_user_input() -> None:
    error = GraphQLError("Variable '$first' got invalid value", original_error=ValueError("int please"))
    formatted = format_graphql_error(error)
    assert formatted["extensions"] == {"code": "BAD_USER_INPUT"}


def test_error_body_shape() -> None:
    assert error_body("PAYLOAD_TOO_LARGE", "too big") == {
        "errors": [{"message": "too big", "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]
    }


def test_a_masked_error_carries_the_request_id_of_its_log_line(caplog: pytest.LogCaptureFixture) -> None:
    token = request_id_var.set("req-42")
    try:
        with caplog.at_level(logging.ERROR, logger="notebook.api.errors"):
            formatted = format_graphql_error(_resolver_error(RuntimeError("boom")))
    finally:
        request_id_var.reset(token)
    assert formatted["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-42"}
    assert internal_error_extensions() == {"code": "INTERNAL_SERVER_ERROR"}  # outside a request


@pytest.mark.parametrize(
    "message",
    [
        "Cannot query field 'titl' on type 'Note'. Did you mean 'title'?",
        "Unknown argument 'frist' on field 'Query.notes'. Did you mean 'first'?",
        "Value 'TITLE_AS' does not exist in 'NoteOrder' enum. Did you mean the enum value 'TITLE_ASC'?",
    ],
)
def test_suggestions_are_dropped_unless_allowed(message: str) -> None:
    error = GraphQLError(message)
    quiet = graphql_error_formatter(field_suggestions=False)(error, False)
    assert "Did you mean" not in quiet["message"] and quiet["message"] == message.split(" Did you mean")[0]
    assert quiet["extensions"] == {"code": "BAD_USER_INPUT"}
    assert graphql_error_formatter(field_suggestions=True)(error, False)["message"] == message

"""REST API for operators under /api/replication (admins only), and its OpenAPI document.

Who may call each route is decided by the permission policy (services/permissions.py, rules
`REST.<endpoint>`), checked before every request of this blueprint. Each route calls one
method of the ReplicationManager and shapes the answer.
Field names are those of the GraphQL contract (`latencyMs`, `lastError`, `lagSeconds`), and
errors have the GraphQL error shape, so a client parses both APIs alike.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, cast

from flask import Blueprint, Response, current_app, g, jsonify, request

from notebook.api.client_ip import client_ip
from notebook.api.errors import error_body
from notebook.api.metrics import graphql_totals
from notebook.api.openapi import openapi_document
from notebook.bootstrap import Services
from notebook.core.domain import User
from notebook.core.errors import DomainError, InvalidInput, Unauthenticated
from notebook.services.replication_service import ReplicationStatus

blueprint = Blueprint("replication", __name__, url_prefix="/api")

_HTTP_STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "BAD_USER_INPUT": 400,
    "CONFLICT": 409,
    "RATE_LIMITED": 429,
    "SERVICE_UNAVAILABLE": 503,
}
_MAX_TIMEOUT_SECONDS = 600.0


def _services() -> Services:
    return cast(Services, current_app.extensions["notebook"])


def _caller() -> User | None:
    """The user of the request's access token; None without one."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use the header 'Authorization: Bearer <accessToken>'")
    services = _services()
    peer = client_ip(
        request.remote_addr, request.headers.get("X-Forwarded-For"), services.config.trusted_proxies
    )
    user, g.key_scope = services.authenticate(token.strip(), peer)
    return user


@blueprint.before_request
def authorize() -> None:
    """Every route of this blueprint passes the permission policy first. A CORS preflight
    (OPTIONS) runs no route and carries no credentials: Flask answers it by itself."""
    if request.method == "OPTIONS":
        return
    _services().permissions.authorize(
        f"REST.{request.endpoint}", _caller, {}, key_scope=lambda: g.get("key_scope")
    )


@blueprint.errorhandler(DomainError)
def domain_error(exc: DomainError) -> tuple[Response, int]:
    body = error_body(exc.code, exc.message, **exc.extensions)
    return jsonify(body), _HTTP_STATUS.get(exc.code, 500)


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@blueprint.get("/replication/status")
def replication_status() -> Response:
    return jsonify(status_json(_services().replication.status()))


@blueprint.get("/status")
def operator_status() -> Response:
    """What the /status page shows: the replication status and this deployment's GraphQL
    request counters (the page draws the request rate from two readings)."""
    services = _services()
    total, failed = graphql_totals(services.config)
    body = status_json(services.replication.status())
    # node events as this process saw them (each app process probes every node itself)
    incidents = services.couch.node_events()
    counters = {"graphqlRequests": total, "graphqlFailures": failed}
    return jsonify({**body, **counters, "incidents": incidents, "at": time.time()})


@blueprint.post("/replication/setup")
def replication_setup() -> Response:
    manager = _services().replication
    job_ids = manager.ensure_mesh()
    return jsonify(jobIds=job_ids, nodes=manager.node_urls)


@blueprint.delete("/replication")
def replication_teardown() -> Response:
    return jsonify(removedJobs=_services().replication.teardown())


@blueprint.post("/replication/lag")
def replication_lag() -> Response:
    manager = _services().replication
    manager.measure_lag(timeout=_timeout(_body(), default=10.0))
    return jsonify(status_json(manager.status()))


@blueprint.post("/replication/nodes")
def add_node() -> tuple[Response, int]:
    body = _body()
    added = _services().replication.add_node(_node_url(body), timeout=_timeout(body, default=60.0))
    return jsonify(_camel(asdict(added))), 200 if added.caught_up else 202


@blueprint.delete("/replication/nodes")
def remove_node() -> Response:
    body = _body()
    url = request.args.get("url") or _node_url(body)
    manager = _services().replication
    removed = manager.remove_node(url)
    return jsonify(removedJobs=removed, nodes=manager.node_urls)


def status_json(status: ReplicationStatus) -> dict[str, Any]:
    """The status with the contract's field names."""
    return {
        "nodes": [_camel(asdict(node)) for node in status.nodes],
        "links": [_camel(asdict(link)) for link in status.links],
        "healthy": status.healthy,
        "topology": status.topology,
    }


def _camel(values: dict[str, Any]) -> dict[str, Any]:
    def convert(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.capitalize() for part in rest)

    return {convert(name): value for name, value in values.items()}


def _body() -> dict[str, Any]:
    """The JSON object sent with the request; {} when there is no body."""
    if not request.data:
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _node_url(body: dict[str, Any]) -> str:
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput('give the node as {"url": "http://host:5984/"}')
    return url


def _timeout(body: dict[str, Any], default: float) -> float:
    value = body.get("timeoutSeconds", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= _MAX_TIMEOUT_SECONDS:
        raise InvalidInput(f"timeoutSeconds must be a number between 0 and {_MAX_TIMEOUT_SECONDS:g}")
    return float(value)

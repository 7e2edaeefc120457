"""Flask application factory: the HTTP entry point of the notes server."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from ariadne import graphql_sync
from ariadne.explorer import ExplorerGraphiQL
from flask import Flask, Response, g, jsonify, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from config.settings import Config, load_config
from notebook.api.errors import error_body, format_graphql_error
from notebook.api.graphql_api import RequestContext, build_schema
from notebook.api.limits import depth_limit_rule
from notebook.api.replication_routes import blueprint as replication_blueprint
from notebook.bootstrap import Services, bootstrap
from notebook.utils.logging import configure_logging, request_id_var
from notebook.warmup import RETRY_AFTER_SECONDS

log = logging.getLogger(__name__)
# errors are logged once, by format_graphql_error; Ariadne's own error log would repeat them
_ARIADNE_LOG = logging.getLogger("notebook.api.ariadne")
_ARIADNE_LOG.setLevel(logging.CRITICAL)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _graphql_body() -> dict[str, Any] | None:
    """The request's JSON object, or None when the body is not one.

    Also refused like any other malformed body: nesting deeper than the parser can follow, and
    escaped unpaired surrogates ("\\ud800"), valid JSON but not text that can be stored or hashed.
    """
    try:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return None
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (RecursionError, UnicodeEncodeError):
        return None
    return data


def create_app(config: Config | None = None, services: Services | None = None) -> Flask:
    """Build the app; `config` defaults to the environment, `services` to the real ones."""
    config = config or load_config()
    config.validate()
    configure_logging(config.log_level)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        MAX_CONTENT_LENGTH=config.max_request_bytes,
        TESTING=config.testing,
        DEBUG=config.debug,
    )
    services = services or bootstrap(config, install_schema=False)
    if len(services.couch.urls) > 1:
        services.couch.start_health_monitor()  # failover needs it; Services.close() stops it
    # schema and index builds run in the background: a worker answers at once (see warmup.py)
    warmup = services.warmup
    warmup.start()
    if config.startup_wait_seconds > 0:
        warmup.wait(config.startup_wait_seconds)
    app.extensions["notebook"] = services
    app.register_blueprint(replication_blueprint)
    if config.conflict_resolver:
        services.start_conflict_resolver()
    schema = build_schema()
    rules = [depth_limit_rule(config.graphql_max_depth)]
    explorer_html = ExplorerGraphiQL(title="NoteBook GraphQL").html(None) if config.graphql_explorer else None
    CORS(app, origins=list(config.cors_origins), supports_credentials=False)

    @app.before_request
    def start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.token = request_id_var.set(g.request_id)
        g.started = time.perf_counter()

    @app.after_request
    def finish_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1),
            },
        )
        return response

    @app.teardown_request
    def end_request(_: BaseException | None) -> None:
        token = g.pop("token", None)
        if token is not None:
            request_id_var.reset(token)

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="ok")

    @app.get("/ready")
    def ready() -> Any:
        status = warmup.status()
        if status["status"] == "ready" and not services.couch.ping():
            status.update(status="unavailable", reason="database unreachable")
        if status["status"] != "ready":
            return jsonify(status), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return jsonify(status)

    @app.get("/graphql")
    def graphql_explorer() -> Any:
        if explorer_html is None:
            return jsonify(error_body("NOT_FOUND", "the GraphQL explorer is off; POST queries here")), 404
        return explorer_html, 200

    @app.post("/graphql")
    def graphql_server() -> Any:
        data = _graphql_body()
        if data is None:
            return jsonify(error_body("BAD_USER_INPUT", "the body must be a JSON object with a query")), 400
        if not warmup.schema_installed:
            message = "the database is unavailable" if warmup.state == "unavailable" else "starting up"
            body = error_body("SERVICE_UNAVAILABLE", message, retryAfter=RETRY_AFTER_SECONDS)
            return jsonify(body), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
        context = RequestContext(services, request.headers.get("Authorization"))
        try:
            success, result = graphql_sync(
                schema,
                data,
                context_value=context,
                debug=config.debug,
                introspection=config.graphql_introspection,
                validation_rules=rules,
                error_formatter=format_graphql_error,
                logger=_ARIADNE_LOG,
            )
        except RecursionError:
            # validation follows fragment spreads recursively; a long enough chain exhausts the stack
            return jsonify(error_body("QUERY_TOO_COMPLEX", "the query is nested too deeply")), 400
        return jsonify(result), 200 if success else 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Any:
        limit = config.max_request_bytes
        return jsonify(error_body("PAYLOAD_TOO_LARGE", f"request body is larger than {limit} bytes")), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = "NOT_FOUND" if exc.code == 404 else "BAD_USER_INPUT"
        return jsonify(error_body(code, exc.description or exc.name)), exc.code or 400

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.error("unhandled error", exc_info=exc)
        return jsonify(error_body("INTERNAL_SERVER_ERROR", "internal server error")), 500

    return app

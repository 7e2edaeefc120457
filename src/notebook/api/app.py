"""Flask application factory: the HTTP entry point of the notes server."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import orjson
from ariadne import graphql_sync
from flask import Flask, Response, g, jsonify, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from config.settings import Config, load_config
from notebook.api.client_ip import ForwardedProto, client_ip
from notebook.api.errors import (
    INTERNAL_MESSAGE,
    error_body,
    graphql_error_formatter,
    internal_error_extensions,
)
from notebook.api.graphql_api import RequestContext, build_schema
from notebook.api.http_security import (
    QuietRequestHandler,
    add_security_headers,
    bound_chunked_body,
    explorer_policy,
)
from notebook.api.limits import QueryCache, QueryLimits
from notebook.api.metrics import blueprint as metrics_blueprint
from notebook.api.pages import blueprint as pages_blueprint
from notebook.api.pages import explorer_html as local_explorer_html
from notebook.api.replication_routes import blueprint as replication_blueprint
from notebook.bootstrap import Services, bootstrap
from notebook.utils.logging import configure_logging, request_id_var
from notebook.utils.metrics import GRAPHQL_ERRORS, GRAPHQL_REQUESTS, GRAPHQL_SECONDS, operation_label
from notebook.warmup import RETRY_AFTER_SECONDS

log = logging.getLogger(__name__)
# errors are logged once, by format_graphql_error; Ariadne's own error log would repeat them
_ARIADNE_LOG = logging.getLogger("notebook.api.ariadne")
_ARIADNE_LOG.setLevel(logging.CRITICAL)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _graphql_body() -> Any:
    """The request's JSON value, or None when the body is not JSON (read once per request).

    Also refused like any other malformed body: nesting deeper than the parser follows (1024),
    and escaped unpaired surrogates ("\\ud800"), valid JSON but not text that can be stored or
    hashed. orjson refuses both while parsing."""
    if "graphql_body" not in g:
        data = None
        if request.is_json:
            try:
                data = orjson.loads(request.get_data(cache=True))
            except ValueError:
                data = None
        g.graphql_body = data
    return g.graphql_body


def _json(value: Any, status: int = 200) -> Response:
    """A JSON response, serialized by orjson."""
    return Response(orjson.dumps(value), status=status, mimetype="application/json")


def _retry_after(result: Any) -> int:
    """The longest retryAfter among a GraphQL result's errors, for the Retry-After header."""
    errors = (result.get("errors") or []) if isinstance(result, dict) else []
    hints = [e.get("extensions", {}).get("retryAfter") for e in errors if isinstance(e, dict)]
    return max((hint for hint in hints if isinstance(hint, int)), default=0)


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
        DEBUG=config.debug,  # the debugger runs only with FLASK_DEBUG=1 in development
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
    app.register_blueprint(metrics_blueprint)
    app.register_blueprint(pages_blueprint)
    services.start_keyring_sync()
    services.start_read_cache()
    if config.conflict_resolver:
        services.start_conflict_resolver()
    if config.replication_supervisor:
        services.start_replication_supervisor()
    schema = build_schema()
    queries = QueryCache(QueryLimits.from_config(config))
    format_error = graphql_error_formatter(config.graphql_field_suggestions)
    explorer_html = local_explorer_html("NoteBook GraphQL") if config.graphql_explorer else None
    explorer_csp = explorer_policy(explorer_html) if explorer_html else ""
    CORS(app, origins=list(config.cors_origins), supports_credentials=False)
    app.wsgi_app = ForwardedProto(app.wsgi_app, config.trusted_proxies)  # type: ignore[method-assign]

    @app.before_request
    def start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.token = request_id_var.set(g.request_id)
        g.started = time.perf_counter()
        bound_chunked_body(request.environ, config.max_request_bytes)

    @app.after_request
    def finish_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        add_security_headers(response, secure=request.is_secure)
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
        return explorer_html, 200, {"Content-Security-Policy": explorer_csp}

    @app.post("/graphql")
    def graphql_server() -> Any:
        started = time.perf_counter()
        result, status = answer_graphql()
        response = _json(result, status)
        retry_after = _retry_after(result)
        if retry_after:
            response.headers["Retry-After"] = str(retry_after)
        _record_graphql(result, status, time.perf_counter() - started)
        return response

    def answer_graphql() -> tuple[dict[str, Any], int]:
        data = _graphql_body()
        if isinstance(data, list):
            message = "batched operations are not accepted; send one JSON object with a query per request"
            return error_body("BAD_USER_INPUT", message), 400
        if not isinstance(data, dict):
            return error_body("BAD_USER_INPUT", "the body must be a JSON object with a query"), 400
        if not warmup.schema_installed:
            message = "the database is unavailable" if warmup.state == "unavailable" else "starting up"
            return error_body("SERVICE_UNAVAILABLE", message, retryAfter=RETRY_AFTER_SECONDS), 503
        peer = client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"), config.trusted_proxies)
        context = RequestContext(services, request.headers.get("Authorization"), client_ip=peer)
        try:
            # the bounds run first and alone; graphql-core's rules only see a bounded document
            success, result = graphql_sync(
                schema,
                data,
                context_value=context,
                query_parser=lambda _context, body: queries.parse(body["query"]),
                query_validator=queries.validator(data.get("variables")),
                introspection=config.graphql_introspection,
                error_formatter=format_error,
                logger=_ARIADNE_LOG,
            )
        except RecursionError:
            # validation follows fragment spreads recursively; a long enough chain exhausts the stack
            return error_body("QUERY_TOO_COMPLEX", "the query is nested too deeply"), 400
        return result, 200 if success else 400

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
        body = {"errors": [{"message": INTERNAL_MESSAGE, "extensions": internal_error_extensions()}]}
        return jsonify(body), 500

    return app


def _record_graphql(body: dict[str, Any], status: int, seconds: float) -> None:
    """Count one GraphQL request: its operation, outcome and error codes (utils/metrics.py).
    "rejected": refused before execution (bad body, limits, unavailable); "error": executed
    with errors; "success": none."""
    data = _graphql_body()
    operation = "anonymous"
    if isinstance(data, dict):
        operation = operation_label(data.get("operationName"), data.get("query"))
    errors = body.get("errors")
    errors = errors if isinstance(errors, list) else []
    if status >= 400 and "data" not in body:
        outcome = "rejected"
    else:
        outcome = "error" if errors else "success"
    GRAPHQL_REQUESTS.labels(operation, outcome).inc()
    GRAPHQL_SECONDS.labels(operation, outcome).observe(seconds)
    for error in errors:
        code = error.get("extensions", {}).get("code") if isinstance(error, dict) else None
        GRAPHQL_ERRORS.labels(code if isinstance(code, str) and code.isupper() else "OTHER").inc()


def run_development_server(app: Flask, host: str, port: int) -> None:
    """Serve `app` with werkzeug's threaded server (no reloader, no version in `Server`).

    The debugger runs only when the Config says so (FLASK_DEBUG=1 in development): Flask's own
    reading of FLASK_DEBUG and .env files is turned off, so no other switch can start it.
    """
    app.run(
        host=host,
        port=port,
        debug=app.debug,
        load_dotenv=False,
        use_debugger=app.debug,
        use_reloader=False,
        threaded=True,
        request_handler=QuietRequestHandler,
    )

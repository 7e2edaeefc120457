"""Pages for people: the GraphQL explorer (development) with its assets served by the app, and
the operators' status page at /status. Neither loads anything from outside the server.

- The explorer is Ariadne's GraphiQL page with its unpkg.com URLs pointed at
  `/graphql/assets/...`, which serves the same pinned versions from the npm packages installed
  by `make deps` (package.json: graphiql 3.3.2, react and react-dom 17.0.2).
- /status is one HTML page (templates/status.html) with its script inline: anyone may load it,
  it shows nothing until an admin signs in (GraphQL `login`, the token kept in sessionStorage;
  or `#token=...` in the URL, which never reaches the server). It reads `GET /api/status`
  every 5 s and draws nodes, links, a chart of replication lag and request rate over the last
  10 minutes, and the incidents it saw (nodes and links going down and coming back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ariadne.explorer import ExplorerGraphiQL
from flask import Blueprint, abort, current_app, send_from_directory

from notebook.api.http_security import page_policy

blueprint = Blueprint("pages", __name__)

# what the explorer page loads, and where each file is in node_modules
EXPLORER_ASSETS = {
    "https://unpkg.com/graphiql@3.3.2/graphiql.min.css": "graphiql/graphiql.min.css",
    "https://unpkg.com/graphiql@3.3.2/graphiql.min.js": "graphiql/graphiql.min.js",
    "https://unpkg.com/react@17/umd/react.production.min.js": "react/umd/react.production.min.js",
    "https://unpkg.com/react-dom@17/umd/react-dom.production.min.js": (
        "react-dom/umd/react-dom.production.min.js"
    ),
}
ASSET_PREFIX = "/graphql/assets/"


def explorer_html(title: str) -> str:
    """GraphiQL's page with every asset served by this app."""
    html = ExplorerGraphiQL(title=title).html(None)
    for remote, local in EXPLORER_ASSETS.items():
        if remote not in html:
            raise RuntimeError(f"the explorer page no longer loads {remote}: update EXPLORER_ASSETS")
        html = html.replace(remote, ASSET_PREFIX + local)
    return html.replace("crossorigin\n", "\n").replace(" crossorigin ", " ")


@blueprint.get("/graphql/assets/<path:name>")
def explorer_asset(name: str) -> Any:
    services = current_app.extensions["notebook"]
    if not services.config.graphql_explorer or name not in EXPLORER_ASSETS.values():
        abort(404)
    directory = Path(services.config.explorer_assets_dir)
    if not (directory / name).is_file():
        abort(404, description="the explorer's assets are not installed: run `make deps` (npm ci)")
    return send_from_directory(directory, name, max_age=0)


@blueprint.get("/status")
def status_page() -> Any:
    return (
        STATUS_HTML,
        200,
        {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": STATUS_POLICY},
    )


STATUS_HTML = (Path(__file__).parent / "templates" / "status.html").read_text()
STATUS_POLICY = page_policy(STATUS_HTML, sources="'none'")

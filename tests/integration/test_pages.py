"""The explorer and the status page in headless Chromium with no access beyond loopback: what a
person would see (the explorer's editor, node rows, link states, a drawn chart)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_config
from notebook.api.app import create_app
from tests.conftest import GraphQL
from tests.support.api_server import serve_in_thread
from tests.support.browser import rendered_dom
from tests.support.servers import NodeSet, start_nodes
from tests.support.waiting import wait_for


def test_the_explorer_loads_its_assets_from_the_app_and_shows_the_editor(app: Any, tmp_path: Path) -> None:
    page = app.test_client().get("/graphql").get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/graphql/assets/") for s in sources), sources
    for source in sources:
        asset = app.test_client().get(source)
        assert asset.status_code == 200 and len(asset.data) > 10_000, source
        asset.close()
    assert (
        app.test_client().get("/graphql/assets/graphiql/package.json").status_code == 404
    )  # listed files only
    with serve_in_thread(app) as url:
        dom = rendered_dom(f"{url}/graphql", tmp_path / "profile")
    assert "Loading NoteBook GraphQL" not in dom
    assert "graphiql-container" in dom and "CodeMirror" in dom, dom[-2000:]
    assert "graphiql-execute-button" in dom


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[NodeSet, Any]]:
    nodes = start_nodes(tmp_path / "nodes", 2)
    config = load_config(
        {"FLASK_ENV": "testing"},
        couchdb_url=nodes.urls[0],
        replication_nodes=(nodes.urls[1],),
        db_prefix=f"s{uuid.uuid4().hex[:8]}_",
        **nodes.credentials(),
    )
    app = create_app(config)
    try:
        yield nodes, app
    finally:
        app.extensions["notebook"].close()
        nodes.stop()


def test_the_status_page_shows_nodes_links_a_chart_and_admins_only(
    two_nodes: tuple[NodeSet, Any], tmp_path: Path
) -> None:
    nodes, app = two_nodes
    services = app.extensions["notebook"]
    services.replication.ensure_mesh()  # databases on both nodes: quorum writes need them
    gql = GraphQL(app.test_client())
    admin, other = gql.register(), gql.register()
    services.auth.set_admin(admin["user"]["email"], True)
    services.replication.measure_lag(timeout=20)
    for _ in range(5):
        gql.data("{ me { id } }", token=admin["token"])

    with serve_in_thread(app) as url:
        refused = rendered_dom(f"{url}/status#token={other['token']}", tmp_path / "p1", budget_ms=3000)
        anonymous = rendered_dom(f"{url}/status", tmp_path / "p2", budget_ms=3000)
        dom = rendered_dom(f"{url}/status#token={admin['token']}", tmp_path / "p3", budget_ms=16_000)

    assert "Administrators only." in refused and 'class="node"' not in refused
    assert 'id="signin" class="shown"' in anonymous and 'class="node"' not in anonymous
    node_rows = re.findall(r'<tr class="node" data-healthy="(true|false)">', dom)
    assert node_rows == ["true", "true"], dom[-3000:]
    for node in nodes.urls:
        assert f"<td>{node}</td>" in dom
    states = re.findall(r'<td class="state (ok|bad)">([a-z]+)</td>', dom)
    assert len(states) == 2 * 4 and all(state in ("running", "pending") for _, state in states), states
    lag_points = re.search(r'id="lag-line" class="lag" points="([^"]*)"', dom)
    rate_points = re.search(r'id="rate-line" class="rate" points="([^"]*)"', dom)
    assert lag_points and len(lag_points.group(1).split()) >= 2, dom[-3000:]  # one point per refresh
    assert rate_points and len(rate_points.group(1).split()) >= 1
    assert re.search(r"lag \(max \d+\.\d{3} s\)", dom)
    assert "Healthy" in dom and "none since this page opened" in dom

    # node1 dies: the page shows it down, and the app's own probes list the incident
    nodes[1].kill()
    wait_for(lambda: not services.couch.nodes_status()[1]["healthy"], 30, "the app to see node1 down")
    with serve_in_thread(app) as url:
        after = rendered_dom(f"{url}/status#token={admin['token']}", tmp_path / "p4", budget_ms=4000)
    assert re.findall(r'<tr class="node" data-healthy="(true|false)">', after) == ["true", "false"]
    assert re.search(r'<li class="incident">[^<]* node down ' + re.escape(nodes.urls[1]), after), after[
        -2000:
    ]
    assert "Degraded" in after

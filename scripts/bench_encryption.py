"""What encryption at rest costs (`make bench-inprocess` runs it): note
create and read throughput, an import and a search, with ENCRYPTION_ENABLED true and false, on
one node of each server, the app in process as in scripts/bench.py. The two settings run
interleaved in rounds (on, off, on, off, ...) so that the machine's load weighs on both alike.
Writes the section "## Encryption at rest: overhead" of docs/benchmarks-inprocess.md (or --out)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
for _path in (PROJECT_ROOT / "src", PROJECT_ROOT, PROJECT_ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench import IMPORT, REGISTER, SERVERS, Api, database_node, note_input  # noqa: E402

from config.settings import load_config  # noqa: E402
from notebook.api.app import create_app  # noqa: E402

HEADING = "## Encryption at rest: overhead"
READ = "query($id: ID!) { note(id: $id) { id title content tags } }"
CREATE = """mutation($t: String!, $c: String!) {
  createNote(input: {title: $t, content: $c, tags: ["bench"]}) { id } }"""
SEARCH = '{ notes(search: "meeting budget", first: 20) { totalCount edges { node { title } } } }'


def measure(api: Api, notebook: str, ops: int) -> dict[str, float]:
    """Throughputs (operations per second) of one round."""
    figures: dict[str, float] = {}
    start = time.perf_counter()
    ids = [
        api(CREATE, {"t": f"note {i} meeting", "c": f"budget design {i} " * 20})["createNote"]["id"]
        for i in range(ops)
    ]
    figures["createNote (notes/s)"] = ops / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(ops * 2):
        api(READ, {"id": ids[i % len(ids)]})
    figures["note(id) (reads/s)"] = ops * 2 / (time.perf_counter() - start)
    batch = [note_input(i) for i in range(500)]
    start = time.perf_counter()
    api(IMPORT, {"nb": notebook, "notes": batch})
    figures["importNotes, 500 notes (notes/s)"] = 500 / (time.perf_counter() - start)
    api(SEARCH)  # builds the index first
    start = time.perf_counter()
    for _ in range(ops // 2):
        api(SEARCH)
    figures["search, 2 words (queries/s)"] = (ops // 2) / (time.perf_counter() - start)
    return figures


def bench_server(server: str, ops: int, rounds: int) -> dict[bool, dict[str, list[float]]]:
    results: dict[bool, dict[str, list[float]]] = {True: {}, False: {}}
    with tempfile.TemporaryDirectory() as tmp, database_node(server, Path(tmp)) as (url, credentials):
        for _ in range(rounds):
            for encrypted in (True, False):
                config = load_config(
                    {"FLASK_ENV": "testing"},
                    couchdb_url=url,
                    db_prefix=f"benc{uuid.uuid4().hex[:6]}_",
                    **credentials,
                )
                config = replace(
                    config,
                    encryption_enabled=encrypted,
                    encryption_key_path=str(Path(tmp) / "master.key"),
                    key_store_path=str(Path(tmp) / "store.json"),
                )
                app = create_app(config)
                api = Api(app.test_client())
                api.token = api(REGISTER)["register"]["accessToken"]
                notebook = api("{ notebooks { id } }")["notebooks"][0]["id"]
                for name, value in measure(api, notebook, ops).items():
                    results[encrypted].setdefault(name, []).append(value)
                services: Any = app.extensions["notebook"]
                services.stopping.set()
                for db in (services.databases.notes, services.databases.users, services.databases.activity):
                    db.destroy()
                services.close()
    return results


def table(server: str, results: dict[bool, dict[str, list[float]]], ops: int, rounds: int) -> list[str]:
    lines = [
        f"<!-- encryption:{server} -->",
        f"{SERVERS[server]}, {rounds} rounds of each setting, interleaved; median of the rounds "
        f"({ops} creates, {ops * 2} reads, {ops // 2} searches per round):",
        "",
        "| operation | encryption on | encryption off | on / off |",
        "|---|---:|---:|---:|",
    ]
    for name in results[True]:
        on = sorted(results[True][name])[len(results[True][name]) // 2]
        off = sorted(results[False][name])[len(results[False][name]) // 2]
        lines.append(f"| {name} | {on:,.0f} | {off:,.0f} | {on / off:.2f} |")
    lines.append(f"<!-- /encryption:{server} -->")
    return lines


INTRO = (
    "`scripts/bench_encryption.py --server S` (`make bench-inprocess` runs it on both servers): "
    "throughput with encryption at rest on and off."
)


def write(out: Path, blocks: dict[str, list[str]]) -> None:
    """Replace this run's server blocks in the section (made after the intro when new)."""
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    if HEADING not in text:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{INTRO}\n"
    for lines in blocks.values():
        begin, end, block = lines[0], lines[-1], "\n".join(lines)
        if begin in text:
            head, rest = text.split(begin, 1)
            text = head + block + rest.split(end, 1)[1]
        else:
            text = text.replace(INTRO, f"{INTRO}\n\n{block}", 1)
    out.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=["pouchdb", "couchdb3", "all"], default="pouchdb")
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "benchmarks-inprocess.md")
    args = parser.parse_args()
    servers = ["pouchdb", "couchdb3"] if args.server == "all" else [args.server]
    blocks = {
        server: table(server, bench_server(server, args.ops, args.rounds), args.ops, args.rounds)
        for server in servers
    }
    write(args.out, blocks)
    for lines in blocks.values():
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

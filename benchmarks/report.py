"""The HTTP benchmark's tables in docs/benchmarks.md, from the JSON result files of http_bench.py.

Each server's files are read (`<server>-scenarios.json`, `<server>-replication.json`); the
section between the markers below is replaced, the rest of the document is kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

START, END = "<!-- http-bench:start -->", "<!-- http-bench:end -->"
SCALED = [
    "page of 20 notes",
    "filter by tag",
    "search one rare word",
    "search one common word",
    "search two common words",
]
IMPORT_TARGET, RATIO_TARGET, SCALE_TARGET, LAG_TARGET_MS = 2000, 1.0, 1.5, 500


def _load(directory: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        server, _, kind = path.stem.partition("-")
        found.setdefault(server, {})[kind] = json.loads(path.read_text())
    return found


def _verdict(ok: bool, miss: str) -> str:
    return "met" if ok else f"missed: {miss}"


def _short(fraction: float) -> str:
    """How far below a target, in percent: a decimal when under one (0.2 %, not 0 %)."""
    percent = fraction * 100
    return f"{percent:.1f} % short" if percent < 1 else f"{percent:.0f} % short"


def tables(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        START,
        "",
        "## Over HTTP: the app under gunicorn beside raw CouchDB (benchmarks/http_bench.py)",
        "",
    ]
    lines += [
        "Produced by `make bench` (pouchdb-server) and `make bench-couchdb3`: one local node,",
        "`notebook-server` in production (2 gunicorn workers x 4 threads, encryption at rest on,",
        "the read cache on), notes generated and loaded through `importNotes` over HTTP, every",
        "view built before anything is timed, then each scenario under wrk at 16 connections,",
        "alternating with the raw CouchDB request it is compared with. Requests per second and",
        "latencies are the mean of the rounds.",
        "",
    ]
    for parts in results.values():
        scenarios = parts.get("scenarios")
        if scenarios:
            m = scenarios["machine"]
            load = ", ".join(f"{x:.2f}" for x in m["load_at_start"])
            lines += [
                f"### {scenarios['server_version']}",
                "",
                f"Run {scenarios['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python "
                f"{m['python']}; load average at the start {load}.",
                "",
                "| scenario | notes | app req/s | app p50 | app p95 | app p99 "
                "| raw req/s | raw p50 | raw p99 | app / raw |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for size in scenarios["sizes"]:
                for name, runs in size["scenarios"].items():
                    app, raw = runs["app"], runs["raw"]
                    cells = [
                        name,
                        f"{size['size']:,}",
                        f"{app['rps']:.0f}",
                        f"{app['p50_ms']:.1f} ms",
                        f"{app['p95_ms']:.1f} ms",
                        f"{app['p99_ms']:.1f} ms",
                    ]
                    if raw:
                        cells += [
                            f"{raw['rps']:.0f}",
                            f"{raw['p50_ms']:.1f} ms",
                            f"{raw['p99_ms']:.1f} ms",
                            f"{app['rps'] / raw['rps']:.2f}",
                        ]
                    else:
                        cells += ["", "", "", ""]
                    lines.append("| " + " | ".join(cells) + " |")
            lines += [
                "",
                "| notes | importNotes over HTTP | views built after the load | peak memory of a worker "
                "| measured |",
                "|---:|---:|---:|---:|---|",
            ]
            for size in scenarios["sizes"]:
                load = size.get("load_at_start")
                when = size.get("date", scenarios["date"]) + (f", load {load[0]:.2f}" if load else "")
                lines.append(
                    f"| {size['size']:,} | {size['import']['notes_per_second']:.0f} notes/s "
                    f"({size['import']['content_mib']:.0f} MiB of content) | "
                    f"{size['view_build_seconds']:.1f} s | {size['peak_worker_mib']:.0f} MiB | {when} |"
                )
            lines.append("")
    for parts in results.values():
        lines += _wsgi_table(parts.get("wsgi"))
    lines += ["### Targets", "", "| target | server | measured | verdict |", "|---|---|---|---|"]
    for server, parts in results.items():
        lines += _targets(server, parts)
    lines += ["", END]
    return lines


def _wsgi_table(run: dict[str, Any] | None) -> list[str]:
    """gunicorn and granian on the same data (`http_bench.py --wsgi`)."""
    if not run:
        return []
    sides = run["wsgi"]
    lines = [
        f"### gunicorn and granian: {run['server_version']}, {sides['size']:,} notes",
        "",
        f"Run {run['date']}. Both with 2 workers x 4 threads (granian: `--interface wsgi "
        "--blocking-threads 4`), the same node, data and requests, one after the other.",
        "",
        "| scenario | gunicorn req/s | gunicorn p99 | granian req/s | granian p99 | granian / gunicorn "
        "| raw req/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in sides["gunicorn"].items():
        if name == "peak_worker_mib":
            continue
        a, b = runs["app"], sides["granian"][name]["app"]
        raw = runs["raw"]["rps"] if runs.get("raw") else None
        lines.append(
            f"| {name} | {a['rps']:.0f} | {a['p99_ms']:.1f} ms | {b['rps']:.0f} | {b['p99_ms']:.1f} ms | "
            f"{b['rps'] / a['rps']:.2f} | {'' if raw is None else f'{raw:.0f}'} |"
        )
    lines += [
        "",
        f"Peak memory of a worker: gunicorn {sides['gunicorn']['peak_worker_mib']:.0f} MiB, granian "
        f"{sides['granian']['peak_worker_mib']:.0f} MiB.",
        "",
    ]
    return lines


def _targets(server: str, parts: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    scenarios = parts.get("scenarios")
    if scenarios:
        sizes = scenarios["sizes"]
        for size in sizes:
            runs = size["scenarios"]["note(id)"]
            ratio = runs["app"]["rps"] / runs["raw"]["rps"]
            rows.append(
                f"| note(id) req/s >= raw GET | {server} | {ratio:.2f} at {size['size']:,} notes | "
                f"{_verdict(ratio >= RATIO_TARGET, _short(1 - ratio))} |"
            )
        best = max(size["import"]["notes_per_second"] for size in sizes)
        rows.append(
            f"| importNotes >= {IMPORT_TARGET} notes/s | {server} | {best:.0f} notes/s (best size) | "
            f"{_verdict(best >= IMPORT_TARGET, _short(1 - best / IMPORT_TARGET))} |"
        )
        small, large = sizes[0], sizes[-1]
        if large["size"] > small["size"]:
            for name in SCALED:
                a, b = small["scenarios"][name]["app"], large["scenarios"][name]["app"]
                p50, p95 = b["p50_ms"] / a["p50_ms"], b["p95_ms"] / a["p95_ms"]
                ok = p50 <= SCALE_TARGET and p95 <= SCALE_TARGET
                rows.append(
                    f"| {name}: {large['size']:,} / {small['size']:,} notes <= {SCALE_TARGET}x | {server} | "
                    f"p50 {p50:.2f}x, p95 {p95:.2f}x | {_verdict(ok, f'{max(p50, p95):.2f}x')} |"
                )
        peaks = ", ".join(f"{s['peak_worker_mib']:.0f} MiB at {s['size']:,}" for s in sizes)
        rows.append(f"| peak memory of a worker stays flat | {server} | {peaks} | reported |")
    wsgi = parts.get("wsgi", {}).get("wsgi")
    if wsgi:
        for side in ("gunicorn", "granian"):
            runs = wsgi[side]["note(id)"]
            ratio = runs["app"]["rps"] / runs["raw"]["rps"]
            rows.append(
                f"| note(id) req/s >= raw GET, under {side} (--wsgi run) | {server} | {ratio:.2f} at "
                f"{wsgi['size']:,} notes | "
                f"{_verdict(ratio >= RATIO_TARGET, _short(1 - ratio))} |"
            )
    lag = parts.get("replication", {}).get("replication")
    if lag and lag.get("p99_ms") is not None:
        ok = lag["p99_ms"] < LAG_TARGET_MS and lag["missing_after_3s"] == 0
        miss = f"{lag['p99_ms']:.0f} ms"
        rows.append(
            f"| replication lag p99 < {LAG_TARGET_MS} ms at {lag['rate']:.0f} writes/s, 3 nodes | {server} | "
            f"p50 {lag['p50_ms']:.0f} ms, p99 {lag['p99_ms']:.0f} ms, max {lag['max_ms']:.0f} ms, "
            f"{lag['writes']} writes, {lag['missing_after_3s']} missing | "
            f"{_verdict(ok, miss)} |"
        )
    stale = parts.get("replication", {}).get("replication", {}).get("cache_staleness")
    if stale:
        rows.append(
            f"| read cache: how long a write stays hidden from the other worker (feed polled every "
            f"{1000 * stale['poll_seconds']:.0f} ms) | {server} | p50 {stale['p50_ms']:.0f} ms, "
            f"p99 {stale['p99_ms']:.0f} ms, max {stale['max_ms']:.0f} ms; {stale['stale_trials']} of "
            f"{stale['trials']} renames read stale at all | reported |"
        )
    return rows


def write_tables(directory: Path, out: Path) -> None:
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    section = "\n".join(tables(_load(directory)))
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        head, sep, tail = text.partition("\n## ")
        text = head.rstrip() + "\n\n" + section + "\n" + (sep + tail if sep else "")
    out.write_text(text)

"""`notebook-monitor` (also `scripts/monitor_cluster.py`): look at a deployment from outside.

    notebook-monitor --health [--json]                 nodes and links now; exit 0/1/2
    notebook-monitor --metrics --api URL               throughput, latency, lag, conflicts
    notebook-monitor --watch [--interval S]            live view until Ctrl-C
    notebook-monitor --watch --alert-webhook URL       ... and POST an alert per incident

Where it looks: `--nodes URL,...` (the database nodes directly; credentials from --user and
--password-file or COUCHDB_USER/COUCHDB_PASSWORD), else `--api URL` (the app's REST API with an
admin's access token from --token-file), else the nodes of the environment's configuration
(COUCHDB_URL, REPLICATION_NODES, COUCHDB_DB_PREFIX). Exit codes: 0 healthy, 1 degraded (a node
down, a link failing, a node slow), 2 down (no node answers, or the app does not).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from config.settings import ConfigError, load_config
from notebook.database.design_docs import database_names
from notebook.monitor import metrics_view
from notebook.monitor.alerts import AlertTracker
from notebook.monitor.report import DEGRADED, DOWN, EXIT_CODES, HEALTHY, ClusterReport, find_problems
from notebook.monitor.sources import ApiSource, NodeSource

_VERDICT_STYLE = {HEALTHY: "bold green", DEGRADED: "bold yellow", DOWN: "bold red"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="notebook-monitor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_argument_group("what to show")
    what.add_argument("--health", action="store_true", help="nodes and replication links (the default)")
    what.add_argument(
        "--metrics", action="store_true", help="throughput, latency percentiles, lag, conflicts"
    )
    what.add_argument("--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C")
    what.add_argument("--json", action="store_true", help="JSON instead of tables (one line per round)")
    where = parser.add_argument_group("where to look")
    where.add_argument("--nodes", help="database node URLs, comma-separated (the first is preferred)")
    where.add_argument("--prefix", help="database name prefix (default COUCHDB_DB_PREFIX)")
    where.add_argument("--user", help="CouchDB user for --nodes (default COUCHDB_USER)")
    where.add_argument("--password-file", type=Path, help="file holding that user's password")
    where.add_argument("--api", help="the app's base URL, e.g. http://127.0.0.1:5000")
    where.add_argument("--token-file", type=Path, help="file holding an admin's access token, for --api")
    where.add_argument("--metrics-url", help="where to scrape (default API/metrics)")
    where.add_argument("--metrics-token-file", type=Path, help="file holding METRICS_TOKEN")
    alerting = parser.add_argument_group("alerts")
    alerting.add_argument("--alert-webhook", help="POST a JSON alert per incident and per recovery (loops)")
    alerting.add_argument(
        "--latency-threshold-ms", type=float, default=1000.0, help="a node slower is degraded"
    )
    alerting.add_argument("--link-grace-seconds", type=float, default=60.0,
                          help="a link failing this long (both nodes up) is an incident")  # fmt: skip
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between rounds (default 5)")
    parser.add_argument(
        "--measure-lag",
        action="store_true",
        help="time a canary over every link first (writes one document per node and database)",
    )
    return parser.parse_args(argv)


def _secret(path: Path | None) -> str:
    return path.read_text().strip() if path else ""


def build_source(args: argparse.Namespace) -> NodeSource | ApiSource:
    if args.api and not args.nodes:
        return ApiSource(args.api, _secret(args.token_file))
    config = load_config()
    urls = (
        [u.strip() for u in args.nodes.split(",") if u.strip()] if args.nodes else list(config.all_node_urls)
    )
    prefix = args.prefix if args.prefix is not None else config.db_prefix
    user = args.user if args.user is not None else (config.couchdb_admin_user or config.couchdb_user)
    password = _secret(args.password_file) if args.password_file else (
        config.couchdb_admin_password if config.couchdb_admin_user and args.user is None
        else config.couchdb_password
    )  # fmt: skip
    from notebook.bootstrap import couch_tls

    return NodeSource(urls, list(database_names(prefix).values()), user, password, tls=couch_tls(config))


def look(source: NodeSource | ApiSource, latency_threshold_ms: float) -> ClusterReport:
    report = source.read()
    report.problems.extend(find_problems(report, latency_threshold_ms))
    return report


def render_health(report: ClusterReport) -> Group:
    nodes = Table(title="Database nodes", expand=False)
    for column in ("node", "reachable", "active", "version", "latency", "documents"):
        nodes.add_column(column)
    for node in report.nodes:
        counts = "—" if node.databases is None else ", ".join(f"{db}={n}" for db, n in node.databases.items())
        nodes.add_row(
            node.url,
            Text("yes", "green") if node.reachable else Text("DOWN", "bold red"),
            "●" if node.active else "",
            node.version or "—",
            f"{node.latency_ms:.1f} ms" if node.latency_ms is not None else "—",
            counts,
        )
    links = Table(title="Replication links")
    for column in ("source → target", "database", "state", "lag", "last error"):
        links.add_column(column)
    for link in report.links:
        links.add_row(
            f"{link.source} → {link.target}",
            link.database,
            Text(link.state, "green" if link.healthy else "bold red"),
            f"{link.lag_seconds:.3f} s" if link.lag_seconds is not None else "—",
            link.last_error or "",
        )
    verdict = Text(f"{report.verdict.upper()}  ({report.checked_at}, from the {report.source})",
                   _VERDICT_STYLE[report.verdict])  # fmt: skip
    parts: list[Any] = [verdict, nodes]
    if report.links:
        parts.append(links)
    if report.app_status:
        parts.append(Text(f"app /ready: {report.app_status}"))
    parts.extend(Text(f"• {problem.message}", "yellow") for problem in report.problems)
    return Group(*parts)


def render_metrics(summary: dict[str, Any]) -> Table:
    table = Table(title=f"Metrics over {summary['windowSeconds']} s")
    table.add_column("metric")
    table.add_column("value")

    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value * 1000:.1f} ms"

    table.add_row("GraphQL requests/s", str(summary["graphqlRequestsPerSecond"]))
    table.add_row("GraphQL error ratio", f"{summary['graphqlErrorRatio']:.2%}")
    for name, value in summary["graphqlLatencySeconds"].items():
        table.add_row(f"GraphQL latency {name}", seconds(value))
    for node, values in summary["couchdbLatencySeconds"].items():
        table.add_row(f"CouchDB {node} p50 / p99", f"{seconds(values['p50'])} / {seconds(values['p99'])}")
    for link, lag in summary["replicationLagSeconds"].items():
        table.add_row(f"lag {link}", f"{lag:.3f} s")
    table.add_row("conflicts detected / resolved / left",
                  f"{summary['conflictsDetected']:g} / {summary['conflictsResolved']:g} / "
                  f"{summary['conflictsLeftForPeople']:g}")  # fmt: skip
    table.add_row("failovers", f"{summary['failovers']:g}")
    return table


def _metrics_url(args: argparse.Namespace) -> str | None:
    if args.metrics_url:
        return str(args.metrics_url)
    return f"{args.api.rstrip('/')}/metrics" if args.api else None


def run(args: argparse.Namespace, console: Console, stop: threading.Event) -> int:
    source = build_source(args)
    alerts = AlertTracker(args.alert_webhook, args.link_grace_seconds) if args.alert_webhook else None
    metrics_url = _metrics_url(args)
    metrics_token = _secret(args.metrics_token_file)
    if args.metrics and not metrics_url:
        console.print("notebook-monitor: --metrics needs --api or --metrics-url", style="red")
        return 2
    try:
        if args.measure_lag:
            source.measure_lag(timeout=10.0)

        def one_round() -> tuple[ClusterReport, dict[str, Any] | None]:
            report = look(source, args.latency_threshold_ms)
            if alerts is not None:
                alerts.update(report)
            summary = None
            if args.metrics and metrics_url:
                summary = metrics_view.measure(metrics_url, metrics_token, min(args.interval, 2.0))
            return report, summary

        def output(report: ClusterReport, summary: dict[str, Any] | None) -> Any:
            if args.json:
                payload = report.to_json()
                if summary is not None:
                    payload["metrics"] = summary
                return json.dumps(payload)
            parts: list[Any] = [render_health(report)] if args.health or not args.metrics else []
            if summary is not None:
                parts.append(render_metrics(summary))
            return Group(*parts)

        def show(report: ClusterReport, summary: dict[str, Any] | None) -> None:
            if args.json:  # plain lines: rich would wrap them
                print(output(report, summary), flush=True)
            else:
                console.print(output(report, summary))

        if not (args.watch or alerts):
            report, summary = one_round()
            show(report, summary)
            return EXIT_CODES[report.verdict]
        if args.json or not console.is_terminal:
            while True:
                report, summary = one_round()
                show(report, summary)
                if stop.wait(args.interval):
                    return EXIT_CODES[report.verdict]
        with Live(console=console, refresh_per_second=2, screen=False) as live:
            while True:
                report, summary = one_round()
                live.update(output(report, summary))
                if stop.wait(args.interval):
                    return EXIT_CODES[report.verdict]
    finally:
        source.close()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console = Console()
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C or SIGTERM ends the loop after the round in progress, which is bounded by the
        # request timeouts; a KeyboardInterrupt in the middle of a round could leave its
        # request threads to be waited for
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        return run(args, console, stop)
    except ConfigError as exc:
        print(f"notebook-monitor: {exc}", file=sys.stderr)
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())

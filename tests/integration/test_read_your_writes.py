"""Read-your-writes through failover and failback, on three real nodes of the server under test.

With quorum writes (WRITE_QUORUM=2, the default with several nodes) every acknowledged write is
on the preferred node and on the node the app fails over to; while failed over, each write is
also copied to the preferred node once it answers again, and the app fails back only when the
preferred node holds every write made elsewhere whose copy did not land (docs/replication.md,
"Quorum writes, read-your-writes and failback").

Four writers use the real app process; each reads every note it wrote right after the write was
acknowledged, and its older notes now and then. The preferred node is SIGKILLed (its disk kept),
restarted 5 s later, and the load goes on until the app failed back and some more. No read may
show a version older than its reader's own last acknowledged one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from notebook.database.design_docs import database_names
from notebook.database.replication import ReplicationManager
from tests.support.note_load import Ledger, app_process, client_events, run_writers, stop_writers
from tests.support.servers import NodeSet, start_nodes
from tests.support.waiting import wait_until

RESULTS_DIR = Path(__file__).resolve().parents[2] / "var" / "test-results"
WRITERS = 4
KILL_AFTER_SECONDS = 4.0
DOWN_SECONDS = 5.0
AFTER_FAILBACK_SECONDS = 4.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeSet, str]]:
    nodes = start_nodes(tmp_path_factory.mktemp("read-your-writes"), 3)
    prefix = f"r{uuid.uuid4().hex[:8]}_"
    manager = ReplicationManager(
        nodes.urls, list(database_names(prefix).values()), nodes.user, nodes.password, retry_seconds=2
    )
    try:
        nodes.require_process_control()
        manager.ensure_mesh()
        yield nodes, prefix
    finally:
        manager.close()
        nodes.stop()


def test_no_client_reads_older_than_its_own_write_through_failover_and_failback(
    mesh: tuple[NodeSet, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes, prefix = mesh
    log_path = tmp_path / "app.log"
    with app_process(nodes.urls, prefix, log_path, **nodes.environment()) as base_url:
        ledger = Ledger()
        writers, stop = run_writers(base_url, ledger, WRITERS)
        users_db = database_names(prefix)["users"]
        assert wait_until(
            lambda: (
                len({n.request("GET", f"{users_db}/_all_docs?limit=0")[1]["total_rows"] for n in nodes}) == 1
            ),
            30,
        )
        for writer in writers:
            writer.start()
        time.sleep(KILL_AFTER_SECONDS)
        nodes[0].kill()
        time.sleep(DOWN_SECONDS)
        nodes[0].restart()

        def failed_back() -> bool:
            return any(e.get("message") == "database failback" for e in client_events(log_path))

        came_back = wait_until(failed_back, 60, interval=0.25)
        time.sleep(AFTER_FAILBACK_SECONDS)
        stop_writers(writers, stop)
        messages = [e.get("message") for e in client_events(log_path)]
    figures = {
        "server": nodes.kind,
        "acknowledged_writes": ledger.acknowledged,
        "reads": ledger.reads,
        "failed_by_code": dict(sorted(ledger.failed.items())),
        "stale_reads": len(ledger.stale_reads),
        "stale_read_examples": ledger.stale_reads[:5],
        "failed_back": bool(came_back),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"read_your_writes-{nodes.kind}.json").write_text(
        json.dumps({**figures, "events": messages}) + "\n"
    )
    with capsys.disabled():
        print("\nread-your-writes through failover and failback:", json.dumps(figures))
    assert "database failover" in messages, messages
    assert came_back, messages
    assert ledger.acknowledged > 30, figures
    assert ledger.reads >= ledger.acknowledged, figures
    assert ledger.stale_reads == [], figures

"""Every difference between Apache CouchDB 3 and pouchdb-server 4.2.0 that this project meets.

Production runs CouchDB 3; development and most tests run pouchdb-server (PouchDB 7 behind a
CouchDB-like HTTP API). The rest of the code speaks the CouchDB 3 API and asks this module
whenever the two servers differ, so this file is the one list to read (and to extend) when a
server behaves unexpectedly. Each difference below has its number (D1, D2, ...), what each server
does, and what the code does about it; docs/architecture.md lists the same numbers.

Differences with code here (constants and small pure functions other modules use):
  D1  health probe: `/_up` (CouchDB 3) or `GET /` (pouchdb-server)          `up_verdict`
  D2  `Accept: application/json` needed on pouchdb-server                  `REQUEST_HEADERS`
  D3  `_bulk_docs` answers out of request order on pouchdb-server          `bulk_answers_by_id`
  D4  `_revs_diff` reports replicated ancestors missing on pouchdb-server  `in_leaf_history`
  D5  changes-feed positions belong to one node                           `CHANGES_POSITION_SCOPE`
  D6  longpoll held open past its timeout on pouchdb-server                `CHANGES_FEED`
  D7  where replication state lives: scheduler or the job document         `job_state`
  D8  scheduler detection: 404 / 401 / 403                                 `scheduler_absent`
  D9  the scheduler lists every job in one call (CouchDB 3)                `SCHEDULER_DOCS_PATH`
  D10 `_replicator` endpoint form both replicators accept                  `replicator_endpoint`
  D11 fields the server adds to documents we write (`owner`)              `written_fields_match`
  D12 pouchdb-server cannot change or delete a running job safely          `RUNNING_JOB_REFUSED_HINT`
  D13 pouchdb-server mistracks concurrent job writes                       `writes_jobs_one_at_a_time`
  D14 clustered CouchDB: several URLs, one database                        `cluster_identity`
  D15 `_find` has no default limit and no bookmark on pouchdb-server       `FIND_NEEDS_LIMIT`
  D22 CouchDB 3 keeps a crashing job's backoff across document updates    `RESTARTED_BY_RECREATING`
Differences handled elsewhere, listed here so the list is complete:
  D16 revision ids: CouchDB 3 hashes parent and body, pouchdb-server draws random ids. A write
      repeated on two nodes becomes one revision on CouchDB 3 and a conflict of two identical
      versions on pouchdb-server, which the conflict resolver collapses (couch/verification.py).
  D17 view key collation: CouchDB 3 sorts view keys with ICU collation, pouchdb-server by code
      point. So every string a view sorts on is one both order alike: fixed-width timestamps,
      note ids of one shape, and titles as `core/search.title_sort_key` (hex), see design_docs.py.
  D18 Mango sorts: pouchdb-server needs the sort to list the index's fields in order and returns
      a mixed-direction sort in the wrong order instead of refusing it (repository.py keeps sorts
      single-direction and aligned with the index).
  D19 security: new databases are admin-only on CouchDB 3; on pouchdb-server an empty `members`
      list means anyone may read (so pouchdb-server is only ever bound to 127.0.0.1).
  D20 views are plain ES5: CouchDB 3 runs them in QuickJS or SpiderMonkey, pouchdb-server in
      Node (design_docs.py).
  D21 reduces: CouchDB 3 keeps reduce values in its index; pouchdb-server recomputes them on
      every query (a `_count` over a long range grows with the rows), so `totalCount` is only
      computed when a client selects it, and only `_count`/`_sum`/`_stats` are used.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# -- D1: health ---------------------------------------------------------------------------------
#: CouchDB 3 answers `GET /_up` with 200 `{"status": "ok"}` when the node can serve, and with 404
#: `{"status": "maintenance_mode"}` (or "nolb") when an operator drains it or it is not ready;
#: its welcome document `GET /` stays 200 meanwhile, so `/` would call a draining node healthy.
#: pouchdb-server has no `/_up`: it takes `_up` for a database name and answers 404
#: `{"error": "not_found", "reason": "no_db_file"}`. Its welcome document is the only probe.
UP_PATH = "_up"
WELCOME_PATH = ""


def up_verdict(status_code: int, body: Any) -> bool | None:
    """What an answer to `GET /_up` says: True (serving), False (up but refusing: maintenance
    or not ready), None (this server has no `/_up`: probe `GET /` instead)."""
    if status_code == 200:
        return True
    if isinstance(body, Mapping) and "status" in body:
        return False  # CouchDB's own refusal: {"status": "maintenance_mode" | "nolb" | ...}
    if status_code in (400, 404, 405):
        return None  # not an endpoint of this server
    return False


# -- D2: content negotiation --------------------------------------------------------------------
#: pouchdb-server answers `text/plain` unless asked for JSON; CouchDB 3 answers JSON either way.
#: pouchdb-server also gzips every answer the client accepts gzip for (httpx asks by default);
#: between processes on one host or one rack that only spends CPU on both ends (a page of 20
#: notes with their documents: 1.4 % of a worker's samples in the gzip decoder alone), so the
#: client asks for the body as it is. CouchDB 3 compresses no JSON answer either way.
REQUEST_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


# -- D3: bulk answers ---------------------------------------------------------------------------
def bulk_answers_by_id(payload: Any) -> dict[str, dict[str, Any]]:
    """The answers of a `_bulk_docs` call keyed by document id. CouchDB 3 answers in request
    order; pouchdb-server does not always, so answers are matched by id, never by position."""
    return {str(answer.get("id")): answer for answer in payload or [] if isinstance(answer, dict)}


# -- D4: _revs_diff -----------------------------------------------------------------------------
#: CouchDB 3's `_revs_diff` reports only revisions a node has never heard of. pouchdb-server also
#: reports revisions whose body it does not hold, which is every ancestor that arrived by
#: replication. Such a report is checked against the revision histories of the document's
#: leaves (`GET doc?open_revs=all&revs=true`) before the revision counts as missing.
def in_leaf_history(open_revs_answer: Iterable[Any], rev: str) -> bool:
    """True if `rev` is in the history of any leaf of an `open_revs=all&revs=true` answer."""
    for answer in open_revs_answer:
        if not isinstance(answer, Mapping):
            continue
        history = (answer.get("ok") or {}).get("_revisions") or {}
        start = history.get("start", 0)
        if rev in {f"{start - i}-{rev_id}" for i, rev_id in enumerate(history.get("ids", []))}:
            return True
    return False


# -- D5: changes-feed positions -----------------------------------------------------------------
#: A `since` is a position in ONE node's feed. Given a position taken on another node, CouchDB 3
#: does not refuse it: it silently starts again from 0 (the whole feed is replayed after every
#: failover and failback); pouchdb-server answers 400 when the position is not one of its own
#: integers. So positions are kept per node URL, a feed request carrying one is pinned to that
#: node (never failed over), and a node seen for the first time starts at "now".
CHANGES_POSITION_SCOPE = "node"
CHANGES_START = "now"

# -- D6: changes-feed mode ----------------------------------------------------------------------
#: pouchdb-server keeps a `feed=longpoll` request open past its `timeout`, which looks exactly like
#: a dead node to the client; both servers answer `feed=normal` at once, so feeds are polled.
CHANGES_FEED = "normal"


# -- D7: where replication state lives ----------------------------------------------------------
@dataclass(frozen=True)
class JobState:
    """A replication job's state in the contract's terms, and its last error."""

    state: str
    last_error: str | None = None


#: CouchDB 3 keeps job state in its scheduler (`/_scheduler/docs`), not in the job document
#: (since 2.1). `error` means the document could not become a job yet and is retried
#: periodically, so for an operator it is a crashing link, not a terminal failure.
SCHEDULER_STATES = {
    "initializing": "pending",
    "pending": "pending",
    "running": "running",
    "crashing": "crashing",
    "error": "crashing",
    "completed": "completed",
    "failed": "failed",
}
#: pouchdb-server (like CouchDB 1.x) writes `_replication_state` into the job document; CouchDB 3
#: still writes the terminal `completed` and `failed` there. pouchdb-server retries a continuous
#: job by itself while it says `triggered`; once it writes `error` it has given up on the job.
DOCUMENT_STATES = {"triggered": "running", "completed": "completed", "error": "failed", "failed": "failed"}


def job_state(scheduler_doc: Mapping[str, Any] | None, job_doc: Mapping[str, Any] | None) -> JobState:
    """A job's state (running, pending, crashing, failed, completed, stopped, unknown).

    `scheduler_doc`: the job's entry in CouchDB 3's `/_scheduler/docs` (None when the server has
    no scheduler or it has not seen the job yet); `job_doc`: the `_replicator` document (None
    when it does not exist), whose `_replication_state` fields hold the state on pouchdb-server.
    """
    if scheduler_doc is not None:
        state = SCHEDULER_STATES.get(str(scheduler_doc.get("state")), "unknown")
        return JobState(state, _scheduler_error(scheduler_doc) if state != "running" else None)
    if job_doc is None or job_doc.get("_deleted"):
        return JobState("stopped")
    raw_state = job_doc.get("_replication_state")
    if raw_state is None:
        # written but not picked up yet (or CouchDB 3 before its scheduler has seen it)
        return JobState("pending")
    state = DOCUMENT_STATES.get(str(raw_state), "unknown")
    reason = job_doc.get("_replication_state_reason")
    # a reason can linger in the document from an earlier failure of a job running again now
    return JobState(state, str(reason) if reason and state != "running" else None)


def _scheduler_error(scheduler_doc: Mapping[str, Any]) -> str | None:
    info = scheduler_doc.get("info")
    if isinstance(info, Mapping):  # CouchDB 3: {"error": "..."} when failing, statistics otherwise
        error = info.get("error")
        return str(error) if error else None
    if isinstance(info, str) and info:  # CouchDB 2.x: the reason as a string
        return info
    return None


# -- D8: scheduler detection --------------------------------------------------------------------
#: Asked for `/_scheduler/jobs`, pouchdb-server answers 404 (no such endpoint); CouchDB 3 answers
#: 401 or 403 to an account that is not a server admin, which cannot read the scheduler either.
#: In all three cases the job documents are the only place left to read state from.
SCHEDULER_PROBE_PATH = "_scheduler/jobs"


def scheduler_absent(status_code: int) -> bool:
    """True when an answer to `GET /_scheduler/jobs` means "no scheduler we can read"."""
    return status_code in (401, 403, 404)


# -- D9: reading every job at once ---------------------------------------------------------------
#: CouchDB 3 lists the scheduler's view of every document of a replicator database in one call
#: (`limit` bounds a page; `total_rows` tells whether there is more). Used instead of one
#: `/_scheduler/docs/_replicator/<id>` request per job.
SCHEDULER_DOCS_PATH = "_scheduler/docs/_replicator"
SCHEDULER_PAGE = 1000


# -- D10: replication endpoints -----------------------------------------------------------------
def replicator_endpoint(url: str, user: str, password: str) -> dict[str, Any]:
    """A `_replicator` source/target both replicators accept.

    pouchdb-server's replicator breaks on CouchDB's `{"url", "auth": {"basic": ...}}` form and
    throws on an object without `headers`; CouchDB 3 accepts credentials in a `headers` object
    too. No credentials: an empty `headers` object (pouchdb-server needs the key).
    """
    headers: dict[str, str] = {}
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return {"url": url, "headers": headers}


# -- D11: fields the server adds ----------------------------------------------------------------
#: CouchDB 3 adds `owner` (the account that wrote it) to every `_replicator` document; both
#: servers add `_`-prefixed fields (`_rev`, `_replication_*`). A document we wrote is recognised
#: by the fields we wrote, never by comparing whole documents.
SERVER_ADDED_FIELDS = frozenset({"owner"})


def written_fields_match(written: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """True when `stored` holds every field of `written` with the same value (extra fields the
    server added are ignored; `_id` and `_rev` are the caller's business)."""
    return all(
        stored.get(name) == value
        for name, value in written.items()
        if name not in ("_id", "_rev", "_revisions", "_conflicts")
    )


def fields_we_wrote(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document without what either server adds to it."""
    return {k: v for k, v in stored.items() if not k.startswith("_") and k not in SERVER_ADDED_FIELDS}


# -- D12: running jobs on pouchdb-server --------------------------------------------------------
#: pouchdb-server refuses (403 `forbidden`) any update of a running job document, and deleting a
#: running continuous job makes the process exit (an unhandled rejection in its replicator), so
#: on pouchdb-server teardown leaves the hosting node to be restarted by its supervisor. CouchDB 3
#: simply stops the job.
RUNNING_JOB_REFUSED_HINT = " (pouchdb-server refuses to change a running job: teardown, then setup)"


# -- D13: job writes on pouchdb-server ----------------------------------------------------------
def writes_jobs_one_at_a_time(records_state_in_documents: bool) -> bool:
    """pouchdb-server's replicator tells its own writes to a job document from ours by position
    in a list, not by id: with several of its writes in flight it takes one for ours, restarts
    that job and marks it "completed" while the restarted replication runs untracked (3 of 8
    fresh setups). Where state lives in the documents (D7), jobs are written one at a time, each
    waited for; CouchDB 3 takes them all in one `_bulk_docs`."""
    return records_state_in_documents


# -- D14: clustered CouchDB ---------------------------------------------------------------------
#: A clustered CouchDB 3 answers `GET /_membership` with every node of the cluster in
#: `cluster_nodes`; any node's URL serves every database, and the cluster keeps its own copies.
#: Several URLs of ONE cluster are several doors to one database: replicating between them would
#: copy each database into itself. A single-node CouchDB lists one node; pouchdb-server answers
#: the same fixed single node (`node1@127.0.0.1`) on every server. So: more than one cluster node
#: and the same list behind two URLs = the same cluster.
MEMBERSHIP_PATH = "_membership"


def cluster_identity(membership: Any) -> frozenset[str] | None:
    """The node names of the cluster behind an answer to `GET /_membership`; None when the
    answer shows a single node (single-node CouchDB, pouchdb-server) or no membership at all."""
    if not isinstance(membership, Mapping):
        return None
    nodes = membership.get("cluster_nodes")
    if not isinstance(nodes, list) or len(nodes) < 2:
        return None
    return frozenset(str(node) for node in nodes)


# -- D22: jobs in backoff ------------------------------------------------------------------------
#: CouchDB 3 reschedules a `crashing` job with exponential backoff: a target down for ~15 s meant
#: ~75 s before replication into it resumed. It keeps that backoff when the document is updated
#: with the same settings (it compares the normalised replication, not the document). A new
#: document (delete, then create; same id and replication id, so checkpoints are reused) starts
#: a fresh job at once. pouchdb-server has no `crashing` state (D7) and exits when a running
#: job's document is deleted (D12), so this is done only where the scheduler is read.
RESTARTED_BY_RECREATING = frozenset({"crashing"})


# -- D15: Mango -----------------------------------------------------------------------------------
#: CouchDB 3's `_find` returns 25 documents unless told otherwise and pages with a `bookmark`;
#: pouchdb-server returns every match and never a bookmark. So every `_find` passes `limit`, and
#: pages by key (keyset), never by bookmark or skip.
FIND_NEEDS_LIMIT = True

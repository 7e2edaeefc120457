"""Reading replication job states: CouchDB 3's scheduler, or the job documents themselves.

Where the state lives is a server difference (server_differences D7, D8, D9); this module asks
the server once per node which one applies and reads every job of a node in one call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from notebook.database.couch import CouchDBClient, CouchError
from notebook.database.couch.server_differences import (
    SCHEDULER_DOCS_PATH,
    SCHEDULER_PAGE,
    SCHEDULER_PROBE_PATH,
    JobState,
    job_state,
    scheduler_absent,
)
from notebook.database.replication.jobs import read_job_docs


class JobStateReader:
    """Reads job states from a node: `/_scheduler/docs` where it exists and we may read it
    (CouchDB 2.1+ with admin rights), else the fields of the `_replicator` documents
    (pouchdb-server, CouchDB 1.x). Capability is detected once per node."""

    def __init__(self) -> None:
        self._has_scheduler: dict[str, bool] = {}

    def read(
        self,
        client: CouchDBClient,
        job_ids: Sequence[str],
        docs: Mapping[str, dict[str, Any] | None] | None = None,
    ) -> dict[str, JobState]:
        """States of these jobs on this node; `docs` are their documents if already read."""
        if docs is None:
            docs = read_job_docs(client, job_ids)
        existing = {job_id for job_id, doc in docs.items() if doc is not None}
        scheduler: dict[str, dict[str, Any]] = {}
        if existing and self.supports_scheduler(client):
            scheduler = self._scheduler_docs(client, existing)
        return {job_id: job_state(scheduler.get(job_id), docs.get(job_id)) for job_id in job_ids}

    def records_state_in_documents(self, client: CouchDBClient) -> bool:
        """True for servers whose replicator writes job state into the `_replicator` documents."""
        return not self.supports_scheduler(client)

    def supports_scheduler(self, client: CouchDBClient) -> bool:
        known = self._has_scheduler.get(client.url)
        if known is None:
            try:
                client.request("GET", SCHEDULER_PROBE_PATH, params={"limit": 1})
                known = True
            except CouchError as exc:
                if not scheduler_absent(exc.status):
                    raise
                known = False
            self._has_scheduler[client.url] = known
        return known

    @staticmethod
    def _scheduler_docs(client: CouchDBClient, wanted: set[str]) -> dict[str, dict[str, Any]]:
        """The scheduler's entries for `wanted` jobs: one request, more only for a `_replicator`
        database with more than a page of documents."""
        found: dict[str, dict[str, Any]] = {}
        skip = 0
        while True:
            page = client.request("GET", SCHEDULER_DOCS_PATH, params={"limit": SCHEDULER_PAGE, "skip": skip})
            entries = page.get("docs") or []
            for entry in entries:
                if isinstance(entry, dict) and entry.get("doc_id") in wanted:
                    found[str(entry["doc_id"])] = entry
            skip += len(entries)
            if not entries or len(found) == len(wanted) or skip >= int(page.get("total_rows") or 0):
                return found

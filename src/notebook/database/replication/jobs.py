"""The mesh's nodes and job documents: ids, endpoints, reading and placing `_replicator` jobs.

Topology: for every application database and every ordered pair of nodes (A, B) there is exactly
one job document, with a deterministic id, stored on A and pushing A's database into B's (why
push: see `job_doc`). The project never copies application documents itself; CouchDB (or
pouchdb-server) does.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from notebook.core.errors import InvalidInput
from notebook.database.couch import CouchDBClient
from notebook.database.couch.server_differences import replicator_endpoint
from notebook.database.couch.tls import CouchTLS, plain_http_refusal

REPLICATOR_DB = "_replicator"
JOB_ID_PREFIX = "notebook-replication:"
# The fields of a job document this module writes; everything else in it belongs to the server.
JOB_FIELDS = ("source", "target", "continuous")


def node_key(url: str) -> str:
    """A short stable name for a node, derived from its URL without credentials."""
    return hashlib.sha256(url.encode()).hexdigest()[:10]


def job_id(database: str, source: str, target: str) -> str:
    """The deterministic `_replicator` id of the job replicating `database` from `source` to `target`."""
    return f"{JOB_ID_PREFIX}{database}:{node_key(source)}:{node_key(target)}"


def clean_url(url: str) -> str:
    """A node URL without credentials, with a trailing slash; InvalidInput if it is not one."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError):
        raise InvalidInput("not a valid node URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput("a node URL looks like http://host:5984/")
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None)).rstrip("/") + "/"


class PlainHTTPRefused(InvalidInput):
    """A replication job would carry credentials over plain HTTP beyond loopback."""


class MeshNode:
    """A node of the replication mesh: its clean URL, its own client and the credentials the
    replicators use to reach it.

    The jobs name the node by the URL the app uses (or `via`): an `https://` URL configured for
    the app is the one the replicators use too. Credentials never go into a job whose endpoint
    is `http://` beyond loopback (`endpoint` raises PlainHTTPRefused).
    """

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
        tls: CouchTLS | None = None,
    ) -> None:
        self.url = clean_url(url)
        parsed = httpx.URL(url.strip())
        self.user = parsed.username or user
        self.password = parsed.password if parsed.username else password
        self.client = CouchDBClient(
            self.url, user=self.user, password=self.password, timeout=timeout, tls=tls, transport=transport
        )

    def endpoint(self, database: str, via: str | None = None) -> dict[str, Any]:
        """This node's `database` as a `_replicator` source or target; `via` is another address
        of this node (how the other nodes reach it). PlainHTTPRefused when that address is
        `http://` beyond loopback and the endpoint would carry credentials."""
        address = via or self.url
        refusal = plain_http_refusal(address) if self.user else None
        if refusal is not None:
            raise PlainHTTPRefused(f"no replication job with credentials to {refusal}; use https://")
        return replicator_endpoint(address + quote(database, safe=""), self.user, self.password)

    def secrets(self) -> list[str]:
        if not self.user:
            return []
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return [s for s in (self.password, token, quote(self.password, safe="")) if s]


def job_doc(
    database: str, source: MeshNode, target: MeshNode, continuous: bool, via: str | None
) -> dict[str, Any]:
    """The job document replicating `database` from `source` into `target`, stored on `source`.

    The job lives on the source node: a push replication. Its one long-lived connection, the
    continuous changes feed, then goes to its own node and ends with it; its requests to the
    target are short, and the replicator retries them while the target is away. Pull jobs (on the
    target) would hold that feed open to a remote node: when that node is killed, pouchdb-server's
    replicator never notices (PouchDB 7's fetch waits forever for the rest of the response;
    measured: a pull link stays "triggered" and dead after the source restarts), while push links
    resume within seconds. CouchDB 3 handles both; push is the placement that survives node loss
    on both servers. It also means every node owns the distribution of its own writes: a node that
    comes back restarts its jobs and sends out what was written on it, and a node that is lost
    takes its jobs with it.
    """
    return {
        "_id": job_id(database, source.url, target.url),
        "source": source.endpoint(database),
        "target": target.endpoint(database, via=via),
        "continuous": continuous,
    }


def read_job_docs(client: CouchDBClient, job_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """The live `_replicator` documents with these ids (None for missing or deleted ones)."""
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(job_ids)
    for row in client.database(REPLICATOR_DB).all_docs(job_ids, include_docs=True):
        doc = row.get("doc")
        if doc and not row.get("value", {}).get("deleted"):
            found[row["key"]] = doc
    return found


def own_job_ids(client: CouchDBClient, databases: Sequence[str], prefix: str = JOB_ID_PREFIX) -> list[str]:
    """Ids of the jobs on a node for these databases, whatever nodes they name: the mesh's
    (`prefix` JOB_ID_PREFIX) or another family of ours (the refill jobs' prefix)."""
    rows = client.request(
        "GET",
        f"{REPLICATOR_DB}/_all_docs",
        params={"startkey": prefix, "endkey": prefix + "\ufff0"},
    )["rows"]
    prefixes = tuple(f"{prefix}{db}:" for db in databases)
    return [row["id"] for row in rows if row["id"].startswith(prefixes)]

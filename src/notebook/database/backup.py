"""Backups of the application's databases, and restoring one (`notebook-server backup|restore`).

A backup is one gzip file of JSON lines: a header (format, version, the databases by role),
then one line per document, `{"db": role, "doc": {...}}`, every current document of every
database (design documents included) with its revision. Tombstones, conflict leaves and the
throttle database (rate-limit counters) are left out. Restore writes the documents with
`new_edits=false`, so each keeps its revision: the versions clients hold stay valid, and
replication from another node sees the same revisions instead of new conflicts. It refuses a
target whose databases already hold documents (restore into an empty node or prefix).

The file holds password hashes and refresh-token hashes: it is written with mode 0600.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from notebook.database.couch import CouchDBClient
from notebook.database.design_docs import database_names

FORMAT = "notebook-backup"
VERSION = 1
_PAGE = 500
SKIPPED_ROLES = ("throttle",)


class BackupError(Exception):
    """The backup cannot be made or restored; the message is one line for the operator."""


@dataclass
class BackupSummary:
    documents: dict[str, int] = field(default_factory=dict)  # role -> documents

    @property
    def total(self) -> int:
        return sum(self.documents.values())


def _roles(prefix: str) -> dict[str, str]:
    return {role: name for role, name in database_names(prefix).items() if role not in SKIPPED_ROLES}


def _documents(client: CouchDBClient, db_name: str) -> Iterator[dict[str, Any]]:
    """Every current document of a database, in id order, a page at a time (keyset paging)."""
    path = f"{quote(db_name, safe='')}/_all_docs"
    start: str | None = None
    while True:
        params: dict[str, Any] = {"include_docs": True, "limit": _PAGE + (1 if start is not None else 0)}
        if start is not None:
            params["startkey"] = start
        rows = client.request("GET", path, params=params)["rows"]
        if start is not None and rows and rows[0]["id"] == start:
            rows = rows[1:]
        for row in rows:
            if row.get("doc"):
                yield row["doc"]
        if len(rows) < _PAGE:
            return
        start = rows[-1]["id"]


def write_backup(client: CouchDBClient, prefix: str, path: Path) -> BackupSummary:
    """Write every document of the deployment's databases to `path` (replaced at the end)."""
    roles = _roles(prefix)
    summary = BackupSummary()
    draft = path.with_name(f".{path.name}.partial")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
            _line(out, {"format": FORMAT, "version": VERSION, "databases": roles})
            for role, name in roles.items():
                summary.documents[role] = 0
                for doc in _documents(client, name):
                    _line(out, {"db": role, "doc": doc})
                    summary.documents[role] += 1
        os.replace(draft, path)
    finally:
        if draft.exists():
            draft.unlink()
    return summary


def _line(out: gzip.GzipFile, value: Mapping[str, Any]) -> None:
    out.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")


def read_backup(path: Path) -> Iterator[dict[str, Any]]:
    """The lines of a backup file, the header first; BackupError when it is not one."""
    try:
        with gzip.open(path, "rb") as lines:
            for number, line in enumerate(lines):
                value = json.loads(line)
                if number == 0 and (value.get("format") != FORMAT or value.get("version") != VERSION):
                    raise BackupError(f"{path} is not a {FORMAT} version {VERSION} file")
                yield value
    except (OSError, EOFError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read: {type(exc).__name__}") from None


def restore_backup(client: CouchDBClient, prefix: str, path: Path) -> BackupSummary:
    """Write a backup's documents into the databases of `prefix` (created when missing), which
    must hold no document yet."""
    roles = _roles(prefix)
    lines = read_backup(path)
    next(lines)  # the header, checked by read_backup
    for name in roles.values():
        client.database(name).ensure_exists()
        count = int(client.database(name).info().get("doc_count", 0))
        if count:
            raise BackupError(f"{name} already holds {count} documents: restore into empty databases")
    summary = BackupSummary(dict.fromkeys(roles, 0))
    batch: dict[str, list[dict[str, Any]]] = {role: [] for role in roles}
    for value in lines:
        role = value.get("db")
        if role not in roles:
            continue
        batch[role].append(value["doc"])
        if len(batch[role]) >= _PAGE:
            summary.documents[role] += _store(client, roles[role], batch[role])
            batch[role] = []
    for role, docs in batch.items():
        summary.documents[role] += _store(client, roles[role], docs)
    return summary


def _store(client: CouchDBClient, db_name: str, docs: list[dict[str, Any]]) -> int:
    if not docs:
        return 0
    results = client.database(db_name).bulk_docs(docs, new_edits=False)
    failed = [r for r in results if isinstance(r, dict) and r.get("error")]
    if failed:
        raise BackupError(f"{len(failed)} documents of {db_name} were refused, e.g. {failed[0].get('error')}")
    return len(docs)

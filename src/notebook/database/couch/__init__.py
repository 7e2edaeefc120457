"""The CouchDB client package; other modules import from here, not from its parts.

- client.py: the HTTP client and request routing (`CouchDBClient`)
- nodes.py: node health, circuits, failover and failback
- verification.py: uncertain document writes, recognised on a node before any resend
- errors.py: CouchDB's error answers as exceptions
- database.py: the database API (`Database`)
- server_differences.py: every difference between CouchDB 3 and pouchdb-server
"""

from notebook.database.couch.client import CouchDBClient, RequestCounter
from notebook.database.couch.database import Database
from notebook.database.couch.errors import (
    BadRequest,
    CouchError,
    DatabaseUnavailable,
    DocumentConflict,
    DocumentNotFound,
    PreconditionFailed,
    Unauthorized,
)
from notebook.database.couch.paths import quote_id, strip_credentials
from notebook.database.couch.read_cache import DERIVED_PREFIX
from notebook.database.couch.verification import WRITE_ID_FIELD, resolution_write_id

__all__ = [
    "DERIVED_PREFIX",
    "WRITE_ID_FIELD",
    "resolution_write_id",
    "BadRequest",
    "CouchDBClient",
    "CouchError",
    "Database",
    "DatabaseUnavailable",
    "DocumentConflict",
    "DocumentNotFound",
    "PreconditionFailed",
    "RequestCounter",
    "Unauthorized",
    "quote_id",
    "strip_credentials",
]

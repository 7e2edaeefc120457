"""Counted attempts for abuse limits, kept in CouchDB so every worker, instance and node sees them.

One document per attempt, never updated: concurrent writers (threads, workers, app instances,
replicating nodes) can therefore never conflict, and a count is the `_count` of the `attempts`
view grouped by [key, bucket]. A bucket is a fixed slice of time (`bucket_seconds`); the service
sums the buckets of its window. The document id starts with the zero-padded bucket, so old
attempts are found by bucket and deleted in batches (`purge_before`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from notebook.database.couch import CouchError, Database
from notebook.database.design_docs import THROTTLE_DESIGN

log = logging.getLogger(__name__)


class ThrottleRepository:
    """Attempts per key and time bucket in the throttle database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, keys: Sequence[str], bucket: int) -> None:
        """Count one attempt under every key in `keys` (one document, one request)."""
        doc_id = f"attempt:{bucket:012d}:{uuid.uuid4().hex}"
        self.db.put({"_id": doc_id, "type": "attempt", "keys": list(keys), "bucket": bucket})

    def counts(self, keys: Sequence[str], buckets: Sequence[int]) -> dict[str, dict[int, int]]:
        """Attempts per key and bucket, in one request; absent pairs are left out."""
        wanted = [[key, bucket] for key in dict.fromkeys(keys) for bucket in buckets]
        if not wanted:
            return {}
        rows = self.db.view(THROTTLE_DESIGN, "attempts", keys=wanted, group=True)["rows"]
        found: dict[str, dict[int, int]] = {}
        for row in rows:
            key, bucket = row["key"]
            found.setdefault(key, {})[bucket] = row["value"]
        return found

    def purge_before(self, bucket: int, batch: int = 500) -> int:
        """Delete up to `batch` attempts older than `bucket`; returns how many were deleted.
        Best effort: a failure leaves them for the next purge and costs the caller nothing."""
        try:
            rows = self.db.view(
                THROTTLE_DESIGN, "attempts_by_bucket", endkey=bucket, inclusive_end=False, limit=batch
            )["rows"]
            if not rows:
                return 0
            # attempts are written once, so the revision the view saw is still the current one
            stubs = [{"_id": row["id"], "_rev": row["value"], "_deleted": True} for row in rows]
            return sum(1 for result in self.db.bulk_docs(stubs) if not result.get("error"))
        except CouchError as exc:
            log.warning("old throttle attempts not purged: %s", exc.reason)
            return 0

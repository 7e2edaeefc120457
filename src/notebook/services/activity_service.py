"""What happened, and who did it: the activity feed, security events and their retention.

The records of changes are written by the services that make the changes, in the same round
trip (core/activity.py builds them; the repositories store them beside the change). This
service reads them back and records the security events, which stand for no change.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from notebook.core import validation
from notebook.core.activity import deterministic_suffix, new_activity
from notebook.core.domain import Page, User, format_time, utc_now
from notebook.core.errors import StorageError
from notebook.services.notebook_service import NotebookService
from notebook.services.ports import ActivityStore

log = logging.getLogger(__name__)

RATE_LIMIT_EVENT_SECONDS = 60  # one rate-limit event per key and minute, however many refusals


class ActivityService:
    def __init__(self, store: ActivityStore, notebooks: NotebookService, retention_days: int = 365) -> None:
        self.store = store
        self.notebooks = notebooks
        self.retention_days = retention_days

    def feed(self, actor: User, notebook_id: str | None, first: int = 20, after: str | None = None) -> Page:
        """Newest first: a notebook's activity for its members, or without `notebook_id` the
        actor's own actions and the activity of every notebook the actor owns or is a member of."""
        size = validation.page_size(first)
        if notebook_id is not None:
            notebook = self.notebooks.readable(actor, notebook_id)
            return self.store.notebook_feed(notebook.id, size, after)
        shared = self.notebooks.shared_notebook_ids(actor)
        return self.store.user_feed(actor.id, shared, size, after)

    def security_events(self, first: int = 20, after: str | None = None) -> Page:
        """Failed sign-ins, rate-limit refusals, refresh-token reuse, admin changes (admins only:
        the permission table says so)."""
        return self.store.security_feed(validation.page_size(first), after)

    # recording security events -------------------------------------------------------------
    def security_event(self, action: str, target_type: str, target_id: str, *, actor_id: str | None = None,
                       detail: str | None = None, dedupe: str | None = None) -> None:  # fmt: skip
        """Record a security event; never fails the request that caused it. `dedupe` names
        events of which one per minute is enough (the same key refused again and again)."""
        at = utc_now()
        unique = None
        if dedupe is not None:
            minute = datetime.now(UTC).replace(second=0, microsecond=0)
            at = format_time(minute)
            unique = deterministic_suffix(action, dedupe, at)
        event = new_activity(action, actor_id, target_type, target_id, at, unique=unique, detail=detail)
        try:
            self.store.record_security(event)
        except StorageError as exc:
            log.warning("security event not recorded: %s", exc.reason, extra={"event": action})

    def forget(self, user_id: str) -> int:
        """What account deletion removes of the account's activity (docs/analytics.md)."""
        return self.store.forget_user(user_id)

    # retention ------------------------------------------------------------------------------
    def prune(self, older_than_days: int | None = None, now: datetime | None = None) -> int:
        """Delete activity older than the retention period (ACTIVITY_RETENTION_DAYS)."""
        days = self.retention_days if older_than_days is None else older_than_days
        cutoff = format_time((now or datetime.now(UTC)) - timedelta(days=days))
        return self.store.prune_before(cutoff)

"""Abuse limits: login and register attempts and share misses counted where every instance sees
them, and a bound on concurrent password hashing. The rules are in docs/security.md, "Rate limits and abuse".

Counts live in an `AttemptStore` (the throttle database in production): one record per attempt,
summed per key over the buckets of a sliding window. The only state in process memory is an LRU
of keys already known to be blocked, so a flood from a blocked client costs no database request
and memory stays bounded.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from argon2 import PasswordHasher

from notebook.core.errors import RateLimited, ServiceUnavailable
from notebook.utils import crypto_utils

security_log = logging.getLogger("notebook.security")

BUCKET_SECONDS = 60
PURGE_BATCHES = 20


class AttemptStore(Protocol):
    def record(self, keys: Sequence[str], bucket: int) -> None: ...

    def counts(self, keys: Sequence[str], buckets: Sequence[int]) -> dict[str, dict[int, int]]: ...

    def purge_before(self, bucket: int) -> int: ...


@dataclass(frozen=True)
class Window:
    """Attempts of one key over the last `seconds`, by bucket."""

    per_bucket: dict[int, int]
    seconds: int
    now: float

    @property
    def count(self) -> int:
        return sum(self.per_bucket.values())

    def seconds_until_below(self, limit: int) -> int:
        """How long until fewer than `limit` attempts remain in the window (0: already)."""
        remaining = self.count
        if remaining < limit:
            return 0
        span = _buckets_in(self.seconds)
        for bucket in sorted(self.per_bucket):
            remaining -= self.per_bucket[bucket]
            if remaining < limit:
                # bucket B leaves the window when the current bucket reaches B + span
                return max(1, math.ceil((bucket + span) * BUCKET_SECONDS - self.now))
        return max(1, self.seconds)


def _buckets_in(seconds: int) -> int:
    return max(1, math.ceil(seconds / BUCKET_SECONDS))


class BlockedCache:
    """Keys known to be blocked, with the time they open again; least recently used evicted."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max(1, max_size)
        self._until: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._until)

    def block(self, key: str, until: float) -> None:
        with self._lock:
            self._until[key] = until
            self._until.move_to_end(key)
            while len(self._until) > self.max_size:
                self._until.popitem(last=False)

    def retry_after(self, key: str, now: float) -> int:
        """Seconds the key stays blocked; 0 when it is not (known to be) blocked."""
        with self._lock:
            until = self._until.get(key)
            if until is None:
                return 0
            if until <= now:
                del self._until[key]
                return 0
            self._until.move_to_end(key)
            return max(1, math.ceil(until - now))


class AttemptCounter:
    """Counts attempts per key in an AttemptStore; purges old ones at most once per bucket."""

    def __init__(
        self,
        store: AttemptStore,
        longest_window_seconds: int,
        cache_size: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock
        self.blocked = BlockedCache(cache_size)
        self._keep_buckets = _buckets_in(longest_window_seconds) + 1
        self._purged_bucket = -1
        self._purge_lock = threading.Lock()

    def windows(self, keys: Sequence[str], seconds: int) -> dict[str, Window]:
        """Each key's attempts over the last `seconds`, in one store request."""
        now = self.clock()
        current = int(now // BUCKET_SECONDS)
        buckets = list(range(current - _buckets_in(seconds) + 1, current + 1))
        found = self.store.counts(keys, buckets)
        return {key: Window(found.get(key, {}), seconds, now) for key in keys}

    def record(self, keys: Sequence[str]) -> None:
        now = self.clock()
        self.store.record(keys, int(now // BUCKET_SECONDS))
        self._purge(int(now // BUCKET_SECONDS))

    def refuse(self, key: str, seconds: int, reason: str, **log_fields: str) -> RateLimited:
        """Remember that `key` is blocked for `seconds` and build the error to raise."""
        self.blocked.block(key, self.clock() + seconds)
        security_log.warning("rate limited", extra={"event": reason, "retry_after": seconds, **log_fields})
        return RateLimited("too many attempts; try again later", retryAfter=seconds)

    def raise_if_blocked(self, key: str, reason: str, **log_fields: str) -> None:
        seconds = self.blocked.retry_after(key, self.clock())
        if seconds:
            security_log.info("rate limited", extra={"event": reason, "retry_after": seconds, **log_fields})
            raise RateLimited("too many attempts; try again later", retryAfter=seconds)

    def _purge(self, current: int) -> None:
        if current == self._purged_bucket or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._purged_bucket = current
            for _ in range(PURGE_BATCHES):
                if not self.store.purge_before(current - self._keep_buckets):
                    break
        finally:
            self._purge_lock.release()


def ip_subject(client_ip: str) -> str:
    """What an address is counted as: IPv4 itself, IPv6 by its /64 (one subscriber's block)."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def account_subject(email: object) -> str:
    """An account as counted: a digest of the normalized email, whether or not it exists, so the
    throttle database holds no addresses and limits behave alike for unknown emails."""
    normalized = str(email).strip().lower()
    return hashlib.sha256(normalized.encode("utf-8", "replace")).hexdigest()[:32]


@dataclass(frozen=True)
class LoginLimits:
    window_seconds: int = 900
    per_account_ip: int = 5
    per_ip: int = 30
    # above this many failures on one account from all addresses, each address gets one
    per_account: int = 50


@dataclass(frozen=True)
class RegisterLimits:
    window_seconds: int = 3600
    per_ip: int = 10


@dataclass(frozen=True)
class ShareLimits:
    window_seconds: int = 3600
    # shareNotebook calls naming an address without an account, per user
    misses_per_user: int = 20


class ShareMissLimit(Protocol):
    """What NotebookService.share asks before and after looking an address up: a bound on how
    many addresses without an account one user may learn about (docs/security.md)."""

    def before_share(self, user_id: str) -> None: ...

    def share_missed(self, user_id: str) -> None: ...


class NoShareMissLimit:
    """No bound: for services built without the throttle database (unit tests, scripts)."""

    def before_share(self, user_id: str) -> None:
        return None

    def share_missed(self, user_id: str) -> None:
        return None


class AbuseLimits:
    """The login, register and share rules of docs/security.md on top of an AttemptCounter."""

    def __init__(
        self,
        counter: AttemptCounter,
        login: LoginLimits,
        register: RegisterLimits,
        share: ShareLimits | None = None,
    ) -> None:
        self.counter = counter
        self.login = login
        self.register = register
        self.share = share or ShareLimits()

    def before_login(self, email: object, client_ip: str) -> None:
        """Raise RateLimited when this address may not try this account now."""
        ip, account = ip_subject(client_ip), account_subject(email)
        keys = (f"login-ip:{ip}", f"login-pair:{account}:{ip}", f"login-account:{account}")
        by_ip, by_pair, by_account = keys
        log_fields = {"client_ip": ip}
        for key in (by_ip, by_pair):
            self.counter.raise_if_blocked(key, "login_blocked", **log_fields)
        windows = self.counter.windows(keys, self.login.window_seconds)
        limits = self.login
        wait_ip = windows[by_ip].seconds_until_below(limits.per_ip)
        if wait_ip:
            raise self.counter.refuse(by_ip, wait_ip, "login_ip_limit", **log_fields)
        pair, account_window = windows[by_pair], windows[by_account]
        wait_pair = pair.seconds_until_below(limits.per_account_ip)
        under_attack = account_window.seconds_until_below(limits.per_account)
        if under_attack:
            # the account is attacked from many addresses: one failure per address, so the owner
            # (whose address has none) still gets in while a botnet gets one guess per address
            wait_pair = max(wait_pair, min(under_attack, pair.seconds_until_below(1)))
        if wait_pair:
            raise self.counter.refuse(by_pair, wait_pair, "login_account_limit", **log_fields)

    def login_failed(self, email: object, client_ip: str) -> None:
        ip, account = ip_subject(client_ip), account_subject(email)
        self.counter.record((f"login-ip:{ip}", f"login-pair:{account}:{ip}", f"login-account:{account}"))

    def before_register(self, client_ip: str) -> None:
        """Count this registration and raise RateLimited past the per-address limit.

        Counted first and then checked, so concurrent requests (aliases, workers, instances)
        see each other and no more than the limit get through."""
        ip = ip_subject(client_ip)
        key = f"register-ip:{ip}"
        self.counter.raise_if_blocked(key, "register_blocked", client_ip=ip)
        self.counter.record((key,))
        window = self.counter.windows((key,), self.register.window_seconds)[key]
        wait = window.seconds_until_below(self.register.per_ip + 1)
        if wait:
            raise self.counter.refuse(key, wait, "register_ip_limit", client_ip=ip)

    def before_api_key(self, client_ip: str) -> None:
        """Refuse an address blocked for wrong API keys (an in-memory check: a good key costs
        no counter read)."""
        self.counter.raise_if_blocked(f"apikey-ip:{ip_subject(client_ip)}", "api_key_blocked")

    def api_key_failed(self, client_ip: str) -> None:
        """Count a wrong or unknown API key against the address, as a failed login is counted
        (LOGIN_FAILURES_PER_IP per LOGIN_WINDOW_SECONDS); RateLimited past it."""
        ip = ip_subject(client_ip)
        key = f"apikey-ip:{ip}"
        self.counter.record((key,))
        window = self.counter.windows((key,), self.login.window_seconds)[key]
        wait = window.seconds_until_below(self.login.per_ip + 1)
        if wait:
            raise self.counter.refuse(key, wait, "api_key_ip_limit", client_ip=ip)

    def before_share(self, user_id: str) -> None:
        """Raise RateLimited while the user has no share misses left. Checked before the address
        is looked up, so once refused, known and unknown addresses get the same answer."""
        key = f"share-miss:{user_id}"
        self.counter.raise_if_blocked(key, "share_blocked")
        window = self.counter.windows((key,), self.share.window_seconds)[key]
        wait = window.seconds_until_below(self.share.misses_per_user)
        if wait:
            raise self.counter.refuse(key, wait, "share_miss_limit")

    def share_missed(self, user_id: str) -> None:
        """Count a share to an address without an account; raise RateLimited past the limit.

        Counted first and then checked, so concurrent misses see each other and no more than the
        limit are answered NOT_FOUND."""
        key = f"share-miss:{user_id}"
        self.counter.record((key,))
        window = self.counter.windows((key,), self.share.window_seconds)[key]
        wait = window.seconds_until_below(self.share.misses_per_user + 1)
        if wait:
            raise self.counter.refuse(key, wait, "share_miss_limit")


class PasswordHashing:
    """argon2 under a bounded number of concurrent hashes per process: each takes tens of MiB, so
    a flood must cost waiting, not memory. A caller that waits too long gets SERVICE_UNAVAILABLE."""

    def __init__(self, concurrency: int, wait_seconds: float, hasher: PasswordHasher | None = None) -> None:
        # argon2 parameters from the settings; hashes made with others are redone at login
        self.hasher = hasher or PasswordHasher()
        self.concurrency = max(1, concurrency)
        self.wait_seconds = wait_seconds
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.operations = 0
        self.refused = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.wait_seconds):
            with self._lock:
                self.refused += 1
            security_log.warning("password hashing busy", extra={"event": "hash_busy"})
            raise ServiceUnavailable("the server is busy; try again shortly", retryAfter=1)
        try:
            with self._lock:
                self.active += 1
                self.operations += 1
                self.peak = max(self.peak, self.active)
            yield
        finally:
            with self._lock:
                self.active -= 1
            self._slots.release()

    def hash(self, password: str) -> str:
        with self.slot():
            return crypto_utils.hash_password(password, self.hasher)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Same work for a missing account (a dummy hash is checked) as for a wrong password."""
        with self.slot():
            return crypto_utils.verify_password(password_hash, password, self.hasher)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a stored hash was made with other argon2 parameters than the current ones."""
        return crypto_utils.password_needs_rehash(password_hash, self.hasher)

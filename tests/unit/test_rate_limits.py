"""Abuse limits against an in-memory attempt store: windows, the login and register rules, the
bounded cache of blocked keys, bounded password hashing, and the client address."""

from __future__ import annotations

import threading

import pytest

from config.settings import ConfigError, load_config
from notebook.api.client_ip import client_ip
from notebook.core.errors import RateLimited, ServiceUnavailable
from notebook.services.rate_limits import (
    BUCKET_SECONDS,
    AbuseLimits,
    AttemptCounter,
    BlockedCache,
    LoginLimits,
    PasswordHashing,
    RegisterLimits,
    ShareLimits,
    Window,
    account_subject,
    ip_subject,
)
from notebook.utils import crypto_utils
from tests.unit.fakes import FakeAttemptStore

ATTACKER = "203.0.113.9"
OWNER = "198.51.100.7"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_040.0  # 20 s into a bucket (1_000_020 is a multiple of 60)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> FakeAttemptStore:
    return FakeAttemptStore()


def _limits(store: FakeAttemptStore, clock: Clock, cache_size: int = 100, **login: int) -> AbuseLimits:
    settings = {"window_seconds": 600, "per_account_ip": 3, "per_ip": 10, "per_account": 6, **login}
    return AbuseLimits(
        AttemptCounter(store, 3600, cache_size=cache_size, clock=clock),
        LoginLimits(**settings),
        RegisterLimits(window_seconds=3600, per_ip=4),
    )


def _fail(limits: AbuseLimits, email: str, ip: str, times: int = 1) -> None:
    for _ in range(times):
        limits.before_login(email, ip)
        limits.login_failed(email, ip)


class TestWindow:
    def test_count_and_time_until_below(self) -> None:
        now = 100 * BUCKET_SECONDS + 30
        window = Window({91: 2, 95: 1, 100: 1}, seconds=600, now=now)  # buckets 91..100
        assert window.count == 4
        assert window.seconds_until_below(5) == 0
        # below 4 once bucket 91 leaves the window: at the start of bucket 101
        assert window.seconds_until_below(4) == 101 * BUCKET_SECONDS - now
        # below 2 once bucket 95 has left too
        assert window.seconds_until_below(2) == 105 * BUCKET_SECONDS - now


class TestLogin:
    def test_failures_per_account_and_address(self, store: FakeAttemptStore, clock: Clock) -> None:
        limits = _limits(store, clock)
        _fail(limits, "ada@example.com", ATTACKER, 3)
        with pytest.raises(RateLimited) as refused:
            limits.before_login("ada@example.com", ATTACKER)
        # the failures leave the 600 s window with their bucket, which began 20 s ago
        assert refused.value.extensions["retryAfter"] == 600 - 20
        limits.before_login("ada@example.com", OWNER)  # the owner elsewhere
        limits.before_login("bob@example.com", ATTACKER)  # another account from the attacker
        limits.before_login("ADA@example.com ", OWNER)

    def test_failures_per_address_over_many_accounts(self, store: FakeAttemptStore, clock: Clock) -> None:
        limits = _limits(store, clock)
        for n in range(10):
            _fail(limits, f"user{n}@example.com", ATTACKER)
        with pytest.raises(RateLimited):
            limits.before_login("fresh@example.com", ATTACKER)
        limits.before_login("fresh@example.com", OWNER)

    def test_an_account_attacked_from_many_addresses_gives_each_one_try(
        self, store: FakeAttemptStore, clock: Clock
    ) -> None:
        limits = _limits(store, clock)
        botnet = [f"203.0.113.{n}" for n in range(1, 7)]
        for ip in botnet:
            _fail(limits, "ada@example.com", ip)  # 6 failures: the account is under attack
        for ip in botnet:
            with pytest.raises(RateLimited):
                limits.before_login("ada@example.com", ip)
        limits.before_login("ada@example.com", "203.0.113.50")  # a new address gets its one try
        limits.before_login("ada@example.com", OWNER)  # and so does the owner, who has none

    def test_ipv6_addresses_count_by_their_64(self, store: FakeAttemptStore, clock: Clock) -> None:
        limits = _limits(store, clock)
        for n in range(3):
            _fail(limits, "ada@example.com", f"2001:db8:1:2::{n + 1}")
        with pytest.raises(RateLimited):
            limits.before_login("ada@example.com", "2001:db8:1:2:ffff::1")
        limits.before_login("ada@example.com", "2001:db8:1:3::1")

    def test_window_slides(self, store: FakeAttemptStore, clock: Clock) -> None:
        limits = _limits(store, clock)
        _fail(limits, "ada@example.com", ATTACKER, 3)
        with pytest.raises(RateLimited) as refused:
            limits.before_login("ada@example.com", ATTACKER)
        clock.now += refused.value.extensions["retryAfter"] - 1
        with pytest.raises(RateLimited):
            limits.before_login("ada@example.com", ATTACKER)
        clock.now += 1
        limits.before_login("ada@example.com", ATTACKER)

    def test_a_blocked_client_costs_no_store_request(self, store: FakeAttemptStore, clock: Clock) -> None:
        limits = _limits(store, clock)
        _fail(limits, "ada@example.com", ATTACKER, 3)
        with pytest.raises(RateLimited):
            limits.before_login("ada@example.com", ATTACKER)
        requests = store.requests
        for _ in range(100):
            with pytest.raises(RateLimited):
                limits.before_login("ada@example.com", ATTACKER)
        assert store.requests == requests

    def test_old_attempts_are_purged(self, store: FakeAttemptStore, clock: Clock) -> None:
        limits = _limits(store, clock)
        _fail(limits, "ada@example.com", ATTACKER, 3)
        clock.now += 3600 + 2 * BUCKET_SECONDS  # past the longest window
        _fail(limits, "ada@example.com", OWNER)
        assert len(store.attempts) == 1


class TestRegister:
    def test_per_address(self, store: FakeAttemptStore, clock: Clock) -> None:
        limits = _limits(store, clock)
        for _ in range(4):
            limits.before_register(ATTACKER)
        with pytest.raises(RateLimited) as refused:
            limits.before_register(ATTACKER)
        assert refused.value.extensions["retryAfter"] > 0
        limits.before_register(OWNER)


class TestShareMisses:
    def _limits(self, store: FakeAttemptStore, clock: Clock) -> AbuseLimits:
        counter = AttemptCounter(store, 3600, cache_size=100, clock=clock)
        return AbuseLimits(
            counter, LoginLimits(), RegisterLimits(), ShareLimits(window_seconds=600, misses_per_user=3)
        )

    def test_misses_per_user_then_every_share_is_refused(self, store: FakeAttemptStore, clock: Clock) -> None:
        limits = self._limits(store, clock)
        for _ in range(3):
            limits.before_share("user:ada")
            limits.share_missed("user:ada")
        # refused before any lookup, so a known address answers like an unknown one
        with pytest.raises(RateLimited) as refused:
            limits.before_share("user:ada")
        assert 0 < refused.value.extensions["retryAfter"] <= 600
        limits.before_share("user:bob")  # counted per user
        clock.now += 600
        limits.before_share("user:ada")  # the misses left the window

    def test_concurrent_misses_past_the_limit_are_refused(
        self, store: FakeAttemptStore, clock: Clock
    ) -> None:
        limits = self._limits(store, clock)
        for _ in range(4):  # four requests passed the check before any of them was counted
            limits.before_share("user:ada")
        for _ in range(3):
            limits.share_missed("user:ada")
        with pytest.raises(RateLimited):
            limits.share_missed("user:ada")


class TestBlockedCache:
    def test_is_bounded_and_evicts_the_least_recently_used(self) -> None:
        cache = BlockedCache(max_size=3)
        for key in ("a", "b", "c"):
            cache.block(key, until=100.0)
        assert cache.retry_after("a", now=50.0) == 50  # "a" is now the most recent
        cache.block("d", until=100.0)
        assert len(cache) == 3
        assert cache.retry_after("b", now=50.0) == 0
        assert cache.retry_after("a", now=50.0) == 50
        assert cache.retry_after("a", now=100.0) == 0  # expired entries leave

    def test_a_flood_of_addresses_keeps_memory_bounded(self, store: FakeAttemptStore, clock: Clock) -> None:
        limits = _limits(store, clock, cache_size=50, per_ip=1)
        for n in range(500):
            ip = f"10.{n // 256}.{n % 256}.1"
            _fail(limits, "ada@example.com", ip)
            with pytest.raises(RateLimited):
                limits.before_login("x@example.com", ip)
        assert len(limits.counter.blocked) == 50


class TestSubjects:
    @pytest.mark.parametrize(
        ("address", "subject"),
        [
            ("203.0.113.9", "203.0.113.9"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            ("", "unknown"),
            ("not an address", "unknown"),
        ],
    )
    def test_ip_subject(self, address: str, subject: str) -> None:
        assert ip_subject(address) == subject

    def test_account_subject_normalizes_and_hides_the_email(self) -> None:
        assert account_subject(" Ada@Example.com ") == account_subject("ada@example.com")
        assert "ada" not in account_subject("ada@example.com")


class TestPasswordHashing:
    def test_waits_are_bounded(self) -> None:
        hashing = PasswordHashing(concurrency=1, wait_seconds=0)
        with hashing.slot():
            with pytest.raises(ServiceUnavailable) as busy:
                hashing.verify(None, "password")
        assert busy.value.extensions == {"retryAfter": 1}
        assert hashing.refused == 1
        assert hashing.verify(crypto_utils.hash_password("password"), "password")

    def test_concurrency_is_bounded(self) -> None:
        hashing = PasswordHashing(concurrency=2, wait_seconds=60)
        stored = crypto_utils.hash_password("password")
        results: list[bool] = []
        threads = [
            threading.Thread(target=lambda: results.append(hashing.verify(stored, "password")))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [True] * 8
        assert hashing.operations == 8
        assert 1 <= hashing.peak <= 2


class TestClientIp:
    TRUSTED = ("10.0.0.0/8", "192.0.2.1")

    def test_without_trusted_proxies_the_header_is_ignored(self) -> None:
        assert client_ip("192.0.2.1", "203.0.113.9", ()) == "192.0.2.1"

    def test_an_untrusted_peer_cannot_claim_an_address(self) -> None:
        assert client_ip("198.51.100.7", "203.0.113.9", self.TRUSTED) == "198.51.100.7"

    def test_the_nearest_untrusted_hop_is_the_client(self) -> None:
        # the client wrote a fake first entry; the proxies appended what they saw
        header = "1.2.3.4, 203.0.113.9, 10.1.1.1"
        assert client_ip("192.0.2.1", header, self.TRUSTED) == "203.0.113.9"

    def test_garbage_stops_at_the_last_proxy(self) -> None:
        assert client_ip("192.0.2.1", "203.0.113.9, nonsense", self.TRUSTED) == "192.0.2.1"
        assert client_ip("192.0.2.1", "", self.TRUSTED) == "192.0.2.1"

    def test_only_proxies_in_the_chain(self) -> None:
        assert client_ip("192.0.2.1", "10.0.0.5", self.TRUSTED) == "10.0.0.5"


class TestSettings:
    def test_trusted_proxies_and_limits_from_the_environment(self) -> None:
        config = load_config(
            {"FLASK_ENV": "development", "TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1", "REGISTER_PER_IP": "3"}
        )
        assert config.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
        assert config.register_per_ip == 3
        assert load_config({"FLASK_ENV": "development"}).trusted_proxies == ()

    def test_an_invalid_proxy_is_refused_with_one_line(self) -> None:
        with pytest.raises(ConfigError) as refused:
            load_config({"FLASK_ENV": "development", "TRUSTED_PROXIES": "10.0.0.0/8, proxy.example"})
        assert str(refused.value) == "TRUSTED_PROXIES has an invalid value"

"""The credential cache: a verified login skips the hasher, never holds the password, and
never skips the policy; uncached hash checks run a bounded number at a time."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts import login_cache, passwords, services, users
from accounts.models import User
from audit.events import Origin
from mft.errors import LoginRefused
from tests.ftps_client import login as ftps_login
from tests.hashers import FastArgon2PasswordHasher

pytestmark = pytest.mark.django_db(transaction=True)
ADMIN = Origin(actor="test-admin", protocol="test")


@dataclass
class HasherCalls:
    """How often the real (test) Argon2 hasher ran, and the most checks at once."""

    verify: int = 0
    encode: int = 0
    running: int = 0
    most_at_once: int = 0
    delay: float = 0.0  # seconds each check is held, so that overlapping checks show


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> Iterator[HasherCalls]:
    """Count the hasher's work (the real hasher still runs) on a cache emptied for the test."""
    calls = HasherCalls()
    lock = threading.Lock()
    real_verify = FastArgon2PasswordHasher.verify
    real_encode = FastArgon2PasswordHasher.encode

    def verify(self: FastArgon2PasswordHasher, password: str, encoded: str) -> bool:
        with lock:
            calls.verify += 1
            calls.running += 1
            calls.most_at_once = max(calls.most_at_once, calls.running)
        try:
            time.sleep(calls.delay)
            return real_verify(self, password, encoded)
        finally:
            with lock:
                calls.running -= 1

    def encode(self: FastArgon2PasswordHasher, password: str, salt: str) -> str:
        with lock:
            calls.encode += 1
        return real_encode(self, password, salt)

    monkeypatch.setattr(FastArgon2PasswordHasher, "verify", verify)
    monkeypatch.setattr(FastArgon2PasswordHasher, "encode", encode)
    login_cache.CACHE.reset()
    yield calls
    login_cache.CACHE.reset()


def _login(username: str, password: str) -> User:
    return services.login(services.LoginAttempt(username=username, password=password,
                                                protocol="ftps", source_ip="192.0.2.9"))


def test_a_second_login_skips_the_hasher(partner, hasher):
    _login("alice", partner.password)
    _login("alice", partner.password)
    assert hasher.verify == 1


def test_a_wrong_password_is_never_cached(partner, hasher):
    for _ in range(2):
        with pytest.raises(LoginRefused):
            _login("alice", "not-" + partner.password)
    assert hasher.verify == 2


def test_an_unknown_user_costs_one_hash_like_a_wrong_password(partner, hasher):
    with pytest.raises(LoginRefused):
        _login("nobody", partner.password)
    assert (hasher.encode, hasher.verify) == (1, 0)
    with pytest.raises(LoginRefused):
        _login("alice", "not-" + partner.password)
    assert (hasher.encode, hasher.verify) == (1, 1)


def test_a_password_change_invalidates_the_cached_login(partner, hasher):
    _login("alice", partner.password)
    new_password = "Changed-" + secrets.token_urlsafe(16)
    passwords.change_password(partner.user, new_password, origin=ADMIN)
    with pytest.raises(LoginRefused) as refused:
        _login("alice", partner.password)
    assert refused.value.reason == "wrong password"
    assert _login("alice", new_password).pk == partner.user.pk


def test_the_cache_never_holds_the_password(partner, hasher):
    _login("alice", partner.password)
    entries = dict(login_cache.CACHE._entries)
    assert len(entries) == 1
    (key, entry), = entries.items()
    plain_digests = {hashlib.sha256(partner.password.encode()).digest(),
                     hashlib.sha256(f"alice:{partner.password}".encode()).digest()}
    # The key is a 32-byte keyed digest; the entry is the user, the stored hash, an expiry.
    assert len(key) == 32 and key not in plain_digests
    assert partner.password.encode() not in key
    assert [f.name for f in fields(entry)] == ["user_id", "password_hash", "expires"]
    partner.user.refresh_from_db()
    assert entry.user_id == partner.user.pk and entry.password_hash == partner.user.password
    assert partner.password not in repr(entry)


def test_a_new_key_makes_old_entries_useless(partner, hasher):
    _login("alice", partner.password)
    login_cache.CACHE.reset()  # what a forked gateway worker does
    _login("alice", partner.password)
    assert hasher.verify == 2


@override_settings(LOGIN_CACHE_SECONDS=3)
def test_an_entry_expires_after_its_time(partner, hasher):
    _login("alice", partner.password)
    _login("alice", partner.password)  # well within the 3 s, even on a busy machine
    assert hasher.verify == 1
    time.sleep(3.1)
    _login("alice", partner.password)
    assert hasher.verify == 2


@override_settings(LOGIN_CACHE_SECONDS=0)
def test_zero_seconds_turns_the_cache_off(partner, hasher):
    _login("alice", partner.password)
    _login("alice", partner.password)
    assert hasher.verify == 2 and len(login_cache.CACHE) == 0


def test_a_disabled_user_is_refused_on_a_cached_login(partner, hasher):
    _login("alice", partner.password)
    users.set_active(partner.user, False, origin=ADMIN)
    with pytest.raises(LoginRefused) as refused:
        _login("alice", partner.password)
    assert refused.value.reason == "account disabled"
    assert hasher.verify == 1  # refused by the policy, not by a fresh hash check


def test_an_expired_account_is_refused_on_a_cached_login(partner, hasher):
    _login("alice", partner.password)
    users.update_user(partner.user, origin=ADMIN,
                      expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(LoginRefused) as refused:
        _login("alice", partner.password)
    assert refused.value.reason == "account expired" and hasher.verify == 1


def test_the_cache_keeps_only_the_newest_entries():
    cache = login_cache.CredentialCache(max_entries=3)
    user = User(pk=1, username="u", password="argon2$stored-hash")
    for n in range(5):
        cache.store("u", f"password-{n}", user, ttl=60)
    assert len(cache) == 3
    assert cache.lookup("u", "password-0") is None and cache.lookup("u", "password-1") is None
    assert cache.lookup("u", "password-4") is not None


@override_settings(LOGIN_HASH_CONCURRENCY=2)
def test_parallel_uncached_checks_run_at_most_the_configured_number_at_once(partner,
                                                                           hasher) -> None:
    hasher.delay = 0.2  # long enough that unbounded checks would all overlap
    results: list[object] = []

    def check() -> None:
        try:
            results.append(authenticate(None, username="alice", password="not-the-password"))
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert results == [None] * 8 and hasher.verify == 8
    assert hasher.most_at_once == 2


def test_a_reconnecting_ftps_client_skips_the_hasher(partner, gateway, hasher):
    for _ in range(3):
        ftp = ftps_login(gateway.explicit_port, "alice", partner.password)
        assert ftp.pwd() == "/"
        ftp.quit()
    assert hasher.verify == 1

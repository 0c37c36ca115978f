"""Shared test fixtures: a small cast of users, a live gateway, a live worker.

The cast is built through the same services the product uses. Tests that need
PostgreSQL or Redis are marked; they are skipped (with the reason) only when those are not
configured, and MFT_TEST_STRICT=1 turns any skip into a failure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings

STRICT = os.environ.get("MFT_TEST_STRICT") == "1"


def _uses(prefix: str, value: str) -> bool:
    return value.startswith(prefix)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests that need PostgreSQL or Redis when those services are not configured."""
    database = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    for item in items:
        if item.get_closest_marker("postgres") and not _uses("postgres", database):
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL"))
        if item.get_closest_marker("redis") and not _uses("redis", broker):
            item.add_marker(pytest.mark.skip(reason="needs Redis: set CELERY_BROKER_URL"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In strict mode (CI), fail the run when any test was skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if STRICT and skipped:
        if reporter:
            reporter.write_line(f"MFT_TEST_STRICT=1: {skipped} test(s) skipped; failing the run",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@dataclass
class Member:
    """A user of the cast and the password the test knows."""

    user: object
    password: str

    @property
    def username(self) -> str:
        return self.user.username  # type: ignore[attr-defined]


@dataclass
class Cast:
    admin: Member
    partner: Member
    outsider: Member


def _partner_member(name: str, partner: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Member:
    """Create a partner user allowed FTPS, with a generated password and a home in tmp."""
    from accounts import services

    made = services.create_partner_user(
        name, partner_name=partner, generate=True,
        home=str(tmp_path_factory.mktemp(f"home-{name}")))
    assert made.password is not None
    return Member(made.user, made.password)


@pytest.fixture
def cast(transactional_db: None, tmp_path_factory: pytest.TempPathFactory) -> Cast:
    """Return an admin, a partner user (FTPS) and an outsider from another partner."""
    from accounts import services

    admin_password = services.generate_password()
    admin = services.create_admin("root-admin", admin_password)
    members = [_partner_member(name, partner, tmp_path_factory)
               for name, partner in (("alice", "Acme Corp"), ("mallory", "Other Ltd"))]
    return Cast(Member(admin, admin_password), members[0], members[1])


@pytest.fixture
def partner(transactional_db: None, tmp_path_factory: pytest.TempPathFactory) -> Member:
    """Return the cast's partner user (alice) alone, for tests that need nobody else.

    Most gateway tests need only alice; creating her alone is cheaper than the whole cast.
    Use either this fixture or `cast`, not both.
    """
    return _partner_member("alice", "Acme Corp", tmp_path_factory)


@dataclass
class LiveGateway:
    explicit_port: int
    implicit_port: int
    process: object

    def port(self, implicit: bool) -> int:
        """Return the implicit or the explicit listener's port."""
        return self.implicit_port if implicit else self.explicit_port


GatewayFactory = Callable[..., LiveGateway]


@pytest.fixture
def gateway_factory(transactional_db: None) -> Iterator[GatewayFactory]:
    """Return a function that starts a real gateway with GatewayConfig overrides.

    Every gateway it started is stopped, and its thread joined, when the test ends.
    """
    from ftps_gateway.server import GatewayConfig, GatewayProcess, bind_listeners
    from mft import bootstrap

    bootstrap.ensure_certificate()
    running: list[tuple[object, threading.Thread, dict]] = []

    def start(**overrides: object) -> LiveGateway:
        values: dict[str, object] = dict(
            bind_address="127.0.0.1", explicit_port=0, implicit_port=0,
            passive_ports=(41000, 41199), workers=1, blocking_threads=4)
        values.update(overrides)
        config = GatewayConfig.from_settings(**values)
        listeners = bind_listeners(config)
        process = GatewayProcess(config, listeners)
        thread = threading.Thread(target=process.serve, name="test-gateway", daemon=True)
        thread.start()
        running.append((process, thread, listeners))
        return LiveGateway(process.ports.get("explicit", 0), process.ports.get("implicit", 0),
                           process)

    try:
        yield start
    finally:
        for process, _, _ in running:
            process.stop()  # type: ignore[attr-defined]
        for _, thread, listeners in running:
            thread.join(timeout=15)
            for sock in listeners.values():
                sock.close()
        assert not any(t.is_alive() for _, t, _ in running), "gateway thread did not stop"


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> LiveGateway:
    """Run a real gateway (explicit and implicit listeners) in a thread on loopback."""
    return gateway_factory()


@pytest.fixture
def data_dir() -> str:
    """Return the test run's data dir."""
    return str(settings.DATA_DIR)


@pytest.fixture
def start_worker(transactional_db: None, tmp_path_factory: pytest.TempPathFactory):
    """Return a function that starts a real worker (with extra env); all are stopped after."""
    from tests.live_worker import LiveWorker

    started: list[LiveWorker] = []

    def start(queues: str = "celery,outbound", pool: str = "solo", concurrency: int = 1,
              **env: str) -> LiveWorker:
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        worker = LiveWorker(log, env, queues=queues, pool=pool, concurrency=concurrency)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory):
    """Run a real clamd with the suite's own signature database (EICAR)."""
    from tests.clamd_server import find_clamd, start_clamd

    if find_clamd() is None:
        pytest.skip("clamd not installed: apt-get install clamav-daemon")
    process = start_clamd(tmp_path_factory.mktemp("clamd"), tcp=True)
    yield process
    process.stop()


@pytest.fixture
def counted_delays(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the SQLite busy handler's retries (a thread polling SQLite's lock; SQLite's
    own handler never calls our delay())."""
    from mft import sqlite_busy

    if sqlite_busy._lib is None:
        pytest.skip("not CPython 3.11-3.13 with sqlite3 symbols: no busy handler to count")
    counts: list[int] = []

    def delay(count: int) -> float:
        counts.append(count)
        return 0.001

    monkeypatch.setattr(sqlite_busy, "delay", delay)
    return counts

"""Shared test fixtures: a small cast of users, a live gateway, a live worker.

The cast is built through the same services the product uses. Tests that need
PostgreSQL or Redis are marked; they are skipped (with the reason) only when those are not
configured, and MFT_TEST_STRICT=1 turns any skip into a failure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
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
        if "postgres" in item.keywords and not _uses("postgres", database):
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL"))
        if "redis" in item.keywords and not _uses("redis", broker):
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


@pytest.fixture
def cast(transactional_db: None, tmp_path_factory: pytest.TempPathFactory) -> Cast:
    """Return an admin, a partner user (FTPS) and an outsider from another partner."""
    from accounts import services

    admin_password = services.generate_password()
    admin = services.create_admin("root-admin", admin_password)
    members = []
    for name, partner in (("alice", "Acme Corp"), ("mallory", "Other Ltd")):
        made = services.create_partner_user(
            name, partner_name=partner, generate=True,
            home=str(tmp_path_factory.mktemp(f"home-{name}")))
        assert made.password is not None
        members.append(Member(made.user, made.password))
    return Cast(Member(admin, admin_password), members[0], members[1])


@dataclass
class LiveGateway:
    explicit_port: int
    implicit_port: int
    process: object


@pytest.fixture
def gateway(transactional_db: None) -> Iterator[LiveGateway]:
    """Run a real gateway (explicit and implicit listeners) in a thread on loopback."""
    from ftps_gateway.server import GatewayConfig, GatewayProcess, bind_listeners
    from mft import bootstrap

    bootstrap.ensure_certificate()
    config = GatewayConfig.from_settings(
        bind_address="127.0.0.1", explicit_port=0, implicit_port=0,
        passive_ports=(41000, 41199), workers=1, blocking_threads=4)
    listeners = bind_listeners(config)
    process = GatewayProcess(config, listeners)
    thread = threading.Thread(target=process.serve, name="test-gateway", daemon=True)
    thread.start()
    try:
        yield LiveGateway(process.ports["explicit"], process.ports["implicit"], process)
    finally:
        process.stop()
        thread.join(timeout=15)
        for sock in listeners.values():
            sock.close()
        assert not thread.is_alive(), "gateway thread did not stop"


@pytest.fixture
def data_dir() -> str:
    """Return the test run's data dir."""
    return str(settings.DATA_DIR)

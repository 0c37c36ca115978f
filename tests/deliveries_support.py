"""Fixtures and helpers shared by the delivery tests.

`broker` replaces the Celery broker with an in-test queue: every task the code sends is kept
and `drain()` runs them in order, the way one worker would, so on-arrival chains (upload →
pipeline → ready → routing → push) run deterministically in the test's process. Tests that
need a real worker use `start_worker` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.conf import settings
from django.utils import timezone

from audit.events import Origin
from mft.celery import app
from tests.remote_ftps import PASSWORD, USERNAME, Behaviour, Pem, StockServer, make_certificate

ORIGIN = Origin(actor="test", protocol="test")


class InlineBroker:
    """Keep sent tasks; run them in order on drain()."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        self.sent.append((name, list(args or [])))

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]

    def drain(self, limit: int = 200) -> list[str]:
        """Run every queued task (and those they queue); return their names in order."""
        import deliveries.tasks  # noqa: F401 - registers the tasks with the app
        import transfers.tasks  # noqa: F401

        ran: list[str] = []
        while self.sent:
            name, args = self.sent.pop(0)
            app.tasks[name](*args)
            ran.append(name)
            assert len(ran) < limit, f"tasks keep coming: {ran[-10:]}"
        return ran


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> InlineBroker:
    """Replace the broker with an in-test queue."""
    inline = InlineBroker()
    monkeypatch.setattr(app, "send_task", inline.send_task)
    return inline


@pytest.fixture
def fast_retries(settings: Any) -> Any:
    """Retry after about a second, not minutes."""
    settings.DELIVERY_RETRY_BASE = 1
    settings.DELIVERY_RETRY_MAX = 1
    return settings


@pytest.fixture
def stock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Return a function starting stock pyftpdlib TLS servers; all are stopped after."""
    servers: list[StockServer] = []

    def start(behaviour: Behaviour | None = None, certificate: Pem | None = None
              ) -> StockServer:
        root = tmp_path_factory.mktemp("partner-root")
        certs = tmp_path_factory.mktemp("partner-certs")
        server = StockServer(root, certificate or make_certificate(certs, "partner-ftps"),
                             behaviour or Behaviour())
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@dataclass
class Tenant:
    """The partner's account on our own gateway, used as the remote server."""

    user: Any
    password: str


@pytest.fixture
def bank(cast: Any, tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    """Create the receiving partner's account on the gateway (a second tenant)."""
    from accounts import services

    made = services.create_partner_user("bank-inbox", partner_name="Bank Ltd", generate=True,
                                        home=str(tmp_path_factory.mktemp("home-bank")))
    assert made.password is not None
    return Tenant(made.user, made.password)


def gateway_fingerprint() -> str:
    """Return the SHA-256 of the test gateway's certificate."""
    cert = x509.load_pem_x509_certificate(Path(settings.TLS_CERT_FILE).read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex()


def gateway_endpoint(gateway: Any, tenant: Tenant, **overrides: Any) -> Any:
    """Create an endpoint pointing at the gateway's explicit listener as the tenant."""
    from deliveries import services

    values: dict[str, Any] = dict(
        partner=tenant.user.partner, name="bank-gateway", host="127.0.0.1",
        port=gateway.explicit_port, username=tenant.user.username, password=tenant.password,
        pinned_sha256=gateway_fingerprint(), timeout_seconds=15)
    values.update(overrides)
    return services.create_endpoint(**values)


def stock_endpoint(server: StockServer, partner: Any, **overrides: Any) -> Any:
    """Create an endpoint pointing at a stock server, pinned to its certificate."""
    from deliveries import services

    values: dict[str, Any] = dict(
        partner=partner, name=f"stock-{server.port}", host="127.0.0.1", port=server.port,
        username=USERNAME, password=PASSWORD, pinned_sha256=server.certificate.sha256,
        timeout_seconds=10)
    values.update(overrides)
    return services.create_endpoint(**values)


def partner_named(name: str) -> Any:
    """Return (creating) a partner organisation."""
    from accounts.models import Partner

    return Partner.objects.get_or_create(name=name)[0]


def store(user: Any, path: str, data: bytes, *, ready: bool = True) -> Any:
    """Upload bytes through the product's upload service; mark the file ready if asked."""
    from transfers import pipeline_state, uploads
    from transfers.models import FileState

    upload = uploads.begin_upload(user, path, origin=ORIGIN, make_parents=True)
    upload.write(data)
    stored = upload.finish()
    if ready:
        # Skip the scan: the pipeline run already queued finds no step left to do.
        stored.steps.all().delete()
        pipeline_state.set_state(stored, FileState.READY, ready_at=timezone.now())
    return stored


def arrival_route(endpoint: Any, source_user: Any, **fields: Any) -> Any:
    """Create an on-arrival route from a user's home to the endpoint."""
    from deliveries import services

    values: dict[str, Any] = dict(name=f"to-{endpoint.name}", endpoint=endpoint,
                                  source_user=source_user)
    values.update(fields)
    return services.create_route(**values)

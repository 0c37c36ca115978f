"""First-start setup shared by `make run` and the container: certificate and first admin."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from accounts import services
from accounts.models import User
from mft import server_certificate as certificate


@dataclass(frozen=True)
class BootstrapReport:
    certificate_created: bool
    admin_created: bool
    admin_password: str | None  # only when generated, to print once


def ensure_certificate() -> bool:
    """Create a self-signed gateway certificate unless one exists."""
    return certificate.ensure_self_signed(
        settings.TLS_CERT_FILE, settings.TLS_KEY_FILE,
        names=certificate.default_names(settings.BIND_ADDRESS))


def ensure_admin() -> tuple[bool, str | None]:
    """Create the first admin unless any admin exists; return (created, generated password)."""
    if User.objects.filter(role=User.Role.ADMIN).exists():
        return False, None
    generated = settings.ADMIN_PASSWORD is None
    password = settings.ADMIN_PASSWORD or services.generate_password()
    # A printed password was seen on a console: the admin chooses their own at first sign-in.
    services.create_admin(settings.ADMIN_USER, password, must_change=generated)
    return True, password if generated else None


def run() -> BootstrapReport:
    """Run every first-start step; each is a no-op when already done."""
    cert = ensure_certificate()
    created, password = ensure_admin()
    return BootstrapReport(cert, created, password)

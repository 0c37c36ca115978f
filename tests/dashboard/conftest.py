"""Dashboard fixtures: signed-in clients per role, and files stopped for review.

Users come from the shared cast (the admin) or the user service (operator, auditor);
sessions are made as the login flow leaves them: signed in, and verified by a TOTP
device for the roles that need one. The login flow itself is tested end to end.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import mfa, users
from accounts.models import User
from audit.events import SYSTEM, Origin
from transfers import pipeline, uploads
from transfers.models import FileState, StoredFile

SignedIn = Callable[..., Client]
STAFF_PASSWORD = "Staff-" + secrets.token_urlsafe(16)


def staff_user(cast, role: str) -> User:  # type: ignore[no-untyped-def]
    """Return the cast's admin, or a new operator or auditor made by the user service."""
    if role == User.Role.ADMIN:
        return cast.admin.user
    return users.create_user(f"{role}-one", role=role, password=STAFF_PASSWORD,
                             origin=SYSTEM).user


def verified_session(client: Client, user: User) -> None:
    """Sign the client in as the user, verified by a TOTP device when the role needs one."""
    client.force_login(user)
    if mfa.required(user):
        device = TOTPDevice.objects.create(user=user, name="test", confirmed=True)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()


@pytest.fixture
def signed_in(cast) -> SignedIn:  # type: ignore[no-untyped-def]
    """Return a function giving a client signed in with a role (admin, operator, auditor)."""

    def make(role: str = User.Role.ADMIN) -> Client:
        client = Client()
        verified_session(client, staff_user(cast, role))
        return client

    return make


@pytest.fixture
def admin_client(signed_in: SignedIn) -> Client:
    return signed_in(User.Role.ADMIN)


def store(user: User, path: str, data: bytes = b"payload") -> StoredFile:
    """Upload a file as the user through the upload service."""
    origin = Origin(source_ip="192.0.2.10", protocol="ftps").as_user(user)
    upload = uploads.begin_upload(user, path, origin=origin)
    upload.write(data)
    return upload.finish()


@pytest.fixture
def held_file(cast, settings) -> StoredFile:  # type: ignore[no-untyped-def]
    """Return a partner's file held by the pipeline (larger than the scanner accepts)."""
    settings.SCAN_MAX_BYTES = 3
    settings.CLAMD_ADDRESS = "tcp://127.0.0.1:9"
    stored = store(cast.partner.user, "/held.csv", b"too big to scan")
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.HELD
    return stored


@pytest.fixture
def quarantined_file(cast) -> StoredFile:  # type: ignore[no-untyped-def]
    """Return a partner's file marked infected and moved aside, as the scanner leaves it."""
    stored = store(cast.partner.user, "/eicar.txt")
    quarantine = Path(stored.storage_path).with_name("quarantined.bin")
    Path(stored.storage_path).rename(quarantine)
    StoredFile.objects.filter(pk=stored.pk).update(
        state=FileState.INFECTED, storage_path=str(quarantine), scan_signature="Eicar-Test")
    stored.refresh_from_db()
    return stored

"""End-to-end: a real client logs in over explicit and implicit FTPS and uploads a file."""

from __future__ import annotations

import hashlib
import io

import pytest

from tests.ftps_client import login
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_upload_is_recorded_with_its_sha256(cast, gateway, implicit):
    port = gateway.implicit_port if implicit else gateway.explicit_port
    data = b"invoice;42\n" * 5000
    ftp = login(port, cast.partner.username, cast.partner.password, implicit=implicit)
    try:
        reply = ftp.storbinary("STOR invoice.csv", io.BytesIO(data))
    finally:
        ftp.quit()
    digest = hashlib.sha256(data).hexdigest()
    assert reply.startswith("226") and digest in reply
    stored = StoredFile.objects.get(owner=cast.partner.user, path="/invoice.csv")
    assert (stored.size, stored.sha256, stored.state) == (len(data), digest, FileState.RECEIVED)

"""An upload over HTTPS tells the same audit story as the same upload over FTPS.

Both edges call the same upload service and the same pipeline, so once a real worker with
a real clamd has made each file `ready`, the file's audit events — actions, outcomes and
the facts recorded (size, SHA-256, path) — must match, differing only in the protocol.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from django.test import Client

from audit.models import AuditEvent
from tests import ftps_client
from tests.api_client import fresh_throttles, token_for  # noqa: F401
from tests.waiting import until
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)
BODY = b"invoice,amount\n1042,99.10\n1043,12.00\n"


def _ready(path: str) -> StoredFile:
    """Wait until the worker has made the file at `path` ready."""
    def probe() -> StoredFile | None:
        stored = StoredFile.objects.filter(path=path).first()
        return stored if stored and stored.state == FileState.READY else None
    return until(probe, timeout=60, what=f"{path} ready")


def _story(stored: StoredFile) -> list[tuple[str, str]]:
    """Return the file's audit events as (action, outcome), in order."""
    events = AuditEvent.objects.filter(object_type="storedfile", object_id=str(stored.pk))
    return [(e.action, e.outcome) for e in events.order_by("id")]


def _received(stored: StoredFile) -> AuditEvent:
    """Return the event recording the upload itself (the one carrying its SHA-256)."""
    events = AuditEvent.objects.filter(object_type="storedfile", object_id=str(stored.pk))
    return next(e for e in events.order_by("id") if e.details.get("sha256"))


def test_https_upload_writes_the_same_audit_events_as_ftps(partner, gateway, clamd,
                                                            start_worker):
    start_worker(MFT_CLAMD=clamd.address)
    ftp = ftps_client.login(gateway.explicit_port, partner.username, partner.password)
    ftp.mkd("/ftps")
    ftp.storbinary("STOR /ftps/batch.csv", io.BytesIO(BODY))
    ftp.quit()
    response = Client().post(
        "/api/v1/files/?path=/https/batch.csv", data=BODY,
        content_type="application/octet-stream",
        HTTP_AUTHORIZATION=f"Bearer {token_for(partner.user, 'transfer')}")
    assert response.status_code == 201, response.content

    over_ftps, over_https = _ready("/ftps/batch.csv"), _ready("/https/batch.csv")

    assert over_ftps.sha256 == over_https.sha256 == hashlib.sha256(BODY).hexdigest()
    assert (over_ftps.protocol, over_https.protocol) == ("ftps", "https")
    story = _story(over_ftps)
    assert story[0] == ("upload", "success"), story
    assert {"pipeline.scan", "pipeline.finish"} <= {action for action, _ in story}, story
    assert _story(over_https) == story
    ftps_event, https_event = _received(over_ftps), _received(over_https)
    assert (ftps_event.protocol, https_event.protocol) == ("ftps", "https")
    assert ftps_event.actor == https_event.actor == partner.username
    for fact in ("sha256", "size"):
        assert ftps_event.details.get(fact) == https_event.details.get(fact), fact

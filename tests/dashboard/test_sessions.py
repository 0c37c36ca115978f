"""The sessions page, its disconnect form, and the overview's live sessions panel.

Sessions are published through the same service a gateway process uses, under a live
gateway heartbeat; the gateway end to end is tested in tests/test_gateway_sessions.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from accounts.models import User
from audit.models import AuditEvent
from mft import heartbeat
from mft.models import ProcessHeartbeat
from transfers import sessions
from transfers.models import GatewaySession

pytestmark = pytest.mark.django_db(transaction=True)

GATEWAY = sessions.GatewayIdentity("gateway@dashboard-test:7", "dashboard-test", 7)


def _publish(user: Any, *, transfer: sessions.TransferState | None = None,
             session_id: str = "a1b2c3d4e5f6") -> str:
    """Publish one live session of the user, as a gateway process would."""
    heartbeat.beat(ProcessHeartbeat.Kind.GATEWAY, GATEWAY.name)
    now = datetime.now(UTC)
    state = sessions.SessionState(
        session_id=session_id, user_id=user.pk, username=user.username,
        partner_id=user.partner_id, remote_address="198.51.100.20", remote_port=50123,
        implicit=True, tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384",
        started_at=now, last_command_at=now, transfer=transfer)
    sessions.publish(GATEWAY, [state], [])
    return session_id


def _upload(done: int, total: int | None = None) -> sessions.TransferState:
    return sessions.TransferState("upload", "/in/orders.csv", done, total, datetime.now(UTC))


def test_sessions_page_lists_live_sessions_with_their_transfer(cast, admin_client):
    _publish(cast.partner.user, transfer=_upload(3 * 1024 * 1024))
    page = admin_client.get("/sessions/").content.decode()
    assert "alice" in page and "Acme Corp" in page and "198.51.100.20:50123" in page
    assert "/in/orders.csv" in page and "3.0\xa0MB so far" in page
    assert "TLSv1.3" in page and "Disconnect" in page


def test_sessions_page_shows_progress_against_a_known_size(cast, admin_client):
    transfer = sessions.TransferState("download", "/out/big.bin", 250, 1000,
                                      datetime.now(UTC))
    _publish(cast.partner.user, transfer=transfer)
    page = admin_client.get("/sessions/").content.decode()
    assert '<progress value="250" max="1000">' in page


def test_htmx_refresh_returns_the_table_alone(cast, admin_client):
    _publish(cast.partner.user)
    fragment = admin_client.get("/sessions/", HTTP_HX_REQUEST="true").content.decode()
    assert "alice" in fragment and "<h1>" not in fragment


def test_sessions_of_a_dead_gateway_are_not_shown(cast, admin_client):
    _publish(cast.partner.user)
    ProcessHeartbeat.objects.filter(name=GATEWAY.name).update(
        last_seen=datetime(2020, 1, 1, tzinfo=UTC))
    assert "alice" not in admin_client.get("/sessions/").content.decode()


def test_operator_disconnects_a_session_with_a_reason(cast, signed_in):
    session_id = _publish(cast.partner.user)
    operator = signed_in(User.Role.OPERATOR)
    url = f"/sessions/{session_id}/disconnect/"
    assert "Reason" in operator.get(url).content.decode()
    response = operator.post(url, {"reason": "runaway script"})
    assert response.status_code == 302
    row = GatewaySession.objects.get(session_id=session_id)
    assert row.disconnect_requested_by == "operator-one"
    assert row.disconnect_reason == "runaway script"
    event = AuditEvent.objects.get(action="session.disconnect_request")
    assert event.actor == "operator-one" and event.protocol == "web"
    assert "disconnecting (operator-one)" in operator.get("/sessions/").content.decode()


def test_disconnect_without_a_reason_is_refused(cast, admin_client):
    session_id = _publish(cast.partner.user)
    response = admin_client.post(f"/sessions/{session_id}/disconnect/", {"reason": " "})
    assert response.status_code == 400
    assert GatewaySession.objects.get(session_id=session_id).disconnect_requested_at is None


def test_auditor_sees_sessions_but_cannot_disconnect(cast, signed_in):
    session_id = _publish(cast.partner.user)
    auditor = signed_in(User.Role.AUDITOR)
    page = auditor.get("/sessions/").content.decode()
    assert "alice" in page and "Disconnect" not in page
    url = f"/sessions/{session_id}/disconnect/"
    assert auditor.post(url, {"reason": "curious"}).status_code == 403
    assert GatewaySession.objects.get(session_id=session_id).disconnect_requested_at is None


def test_overview_shows_live_sessions_and_transfers_in_progress(cast, admin_client):
    _publish(cast.partner.user, transfer=_upload(512, 2048))
    _publish(cast.admin.user, session_id="0000000000ff")
    page = admin_client.get("/").content.decode()
    assert "2</strong> sessions logged in" in page
    assert "1</strong> transfer in progress" in page
    assert '<progress value="512" max="2048">' in page
    panel = admin_client.get("/overview/sessions/").content.decode()
    assert "/in/orders.csv" in panel


@pytest.mark.parametrize("role", [User.Role.ADMIN, User.Role.OPERATOR, User.Role.AUDITOR])
def test_every_staff_role_opens_the_sessions_page_and_sees_it_in_the_menu(signed_in, role):
    page = signed_in(role).get("/sessions/")
    assert page.status_code == 200
    assert 'href="/sessions/" aria-current="page"' in page.content.decode()


def test_partner_user_cannot_open_the_sessions_pages(cast):
    from django.test import Client

    session_id = _publish(cast.partner.user)
    for url in ("/sessions/", "/overview/sessions/", f"/sessions/{session_id}/disconnect/"):
        client = Client()  # the refusal signs the partner out: a fresh sign-in per page
        client.force_login(cast.partner.user)
        assert client.get(url).status_code == 403, url

"""The dashboard's compliance posture page: findings for staff, acceptance for admins."""

from __future__ import annotations

import pytest

from accounts.models import User
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_page_lists_findings_with_their_controls(signed_in, settings):
    settings.SCAN_MODE = "off"
    page = signed_in(User.Role.AUDITOR).get("/posture/")
    assert page.status_code == 200
    assert b'id="finding-scanoff"' in page.content and b"PCI DSS 5.2.1" in page.content
    assert b"Accept this finding" not in page.content  # auditors read, never accept


def test_an_admin_accepts_a_finding_with_a_justification(signed_in, settings):
    settings.SCAN_MODE = "off"
    client = signed_in(User.Role.ADMIN)
    response = client.post("/posture/scan.off/accept/",
                           {"justification": "isolated lab, no partner data"})
    assert response.status_code == 302
    page = client.get("/posture/")
    assert b"isolated lab, no partner data" in page.content
    assert AuditEvent.objects.filter(action="posture.accept").count() == 1


def test_a_short_justification_is_refused(signed_in, settings):
    settings.SCAN_MODE = "off"
    client = signed_in(User.Role.ADMIN)
    client.post("/posture/scan.off/accept/", {"justification": "ok"})
    assert not AuditEvent.objects.filter(action="posture.accept").exists()


def test_an_operator_cannot_accept(signed_in, settings):
    settings.SCAN_MODE = "off"
    response = signed_in(User.Role.OPERATOR).post(
        "/posture/scan.off/accept/", {"justification": "operators may not accept"})
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(action="posture.accept").exists()

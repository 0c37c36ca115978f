"""Who may open which dashboard page and take which action, role by role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Ban, User
from audit.models import AuditEvent
from dashboard.access import CAPABILITIES, can
from transfers.models import FileState

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN, OPERATOR, AUDITOR = User.Role.ADMIN, User.Role.OPERATOR, User.Role.AUDITOR

# page → roles that may open it
PAGES = {
    "/": {ADMIN, OPERATOR, AUDITOR},
    "/overview/health/": {ADMIN, OPERATOR, AUDITOR},
    "/files/": {ADMIN, OPERATOR, AUDITOR},
    "/partners/": {ADMIN, OPERATOR},
    "/partners/new/": {ADMIN},
    "/audit/": {ADMIN, AUDITOR},
    "/bans/": {ADMIN},
    "/account/": {ADMIN, OPERATOR, AUDITOR},
}


def test_admins_hold_every_capability_the_other_roles_have():
    others = CAPABILITIES[OPERATOR] | CAPABILITIES[AUDITOR]
    assert others <= CAPABILITIES[ADMIN]


def test_partner_and_api_roles_hold_no_capability(cast):
    assert not can(cast.partner.user, "view_overview")
    assert not can(User(role=User.Role.API), "view_files")


@pytest.mark.parametrize("role", [ADMIN, OPERATOR, AUDITOR])
def test_each_role_opens_exactly_its_pages(signed_in, role):
    client = signed_in(role)
    wrong = {page: status for page in PAGES
             if (status := client.get(page).status_code) != (200 if role in PAGES[page] else 403)}
    assert not wrong, f"{role} got unexpected statuses: {wrong}"


def test_partner_user_cannot_enter_any_page(cast):
    wrong = {}
    for page in PAGES:
        client = Client()
        client.force_login(cast.partner.user)
        if (status := client.get(page).status_code) != 403:
            wrong[page] = status
    assert not wrong, f"a partner user got in: {wrong}"


def test_auditor_cannot_release_a_held_file(signed_in, held_file):
    response = signed_in(AUDITOR).post(f"/files/{held_file.pk}/review/",
                                       {"decision": "release", "reason": "looks fine"})
    assert response.status_code == 403
    held_file.refresh_from_db()
    assert held_file.state == FileState.HELD
    assert not AuditEvent.objects.filter(action="review.release").exists()


def test_auditor_sees_no_review_form_on_a_held_file(signed_in, held_file):
    page = signed_in(AUDITOR).get(f"/files/{held_file.pk}/")
    assert page.status_code == 200 and b'name="decision"' not in page.content


def test_auditor_cannot_create_a_partner(signed_in):
    response = signed_in(AUDITOR).post("/partners/new/", {"name": "Sneaky", "username": "sn"})
    assert response.status_code == 403


def test_operator_cannot_create_a_partner(signed_in):
    response = signed_in(OPERATOR).post("/partners/new/", {"name": "Sneaky", "username": "sn"})
    assert response.status_code == 403


def test_operator_cannot_lift_a_ban(signed_in):
    ban = Ban.objects.create(address="192.0.2.9", reason="test",
                             expires_at=timezone.now() + timedelta(hours=1))
    assert signed_in(OPERATOR).post(f"/bans/{ban.pk}/lift/").status_code == 403
    ban.refresh_from_db()
    assert ban.lifted_at is None


def test_operator_may_release_a_held_file(signed_in, held_file):
    response = signed_in(OPERATOR).post(f"/files/{held_file.pk}/review/",
                                        {"decision": "release", "reason": "known batch"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="review.release", actor="operator-one").exists()


def test_auditor_may_verify_the_audit_chain(signed_in):
    assert signed_in(AUDITOR).post("/audit/verify/").status_code == 200


def test_menu_shows_only_the_pages_of_the_role(signed_in):
    page = signed_in(AUDITOR).get("/").content
    assert b'href="/audit/"' in page and b'href="/files/"' in page
    assert b'href="/bans/"' not in page and b'href="/partners/"' not in page

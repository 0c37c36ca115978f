"""Who may open the user, credential, delivery, endpoint, token and settings pages, and who
may change anything there: admins everything, operators re-send, auditors only read."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN, OPERATOR, AUDITOR = User.Role.ADMIN, User.Role.OPERATOR, User.Role.AUDITOR

# page → roles that may open it
PAGES = {
    "/users/": {ADMIN, OPERATOR, AUDITOR},
    "/users/new/": {ADMIN},
    "/credentials/": {ADMIN, OPERATOR, AUDITOR},
    "/endpoints/": {ADMIN, OPERATOR, AUDITOR},
    "/endpoints/endpoint/new/": {ADMIN},
    "/endpoints/route/new/": {ADMIN},
    "/endpoints/pull/new/": {ADMIN},
    "/deliveries/": {ADMIN, OPERATOR, AUDITOR},
    "/deliveries/export.csv": {ADMIN, OPERATOR, AUDITOR},
    "/tokens/": {ADMIN, AUDITOR},
    "/settings/": {ADMIN, OPERATOR, AUDITOR},
}

# changes an auditor must not make (the target need not exist: refusal comes first)
CHANGES = ["/users/new/", "/users/1/settings/", "/users/1/active/", "/users/1/reset-password/",
           "/credentials/certificates/", "/credentials/certificates/1/remove/",
           "/credentials/pgp-keys/", "/credentials/pgp-keys/1/remove/",
           "/endpoints/endpoint/new/", "/endpoints/endpoint/1/", "/endpoints/endpoint/1/remove/",
           "/endpoints/endpoint/1/test/", "/endpoints/route/new/", "/endpoints/pull/1/remove/",
           "/deliveries/1/resend/", "/tokens/new/", "/tokens/1/revoke/"]


@pytest.mark.parametrize("role", [ADMIN, OPERATOR, AUDITOR])
def test_each_role_opens_exactly_its_pages(signed_in, role):
    client = signed_in(role)
    wrong = {page: status for page in PAGES
             if (status := client.get(page).status_code) != (200 if role in PAGES[page] else 403)}
    assert not wrong, f"{role} got unexpected statuses: {wrong}"


def test_partner_user_cannot_enter_any_of_the_pages(cast):
    wrong = {}
    for page in PAGES:
        client = Client()
        client.force_login(cast.partner.user)
        if (status := client.get(page).status_code) != 403:
            wrong[page] = status
    assert not wrong, f"a partner user got in: {wrong}"


def test_auditor_changes_nothing(signed_in):
    client = signed_in(AUDITOR)
    wrong = {url: status for url in CHANGES if (status := client.post(url).status_code) != 403}
    assert not wrong, f"an auditor's change was not refused: {wrong}"


def test_operator_changes_nothing_but_may_resend(signed_in):
    client = signed_in(OPERATOR)
    wrong = {url: status for url in CHANGES if url != "/deliveries/1/resend/"
             and (status := client.post(url).status_code) != 403}
    assert not wrong, f"an operator's change was not refused: {wrong}"
    assert client.post("/deliveries/1/resend/").status_code == 404  # let in; no such delivery


@pytest.mark.parametrize("page", ["/users/", "/credentials/", "/endpoints/", "/tokens/"])
def test_auditor_sees_no_change_buttons(signed_in, page):
    body = signed_in(AUDITOR).get(page).content.decode()
    assert 'method="post"' not in body.split('id="main"', 1)[1]  # the header has sign-out


def test_menu_holds_the_new_pages_per_role(signed_in):
    auditor = signed_in(AUDITOR).get("/").content.decode()
    operator = signed_in(OPERATOR).get("/").content.decode()
    for href in ('href="/users/"', 'href="/credentials/"', 'href="/deliveries/"',
                 'href="/endpoints/"', 'href="/settings/"'):
        assert href in auditor and href in operator
    assert 'href="/tokens/"' in auditor and 'href="/tokens/"' not in operator

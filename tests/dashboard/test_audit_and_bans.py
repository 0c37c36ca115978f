"""The audit log page (filters, search, paging, export, chain check) and the bans page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Ban, LoginFailure
from audit import chain
from audit.models import AuditEvent, ChainHead

pytestmark = pytest.mark.django_db(transaction=True)


def _event(actor: str, action: str = "test", outcome: str = "info", **extra: Any) -> AuditEvent:
    return chain.append(actor=actor, action=action, outcome=outcome, **extra)


def _ban(address: str = "192.0.2.7") -> Ban:
    return Ban.objects.create(address=address, reason="5 failed logins in 600 s",
                              expires_at=timezone.now() + timedelta(hours=1))


def test_audit_log_lists_the_newest_events(admin_client):
    _event("someone", "partner.update")
    assert b"partner.update" in admin_client.get("/audit/").content


def test_audit_log_filters_by_actor(admin_client):
    _event("carol", "x.one")
    _event("dave", "x.two")
    page = admin_client.get("/audit/?actor=carol").content
    assert b"x.one" in page and b"x.two" not in page


def test_audit_log_filters_by_outcome(admin_client):
    _event("carol", "x.good", outcome="success")
    _event("carol", "x.bad", outcome="failure")
    page = admin_client.get("/audit/?outcome=failure").content
    assert b"x.bad" in page and b"x.good" not in page


def test_audit_log_action_ending_in_a_dot_is_a_prefix(admin_client):
    _event("carol", "partner.create")
    _event("carol", "login")
    page = admin_client.get("/audit/?action=partner.").content
    assert b"partner.create" in page and b"<td>login</td>" not in page


def test_audit_log_searches_objects(admin_client):
    _event("carol", "upload", object_repr="alice:/needle.csv")
    _event("carol", "upload", object_repr="alice:/hay.csv")
    page = admin_client.get("/audit/?q=needle").content
    assert b"needle.csv" in page and b"hay.csv" not in page


def test_audit_log_pages_by_id_without_overlap(admin_client):
    for i in range(55):
        _event("bulk", f"bulk.{i:02d}")
    first = admin_client.get("/audit/?actor=bulk")
    older = first.context["older"]
    assert older is not None
    second = admin_client.get(f"/audit/?actor=bulk&before={older}").content.decode()
    assert "bulk.00" in second and "bulk.54" not in second


def test_audit_export_streams_csv_and_is_audited(admin_client):
    _event("carol", "x.one")
    response = admin_client.get("/audit/export.csv?actor=carol")
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("id,created_at") and "x.one" in body
    export = AuditEvent.objects.get(action="audit.export")
    assert export.actor == "root-admin" and export.details["filters"] == {"actor": "carol"}


def test_verify_chain_reports_an_intact_chain(admin_client):
    _event("carol")
    fragment = admin_client.post("/audit/verify/", HTTP_HX_REQUEST="true").content
    assert b"Chain intact" in fragment and b"<html" not in fragment


def test_verify_chain_names_where_it_breaks(admin_client):
    _event("carol")
    ChainHead.objects.filter(pk=1).update(last_id=10**9)
    page = admin_client.post("/audit/verify/").content
    assert b"Chain broken" in page and b"newest events" in page


def test_bans_page_lists_bans_in_force(admin_client):
    _ban("192.0.2.7")
    assert b"192.0.2.7" in admin_client.get("/bans/").content


def test_lifting_a_ban_goes_through_the_service_and_is_audited(admin_client):
    ban = _ban()
    LoginFailure.objects.create(address=ban.address, username="x", protocol="ftps")
    assert admin_client.post(f"/bans/{ban.pk}/lift/")["Location"] == "/bans/"
    ban.refresh_from_db()
    assert ban.lifted_by == "root-admin" and not LoginFailure.objects.exists()
    assert AuditEvent.objects.filter(action="ban.lift", actor="root-admin").exists()


def test_lifting_a_ban_with_htmx_returns_the_new_row(admin_client):
    ban = _ban()
    row = admin_client.post(f"/bans/{ban.pk}/lift/", HTTP_HX_REQUEST="true").content
    assert b"lifted by root-admin" in row and b"<html" not in row


def test_lifting_a_lifted_ban_says_so(admin_client):
    ban = _ban()
    admin_client.post(f"/bans/{ban.pk}/lift/")
    page = admin_client.post(f"/bans/{ban.pk}/lift/", follow=True).content
    assert b"already lifted" in page


def test_lifting_needs_a_post(admin_client):
    assert admin_client.get(f"/bans/{_ban().pk}/lift/").status_code == 405

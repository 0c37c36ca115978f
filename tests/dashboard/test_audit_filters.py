"""The audit log's partner and time filters, on the page and in its CSV export."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit import chain

pytestmark = pytest.mark.django_db(transaction=True)


def test_partner_filter_keeps_its_users_actions_and_changes_to_it(admin_client, cast):
    acme = cast.partner.user.partner
    chain.append(actor="alice", action="x.by-alice", outcome="success")
    chain.append(actor="mallory", action="x.by-mallory", outcome="success")
    chain.append(actor="root-admin", action="x.about-acme", outcome="success",
                 object_type="partner", object_id=str(acme.pk))
    page = admin_client.get(f"/audit/?partner={acme.pk}").content.decode()
    assert "x.by-alice" in page and "x.about-acme" in page and "x.by-mallory" not in page


def test_partner_filter_applies_to_the_export(admin_client, cast):
    chain.append(actor="alice", action="x.by-alice", outcome="success")
    chain.append(actor="mallory", action="x.by-mallory", outcome="success")
    partner = cast.partner.user.partner_id
    csv = b"".join(admin_client.get(f"/audit/export.csv?partner={partner}").streaming_content)
    assert b"x.by-alice" in csv and b"x.by-mallory" not in csv


def test_time_filter_keeps_only_the_days_asked_for(admin_client):
    chain.append(actor="carol", action="x.today", outcome="success")
    today = timezone.localdate()
    yesterday = today - timedelta(days=1)
    assert b"x.today" in admin_client.get(f"/audit/?date_from={today}").content
    assert b"x.today" not in admin_client.get(f"/audit/?date_to={yesterday}").content

"""The overview: counts for the last day, health, expiring credentials, the volume chart."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import expiring
from accounts.models import LoginFailure, PgpKey
from tests import certs
from tests.dashboard.conftest import store
from transfers import stats
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


def _stat(page: bytes, label: str) -> int:
    """Return the number shown on the overview's card with the label."""
    match = re.search(rb'class="value">(\d+)</span><span class="label">' + label.encode(), page)
    assert match, f"no card {label!r}"
    return int(match.group(1))


def test_counts_cover_uploads_of_the_last_day_only(cast):
    store(cast.partner.user, "/today.csv", b"12345")
    old = store(cast.partner.user, "/old.csv")
    StoredFile.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    counts = stats.counts(24)
    assert (counts.uploads, counts.upload_bytes) == (1, 5)


def test_counts_show_files_waiting_for_review(held_file, quarantined_file):
    counts = stats.counts(24)
    assert (counts.held, counts.quarantined) == (1, 1)


def test_counts_include_failed_logins_of_the_last_day(cast):
    LoginFailure.objects.create(address="192.0.2.1", username="x", protocol="ftps")
    assert stats.counts(24).failed_logins == 1


def test_stuck_files_are_counted(cast, settings):
    stored = store(cast.partner.user, "/stuck.csv")
    StoredFile.objects.filter(pk=stored.pk).update(
        state_changed_at=timezone.now() - timedelta(seconds=settings.PIPELINE_STUCK_SECONDS + 60))
    assert stats.counts(24).stuck == 1


def test_volume_has_one_entry_per_hour_with_this_hours_bytes(cast):
    store(cast.partner.user, "/a.csv", b"x" * 100)
    series = stats.volume_by_hour(24)
    assert len(series) == 24
    assert (series[-1].files, series[-1].bytes) == (1, 100)
    assert sum(point.files for point in series[:-1]) == 0


def test_expiring_lists_certificates_and_keys_within_the_horizon(cast, tmp_path):
    soon = certs.register(cast.partner.user, certs.make(tmp_path, "soon", days=(-1, 10)))
    certs.register(cast.partner.user, certs.make(tmp_path, "later", days=(-1, 90)))
    key = PgpKey.objects.create(partner=cast.partner.user.partner, armored="-",
                                fingerprint="AB" * 20,
                                expires_at=timezone.now() + timedelta(days=5))
    found = expiring.within(30)
    assert found.certificates == [soon] and found.pgp_keys == [key]


def test_overview_shows_the_counts(admin_client, held_file):
    page = admin_client.get("/").content
    assert _stat(page, "held") == 1 and _stat(page, "uploads, 24 h") == 1


def test_overview_shows_each_components_health(admin_client):
    page = admin_client.get("/").content.decode()
    for component in ("database", "broker", "worker", "gateway", "clamd", "pipeline"):
        assert f'<span class="name">{component}</span>' in page


def test_overview_draws_one_bar_per_hour(admin_client, cast):
    store(cast.partner.user, "/a.csv", b"x" * 100)
    page = admin_client.get("/").content.decode()
    heights = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', page)
    assert len(heights) == 24
    assert float(heights[-1]) > 0 and all(float(h) == 0 for h in heights[:-1])


def test_overview_names_a_certificate_expiring_soon(admin_client, cast, tmp_path):
    certs.register(cast.partner.user, certs.make(tmp_path, "expiring-cert", days=(-1, 10)))
    assert b"expiring-cert" in admin_client.get("/").content


def test_health_panel_is_served_alone_for_htmx(admin_client):
    fragment = admin_client.get("/overview/health/", HTTP_HX_REQUEST="true").content
    assert b"database" in fragment and b"<html" not in fragment


def test_overview_links_held_files_to_review(admin_client, held_file):
    page = admin_client.get("/").content.decode()
    assert f'href="/files/{held_file.pk}/"' in page
    assert held_file.state == FileState.HELD

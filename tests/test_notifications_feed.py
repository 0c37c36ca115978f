"""The event feed: an append-only table read with a cursor that never skips an event."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from accounts.models import Partner
from mft.errors import InvalidInput
from notifications import services
from notifications.models import OutboundEvent
from tests.api_client import client_for, make_ready, store

pytestmark = pytest.mark.django_db(transaction=True)


def _notify(event: str = "file.ready", partner: Partner | None = None) -> OutboundEvent:
    return services.notify(event, subject=event, body="", data={}, partner=partner)


def test_cursor_pages_through_every_event_in_order():
    made = [_notify().pk for _ in range(5)]
    first = services.events_after(None, 2)
    assert [e.pk for e in first.events] == made[:2] and first.has_more
    second = services.events_after(first.next_cursor, 2)
    third = services.events_after(second.next_cursor, 2)
    assert [e.pk for e in second.events + third.events] == made[2:]
    assert not third.has_more
    empty = services.events_after(third.next_cursor, 2)
    assert empty.events == [] and empty.next_cursor == third.next_cursor


def test_partner_limited_page_shows_only_that_partner():
    acme = Partner.objects.create(name="Acme")
    other = Partner.objects.create(name="Other")
    mine = _notify(partner=acme)
    _notify(partner=other)
    _notify()
    page = services.events_after(0, 10, partner_id=acme.pk)
    assert [e.pk for e in page.events] == [mine.pk]
    assert services.payload(mine)["partner"] == {"id": acme.pk, "name": "Acme"}


def test_feed_rows_cannot_be_changed_or_deleted():
    record = _notify()
    with pytest.raises(ValueError, match="append-only"):
        record.save()
    with pytest.raises(ValueError, match="append-only"):
        OutboundEvent.objects.filter(pk=record.pk).update(subject="x")
    with pytest.raises(ValueError, match="append-only"):
        OutboundEvent.objects.all().delete()


@pytest.mark.parametrize("cursor", ["abc", -1])
def test_bad_cursor_is_refused(cursor):
    with pytest.raises(InvalidInput):
        services.events_after(cursor, 10)


def test_bad_event_name_is_refused():
    with pytest.raises(InvalidInput):
        services.notify("Ready!", subject="", body="", data={})


def test_feed_writer_waits_for_an_open_one_so_cursors_never_skip():
    """A later event cannot become visible before an earlier, still-open one commits."""
    first_inside = threading.Event()
    release_first = threading.Event()
    ids: dict[str, int] = {}

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                ids["first"] = _notify("file.first").pk
                first_inside.set()
                release_first.wait(10)
        finally:
            connection.close()

    def second_writer() -> None:
        try:
            ids["second"] = _notify("file.second").pk
        finally:
            connection.close()

    slow = threading.Thread(target=slow_writer)
    slow.start()
    assert first_inside.wait(10)
    second = threading.Thread(target=second_writer)
    second.start()
    time.sleep(0.5)
    assert "second" not in ids, "the second writer committed while the first was open"
    seen = [e.event for e in services.events_after(0, 10).events]
    assert seen == []  # a reader meanwhile sees neither, so its cursor cannot pass the first
    release_first.set()
    slow.join(10)
    second.join(10)
    assert not slow.is_alive() and not second.is_alive()
    assert ids["first"] < ids["second"]
    assert [e.event for e in services.events_after(0, 10).events] == ["file.first",
                                                                       "file.second"]


def _feed(client, **params: object) -> dict:
    response = client.get("/api/v1/events/", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_api_feed_pages_a_real_file_ready_event_with_its_cursor(cast, settings):
    before = services.events_after(None, 1000).next_cursor
    stored = make_ready(store(cast.partner.user, "/feed.csv", b"a;b\n"), settings)
    _notify("delivery.failed")
    client = client_for(cast.admin.user, "read")
    first = _feed(client, cursor=before, limit=1)
    [ready] = first["events"]
    assert ready["event"] == "file.ready" and ready["data"]["file"]["id"] == stored.pk
    assert ready["partner"] == {"id": cast.partner.user.partner_id, "name": "Acme Corp"}
    assert first["has_more"] and first["next_cursor"] == ready["id"]
    second = _feed(client, cursor=first["next_cursor"], limit=1)
    assert [e["event"] for e in second["events"]] == ["delivery.failed"]
    assert not second["has_more"]
    assert _feed(client, cursor=second["next_cursor"])["events"] == []


def test_api_feed_shows_a_partner_only_its_own_events(cast):
    mine = _notify(partner=cast.partner.user.partner)
    _notify(partner=cast.outsider.user.partner)
    _notify("ban.created")
    page = _feed(client_for(cast.partner.user, "read"))
    assert [e["id"] for e in page["events"]] == [str(mine.pk)]


def test_api_feed_refuses_a_bad_cursor_and_an_anonymous_caller(cast):
    client = client_for(cast.admin.user, "read")
    assert client.get("/api/v1/events/", {"cursor": "abc"}).status_code == 400
    assert client.get("/api/v1/events/", {"limit": "many"}).status_code == 400
    assert APIClient().get("/api/v1/events/").status_code == 401

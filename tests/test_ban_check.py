"""The login's ban check remembers an unbanned address for at most a second per process
(accounts.bans.CLEAR_SECONDS), yet a new ban still refuses: at once when it is saved in this
process, within that second when another process saved it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import bans
from accounts.models import Ban
from audit.events import Origin
from tests.ftps_client import greeting_refused, login

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "192.0.2.44"


def _ban(address: str = ADDRESS) -> Ban:
    return Ban(address=address, reason="test", expires_at=timezone.now() + timedelta(hours=1))


def test_an_unbanned_address_is_remembered_clear():
    assert not bans.is_banned(ADDRESS)
    assert bans.known_clear(ADDRESS)


def test_a_ban_saved_in_this_process_refuses_at_once():
    assert not bans.is_banned(ADDRESS)
    _ban().save()
    assert not bans.known_clear(ADDRESS)
    assert bans.is_banned(ADDRESS)


def test_a_ban_placed_by_failed_logins_refuses_at_once(settings):
    settings.BAN_FAILURES = 2
    assert not bans.is_banned(ADDRESS)
    bans.record_failure(ADDRESS, "alice", "ftps")
    assert not bans.is_banned(ADDRESS)
    assert bans.record_failure(ADDRESS, "alice", "ftps") is not None
    assert bans.is_banned(ADDRESS)


def test_a_ban_saved_by_another_process_refuses_within_clear_seconds():
    assert not bans.is_banned(ADDRESS)
    # bulk_create sends no post_save: to this process the row is as if another wrote it.
    Ban.objects.bulk_create([_ban()])
    time.sleep(bans.CLEAR_SECONDS)
    assert not bans.known_clear(ADDRESS)
    assert bans.is_banned(ADDRESS)


def test_a_found_ban_is_looked_up_again_so_lifting_it_lets_the_address_in():
    ban = _ban()
    ban.save()
    assert bans.is_banned(ADDRESS)
    bans.lift_ban(ban, origin=Origin(source_ip=None, protocol="test"))
    assert not bans.is_banned(ADDRESS)


def test_a_ban_saved_after_a_login_refuses_the_next_connection(partner, gateway):
    login(gateway.explicit_port, "alice", partner.password).quit()
    _ban("127.0.0.1").save()
    assert greeting_refused(gateway.explicit_port)

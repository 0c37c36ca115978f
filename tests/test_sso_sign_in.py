"""Single sign-on's sign-in service under concurrency, and password resets of SSO users.

The race needs PostgreSQL: the second first sign-in must block on the first one's uncommitted
row, which SQLite (one writer at a time) never lets happen.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from accounts import users
from accounts.models import User
from audit.events import SYSTEM
from audit.models import AuditEvent
from mft.errors import Conflict
from sso import services
from sso.models import SsoIdentity

pytestmark = pytest.mark.django_db(transaction=True)

CLAIMS = services.Claims(issuer="https://idp.example.org", subject="5f1e-olga",
                         username="olga", email="olga@example.org", groups=("ops",),
                         amr=("mfa",))


@pytest.fixture(autouse=True)
def role_map(settings) -> None:  # type: ignore[no-untyped-def]
    settings.OIDC_ROLE_MAP = {"ops": "operator"}


def _wait_until_another_query_waits_on_a_lock(seconds: float = 15) -> bool:
    """Return True once some other session of this database waits on a lock."""
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # pg_stat_activity is a snapshot per transaction unless cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                           "'Lock' AND datname = current_database() AND pid <> "
                           "pg_backend_pid()")
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.05)
    return False


@pytest.mark.postgres
def test_two_first_sign_ins_of_one_person_at_once_make_one_account():
    outcome: dict[str, Any] = {}
    made = threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                outcome["first"] = services.sign_in(CLAIMS, source_ip="192.0.2.60").user.pk
                made.set()
                # Commit only once the second sign-in is stuck behind our new rows.
                outcome["blocked"] = _wait_until_another_query_waits_on_a_lock()
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            outcome["first"] = exc
        finally:
            made.set()
            connection.close()

    def second() -> None:
        try:
            assert made.wait(30)
            outcome["second"] = services.sign_in(CLAIMS, source_ip="192.0.2.61").user.pk
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            outcome["second"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert outcome.get("blocked"), "the second sign-in never met the first one's rows"
    assert isinstance(outcome["second"], int), outcome["second"]
    assert outcome["first"] == outcome["second"]
    assert User.objects.filter(username="olga").count() == 1
    assert SsoIdentity.objects.filter(subject=CLAIMS.subject).count() == 1
    assert AuditEvent.objects.filter(action="user.create", object_repr="olga").count() == 1
    assert AuditEvent.objects.filter(action="login.oidc", actor="olga",
                                     outcome=AuditEvent.Outcome.SUCCESS).count() == 2


def test_a_second_sign_in_finds_the_account_of_the_first():
    first = services.sign_in(CLAIMS, source_ip="192.0.2.62").user
    assert services.sign_in(CLAIMS, source_ip="192.0.2.62").user.pk == first.pk
    assert SsoIdentity.objects.count() == 1


def test_the_user_service_refuses_to_reset_a_single_sign_on_users_password():
    olga = services.sign_in(CLAIMS, source_ip="192.0.2.63").user
    with pytest.raises(Conflict, match="single sign-on provider"):
        users.reset_password(olga, origin=SYSTEM)
    assert not User.objects.get(pk=olga.pk).has_usable_password()
    assert not AuditEvent.objects.filter(action="password.change").exists()

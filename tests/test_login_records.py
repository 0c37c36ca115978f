"""Service level: every successful login is audited, while the last-login time moves at most
once a minute (a client that reconnects per transfer adds no write per login for it)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services
from accounts.models import User
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _login(partner) -> User:
    return services.login(services.LoginAttempt(
        username=partner.username, password=partner.password, protocol="ftps",
        source_ip="192.0.2.10"))


def _successes(user: User) -> int:
    return AuditEvent.objects.filter(action="login", outcome="success",
                                     object_id=str(user.pk)).count()


def test_every_login_is_audited_but_last_login_moves_once_a_minute(partner):
    user = _login(partner)
    first = User.objects.get(pk=user.pk).last_login
    assert first is not None
    _login(partner)
    assert User.objects.get(pk=user.pk).last_login == first
    assert _successes(user) == 2


def test_last_login_moves_when_the_recorded_one_is_over_a_minute_old(partner):
    user = _login(partner)
    old = timezone.now() - services.LAST_LOGIN_PRECISION - timedelta(seconds=1)
    User.objects.filter(pk=user.pk).update(last_login=old)
    _login(partner)
    assert User.objects.get(pk=user.pk).last_login > old

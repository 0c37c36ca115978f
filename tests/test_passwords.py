"""Password policy: common and short passwords refused, no reuse, expiry per role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import passwords, services
from accounts.models import User
from audit.events import Origin
from mft.errors import InvalidInput

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = Origin(actor="test")


@pytest.mark.parametrize("weak", ["password1234", "short1!", "12345678901234"])
def test_weak_passwords_are_refused(cast, weak):
    with pytest.raises(InvalidInput):
        passwords.change_password(cast.partner.user, weak, origin=ORIGIN)


def test_one_of_the_last_passwords_cannot_be_reused(cast, settings):
    settings.PASSWORD_HISTORY = 2
    user = cast.partner.user
    first, second = services.generate_password(), services.generate_password()
    passwords.change_password(user, first, origin=ORIGIN)
    passwords.change_password(user, second, origin=ORIGIN)
    with pytest.raises(InvalidInput, match="used recently"):
        passwords.change_password(user, first, origin=ORIGIN)


def test_passwords_hash_with_argon2(cast):
    assert cast.partner.user.password.startswith("argon2")


def test_staff_passwords_expire_and_partner_passwords_do_not_by_default(cast):
    old = timezone.now() - timedelta(days=120)
    User.objects.filter(pk__in=[cast.admin.user.pk, cast.partner.user.pk]).update(
        password_changed_at=old)
    admin = User.objects.get(pk=cast.admin.user.pk)
    partner = User.objects.get(pk=cast.partner.user.pk)
    assert passwords.is_expired(admin) and not passwords.is_expired(partner)


def test_expiring_soon_lists_accounts_within_the_warning_window(cast):
    User.objects.filter(pk=cast.admin.user.pk).update(
        password_changed_at=timezone.now() - timedelta(days=80))
    assert [u.username for u in passwords.expiring_within(14)] == [cast.admin.username]


def test_a_generated_password_must_be_changed_by_a_dashboard_user(cast):
    passwords.change_password(cast.admin.user, services.generate_password(), origin=ORIGIN,
                              generated=True)
    assert User.objects.get(pk=cast.admin.user.pk).must_change_password

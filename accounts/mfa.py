"""Second factor for web logins: TOTP authenticators and single-use recovery codes.

Built on django-otp's devices: one TOTP device per user (an authenticator app, enrolled by
QR code) and one static device holding the recovery codes. A wrong code is a failed login
like a wrong password: audited, and counted toward the address's ban on every protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from django.db import transaction
from django_otp import devices_for_user
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import bans
from accounts.models import User
from audit import events
from audit.events import Origin
from mft.errors import Conflict, InvalidInput, LoginRefused

RECOVERY_CODES = 10
_TOTP_NAME = "authenticator"
_RECOVERY_NAME = "recovery codes"


def required(user: User) -> bool:
    """Return True for roles that must use a second factor (admin and operator)."""
    return user.role in (User.Role.ADMIN, User.Role.OPERATOR)


def enrolled(user: User) -> bool:
    """Return True when the user has a confirmed authenticator (recovery codes alone are
    not one: a user left with only those enrols a new authenticator)."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def recovery_codes_left(user: User) -> int:
    """Return how many unused recovery codes the user holds."""
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def begin_enrolment(user: User) -> TOTPDevice:
    """Return a new, unconfirmed authenticator for the user (replacing an unfinished one)."""
    if enrolled(user):
        raise Conflict("an authenticator is already enrolled for this account")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name=_TOTP_NAME, confirmed=False)


def pending_enrolment(user: User) -> TOTPDevice | None:
    """Return the user's unconfirmed authenticator, if an enrolment is under way."""
    return TOTPDevice.objects.filter(user=user, confirmed=False).first()


@dataclass(frozen=True)
class Enrolment:
    """A confirmed authenticator and the recovery codes made with it (shown once)."""

    device: TOTPDevice
    recovery_codes: list[str]


def confirm_enrolment(user: User, code: str, *, origin: Origin) -> Enrolment:
    """Confirm the pending authenticator with a code from it; make fresh recovery codes."""
    with transaction.atomic():
        device = (TOTPDevice.objects.select_for_update()
                  .filter(user=user, confirmed=False).first())
        if device is None:
            raise Conflict("no authenticator enrolment is under way")
        matched = device.verify_token(_normalised(code))
    if not matched:
        raise InvalidInput("that code does not match: check the phone's clock and try the "
                           "next code")
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _replace_recovery_codes(user)
        events.admin_change(origin=origin.as_user(user), action="mfa.enrol", obj=user,
                            after={"authenticator": True, "recovery_codes": len(codes)})
    return Enrolment(device=device, recovery_codes=codes)


def new_recovery_codes(user: User, *, origin: Origin) -> list[str]:
    """Replace the user's recovery codes with fresh ones; return them (shown once)."""
    if not enrolled(user):
        raise Conflict("enrol an authenticator before making recovery codes")
    with transaction.atomic():
        codes = _replace_recovery_codes(user)
        events.admin_change(origin=origin.as_user(user), action="mfa.recovery_codes",
                            obj=user, after={"recovery_codes": len(codes)})
    return codes


def _replace_recovery_codes(user: User) -> list[str]:
    """Delete the user's recovery codes and store a new set."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=_RECOVERY_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    return codes


def verify(user: User, code: str, *, origin: Origin) -> Device:
    """Check a TOTP or recovery code for a user who passed the password step.

    Return the device that accepted it; refuse (audited, counted toward a ban) otherwise.
    """
    if bans.active_ban(origin.source_ip):
        _refuse(user, origin, "address banned", count=False)
    device = _match(user, _normalised(code))
    if device is None:
        _refuse(user, origin, "wrong one-time code", count=True)
    kind = "recovery code" if isinstance(device, StaticDevice) else "authenticator"
    events.session_event(origin=origin.as_user(user), action="login.mfa",
                         outcome=events.SUCCESS, details={"method": kind})
    return device


def _normalised(code: str) -> str:
    """Return a code without spaces or dashes, lower-cased (recovery codes are base32)."""
    return "".join(code.split()).replace("-", "").lower()


def _match(user: User, code: str) -> Device | None:
    """Return the confirmed device accepting the code: TOTP for digits, else recovery."""
    wanted = TOTPDevice if code.isdigit() else StaticDevice
    with transaction.atomic():
        for device in devices_for_user(user, confirmed=True, for_verify=True):
            if isinstance(device, wanted) and device.verify_token(code):
                return device
    return None


def _refuse(user: User, origin: Origin, reason: str, *, count: bool) -> NoReturn:
    """Audit a refused second factor, count it toward a ban, and raise LoginRefused."""
    events.login_failed(origin=origin, username=user.get_username(), reason=reason)
    if count:
        bans.record_failure(origin.source_ip, user.get_username(), origin.protocol)
    raise LoginRefused(reason, "That code is not valid.")

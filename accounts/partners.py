"""Trading partners: create, change, and remove (or suspend, when anything refers to them).

Every change is audited with the values before and after.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models.deletion import Collector, ProtectedError, RestrictedError

from accounts.models import Partner
from audit import events
from audit.events import Origin
from mft.errors import Conflict, InvalidInput

EDITABLE = ("name", "contact_name", "contact_email", "contact_phone", "status", "notes")


def snapshot(partner: Partner) -> dict[str, Any]:
    """Return the audited fields of a partner."""
    return {name: getattr(partner, name) for name in EDITABLE}


def _apply(partner: Partner, changes: dict[str, Any]) -> None:
    """Set the editable fields given, refusing unknown fields and empty names."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidInput(f"partner fields cannot be changed: {', '.join(unknown)}")
    for name, value in changes.items():
        setattr(partner, name, value.strip() if isinstance(value, str) else value)
    if not partner.name:
        raise InvalidInput("partner name must not be empty")
    if partner.status not in Partner.Status.values:
        raise InvalidInput(f"status must be one of {', '.join(Partner.Status.values)}")


def _save(partner: Partner) -> None:
    """Save, turning a name taken by another partner into a conflict."""
    if Partner.objects.filter(name__iexact=partner.name).exclude(pk=partner.pk).exists():
        raise Conflict(f"a partner named {partner.name!r} already exists")
    try:
        with transaction.atomic():
            partner.save()
    except IntegrityError:
        raise Conflict(f"a partner named {partner.name!r} already exists") from None


def create_partner(*, origin: Origin, **fields: Any) -> Partner:
    """Create a partner from its editable fields."""
    partner = Partner()
    _apply(partner, fields)
    with transaction.atomic():
        _save(partner)
        events.admin_change(origin=origin, action="partner.create", obj=partner,
                            after=snapshot(partner))
    return partner


def update_partner(partner: Partner, *, origin: Origin, **changes: Any) -> Partner:
    """Change a partner's editable fields (suspending it is `status="suspended"`)."""
    with transaction.atomic():
        partner = Partner.objects.select_for_update().get(pk=partner.pk)
        before = snapshot(partner)
        _apply(partner, changes)
        _save(partner)
        after = snapshot(partner)
        if after != before:
            events.admin_change(origin=origin, action="partner.update", obj=partner,
                                before=before, after=after)
    return partner


def in_use(partner: Partner) -> bool:
    """Return True when anything that must outlive a deletion refers to the partner.

    Asks Django's deletion collector, so rows other apps add (delivery endpoints, routes,
    pulls) count without this module knowing them.
    """
    if partner.users.exists() or partner.files.exists():
        return True
    collector = Collector(using="default")
    try:
        collector.collect([partner])
    except (ProtectedError, RestrictedError):
        return True
    return False


def remove_partner(partner: Partner, *, origin: Origin) -> Partner | None:
    """Delete a partner nothing refers to; suspend one that has users or files.

    Returns the suspended partner, or None when it was deleted. Its certificates and
    PGP keys go with a deleted partner.
    """
    with transaction.atomic():
        partner = Partner.objects.select_for_update().get(pk=partner.pk)
        before = snapshot(partner)
        if in_use(partner):
            partner.status = Partner.Status.SUSPENDED
            partner.save(update_fields=["status"])
            events.admin_change(origin=origin, action="partner.suspend", obj=partner,
                                before=before, after=snapshot(partner))
            return partner
        events.admin_change(origin=origin, action="partner.delete", obj=partner,
                            before=before)
        partner.delete()
    return None

"""Which audit events concern a partner: its users' own actions, the partner and its users."""

from __future__ import annotations

from django.db.models import Q

from accounts.models import Partner


def about_partner(partner: Partner) -> Q:
    """Return the condition selecting the events that concern the partner."""
    members = list(partner.users.values_list("pk", "username"))
    return (Q(actor__in=[name for _, name in members])
            | Q(object_type="partner", object_id=str(partner.pk))
            | Q(object_type="user", object_id__in=[str(pk) for pk, _ in members]))

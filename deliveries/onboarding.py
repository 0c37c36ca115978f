"""Onboard a partner with its first routes: the new user's uploads go on to endpoints.

Kept here, not in `accounts.onboarding`, because routes are the deliveries app's and
deliveries already depends on accounts, never the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from accounts.onboarding import FirstUser, NewPartner, PartnerDetails, onboard_partner
from audit.events import Origin
from deliveries import services
from deliveries.models import PartnerEndpoint, Route

_NAME_LENGTH = Route._meta.get_field("name").max_length or 120


def onboard_with_routes(details: PartnerDetails, first: FirstUser,
                        endpoints: Sequence[PartnerEndpoint], *, origin: Origin) -> NewPartner:
    """Onboard the partner and route its first user's uploads to each endpoint, or nothing."""
    with transaction.atomic():
        made = onboard_partner(details, first, origin=origin)
        for endpoint in endpoints:
            name = f"{made.user.username} to {endpoint.name}"[:_NAME_LENGTH]
            services.create_route(name=name, endpoint=endpoint, source_user=made.user,
                                  origin=origin)
    return made

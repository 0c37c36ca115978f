"""Match ready files to push routes and create their deliveries, once per file and route."""

from __future__ import annotations

import fnmatch
import functools
import logging
import posixpath
import re
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from deliveries import queue, windows
from deliveries.models import Delivery, Route
from transfers.models import FileState, StoredFile

log = logging.getLogger(__name__)

_BATCH = 1000


def matches(route: Route, stored: StoredFile) -> bool:
    """Return True when a stored file falls under the route's source filter."""
    if route.source_partner_id is not None and stored.partner_id != route.source_partner_id:
        return False
    if route.source_user_id is not None and stored.owner_id != route.source_user_id:
        return False
    folder, name = posixpath.split(stored.path)
    if route.include_subfolders:
        inside = route.source_folder == "/" or folder == route.source_folder or (
            folder.startswith(route.source_folder.rstrip("/") + "/"))
    else:
        inside = folder == route.source_folder
    return inside and fnmatch.fnmatchcase(name, route.filename_pattern)


def path_regex(folder: str, pattern: str, *, recursive: bool) -> str:
    """Return a regular expression (valid in Python, PostgreSQL and SQLite) for the paths a
    folder and a file-name glob select."""
    prefix = "/" if folder == "/" else folder.rstrip("/") + "/"
    name, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        closing = pattern.find("]", i + 2) if char == "[" else -1
        if char == "*":
            name += "[^/]*"
        elif char == "?":
            name += "[^/]"
        elif closing > 0 and "/" not in pattern[i:closing]:
            body = pattern[i + 1:closing]
            body = "^" + body[1:] if body.startswith("!") else body
            name += "[" + body.replace("\\", "\\\\") + "]"
            i = closing
        else:
            name += re.escape(char)
        i += 1
    return "^" + re.escape(prefix) + ("(.*/)?" if recursive else "") + name + "$"


def candidates(route: Route) -> QuerySet[StoredFile]:
    """Return ready files under the route's filter that it has not delivered, oldest first."""
    rows = StoredFile.objects.filter(state=FileState.READY, path__regex=path_regex(
        route.source_folder, route.filename_pattern, recursive=route.include_subfolders))
    if route.source_partner_id is not None:
        rows = rows.filter(partner_id=route.source_partner_id)
    if route.source_user_id is not None:
        rows = rows.filter(owner_id=route.source_user_id)
    return rows.exclude(deliveries__route=route).order_by("ready_at", "pk")


def remote_path(route: Route, stored: StoredFile) -> str:
    """Return where the file lands on the partner's server."""
    folder = route.remote_folder or route.endpoint.remote_folder
    name = posixpath.basename(stored.path) + (".pgp" if route.pgp_encrypt else "")
    return posixpath.join(folder, name)


def create_delivery(route: Route, stored: StoredFile, *, requested_by: str = "system",
                    resend_of: Delivery | None = None) -> Delivery | None:
    """Create the file's delivery on the route and queue it; None if it already exists."""
    now = timezone.now()
    row = Delivery(
        direction=Delivery.Direction.PUSH, route=route, endpoint=route.endpoint,
        stored_file=stored, local_owner=stored.owner_username, local_path=stored.path,
        source_size=stored.size, source_sha256=stored.sha256,
        remote_path=remote_path(route, stored), pgp_encrypted=route.pgp_encrypt,
        pgp_signed=route.pgp_encrypt and route.pgp_sign,
        requested_by=requested_by, resend_of=resend_of, enqueued_at=now,
        not_before=windows.next_opening(route.window_start, route.window_end, route.time_zone,
                                        now))
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        return None  # already routed: a file goes once per route
    queue.enqueue_on_commit(row.pk)
    return row


def plan_ready(sender: object, stored_file: StoredFile,
               **kwargs: object) -> Callable[[StoredFile], object] | None:
    """Receive `transfers.signals.plan_file_ready`: read the arrival routes a file about to
    be ready matches, and return the write that creates its deliveries on them.

    The pipeline reads here, before its transaction, and makes the write inside it, so the
    deliveries commit with the file's ready state (their messages go after the commit).
    Here rather than in a queued task: behind a burst of pipeline messages on the same
    queue, the routing would wait its turn. If it fails, a task is queued after the commit
    instead; the sweeper's catch-up routes whatever is still missed (also a file that a
    route enabled between this read and that commit should have taken).
    """
    try:
        routes = arrival_routes(stored_file)
    except Exception:
        log.exception("routing file %s failed; queued for a worker", stored_file.pk)
        return _route_later
    if not routes:
        return None
    return functools.partial(_deliver, routes)


def _deliver(routes: list[Route], stored: StoredFile) -> None:
    """Create the file's deliveries on routes read before this transaction that are still
    there and enabled; if that fails, queue its routing for after the commit."""
    try:
        with transaction.atomic():
            still = set(Route.objects.filter(pk__in=[route.pk for route in routes],
                                             enabled=True).values_list("pk", flat=True))
            create_deliveries([route for route in routes if route.pk in still], stored)
    except Exception:
        log.exception("routing file %s failed; queued for a worker", stored.pk)
        _route_later(stored)


def _route_later(stored: StoredFile) -> None:
    """Queue the file's routing for a worker once the surrounding transaction commits."""
    file_id = stored.pk
    transaction.on_commit(lambda: queue.file_ready(file_id))


def route_file(file_id: int) -> list[Delivery]:
    """Create deliveries for a file that just became ready, on every matching arrival route."""
    stored = StoredFile.objects.filter(pk=file_id, state=FileState.READY).first()
    if stored is None:
        return []
    return create_deliveries(arrival_routes(stored), stored)


def arrival_routes(stored: StoredFile) -> list[Route]:
    """Return the enabled arrival routes whose source filter takes the file."""
    return [route for route in Route.objects.filter(
        enabled=True, trigger=Route.Trigger.ARRIVAL).select_related("endpoint")
        if matches(route, stored)]


def create_deliveries(routes: list[Route], stored: StoredFile) -> list[Delivery]:
    """Create the file's delivery on each route (none twice); return those made."""
    if not routes:
        return []  # no transaction: on SQLite even an empty one takes the write lock
    made = []
    with transaction.atomic():
        for route in routes:
            row = create_delivery(route, stored)
            if row is not None:
                made.append(row)
    return made


def run_route(route_id: int) -> list[Delivery]:
    """Create deliveries for every ready matching file a scheduled route has not sent yet."""
    route = Route.objects.filter(pk=route_id, enabled=True).select_related("endpoint").first()
    if route is None:
        return []
    made = []
    with transaction.atomic():
        for stored in candidates(route)[:_BATCH]:
            if matches(route, stored):
                row = create_delivery(route, stored)
                if row is not None:
                    made.append(row)
    return made


def catch_up() -> int:
    """Route files that became ready a while ago but were missed (a lost message); count them.

    Only arrival routes, only files that became ready while the route was on, and within
    the delivery age limit.
    """
    now = timezone.now()
    settled = now - timedelta(seconds=settings.DELIVERY_PENDING_GRACE)
    oldest = now - timedelta(seconds=settings.DELIVERY_MAX_AGE)
    count = 0
    for route in Route.objects.filter(enabled=True, trigger=Route.Trigger.ARRIVAL):
        missed = candidates(route).filter(ready_at__gte=max(oldest, route.active_since),
                                          ready_at__lt=settled)
        with transaction.atomic():
            for stored in missed[:_BATCH]:
                if matches(route, stored) and create_delivery(route, stored) is not None:
                    count += 1
    return count

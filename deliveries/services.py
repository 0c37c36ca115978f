"""Partner delivery use cases, the same for every edge: endpoints, routes, pulls, re-sends.

Every change is validated here (the models' own checks, then the database's constraints),
audited with before/after values (secrets shown only as "set"), and kept in step with
beat's schedule. Edges (API, dashboard, admin, commands) translate and call these.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from accounts.models import Partner, PgpKey, User
from audit import events
from audit.events import Origin
from deliveries import connection, ftps_client, queue, routing, schedules, secrets, validation
from deliveries.models import Delivery, PartnerEndpoint, Pull, Route
from mft.errors import Conflict, InvalidInput

_ENDPOINT_FIELDS = {"name", "tls_mode", "host", "port", "tls_server_name", "username",
                    "client_cert_pem", "remote_folder", "data_mode", "ca_bundle_pem",
                    "pinned_sha256", "timeout_seconds", "max_connections", "use_temp_name",
                    "enabled"}
_ROUTE_FIELDS = {"name", "endpoint", "source_partner", "source_user", "source_folder",
                 "include_subfolders", "filename_pattern", "remote_folder", "pgp_encrypt",
                 "pgp_sign", "pgp_key", "trigger", "cron", "time_zone", "window_start",
                 "window_end", "enabled"}
_PULL_FIELDS = {"name", "endpoint", "remote_folder", "filename_pattern", "local_user",
                "local_folder", "after_download", "move_to_folder", "cron", "time_zone",
                "max_files_per_run", "stable_seconds", "min_age_seconds", "enabled"}
_IN_PROGRESS = (Delivery.Status.PENDING, Delivery.Status.RUNNING, Delivery.Status.WAITING)


def _apply(obj: models.Model, allowed: set[str], changes: dict[str, Any]) -> None:
    """Set the given fields, refusing names that are not editable."""
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidInput(f"unknown or read-only fields: {', '.join(unknown)}")
    for name, value in changes.items():
        setattr(obj, name, value)


def _save(obj: models.Model) -> None:
    """Validate (model checks and constraints) and save, as a protocol-neutral error."""
    try:
        obj.full_clean()
    except ValidationError as exc:
        messages = [f"{field}: {'; '.join(errors)}" if field != "__all__" else "; ".join(errors)
                    for field, errors in exc.message_dict.items()]
        raise InvalidInput(" | ".join(messages)) from None
    obj.save()


def _normalised(changes: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
    """Return changes with the named fields normalised by their validators."""
    clean = dict(changes)
    for name, check in checks.items():
        if name in clean and clean[name] is not None:
            try:
                clean[name] = check(clean[name])
            except ValueError as exc:
                raise InvalidInput(f"{name}: {exc}") from None
    return clean


# --- endpoints --------------------------------------------------------------------------------

def endpoint_snapshot(endpoint: PartnerEndpoint) -> dict[str, Any]:
    """Return the audited view of an endpoint: every setting, secrets only as set or not."""
    return {
        "partner": endpoint.partner.name, "name": endpoint.name, "tls_mode": endpoint.tls_mode,
        "host": endpoint.host, "port": endpoint.port, "username": endpoint.username,
        "tls_server_name": endpoint.tls_server_name, "remote_folder": endpoint.remote_folder,
        "data_mode": endpoint.data_mode, "pinned_sha256": endpoint.pinned_sha256,
        "ca_bundle": bool(endpoint.ca_bundle_pem), "password": bool(endpoint.password_secret),
        "client_certificate": bool(endpoint.client_cert_pem),
        "timeout_seconds": endpoint.timeout_seconds,
        "max_connections": endpoint.max_connections, "use_temp_name": endpoint.use_temp_name,
        "enabled": endpoint.enabled,
    }


_ENDPOINT_CHECKS = {"host": validation.host, "pinned_sha256": validation.fingerprint,
                    "ca_bundle_pem": validation.ca_bundle,
                    "remote_folder": validation.remote_folder}


def _set_secrets(endpoint: PartnerEndpoint, password: str | None,
                 client_key_pem: str | None, cert_changed: bool) -> None:
    """Seal a new password and client key (checked against its certificate)."""
    if password is not None:
        endpoint.password_secret = secrets.seal(
            password, context=connection.secret_context(endpoint, "password_secret"))
    if client_key_pem is None and not cert_changed:
        return
    key_context = connection.secret_context(endpoint, "client_key_secret")
    key = client_key_pem if client_key_pem is not None else secrets.unseal(
        endpoint.client_key_secret, context=key_context)
    try:
        cert, key = validation.client_credential(endpoint.client_cert_pem, key)
    except ValueError as exc:
        raise InvalidInput(f"client certificate: {exc}") from None
    endpoint.client_cert_pem = cert
    endpoint.client_key_secret = secrets.seal(key, context=key_context)


def create_endpoint(*, partner: Partner, name: str, host: str, username: str,
                    password: str = "", client_key_pem: str = "",
                    origin: Origin = events.SYSTEM, **options: Any) -> PartnerEndpoint:
    """Create a partner's FTPS endpoint; it must verify TLS and have credentials."""
    endpoint = PartnerEndpoint(partner=partner)
    changes = _normalised({"name": name, "host": host, "username": username, **options},
                          _ENDPOINT_CHECKS)
    _apply(endpoint, _ENDPOINT_FIELDS, changes)
    if "port" not in options:
        endpoint.port = 990 if endpoint.implicit else 21
    _set_secrets(endpoint, password, client_key_pem or None,
                 cert_changed=bool(endpoint.client_cert_pem))
    with transaction.atomic():
        _save(endpoint)
        events.admin_change(origin=origin, action="endpoint.create", obj=endpoint,
                            after=endpoint_snapshot(endpoint))
    return endpoint


def update_endpoint(endpoint: PartnerEndpoint, *, origin: Origin, password: str | None = None,
                    client_key_pem: str | None = None, **changes: Any) -> PartnerEndpoint:
    """Change an endpoint; a password or key given replaces the stored one ("" clears it)."""
    with transaction.atomic():
        endpoint = PartnerEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        before = endpoint_snapshot(endpoint)
        _apply(endpoint, _ENDPOINT_FIELDS, _normalised(changes, _ENDPOINT_CHECKS))
        if client_key_pem == "" and changes.get("client_cert_pem") == "":
            endpoint.client_key_secret, client_key_pem = "", None
        _set_secrets(endpoint, password, client_key_pem,
                     cert_changed=bool(changes.get("client_cert_pem")))
        endpoint.updated_at = timezone.now()
        _save(endpoint)
        events.admin_change(origin=origin, action="endpoint.update", obj=endpoint,
                            before=before, after=endpoint_snapshot(endpoint))
    return endpoint


def remove_endpoint(endpoint: PartnerEndpoint, *, origin: Origin) -> PartnerEndpoint | None:
    """Delete an endpoint nothing refers to; disable one with routes, pulls or deliveries."""
    with transaction.atomic():
        endpoint = PartnerEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        before = endpoint_snapshot(endpoint)
        if endpoint.routes.exists() or endpoint.pulls.exists() or endpoint.deliveries.exists():
            endpoint.enabled = False
            endpoint.save(update_fields=["enabled"])
            events.admin_change(origin=origin, action="endpoint.disable", obj=endpoint,
                                before=before, after=endpoint_snapshot(endpoint))
            return endpoint
        events.admin_change(origin=origin, action="endpoint.delete", obj=endpoint,
                            before=before)
        endpoint.delete()
    return None


def inspect_certificate(host: str, port: int, *, implicit: bool, server_name: str = "",
                        timeout: float = 15) -> dict[str, Any]:
    """Return a server's certificate fingerprint and names, trusting nothing (to pin it).

    The admin compares the fingerprint with what the partner says, out of band.
    """
    try:
        fingerprint, der = ftps_client.server_certificate(
            validation.host(host), port, implicit=implicit, server_name=server_name,
            timeout=timeout)
    except (ftps_client.FtpsError, ValueError) as exc:
        raise InvalidInput(f"could not read the server certificate: {exc}") from None
    cert = x509.load_der_x509_certificate(der)
    return {"sha256": fingerprint, "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat()}


def check_endpoint(endpoint: PartnerEndpoint) -> dict[str, Any]:
    """Connect, verify, log in and list the remote folder; report what worked."""
    try:
        with connection.connect(endpoint) as client:
            entries = client.files(endpoint.remote_folder)
            return {"ok": True, "features": list(client.features.lines), "tls": client.tls,
                    "files": len(entries)}
    except (ftps_client.FtpsError, secrets.SecretUnavailable) as exc:
        return {"ok": False, "error": str(exc), "kind": type(exc).__name__}


def reseal_secrets() -> int:
    """Re-seal every endpoint secret under the current master key (after a rotation)."""
    count = 0
    for endpoint in PartnerEndpoint.objects.all():
        changed = False
        for column in ("password_secret", "client_key_secret"):
            old = getattr(endpoint, column)
            new = secrets.reseal(old, context=connection.secret_context(endpoint, column))
            if new != old:
                setattr(endpoint, column, new)
                changed = True
        if changed:
            endpoint.save(update_fields=["password_secret", "client_key_secret"])
            count += 1
    return count


# --- routes -----------------------------------------------------------------------------------

def route_snapshot(route: Route) -> dict[str, Any]:
    """Return the audited view of a route."""
    return {name: (str(getattr(route, name)) if isinstance(getattr(route, name), models.Model)
                   or name.startswith("window_") else getattr(route, name))
            for name in sorted(_ROUTE_FIELDS)}


_ROUTE_CHECKS = {"source_folder": validation.remote_folder, "cron": validation.cron,
                 "filename_pattern": validation.pattern}


def _check_route(route: Route) -> None:
    """Refuse PGP keys of another partner, or PGP with no key to encrypt to."""
    if route.remote_folder:
        route.remote_folder = _normalised({"f": route.remote_folder},
                                          {"f": validation.remote_folder})["f"]
    partner_id = route.endpoint.partner_id
    key: PgpKey | None = route.pgp_key
    if key is not None and key.partner_id != partner_id:
        raise InvalidInput("pgp_key: the key belongs to another partner than the endpoint's")
    if key is not None and not route.pgp_encrypt:
        raise InvalidInput("pgp_key: set pgp_encrypt to encrypt with it")
    if route.pgp_sign and not route.pgp_encrypt:
        raise InvalidInput("pgp_sign: signing is done on the encrypted copy; set pgp_encrypt")
    if route.pgp_encrypt and key is None and not PgpKey.objects.filter(
            partner_id=partner_id).exists():
        raise InvalidInput("pgp_encrypt: the endpoint's partner has no PGP key")


def create_route(*, name: str, endpoint: PartnerEndpoint, origin: Origin = events.SYSTEM,
                 **fields: Any) -> Route:
    """Create a push route (and its beat schedule when it runs on one)."""
    route = Route()
    _apply(route, _ROUTE_FIELDS, _normalised({"name": name, "endpoint": endpoint, **fields},
                                             _ROUTE_CHECKS))
    _check_route(route)
    with transaction.atomic():
        _save(route)
        schedules.sync(route)
        events.admin_change(origin=origin, action="route.create", obj=route,
                            after=route_snapshot(route))
    return route


def update_route(route: Route, *, origin: Origin, **changes: Any) -> Route:
    """Change a route and its schedule; files already routed keep their deliveries."""
    with transaction.atomic():
        route = Route.objects.select_for_update().get(pk=route.pk)
        before = route_snapshot(route)
        _apply(route, _ROUTE_FIELDS, _normalised(changes, _ROUTE_CHECKS))
        if route.enabled and not before["enabled"]:
            route.active_since = timezone.now()
        _check_route(route)
        _save(route)
        schedules.sync(route)
        events.admin_change(origin=origin, action="route.update", obj=route, before=before,
                            after=route_snapshot(route))
    return route


def remove_route(route: Route, *, origin: Origin) -> Route | None:
    """Delete a route with no deliveries; disable one that has some (receipts stay)."""
    with transaction.atomic():
        route = Route.objects.select_for_update().get(pk=route.pk)
        before = route_snapshot(route)
        if route.deliveries.exists():
            route.enabled = False
            route.save(update_fields=["enabled"])
            schedules.sync(route)
            events.admin_change(origin=origin, action="route.disable", obj=route,
                                before=before, after=route_snapshot(route))
            return route
        schedules.remove(route)
        events.admin_change(origin=origin, action="route.delete", obj=route, before=before)
        route.delete()
    return None


# --- pulls ------------------------------------------------------------------------------------

def pull_snapshot(pull: Pull) -> dict[str, Any]:
    """Return the audited view of a pull."""
    return {name: (str(getattr(pull, name)) if isinstance(getattr(pull, name), models.Model)
                   else getattr(pull, name)) for name in sorted(_PULL_FIELDS)}


_PULL_CHECKS = {"local_folder": validation.remote_folder, "cron": validation.cron,
                "filename_pattern": validation.pattern}


def _check_pull(pull: Pull) -> None:
    """Refuse a local user who cannot receive files, and normalise the remote folders."""
    user: User = pull.local_user
    if not user.home_dir or "upload" not in (user.permissions or []):
        raise InvalidInput("local_user: the user needs a home folder and the upload permission")
    for name in ("remote_folder", "move_to_folder"):
        if getattr(pull, name):
            setattr(pull, name, _normalised({name: getattr(pull, name)},
                                            {name: validation.remote_folder})[name])


def create_pull(*, name: str, endpoint: PartnerEndpoint, local_user: User, cron: str,
                origin: Origin = events.SYSTEM, **fields: Any) -> Pull:
    """Create a scheduled pull from a partner's endpoint into a local user's folder."""
    pull = Pull()
    _apply(pull, _PULL_FIELDS, _normalised(
        {"name": name, "endpoint": endpoint, "local_user": local_user, "cron": cron, **fields},
        _PULL_CHECKS))
    _check_pull(pull)
    with transaction.atomic():
        _save(pull)
        schedules.sync(pull)
        events.admin_change(origin=origin, action="pull.create", obj=pull,
                            after=pull_snapshot(pull))
    return pull


def update_pull(pull: Pull, *, origin: Origin, **changes: Any) -> Pull:
    """Change a pull and its schedule."""
    with transaction.atomic():
        pull = Pull.objects.select_for_update().get(pk=pull.pk)
        before = pull_snapshot(pull)
        _apply(pull, _PULL_FIELDS, _normalised(changes, _PULL_CHECKS))
        _check_pull(pull)
        _save(pull)
        schedules.sync(pull)
        events.admin_change(origin=origin, action="pull.update", obj=pull, before=before,
                            after=pull_snapshot(pull))
    return pull


def remove_pull(pull: Pull, *, origin: Origin) -> Pull | None:
    """Delete a pull with no deliveries; disable one that has some."""
    with transaction.atomic():
        pull = Pull.objects.select_for_update().get(pk=pull.pk)
        before = pull_snapshot(pull)
        if pull.deliveries.exists():
            pull.enabled = False
            pull.save(update_fields=["enabled"])
            schedules.sync(pull)
            events.admin_change(origin=origin, action="pull.disable", obj=pull, before=before,
                                after=pull_snapshot(pull))
            return pull
        schedules.remove(pull)
        events.admin_change(origin=origin, action="pull.delete", obj=pull, before=before)
        pull.delete()
    return None


# --- deliveries -------------------------------------------------------------------------------

def resend(delivery: Delivery, *, origin: Origin) -> Delivery:
    """Send a delivered, failed or cancelled push again, as a new audited delivery."""
    if delivery.direction != Delivery.Direction.PUSH or delivery.route is None:
        raise InvalidInput("only pushes can be re-sent; a pull fetches new files on its own")
    if delivery.status in _IN_PROGRESS:
        raise Conflict("the delivery is still in progress")
    stored = delivery.stored_file
    if stored is None or stored.state != "ready":
        raise Conflict("the file is no longer ready to send")
    with transaction.atomic():
        again = routing.create_delivery(delivery.route, stored, requested_by=origin.actor,
                                        resend_of=delivery)
        assert again is not None  # re-sends are outside the once-per-route constraint
        events.delivery_resent(origin=origin, delivery=again, original=delivery)
    return again


def cancel(delivery: Delivery, *, origin: Origin) -> Delivery:
    """Stop a delivery that is waiting (a running one finishes its attempt first)."""
    with transaction.atomic():
        stopped = Delivery.objects.filter(
            pk=delivery.pk, status__in=[Delivery.Status.PENDING, Delivery.Status.WAITING]
        ).update(status=Delivery.Status.CANCELLED, finished_at=timezone.now(),
                 last_error=f"cancelled by {origin.actor}")
        if not stopped:
            raise Conflict("only a pending or waiting delivery can be cancelled")
        delivery.refresh_from_db()
        events.delivery_cancelled(delivery=delivery, reason="cancelled by an admin",
                                  origin=origin)
    return delivery


def retry_now(delivery: Delivery, *, origin: Origin) -> Delivery:
    """Try a waiting delivery now instead of at its next scheduled retry."""
    with transaction.atomic():
        moved = Delivery.objects.filter(
            pk=delivery.pk, status__in=[Delivery.Status.PENDING, Delivery.Status.WAITING]
        ).update(not_before=timezone.now(), enqueued_at=timezone.now())
        if not moved:
            raise Conflict("only a pending or waiting delivery can be retried now")
        events.admin_change(origin=origin, action="delivery.retry_now", obj=delivery)
        queue.enqueue_on_commit(delivery.pk)
    delivery.refresh_from_db()
    return delivery

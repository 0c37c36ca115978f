"""Endpoints, routes and pulls in the dashboard: created and changed through the delivery
service, secrets never shown back, removal that keeps receipts whole, and a real test
connection to a stock FTPS server."""

from __future__ import annotations

import re
import secrets
import socket
from typing import Any

import pytest

from accounts.models import Partner
from audit.models import AuditEvent
from deliveries import services
from deliveries.models import PartnerEndpoint, Pull, Route
from tests.deliveries_support import ORIGIN, partner_named, stock_endpoint

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: stock

PIN = "ab" * 32


def _form(partner: Partner, password: str, **changes: object) -> dict[str, object]:
    form: dict[str, object] = {
        "partner": partner.pk, "name": "acme-ftps", "tls_mode": "explicit",
        "host": "127.0.0.1", "port": "", "tls_server_name": "", "username": "portside",
        "password": password, "client_cert_pem": "", "client_key_pem": "",
        "remote_folder": "/", "data_mode": "passive", "pinned_sha256": PIN,
        "ca_bundle_pem": "", "timeout_seconds": "5", "max_connections": "2",
        "use_temp_name": "on", "enabled": "on"}
    form.update(changes)
    return form


def _endpoint(partner: Partner, **options: Any) -> PartnerEndpoint:
    return services.create_endpoint(partner=partner, name="acme-ftps", host="127.0.0.1",
                                    username="portside", password=secrets.token_urlsafe(12),
                                    pinned_sha256=PIN, origin=ORIGIN, **options)


def test_create_seals_the_password_and_never_shows_it(admin_client, cast):
    password = "Remote-" + secrets.token_urlsafe(12)
    partner = cast.partner.user.partner
    response = admin_client.post("/endpoints/endpoint/new/", _form(partner, password))
    assert response.status_code == 302
    endpoint = PartnerEndpoint.objects.get()
    assert endpoint.port == 21 and endpoint.password_secret and password not in \
        endpoint.password_secret
    for page in ("/endpoints/", f"/endpoints/endpoint/{endpoint.pk}/"):
        assert password not in admin_client.get(page).content.decode()
    event = AuditEvent.objects.get(action="endpoint.create")
    assert event.actor == "root-admin" and event.details["after"]["password"] is True


def test_an_endpoint_without_tls_verification_is_a_form_error(admin_client, cast):
    page = admin_client.post("/endpoints/endpoint/new/",
                             _form(cast.partner.user.partner, "pw-" + secrets.token_hex(8),
                                   pinned_sha256=""))
    assert page.status_code == 200 and b"TLS verification is never skipped" in page.content
    assert not PartnerEndpoint.objects.exists()


def test_a_refused_form_does_not_echo_the_secrets(admin_client, cast):
    password, key = "pw-" + secrets.token_hex(8), "KEY-" + secrets.token_hex(8)
    page = admin_client.post("/endpoints/endpoint/new/", _form(
        cast.partner.user.partner, password, client_key_pem=key, pinned_sha256=""))
    assert password not in page.content.decode() and key not in page.content.decode()


def test_edit_sends_only_what_changed_and_keeps_the_password(admin_client, cast):
    endpoint = _endpoint(cast.partner.user.partner)
    sealed = endpoint.password_secret
    admin_client.post(f"/endpoints/endpoint/{endpoint.pk}/",
                      _form(endpoint.partner, "", port="2121", max_connections="4"))
    endpoint.refresh_from_db()
    assert (endpoint.port, endpoint.max_connections) == (2121, 4)
    assert endpoint.password_secret == sealed
    event = AuditEvent.objects.get(action="endpoint.update")
    assert (event.details["before"]["port"], event.details["after"]["port"]) == (21, 2121)


def test_removing_an_endpoint_a_route_uses_disables_it(admin_client, cast):
    endpoint = _endpoint(cast.partner.user.partner)
    services.create_route(name="to-acme", endpoint=endpoint, source_user=cast.partner.user,
                          origin=ORIGIN)
    page = admin_client.post(f"/endpoints/endpoint/{endpoint.pk}/remove/", follow=True)
    endpoint.refresh_from_db()
    assert not endpoint.enabled and b"disabled" in page.content
    assert AuditEvent.objects.filter(action="endpoint.disable", actor="root-admin").exists()


def test_a_route_and_a_pull_are_created_and_removed(admin_client, cast):
    endpoint = _endpoint(cast.partner.user.partner)
    route = {"name": "to-acme", "endpoint": endpoint.pk, "source_partner": "",
             "source_user": cast.partner.user.pk, "source_folder": "/",
             "filename_pattern": "*.csv", "remote_folder": "", "pgp_key": "",
             "trigger": "arrival", "cron": "", "time_zone": "UTC", "window_start": "",
             "window_end": "", "enabled": "on"}
    assert admin_client.post("/endpoints/route/new/", route).status_code == 302
    pull = {"name": "from-acme", "endpoint": endpoint.pk, "remote_folder": "/out",
            "filename_pattern": "*", "local_user": cast.partner.user.pk, "local_folder": "/",
            "after_download": "keep", "move_to_folder": "", "cron": "*/5 * * * *",
            "time_zone": "UTC", "max_files_per_run": "100", "stable_seconds": "5",
            "min_age_seconds": "60", "enabled": "on"}
    assert admin_client.post("/endpoints/pull/new/", pull).status_code == 302
    made_route, made_pull = Route.objects.get(), Pull.objects.get()
    assert made_route.filename_pattern == "*.csv" and made_pull.periodic_task is not None
    assert (made_pull.stable_seconds, made_pull.min_age_seconds) == (5, 60)
    admin_client.post(f"/endpoints/route/{made_route.pk}/remove/")
    admin_client.post(f"/endpoints/pull/{made_pull.pk}/remove/")
    assert not Route.objects.exists() and not Pull.objects.exists()
    assert {"route.create", "pull.create", "route.delete", "pull.delete"} <= set(
        AuditEvent.objects.filter(actor="root-admin").values_list("action", flat=True))


def test_a_scheduled_route_without_cron_is_a_form_error(admin_client, cast):
    endpoint = _endpoint(cast.partner.user.partner)
    page = admin_client.post("/endpoints/route/new/", {
        "name": "nightly", "endpoint": endpoint.pk, "source_user": cast.partner.user.pk,
        "source_folder": "/", "filename_pattern": "*", "trigger": "schedule", "cron": "",
        "time_zone": "UTC"})
    assert page.status_code == 200 and b"needs a cron expression" in page.content
    assert not Route.objects.exists()


def test_test_connection_reaches_a_real_server(admin_client, stock):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    page = admin_client.post(f"/endpoints/endpoint/{endpoint.pk}/test/", follow=True)
    assert b"logged in" in page.content and b'class="message success"' in page.content


def test_test_connection_reports_a_closed_port(admin_client, cast):
    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        endpoint = _endpoint(cast.partner.user.partner, port=probe.getsockname()[1])
        page = admin_client.post(f"/endpoints/endpoint/{endpoint.pk}/test/", follow=True)
    assert b'class="message error"' in page.content


def test_operator_reads_an_endpoint_without_changing_it(signed_in, cast):
    endpoint = _endpoint(cast.partner.user.partner)
    operator = signed_in("operator")
    page = operator.get(f"/endpoints/endpoint/{endpoint.pk}/")
    assert page.status_code == 200 and b"Save changes" not in page.content
    assert re.search(rb'<input[^>]*name="host"[^>]*disabled', page.content)
    assert operator.post(f"/endpoints/endpoint/{endpoint.pk}/",
                         _form(endpoint.partner, "", port="2121")).status_code == 403

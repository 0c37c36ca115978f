"""Pushes to partners' FTPS servers: Portside's own gateway as a second tenant, and stock
pyftpdlib servers for what the gateway does not do."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time

import pytest

from audit.models import AuditEvent
from deliveries import runner
from deliveries.models import Delivery
from tests.audit_log import wait_for_event
from tests.deliveries_support import (
    arrival_route,
    gateway_endpoint,
    partner_named,
    stock_endpoint,
    store,
)
from tests.remote_ftps import Behaviour, file_sha256, make_certificate
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: broker, stock, bank…


def only_delivery() -> Delivery:
    rows = list(Delivery.objects.all())
    assert len(rows) == 1, rows
    return rows[0]


def test_on_arrival_push_lands_on_the_gateway_with_a_verified_receipt(
        cast, gateway, bank, broker, settings):
    settings.SCAN_MODE = "off"
    endpoint = gateway_endpoint(gateway, bank, remote_folder="/")
    arrival_route(endpoint, cast.partner.user, filename_pattern="*.csv")
    data = os.urandom(700_000)
    sent = store(cast.partner.user, "/orders.csv", data, ready=False)
    ran = broker.drain()
    # Routed as the file became ready, in the pipeline's worker: no routing task to wait for.
    assert "transfers.run_pipeline" in ran and "deliveries.route_file" not in ran
    assert "deliveries.run_delivery" in ran
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    digest = hashlib.sha256(data).hexdigest()
    assert (delivery.sent_size, delivery.sent_sha256, delivery.verified_by) == (
        len(data), digest, "size+sha256")
    assert delivery.stored_file_id == sent.pk and delivery.remote_path == "/orders.csv"
    arrived = StoredFile.objects.get(owner=bank.user, path="/orders.csv")
    assert (arrived.size, arrived.sha256) == (len(data), digest)
    attempt = delivery.attempts_log.get()
    assert attempt.outcome == "success" and attempt.bytes_transferred == len(data)
    assert attempt.seconds is not None and attempt.seconds >= 0 and attempt.finished_at
    assert attempt.remote_reply.startswith("2") and attempt.error == ""
    # The gateway refuses data connections that do not resume the control session.
    assert attempt.details["tls"]["data_sessions_resumed"] == [True]
    assert AuditEvent.objects.filter(action="delivery.delivered", object_id=str(delivery.pk),
                                     outcome="success").count() == 1
    from notifications.models import OutboundEvent

    notice = OutboundEvent.objects.get(event="delivery.succeeded")
    assert notice.data["delivery"]["sha256"] == digest and notice.partner_name == "Bank Ltd"


def test_files_not_matching_the_route_are_not_sent(cast, gateway, bank, broker):
    endpoint = gateway_endpoint(gateway, bank)
    arrival_route(endpoint, cast.partner.user, filename_pattern="*.csv")
    stored = store(cast.partner.user, "/notes.txt", b"no")
    from deliveries import routing

    assert routing.route_file(stored.pk) == []
    assert not Delivery.objects.exists()


def test_push_uploads_under_a_temporary_name_then_renames(cast, stock, broker):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), remote_folder="/in")
    (server.root / "in").mkdir()
    arrival_route(endpoint, cast.partner.user)
    stored = store(cast.partner.user, "/report.csv", b"a;b\n" * 1000)
    from deliveries import routing

    routing.route_file(stored.pk)
    broker.drain()
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    temp = f"/in/.report.csv.portside-{delivery.pk}.part"
    transfer = [line for line in server.lines if line.split()[0] in ("STOR", "RNFR", "RNTO")]
    assert transfer == [f"STOR {temp}", f"RNFR {temp}", "RNTO /in/report.csv"]
    assert server.lines.index(f"SIZE {temp}") < server.lines.index(f"RNFR {temp}")
    assert sorted(p.name for p in (server.root / "in").iterdir()) == ["report.csv"]
    assert file_sha256(server.root / "in" / "report.csv") == stored.sha256
    assert delivery.verified_by == "size"  # no HASH on a stock pyftpdlib server


def test_push_without_a_temporary_name_stores_under_the_final_name(cast, stock, broker):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), use_temp_name=False)
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/direct.csv", b"d").pk)
    broker.drain()
    assert only_delivery().status == Delivery.Status.DELIVERED
    assert "STOR /direct.csv" in server.lines and "RNFR" not in server.commands


def test_wrong_pinned_fingerprint_is_refused_before_anything_is_sent(cast, stock, broker):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), pinned_sha256="ab" * 32)
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/x.csv", b"secret").pk)
    broker.drain()
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.FAILED
    assert "pinned" in delivery.last_error and delivery.attempts == 1
    assert server.commands == ["AUTH"]  # no USER, no PASS, no data
    assert list(server.root.iterdir()) == []
    failed = AuditEvent.objects.get(action="delivery.failed", object_id=str(delivery.pk))
    assert failed.outcome == "failure" and failed.details["alert"] is True
    assert "TLS verification failed" in failed.details["reason"]


def test_wrong_pin_against_the_gateway_never_logs_in(cast, gateway, bank, broker):
    endpoint = gateway_endpoint(gateway, bank, pinned_sha256="cd" * 32)
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/y.csv", b"secret").pk)
    broker.drain()
    assert only_delivery().status == Delivery.Status.FAILED
    assert not AuditEvent.objects.filter(action="login", actor=bank.user.username).exists()
    assert not StoredFile.objects.filter(owner=bank.user).exists()


def test_ca_bundle_verifies_the_server_certificate_and_name(cast, stock, broker, tmp_path):
    ca = make_certificate(tmp_path, "partner-ca", is_ca=True)
    server = stock(certificate=make_certificate(tmp_path, "partner-host", issuer=ca))
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), pinned_sha256="",
                              ca_bundle_pem=ca.cert_pem)
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/ca.csv", b"signed").pk)
    broker.drain()
    assert only_delivery().status == Delivery.Status.DELIVERED


@pytest.mark.parametrize("problem", ["other CA", "other name"])
def test_ca_bundle_refuses_another_ca_or_name(cast, stock, broker, tmp_path, problem):
    ca = make_certificate(tmp_path, "partner-ca", is_ca=True)
    stranger = make_certificate(tmp_path, "stranger-ca", is_ca=True)
    server = stock(certificate=make_certificate(tmp_path, "partner-host", issuer=ca))
    endpoint = stock_endpoint(
        server, partner_named("Bank Ltd"), pinned_sha256="",
        ca_bundle_pem=stranger.cert_pem if problem == "other CA" else ca.cert_pem,
        tls_server_name="ftp.other.example" if problem == "other name" else "")
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/ca.csv", b"signed").pk)
    broker.drain()
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.FAILED
    assert "TLS verification failed" in delivery.last_error
    assert server.commands == ["AUTH"]


def test_remote_down_then_up_is_retried_and_delivered_once(cast, stock, broker, fast_retries):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    arrival_route(endpoint, cast.partner.user)
    server.stop()
    from deliveries import routing

    stored = store(cast.partner.user, "/later.csv", os.urandom(100_000))
    routing.route_file(stored.pk)
    broker.drain()
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.WAITING and delivery.attempts == 1
    assert "ConnectionRefused" in delivery.last_error
    server.start()
    time.sleep(1.1)  # the back-off (fast_retries: at most one second)
    assert runner.sweep() == 1  # what beat runs periodically
    broker.drain()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED and delivery.attempts == 2
    assert [a.outcome for a in delivery.attempts_log.all()] == ["retry", "success"]
    assert file_sha256(server.root / "later.csv") == stored.sha256
    assert runner.sweep() == 0
    assert AuditEvent.objects.filter(action="delivery.delivered").count() == 1
    assert AuditEvent.objects.filter(action="delivery.attempt", outcome="failure").count() == 1


def test_delivery_fails_after_the_retry_limit_with_an_alert(cast, stock, broker, fast_retries):
    fast_retries.DELIVERY_MAX_ATTEMPTS = 2
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    arrival_route(endpoint, cast.partner.user)
    server.stop()
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/never.csv", b"x").pk)
    broker.drain()
    time.sleep(1.1)
    runner.sweep()
    broker.drain()
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 2
    assert delivery.last_error.startswith("gave up after 2 attempts")
    assert [a.outcome for a in delivery.attempts_log.all()] == ["retry", "failed"]
    alert = AuditEvent.objects.get(action="delivery.failed")
    assert alert.details["alert"] is True and "gave up" in alert.details["reason"]
    from notifications.models import OutboundEvent

    notice = OutboundEvent.objects.get(event="delivery.failed")
    assert "gave up after 2 attempts" in notice.data["reason"]
    assert runner.sweep() == 0


def test_delivery_older_than_the_age_limit_fails_instead_of_retrying(cast, stock, broker,
                                                                      fast_retries):
    fast_retries.DELIVERY_MAX_AGE = 2
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    arrival_route(endpoint, cast.partner.user)
    server.stop()
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/stale.csv", b"x").pk)
    broker.drain()
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.WAITING
    # The retry is never planned past the age limit.
    assert delivery.not_before <= delivery.created_at + dt.timedelta(seconds=2)
    time.sleep(2.1)
    assert runner.sweep() == 1
    broker.drain()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 2
    assert delivery.last_error.startswith("gave up: older than 2 seconds")
    alert = AuditEvent.objects.get(action="delivery.failed")
    assert alert.details["alert"] is True


def test_a_push_waits_for_its_window_then_goes_out(cast, stock, broker):
    from django.utils import timezone

    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    opens = timezone.now().replace(microsecond=0) + dt.timedelta(seconds=3)
    arrival_route(endpoint, cast.partner.user, window_start=opens.time(),
                  window_end=(opens + dt.timedelta(hours=1)).time())
    from deliveries import routing

    stored = store(cast.partner.user, "/at-opening.csv", b"w")
    [delivery] = routing.route_file(stored.pk)
    assert delivery.not_before == opens
    broker.drain()
    assert server.commands == [] and runner.sweep() == 0  # closed: nothing is sent
    time.sleep(max(0.0, (opens - timezone.now()).total_seconds()) + 0.2)
    assert runner.sweep() == 1  # what beat runs periodically
    broker.drain()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED and delivery.started_at >= opens
    assert file_sha256(server.root / "at-opening.csv") == stored.sha256


def test_remote_552_fails_the_delivery_with_that_reason(cast, stock, broker):
    server = stock(Behaviour(refuse_stor="552 Exceeded storage allocation."))
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/big.csv", b"x" * 1000).pk)
    broker.drain()
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 1
    assert "552 Exceeded storage allocation" in delivery.last_error
    attempt = delivery.attempts_log.get()
    assert attempt.remote_reply.startswith("552") and attempt.stage == "uploading"


@pytest.mark.parametrize("rest", [True, False], ids=["with-REST", "without-REST"])
def test_redo_resumes_the_temporary_file_when_the_server_offers_rest(cast, stock, broker, rest):
    server = stock(Behaviour(without=() if rest else ("REST",)))
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    arrival_route(endpoint, cast.partner.user)
    data = os.urandom(1_000_000)
    stored = store(cast.partner.user, "/resume.bin", data)
    from deliveries import routing

    [delivery] = routing.route_file(stored.pk)
    broker.sent.clear()
    # What a killed worker leaves: a first attempt and a partial temporary file.
    Delivery.objects.filter(pk=delivery.pk).update(attempts=1)
    (server.root / f".resume.bin.portside-{delivery.pk}.part").write_bytes(data[:300_000])
    runner.run(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    attempt = delivery.attempts_log.get()
    assert attempt.resumed_from == (300_000 if rest else 0)
    assert ("REST" in server.commands) is rest
    assert attempt.bytes_transferred == len(data) - attempt.resumed_from
    assert file_sha256(server.root / "resume.bin") == stored.sha256
    assert [p.name for p in server.root.iterdir()] == ["resume.bin"]


def test_redo_after_the_rename_verifies_instead_of_sending_again(cast, gateway, bank, broker):
    from datetime import timedelta

    from django.utils import timezone

    from deliveries import routing
    from deliveries.models import DeliveryAttempt

    endpoint = gateway_endpoint(gateway, bank)
    arrival_route(endpoint, cast.partner.user)
    stored = store(cast.partner.user, "/twice.csv", os.urandom(50_000))
    [delivery] = routing.route_file(stored.pk)
    broker.drain()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    # As if the worker died after RNTO, before recording: its lease expired at stage "renamed".
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.RUNNING, lease_owner="dead:1",
        lease_until=timezone.now() - timedelta(seconds=1))
    DeliveryAttempt.objects.filter(delivery=delivery).update(finished_at=None, outcome="")
    uploads_before = AuditEvent.objects.filter(action="upload", actor=bank.user.username).count()
    runner.run(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED and delivery.attempts == 2
    first, second = delivery.attempts_log.all()
    assert first.outcome == "abandoned" and second.outcome == "success"
    assert second.details["redo"].startswith("found renamed into place")
    assert delivery.verified_by == "size+sha256"
    assert AuditEvent.objects.filter(action="upload",
                                     actor=bank.user.username).count() == uploads_before


def test_push_over_implicit_ftps(cast, gateway, bank, broker):
    endpoint = gateway_endpoint(gateway, bank, tls_mode="implicit", port=gateway.implicit_port)
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    stored = store(cast.partner.user, "/implicit.csv", b"tls from the first byte")
    routing.route_file(stored.pk)
    broker.drain()
    assert only_delivery().verified_by == "size+sha256"
    assert StoredFile.objects.get(owner=bank.user, path="/implicit.csv").sha256 == stored.sha256


def test_push_in_active_mode(cast, stock, broker):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), data_mode="active")
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/active.csv", b"port").pk)
    broker.drain()
    assert only_delivery().status == Delivery.Status.DELIVERED
    assert "PORT" in server.commands and "PASV" not in server.commands


def test_push_logs_in_with_our_client_certificate(cast, gateway, bank, broker, tmp_path):
    from tests import certs

    ours = certs.make(tmp_path, "portside-client")
    certs.register(bank.user, ours)
    certs.set_login_method(bank.user, "password+certificate")
    endpoint = gateway_endpoint(gateway, bank, client_cert_pem=ours.pem,
                                client_key_pem=open(ours.key_path).read())
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    routing.route_file(store(cast.partner.user, "/cert.csv", b"mutual TLS").pk)
    broker.drain()
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    # The gateway writes a successful login through its audit spool: wait for the drainer.
    wait_for_event(action="login", outcome="success", actor=bank.user.username)


def test_an_endpoint_runs_no_more_deliveries_at_once_than_its_limit(cast, stock, broker):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), max_connections=1)
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    first = routing.route_file(store(cast.partner.user, "/1.csv", b"1").pk)[0]
    second = routing.route_file(store(cast.partner.user, "/2.csv", b"2").pk)[0]
    assert runner.claim(first.pk) is not None
    assert runner.claim(second.pk) is None  # the endpoint's only slot is taken
    second.refresh_from_db()
    assert second.status == Delivery.Status.PENDING and second.attempts == 0


def _hold_slot(delivery: Delivery) -> None:
    """Make a delivery look run by another worker: leased, its lease still valid."""
    from django.utils import timezone

    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.RUNNING, lease_owner="other:1",
        lease_until=timezone.now() + dt.timedelta(minutes=5))


def _routed_files(cast, stock, *, connections: int, count: int) -> list[Delivery]:
    """Route `count` stored files to one stock endpoint with `connections` connections."""
    from deliveries import routing

    endpoint = stock_endpoint(stock(), partner_named("Bank Ltd"), max_connections=connections)
    arrival_route(endpoint, cast.partner.user)
    return [routing.route_file(store(cast.partner.user, f"/{i}.csv", b"x").pk)[0]
            for i in range(count)]


def test_a_finished_delivery_sends_as_many_dropped_ones_as_the_endpoint_has_free_slots(
        cast, stock, broker, settings):
    settings.DELIVERY_SESSION_FILES = 1  # no next delivery over its session: only messages
    rows = _routed_files(cast, stock, connections=2, count=6)
    _hold_slot(rows[4])
    _hold_slot(rows[5])
    for row in rows[1:4]:
        assert runner.claim(row.pk) is None  # the endpoint is full: its message is dropped
    Delivery.objects.filter(pk=rows[5].pk).update(status=Delivery.Status.DELIVERED)
    broker.sent.clear()
    runner.run(rows[0].pk)
    assert Delivery.objects.get(pk=rows[0].pk).status == Delivery.Status.DELIVERED
    sent = [args[0] for name, args in broker.sent if name == "deliveries.run_delivery"]
    # Two slots, one still taken: the oldest dropped one goes; marked sent, so a second
    # delivery finishing at once sends the next one instead of the same.
    assert sent == [rows[1].pk]
    unsent = Delivery.objects.filter(enqueued_at__isnull=True).order_by("pk")
    assert list(unsent.values_list("pk", flat=True)) == [rows[2].pk, rows[3].pk]


def test_a_finished_delivery_does_not_resend_deliveries_whose_message_is_queued(
        cast, stock, broker):
    rows = _routed_files(cast, stock, connections=4, count=3)
    broker.sent.clear()  # their messages are still queued, not dropped
    runner.run(rows[0].pk)
    assert Delivery.objects.get(pk=rows[0].pk).status == Delivery.Status.DELIVERED
    assert [name for name, _ in broker.sent if name == "deliveries.run_delivery"] == []


def test_a_delivery_dropped_for_lack_of_room_is_swept(cast, stock, broker):
    first, second = _routed_files(cast, stock, connections=1, count=2)
    _hold_slot(first)
    assert runner.claim(second.pk) is None
    broker.sent.clear()
    runner.sweep()
    assert ("deliveries.run_delivery", [second.pk]) in [
        (name, list(args)) for name, args in broker.sent]


def test_a_closed_delivery_window_postpones_the_push(cast, stock, broker):
    import datetime as dt

    from django.utils import timezone

    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    now = timezone.now()
    start = (now + dt.timedelta(hours=2)).time().replace(second=0, microsecond=0)
    end = (now + dt.timedelta(hours=3)).time().replace(second=0, microsecond=0)
    arrival_route(endpoint, cast.partner.user, window_start=start, window_end=end)
    from deliveries import routing

    [delivery] = routing.route_file(store(cast.partner.user, "/w.csv", b"w").pk)
    assert delivery.not_before is not None and delivery.not_before > now
    broker.drain()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING and delivery.attempts == 0
    assert server.commands == []


def test_a_file_replaced_before_sending_is_cancelled_not_failed(cast, stock, broker):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    arrival_route(endpoint, cast.partner.user)
    from deliveries import routing

    stored = store(cast.partner.user, "/gone.csv", b"old")
    routing.route_file(stored.pk)
    StoredFile.objects.filter(pk=stored.pk).update(state=FileState.DELETED)
    broker.drain()
    delivery = only_delivery()
    assert delivery.status == Delivery.Status.CANCELLED
    assert "deleted" in delivery.last_error
    assert AuditEvent.objects.filter(action="delivery.cancelled").count() == 1


def test_scheduled_route_pushes_what_is_ready_when_beat_runs_it(cast, gateway, bank, broker):
    from datetime import timedelta

    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    import deliveries.tasks  # noqa: F401 - registers the tasks
    from deliveries import routing, services
    from mft.celery import app

    route = services.create_route(name="quarter-hourly", endpoint=gateway_endpoint(gateway, bank),
                                  trigger="schedule", cron="*/15 * * * *",
                                  source_user=cast.partner.user, source_folder="/out")
    wanted = [store(cast.partner.user, f"/out/{name}.csv", os.urandom(20_000))
              for name in ("a", "b")]
    store(cast.partner.user, "/elsewhere.csv", b"not in the folder")
    assert routing.route_file(wanted[0].pk) == []  # scheduled routes ignore arrivals
    row = PeriodicTask.objects.get(name=f"deliveries.route.{route.pk}")
    row.last_run_at = timezone.now() - timedelta(hours=1)
    entry = DatabaseScheduler.Entry(row, app=app)
    assert entry.is_due().is_due  # beat would run it now
    app.tasks[entry.task](*entry.args, **entry.kwargs)
    broker.drain()
    arrived = {f.path: f.sha256 for f in StoredFile.objects.filter(owner=bank.user)}
    assert arrived == {"/a.csv": wanted[0].sha256, "/b.csv": wanted[1].sha256}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"delivered"}
    app.tasks[entry.task](*entry.args)  # the next tick: nothing new to send
    assert Delivery.objects.count() == 2 and broker.sent == []


def test_pgp_route_sends_an_encrypted_copy_and_never_touches_the_original(cast, stock, broker):
    import io
    import shutil
    import tempfile
    from pathlib import Path

    from accounts.models import PgpKey
    from deliveries import routing
    from transfers import pgp

    home = Path(tempfile.mkdtemp(prefix="pgpt-"))
    keyring = pgp.Keyring(home, s2k_count=65536)
    try:
        fingerprint = keyring.generate_platform_key("Bank Ltd", "ops@bank.example", None)
        armored = keyring.export_public(fingerprint)
        partner = partner_named("Bank Ltd")
        PgpKey.objects.create(partner=partner, armored=armored, fingerprint=fingerprint)
        server = stock()
        endpoint = stock_endpoint(server, partner)
        arrival_route(endpoint, cast.partner.user, pgp_encrypt=True)
        data = os.urandom(600_000)
        stored = store(cast.partner.user, "/secret.csv", data)
        on_disk = file_sha256(Path(stored.storage_path))
        routing.route_file(stored.pk)
        broker.drain()
        delivery = only_delivery()
        assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
        remote = server.root / "secret.csv.pgp"
        assert delivery.remote_path == "/secret.csv.pgp" and delivery.pgp_encrypted
        assert delivery.sent_sha256 == file_sha256(remote) != stored.sha256
        assert delivery.source_sha256 == stored.sha256
        assert data not in remote.read_bytes()
        plain = io.BytesIO()
        keyring.decrypt_stream(io.BytesIO(remote.read_bytes()), plain, passphrase=None)
        assert plain.getvalue() == data
        assert file_sha256(Path(stored.storage_path)) == on_disk  # the original is untouched
        assert [p.name for p in server.root.iterdir()] == ["secret.csv.pgp"]
    finally:
        keyring.stop_agent()
        shutil.rmtree(home, ignore_errors=True)


def test_pgp_route_can_sign_its_copy_with_the_platform_key(cast, stock, broker, settings,
                                                           tmp_path):
    import io
    import secrets

    from accounts.models import PgpKey
    from deliveries import routing
    from transfers import pgp
    from transfers.pgp_step import platform_keyring

    settings.PGP_PASSPHRASE = secrets.token_urlsafe(24)
    platform_keyring.cache_clear()
    platform = platform_keyring()
    partner_ring = pgp.Keyring(tmp_path / "bank-gnupg", s2k_count=65536)
    try:
        ours = platform.generate_platform_key("Portside", "mft@example.com",
                                              settings.PGP_PASSPHRASE)
        theirs = partner_ring.generate_platform_key("Bank Ltd", "ops@bank.example", None)
        partner_ring.import_public_key(platform.export_public(ours))
        partner = partner_named("Bank Ltd")
        PgpKey.objects.create(partner=partner, armored=partner_ring.export_public(theirs),
                              fingerprint=theirs)
        server = stock()
        arrival_route(stock_endpoint(server, partner), cast.partner.user, pgp_encrypt=True,
                      pgp_sign=True)
        data = os.urandom(300_000)
        stored = store(cast.partner.user, "/signed.csv", data)
        routing.route_file(stored.pk)
        broker.drain()
        delivery = only_delivery()
        assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
        assert delivery.pgp_encrypted and delivery.pgp_signed
        plain = io.BytesIO()
        result = partner_ring.decrypt_stream(
            io.BytesIO((server.root / "signed.csv.pgp").read_bytes()), plain, passphrase=None,
            require_signature=True, allowed_signers=[ours])
        assert plain.getvalue() == data
        assert result.signature_valid and result.signer_fingerprint == ours
    finally:
        partner_ring.stop_agent()
        platform.stop_agent()
        platform_keyring.cache_clear()


def test_a_signing_route_without_a_platform_key_fails_with_the_reason(cast, stock, broker,
                                                                      settings, tmp_path):
    from accounts.models import PgpKey
    from deliveries import routing
    from transfers import pgp

    settings.PGP_PASSPHRASE = ""
    ring = pgp.Keyring(tmp_path / "bank-gnupg", s2k_count=65536)
    try:
        theirs = ring.generate_platform_key("Bank Ltd", "ops@bank.example", None)
        partner = partner_named("Bank Ltd")
        PgpKey.objects.create(partner=partner, armored=ring.export_public(theirs),
                              fingerprint=theirs)
        server = stock()
        arrival_route(stock_endpoint(server, partner), cast.partner.user, pgp_encrypt=True,
                      pgp_sign=True)
        routing.route_file(store(cast.partner.user, "/signed.csv", b"a,b\n").pk)
        broker.drain()
        delivery = only_delivery()
        assert delivery.status == Delivery.Status.FAILED
        assert "no platform key" in delivery.last_error
        assert list(server.root.iterdir()) == []
    finally:
        ring.stop_agent()


def test_signing_without_encrypting_is_refused(cast, stock):
    from deliveries import services
    from mft.errors import InvalidInput

    endpoint = stock_endpoint(stock(), partner_named("Bank Ltd"))
    with pytest.raises(InvalidInput, match="pgp_sign"):
        services.create_route(name="sign-only", endpoint=endpoint,
                              source_user=cast.partner.user, pgp_sign=True)


def test_a_push_records_what_a_redo_needs_before_it_renames(cast, stock, broker):
    from deliveries import routing
    from deliveries.models import DeliveryAttempt

    seen: list[tuple[str, str]] = []

    def before(command: str, argument: str) -> None:
        if command == "RNFR":
            attempt = DeliveryAttempt.objects.get()
            sent = Delivery.objects.values_list("sent_sha256", flat=True).get()
            seen.append((attempt.stage, sent))

    server = stock(Behaviour(on_command=before))
    arrival_route(stock_endpoint(server, partner_named("Bank Ltd")), cast.partner.user)
    data = b"renamed once"
    routing.route_file(store(cast.partner.user, "/r.csv", data).pk)
    broker.drain()
    assert seen == [("renaming", hashlib.sha256(data).hexdigest())]
    assert DeliveryAttempt.objects.get().stage == "renamed"


def test_a_deliverys_subscribers_are_read_before_its_record_and_one_deleted_since_hears_nothing(
        cast, stock, broker, monkeypatch):
    from django.db import connection

    from notifications import services, subscriptions
    from notifications.models import Notification, OutboundEvent, Subscription

    made = [subscriptions.create_subscription(
        name=name, scope="admin", channel="email", events_filter=["delivery.*"],
        email_to="ops@example.test", digest=True).subscription  # nothing to send now
        for name in ("kept", "gone")]
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), remote_folder="/")
    arrival_route(endpoint, cast.partner.user)
    stored = store(cast.partner.user, "/heard.csv", b"a;b\n")
    read = services.listeners
    in_a_transaction = []

    def listeners_then_one_deleted(event, partner_id=None):
        in_a_transaction.append(connection.in_atomic_block)
        heard = read(event, partner_id)
        Subscription.objects.filter(pk=made[1].pk).delete()
        return heard

    monkeypatch.setattr(services, "listeners", listeners_then_one_deleted)
    from deliveries import routing

    routing.route_file(stored.pk)
    broker.drain()
    assert only_delivery().status == Delivery.Status.DELIVERED
    assert in_a_transaction == [False]
    event = OutboundEvent.objects.get(event="delivery.succeeded")
    assert [n.subscription_id for n in Notification.objects.filter(event=event)] == [made[0].pk]

"""Pulls from partners' FTPS servers into a local user's folder and the pipeline."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from audit.models import AuditEvent
from deliveries import pull as pulls
from deliveries import services
from deliveries.models import Delivery
from tests.deliveries_support import (
    gateway_endpoint,
    partner_named,
    stock_endpoint,
    store,
)
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: broker, stock, bank…


def run_beat_entry(name: str) -> None:
    """Run a periodic task the way beat's database scheduler would: by name, with its args."""
    from django_celery_beat.models import PeriodicTask

    import deliveries.tasks  # noqa: F401 - registers the tasks
    from mft.celery import app

    task = PeriodicTask.objects.get(name=name, enabled=True)
    app.tasks[task.task](*json.loads(task.args))


def test_pull_lands_in_the_pipeline_then_deletes_the_remote_file(cast, stock, broker, settings):
    settings.SCAN_MODE = "off"
    server = stock()
    data = os.urandom(200_000)
    (server.root / "invoice-1.csv").write_bytes(data)
    (server.root / "readme.txt").write_bytes(b"not for us")
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    pull = services.create_pull(name="bank-invoices", endpoint=endpoint,
                                local_user=cast.partner.user, local_folder="/incoming",
                                filename_pattern="*.csv", after_download="delete",
                                cron="*/5 * * * *")
    run_beat_entry(f"deliveries.pull.{pull.pk}")
    broker.drain()
    delivery = Delivery.objects.get(pull=pull)
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    assert delivery.verified_by == "size" and delivery.remote_action_done
    landed = StoredFile.objects.get(owner=cast.partner.user, path="/incoming/invoice-1.csv")
    assert landed.sha256 == hashlib.sha256(data).hexdigest() == delivery.sent_sha256
    assert landed.state == FileState.READY and landed.protocol == "ftps-pull"
    assert delivery.stored_file_id == landed.pk
    assert sorted(p.name for p in server.root.iterdir()) == ["readme.txt"]
    stor = server.commands.index("RETR")
    assert server.commands.index("DELE") > stor
    assert AuditEvent.objects.filter(action="delivery.delivered",
                                     object_id=str(delivery.pk)).exists()


def test_pull_from_the_gateway_is_verified_by_hash_and_moved(cast, gateway, bank, broker):
    data = os.urandom(300_000)
    store(bank.user, "/out/statement.csv", data)
    endpoint = gateway_endpoint(gateway, bank, remote_folder="/out")
    pull = services.create_pull(name="bank-statements", endpoint=endpoint,
                                local_user=cast.partner.user, local_folder="/statements",
                                after_download="move", move_to_folder="/out/done",
                                cron="0 6 * * *")
    made = pulls.list_remote(pull.pk)
    assert [d.remote_path for d in made] == ["/out/statement.csv"]
    broker.drain()
    delivery = Delivery.objects.get(pull=pull)
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    assert delivery.verified_by == "size+sha256"
    moved = StoredFile.objects.get(owner=bank.user, state=FileState.READY)
    assert moved.path == "/out/done/statement.csv"
    landed = StoredFile.objects.get(owner=cast.partner.user, path="/statements/statement.csv")
    assert landed.sha256 == moved.sha256 == hashlib.sha256(data).hexdigest()


def test_pull_that_keeps_remote_files_fetches_each_only_once(cast, stock, broker):
    server = stock()
    (server.root / "daily.csv").write_bytes(b"1;2;3\n")
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    pull = services.create_pull(name="keep", endpoint=endpoint, local_user=cast.partner.user,
                                cron="0 * * * *")
    assert len(pulls.list_remote(pull.pk)) == 1
    broker.drain()
    assert pulls.list_remote(pull.pk) == []
    assert (server.root / "daily.csv").exists()
    (server.root / "daily.csv").write_bytes(b"1;2;3;4\n")  # a new version of the file
    assert len(pulls.list_remote(pull.pk)) == 1


def test_pull_listing_failure_is_recorded_and_audited(cast, stock, broker):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), pinned_sha256="ef" * 32)
    pull = services.create_pull(name="refused", endpoint=endpoint,
                                local_user=cast.partner.user, cron="0 * * * *")
    assert pulls.list_remote(pull.pk) == []
    pull.refresh_from_db()
    assert "pinned" in pull.last_error
    assert AuditEvent.objects.filter(action="delivery.pull.list", outcome="failure").exists()
    assert server.commands == ["AUTH"]

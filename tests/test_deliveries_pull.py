"""Pulls from partners' FTPS servers into a local user's folder and the pipeline."""

from __future__ import annotations

import hashlib
import json
import os
import time

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
from tests.remote_ftps import Behaviour
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
                                cron="*/5 * * * *", stable_seconds=0)
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
                                cron="0 6 * * *", stable_seconds=0)
    made = pulls.list_remote(pull.pk)
    assert [d.remote_path for d in made] == ["/out/statement.csv"]
    broker.drain()
    delivery = Delivery.objects.get(pull=pull)
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    assert delivery.verified_by == "size+sha256"
    # The gateway refuses a data connection that does not resume the control session.
    assert delivery.attempts_log.get().details["tls"]["data_sessions_resumed"] == [True]
    moved = StoredFile.objects.get(owner=bank.user, state=FileState.READY)
    assert moved.path == "/out/done/statement.csv"
    landed = StoredFile.objects.get(owner=cast.partner.user, path="/statements/statement.csv")
    assert landed.sha256 == moved.sha256 == hashlib.sha256(data).hexdigest()


def test_pull_that_keeps_remote_files_fetches_each_only_once(cast, stock, broker):
    server = stock()
    (server.root / "daily.csv").write_bytes(b"1;2;3\n")
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    pull = services.create_pull(name="keep", endpoint=endpoint, local_user=cast.partner.user,
                                cron="0 * * * *", stable_seconds=0)
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


def test_pull_leaves_a_file_that_grows_between_two_listings_for_a_later_run(cast, stock, broker):
    growing = os.urandom(50_000)
    listings: list[str] = []

    def partner_writes(command: str, argument: str) -> None:
        if command == "MLSD":
            listings.append(argument)
            if len(listings) == 2:  # between the two listings of the first run
                with (server.root / "growing.csv").open("ab") as handle:
                    handle.write(b"tail")

    server = stock(Behaviour(on_command=partner_writes))
    (server.root / "growing.csv").write_bytes(growing)
    (server.root / "done.csv").write_bytes(b"finished long ago")
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    pull = services.create_pull(name="settle", endpoint=endpoint, local_user=cast.partner.user,
                                local_folder="/in", cron="0 * * * *", stable_seconds=1,
                                after_download="delete")
    started = time.monotonic()
    made = pulls.list_remote(pull.pk)
    assert time.monotonic() - started >= 1  # the two listings were a second apart
    assert [d.remote_path for d in made] == ["/done.csv"]
    listed = AuditEvent.objects.get(action="delivery.pull.list")
    assert listed.details["waiting"] == ["growing.csv"]
    broker.drain()
    assert (server.root / "growing.csv").exists()  # neither fetched nor deleted
    assert not StoredFile.objects.filter(path="/in/growing.csv").exists()
    made = pulls.list_remote(pull.pk)  # the partner has finished writing
    assert [d.remote_path for d in made] == ["/growing.csv"]
    broker.drain()
    landed = StoredFile.objects.get(owner=cast.partner.user, path="/in/growing.csv")
    assert landed.sha256 == hashlib.sha256(growing + b"tail").hexdigest()
    assert sorted(p.name for p in server.root.iterdir()) == []
    assert len(listings) == 4


def test_pull_with_a_minimum_age_fetches_only_files_modified_long_enough_ago(
        cast, stock, broker):
    server = stock()
    old, young = server.root / "old.csv", server.root / "young.csv"
    old.write_bytes(b"yesterday")
    young.write_bytes(b"just now")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    pull = services.create_pull(name="aged", endpoint=endpoint, local_user=cast.partner.user,
                                cron="0 * * * *", stable_seconds=0, min_age_seconds=600)
    assert [d.remote_path for d in pulls.list_remote(pull.pk)] == ["/old.csv"]
    assert pulls.list_remote(pull.pk) == []  # the young file is still too young
    os.utime(young, (an_hour_ago, an_hour_ago))
    assert [d.remote_path for d in pulls.list_remote(pull.pk)] == ["/young.csv"]


def test_a_file_written_to_during_the_download_is_neither_landed_nor_deleted(
        cast, stock, broker, fast_retries):
    from deliveries import runner

    first = os.urandom(120_000)

    def partner_writes(command: str, argument: str) -> None:
        # Right after our download, before we check the size again: the partner appends.
        if command == "SIZE" and "RETR" in server.commands and not appended:
            appended.append(argument)
            with (server.root / "report.csv").open("ab") as handle:
                handle.write(b"late lines\n")

    appended: list[str] = []
    server = stock(Behaviour(on_command=partner_writes))
    (server.root / "report.csv").write_bytes(first)
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"))
    pull = services.create_pull(name="racing", endpoint=endpoint, local_user=cast.partner.user,
                                local_folder="/in", cron="0 * * * *", stable_seconds=0,
                                after_download="delete")
    [delivery] = pulls.list_remote(pull.pk)
    broker.drain()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.WAITING and delivery.landed_at is None
    assert "still being written" in delivery.last_error
    assert "DELE" not in server.commands and (server.root / "report.csv").exists()
    assert not StoredFile.objects.filter(path="/in/report.csv", state=FileState.READY).exists()
    time.sleep(1.1)  # the back-off (fast_retries: at most one second)
    runner.sweep()
    broker.drain()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.CANCELLED  # that version is gone
    [again] = pulls.list_remote(pull.pk)  # the next run fetches the finished file
    broker.drain()
    again.refresh_from_db()
    assert again.status == Delivery.Status.DELIVERED, again.last_error
    landed = StoredFile.objects.get(owner=cast.partner.user, path="/in/report.csv")
    assert landed.sha256 == hashlib.sha256(first + b"late lines\n").hexdigest()
    assert not (server.root / "report.csv").exists()


def test_the_time_between_listings_is_bounded(cast, stock):
    from mft.errors import InvalidInput

    endpoint = stock_endpoint(stock(), partner_named("Bank Ltd"))
    with pytest.raises(InvalidInput, match="stable_seconds"):
        services.create_pull(name="forever", endpoint=endpoint, local_user=cast.partner.user,
                             cron="0 * * * *", stable_seconds=3600)

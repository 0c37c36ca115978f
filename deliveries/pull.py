"""Fetch files from a partner's server into a local user's folder, then into the pipeline.

A scheduled listing (`list_remote`) creates one pull delivery per new remote file; each is
then fetched like a push is sent, with a lease, attempts and retries (`fetch`). The bytes go
through `transfers.uploads` — the same path as an FTPS upload: quota, hashing, encryption at
rest, then the scanning pipeline. The remote file is deleted or moved only after the local
copy is verified (size, and SHA-256 by HASH when offered) and recorded.
"""

from __future__ import annotations

import fnmatch
import posixpath

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import events
from audit.events import Origin
from deliveries import connection, queue
from deliveries.attempts import SUCCESS, Attempt, Outcome
from deliveries.errors import Cancelled, VerificationFailed
from deliveries.ftps_client import FtpsClient, FtpsError, RemoteEntry, RemoteRefused
from deliveries.models import Delivery, Pull
from transfers import uploads
from transfers.models import StoredFile


def list_remote(pull_id: int) -> list[Delivery]:
    """List the pull's remote folder and create a delivery for each new matching file."""
    pull = Pull.objects.filter(pk=pull_id, enabled=True, endpoint__enabled=True).select_related(
        "endpoint").first()
    if pull is None:
        return []
    folder = pull.remote_folder or pull.endpoint.remote_folder
    try:
        with connection.connect(pull.endpoint) as client:
            entries = client.files(folder)
    except FtpsError as exc:
        Pull.objects.filter(pk=pull.pk).update(last_error=str(exc)[:1000])
        events.pull_listed(pull=pull, outcome=events.FAILURE,
                           details={"folder": folder, "error": str(exc)[:500]})
        return []
    wanted = [e for e in entries if not e.name.startswith(".")
              and fnmatch.fnmatchcase(e.name, pull.filename_pattern)]
    with transaction.atomic():
        made = [row for entry in wanted[:pull.max_files_per_run]
                if (row := _create(pull, folder, entry)) is not None]
        Pull.objects.filter(pk=pull.pk).update(last_listed_at=timezone.now(), last_error="")
        if made:
            events.pull_listed(pull=pull, outcome=events.SUCCESS, details={
                "folder": folder, "listed": len(entries), "new": [d.remote_path for d in made]})
    return made


def remote_key(entry: RemoteEntry) -> str:
    """Return what identifies one version of a remote file: name, size, modification time."""
    return f"{entry.name}|{entry.size}|{entry.modified}"


def _create(pull: Pull, folder: str, entry: RemoteEntry) -> Delivery | None:
    """Create and queue the delivery for one remote file; None when it was seen before."""
    row = Delivery(
        direction=Delivery.Direction.PULL, pull=pull, endpoint=pull.endpoint,
        remote_path=posixpath.join(folder, entry.name), remote_key=remote_key(entry),
        source_size=entry.size, local_owner=pull.local_user.username,
        local_path=posixpath.join(pull.local_folder, entry.name), enqueued_at=timezone.now())
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        return None
    queue.enqueue_on_commit(row.pk)
    return row


def fetch(delivery: Delivery, attempt: Attempt) -> Outcome:
    """Download one remote file into the pipeline, verified; then delete or move it."""
    pull = delivery.pull
    assert pull is not None
    with connection.connect(delivery.endpoint) as client:
        attempt.details["features"] = list(client.features.lines)
        if delivery.landed_at is None:
            _download(client, delivery, pull, attempt)
            delivery.refresh_from_db()
        if pull.after_download != Pull.AfterDownload.KEEP and not delivery.remote_action_done:
            attempt.stage("cleanup")
            _clean_up(client, delivery, pull)
            Delivery.objects.filter(pk=delivery.pk).update(remote_action_done=True)
        attempt.details["tls"] = client.tls
    attempt.stage("done")
    return Outcome(SUCCESS, reply=attempt.reply, details={"after_download": pull.after_download})


def _origin(pull: Pull) -> Origin:
    return Origin(actor="system", protocol="ftps-pull",
                  extra={"pull": pull.name, "endpoint": str(pull.endpoint)})


def _download(client: FtpsClient, delivery: Delivery, pull: Pull, attempt: Attempt) -> None:
    """Stream the remote file into a local upload, verify it, and land it in the pipeline."""
    size = client.size(delivery.remote_path)
    if size is None and client.features.size:
        raise Cancelled("the remote file is gone")
    if size is not None and delivery.source_size is not None and size != delivery.source_size:
        raise Cancelled("the remote file changed since it was listed; the next listing "
                        "fetches the new version")
    attempt.stage("downloading")
    upload = uploads.begin_upload(pull.local_user, delivery.local_path, origin=_origin(pull),
                                  make_parents=True)
    try:
        got = client.download(delivery.remote_path, upload.write, progress=attempt.progress)
        attempt.reply = got.reply
        attempt.stage("verifying")
        verified_by = _verify(client, delivery.remote_path, size, got.bytes, got.sha256)
    except BaseException as exc:
        upload.abort(f"download from the partner failed: {exc}"[:300])
        raise
    with transaction.atomic():
        stored: StoredFile = upload.finish()
        Delivery.objects.filter(pk=delivery.pk).update(
            stored_file=stored, landed_at=timezone.now(), sent_size=got.bytes,
            sent_sha256=got.sha256, source_sha256=got.sha256, verified_by=verified_by)


def _verify(client: FtpsClient, path: str, size: int | None, received: int,
            sha256: str) -> str:
    """Check what arrived against the remote size and, when offered, its SHA-256."""
    if size is not None and received != size:
        raise VerificationFailed(f"received {received} bytes of {path}, the server has {size}")
    remote_sha = client.sha256(path)
    if remote_sha is not None and remote_sha != sha256:
        raise VerificationFailed(f"the server's SHA-256 of {path} is {remote_sha}, the bytes "
                                 f"received hash to {sha256}")
    checked = [name for name, done in (("size", size is not None),
                                       ("sha256", remote_sha is not None)) if done]
    return "+".join(checked) or "transfer reply"


def _clean_up(client: FtpsClient, delivery: Delivery, pull: Pull) -> None:
    """Delete or move the remote file (already gone counts as done)."""
    try:
        if pull.after_download == Pull.AfterDownload.DELETE:
            client.delete(delivery.remote_path)
        else:
            client.make_folder(pull.move_to_folder)
            target = posixpath.join(pull.move_to_folder, posixpath.basename(delivery.remote_path))
            client.rename(delivery.remote_path, target)
    except RemoteRefused:
        if client.size(delivery.remote_path) is not None:
            raise

"""Fetch files from a partner's server into a local user's folder, then into the pipeline.

A scheduled listing (`list_remote`) creates one pull delivery per new remote file that has
settled — unchanged in size and modification time across two listings `stable_seconds`
apart, and at least `min_age_seconds` old — so a file the partner is still writing is left
for a later run. Each is then fetched like a push is sent, with a lease, attempts and
retries (`fetch`); a file whose size or time changes meanwhile is not landed. The bytes go
through `transfers.uploads` — the same path as an FTPS upload: quota, hashing, encryption at
rest, then the scanning pipeline. The remote file is deleted or moved only after the local
copy is verified (size, and SHA-256 by HASH when offered) and recorded.
"""

from __future__ import annotations

import fnmatch
import posixpath
import time
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import events
from audit.events import Origin
from deliveries import connection, queue
from deliveries.attempts import SUCCESS, Attempt, Outcome
from deliveries.errors import Cancelled, VerificationFailed
from deliveries.ftps_client import FtpsClient, FtpsError, RemoteEntry, RemoteRefused
from deliveries.models import Delivery, Pull
from deliveries.session import Session
from transfers import uploads
from transfers.models import StoredFile


def list_remote(pull_id: int) -> list[Delivery]:
    """List the pull's remote folder and create a delivery for each new file that settled."""
    pull = Pull.objects.filter(pk=pull_id, enabled=True, endpoint__enabled=True).select_related(
        "endpoint").first()
    if pull is None:
        return []
    folder = pull.remote_folder or pull.endpoint.remote_folder
    try:
        with connection.connect(pull.endpoint) as client:
            listed = client.files(folder)
            settled, waiting = _settled(client, pull, folder, _new_files(pull, listed))
    except FtpsError as exc:
        Pull.objects.filter(pk=pull.pk).update(last_error=str(exc)[:1000])
        events.pull_listed(pull=pull, outcome=events.FAILURE,
                           details={"folder": folder, "error": str(exc)[:500]})
        return []
    with transaction.atomic():
        made = [row for entry in settled[:pull.max_files_per_run]
                if (row := _create(pull, folder, entry)) is not None]
        Pull.objects.filter(pk=pull.pk).update(last_listed_at=timezone.now(), last_error="")
        if made or waiting:
            events.pull_listed(pull=pull, outcome=events.SUCCESS, details={
                "folder": folder, "listed": len(listed), "new": [d.remote_path for d in made],
                "waiting": waiting[:50]})
    return made


def _new_files(pull: Pull, entries: list[RemoteEntry]) -> list[RemoteEntry]:
    """Return the matching files (in this version) the pull has not fetched yet."""
    wanted = [e for e in entries if not e.name.startswith(".")
              and fnmatch.fnmatchcase(e.name, pull.filename_pattern)]
    known = set(Delivery.objects.filter(
        pull=pull, remote_key__in=[remote_key(e) for e in wanted]).values_list(
        "remote_key", flat=True))
    return [e for e in wanted if remote_key(e) not in known]


def _settled(client: FtpsClient, pull: Pull, folder: str, new: list[RemoteEntry]
             ) -> tuple[list[RemoteEntry], list[str]]:
    """Split new files into those that look finished and the names of those that may still
    be written: changed between two listings, or modified too recently."""
    if new and pull.stable_seconds:
        time.sleep(pull.stable_seconds)  # bounded by the model (MAX_STABLE_SECONDS)
        again = set(client.files(folder))
        new, changing = [e for e in new if e in again], [e for e in new if e not in again]
    else:
        changing = []
    now = timezone.now()
    young = [e for e in new if not old_enough(e, pull.min_age_seconds, now)]
    return [e for e in new if e not in young], [e.name for e in changing + young]


def modified_at(modified: str) -> datetime | None:
    """Return a server's modification time (MLSD modify or MDTM, UTC) as a datetime."""
    try:
        return datetime.strptime(modified[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def old_enough(entry: RemoteEntry, min_age: int, now: datetime) -> bool:
    """Return True when the file was last modified at least min_age seconds ago.

    A server that gives no modification time cannot show a file is old enough.
    """
    if not min_age:
        return True
    modified = modified_at(entry.modified)
    return modified is not None and (now - modified).total_seconds() >= min_age


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


def fetch(delivery: Delivery, attempt: Attempt, session: Session) -> Outcome:
    """Download one remote file into the pipeline, verified, over the session (as for a
    push); then delete or move it."""
    pull = delivery.pull
    assert pull is not None
    with session.client(delivery.endpoint) as client:
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
    listed_time = delivery.remote_key.rsplit("|", 2)[-1]
    size = client.size(delivery.remote_path)
    if size is None and client.features.size:
        raise Cancelled("the remote file is gone")
    if ((size is not None and delivery.source_size is not None
         and size != delivery.source_size)
            or _rewritten(client, delivery.remote_path, listed_time)):
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
        if _rewritten(client, delivery.remote_path, listed_time):
            raise VerificationFailed(f"{delivery.remote_path} was modified during the download")
    except BaseException as exc:
        upload.abort(f"download from the partner failed: {exc}"[:300])
        raise
    with transaction.atomic():
        stored: StoredFile = upload.finish()
        Delivery.objects.filter(pk=delivery.pk).update(
            stored_file=stored, landed_at=timezone.now(), sent_size=got.bytes,
            sent_sha256=got.sha256, source_sha256=got.sha256, verified_by=verified_by)


def _rewritten(client: FtpsClient, path: str, listed_time: str) -> bool:
    """Return True when the server's modification time is no longer the listed one."""
    if not listed_time:
        return False
    now = client.mdtm(path)
    return bool(now) and now[:14] != listed_time[:14]


def _verify(client: FtpsClient, path: str, size: int | None, received: int,
            sha256: str) -> str:
    """Check what arrived against the remote size (before and after) and, when offered, its
    SHA-256: a partner still writing the file shows here."""
    if size is not None and received != size:
        raise VerificationFailed(f"received {received} bytes of {path}, the server has {size}")
    after = client.size(path)
    if after is not None and after != received:
        raise VerificationFailed(f"received {received} bytes of {path}, the server has {after} "
                                 "now: it is still being written")
    remote_sha = client.sha256(path)
    if remote_sha is not None and remote_sha != sha256:
        raise VerificationFailed(f"the server's SHA-256 of {path} is {remote_sha}, the bytes "
                                 f"received hash to {sha256}")
    checked = [name for name, done in (("size", after is not None),
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

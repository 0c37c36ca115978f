"""Push one stored file to a partner's server: temporary name, verify, rename, verify.

The bytes come from the stored file through `transfers.storage` (decrypted at rest on the
fly), or through gpg for PGP routes; the stored original is only ever read. A redo after a
crash resumes the remote temporary file with REST when the server offers it, or finds the
file already renamed into place and verifies it instead of sending it twice.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from deliveries import encryption
from deliveries.attempts import SUCCESS, Attempt, Outcome
from deliveries.errors import Cancelled, PermanentProblem, VerificationFailed
from deliveries.ftps_client import BLOCK, FtpsClient, RemoteRefused
from deliveries.models import Delivery, DeliveryAttempt
from deliveries.session import Session
from transfers import storage
from transfers.models import FileState, StoredFile

_AFTER_RENAME = ("renaming", "renamed")
LONG_UPLOAD = 4 * BLOCK


@dataclass(frozen=True)
class Names:
    """The file's final remote path and the temporary one it is uploaded under."""

    final: str
    temp: str


@dataclass(frozen=True)
class Sent:
    """What the remote file must be: its size and SHA-256."""

    size: int
    sha256: str
    reply: str = ""


def names(delivery: Delivery) -> Names:
    """Return the remote paths for a delivery (the temporary name is unique to it)."""
    final = delivery.remote_path
    if not delivery.endpoint.use_temp_name:
        return Names(final, final)
    folder, name = posixpath.split(final)
    return Names(final, posixpath.join(folder, f".{name}.portside-{delivery.pk}.part"))


def source(delivery: Delivery) -> StoredFile:
    """Return the file to send, refusing one deleted or replaced since it was routed."""
    stored = (StoredFile.objects.filter(pk=delivery.stored_file_id).first()
              if delivery.stored_file_id is not None else None)
    if stored is None:
        raise Cancelled("the file was deleted before it could be sent")
    if stored.state != FileState.READY:
        raise Cancelled(f"the file is {stored.state} now: no longer ready to send")
    return stored


def run(delivery: Delivery, attempt: Attempt, session: Session) -> Outcome:
    """Send the delivery's file, verified, under its final name, over the session (kept
    from the previous delivery to this endpoint, or new); return the outcome."""
    stored = source(delivery)
    paths = names(delivery)
    with session.client(delivery.endpoint) as client:
        attempt.details["features"] = list(client.features.lines)
        verified_by = _landed_before(client, delivery, paths)
        if verified_by is not None:
            sent = Sent(delivery.sent_size or 0, delivery.sent_sha256)
            attempt.details["redo"] = "found renamed into place by an earlier attempt"
        else:
            sent = _send(client, delivery, stored, paths.temp, attempt)
            _reach(attempt, "verifying")
            verified_by = verify(client, paths.temp, sent)
            if paths.temp != paths.final:
                _rename_into_place(client, delivery, paths, sent, attempt)
        attempt.details["tls"] = client.tls
    return Outcome(SUCCESS, reply=sent.reply, fields={
        "sent_size": sent.size, "sent_sha256": sent.sha256, "verified_by": verified_by})


def _reach(attempt: Attempt, stage: str) -> None:
    """Note a stage that is written with the next written stage or the attempt's outcome.

    A redo after a crash only looks for the rename, which `Attempt.stage` writes before
    it happens; writing the others at once cost a write transaction each.
    """
    attempt.row.stage = stage
    attempt.progress(attempt.bytes)  # renews the lease only when a quarter of it is gone


def _uploading(attempt: Attempt, stored: StoredFile) -> None:
    """Record the upload's start: at once for a file that takes a while to send (a killed
    worker's attempt then shows how far it got), with the outcome for a small one."""
    if stored.size > LONG_UPLOAD:
        attempt.stage("uploading")
    else:
        _reach(attempt, "uploading")


def _send(client: FtpsClient, delivery: Delivery, stored: StoredFile, temp: str,
          attempt: Attempt) -> Sent:
    """Upload the plaintext (resuming when possible) or a PGP copy under temp."""
    if delivery.pgp_encrypted:
        _uploading(attempt, stored)
        with encryption.encrypted_blocks(stored, recipients(delivery),
                                         sign=delivery.pgp_signed) as blocks:
            done = client.upload(temp, blocks, progress=attempt.progress)
        attempt.reply = done.reply
        return Sent(done.bytes, done.sha256, done.reply)
    offset = _resume_offset(client, delivery, temp, stored.size)
    if offset and offset == stored.size:
        attempt.details["redo"] = "temporary file already complete on the server"
        return Sent(stored.size, stored.sha256)
    _uploading(attempt, stored)
    try:
        reply = _upload_plaintext(client, stored, temp, offset, attempt)
    except RemoteRefused:
        if not offset:
            raise
        attempt.details["resume_refused"] = True  # start again from the first byte
        reply = _upload_plaintext(client, stored, temp, 0, attempt)
    return Sent(stored.size, stored.sha256, reply)


def _upload_plaintext(client: FtpsClient, stored: StoredFile, temp: str, offset: int,
                      attempt: Attempt) -> str:
    """Upload the stored plaintext from offset; refuse a local file that changed."""
    attempt.resumed_from = offset
    hasher = hashlib.sha256()
    reader = storage.open_reader(Path(stored.storage_path))
    try:
        _hash_prefix(reader, offset, hasher)
        done = client.upload(temp, _blocks(reader, hasher), offset=offset,
                             progress=attempt.progress)
    finally:
        reader.close()
    attempt.reply = done.reply
    if offset + done.bytes != stored.size or hasher.hexdigest() != stored.sha256:
        raise PermanentProblem("the stored file no longer matches its recorded size and "
                               "SHA-256; it was not put in place")
    return done.reply


def _hash_prefix(reader: storage.Reader, length: int, hasher: hashlib._Hash) -> None:
    """Hash the part a resumed upload skips, so the whole file is still checked."""
    remaining = length
    while remaining:
        block = reader.read(min(BLOCK, remaining))
        if not block:
            break
        hasher.update(block)
        remaining -= len(block)


def _blocks(reader: storage.Reader, hasher: hashlib._Hash) -> Iterator[bytes]:
    while block := reader.read(BLOCK):
        hasher.update(block)
        yield block


def _resume_offset(client: FtpsClient, delivery: Delivery, temp: str, total: int) -> int:
    """Return how much of the temporary file an earlier attempt left that can be kept."""
    if delivery.attempts < 2 or temp == delivery.remote_path:
        return 0
    size = client.size(temp)
    if size is None or size > total:
        return 0
    if size == total or client.features.rest_stream:
        return size
    return 0


def recipients(delivery: Delivery) -> list[str]:
    """Return the armored public keys a PGP route encrypts to."""
    route = delivery.route
    assert route is not None
    keys = [route.pgp_key] if route.pgp_key is not None else list(
        route.endpoint.partner.pgp_keys.all())
    if not keys:
        raise PermanentProblem("the route encrypts with PGP but the partner has no PGP key")
    return [key.armored for key in keys]


def verify(client: FtpsClient, path: str, sent: Sent) -> str:
    """Check the remote file's size and, when offered, its SHA-256; return what was checked."""
    remote_size = client.size(path)
    if remote_size is None and client.features.size:
        raise VerificationFailed(f"{path} is not on the server after the upload")
    if remote_size is not None and remote_size != sent.size:
        raise VerificationFailed(f"the server holds {remote_size} bytes of {path}, "
                                 f"not {sent.size}")
    remote_sha = client.sha256(path)
    if remote_sha is not None and remote_sha != sent.sha256:
        raise VerificationFailed(f"the server's SHA-256 of {path} is {remote_sha}, "
                                 f"not {sent.sha256}")
    checked = [name for name, done in (("size", remote_size is not None),
                                       ("sha256", remote_sha is not None)) if done]
    return "+".join(checked) or "transfer reply"


def _rename_into_place(client: FtpsClient, delivery: Delivery, paths: Names, sent: Sent,
                       attempt: Attempt) -> None:
    """Rename the verified temporary file to its final name and check it landed."""
    # Remembered first, so a redo after a crash mid-rename can recognise the renamed file;
    # one transaction with the stage, the lease check writing them.
    with transaction.atomic():
        attempt.stage("renaming", sent_size=sent.size, sent_sha256=sent.sha256)
    try:
        client.rename(paths.temp, paths.final)
    except RemoteRefused as exc:
        # Some servers will not rename over an existing file: replace it explicitly.
        if not exc.permanent or client.size(paths.temp) is None or client.size(
                paths.final) is None:
            raise
        client.delete(paths.final)
        client.rename(paths.temp, paths.final)
    _reach(attempt, "renamed")
    final_size = client.size(paths.final)
    if final_size is None and client.features.size:
        raise VerificationFailed(f"{paths.final} is not on the server after the rename")
    if final_size is not None and final_size != sent.size:
        raise VerificationFailed(f"{paths.final} holds {final_size} bytes after the rename, "
                                 f"not {sent.size}")


def _landed_before(client: FtpsClient, delivery: Delivery, paths: Names) -> str | None:
    """Return how the file was verified if an earlier attempt renamed it into place already."""
    if paths.temp == paths.final or not delivery.sent_sha256:
        return None
    previous = (DeliveryAttempt.objects.filter(delivery=delivery, number__lt=delivery.attempts)
                .order_by("-number").first())
    if previous is None or previous.stage not in _AFTER_RENAME:
        return None
    if client.size(paths.temp) is not None:
        return None  # the rename did not happen: the temporary file is still there
    try:
        return verify(client, paths.final,
                      Sent(delivery.sent_size or 0, delivery.sent_sha256))
    except VerificationFailed:
        return None

"""Large transfers through the data channel's block path keep every byte and the hash.

Uploads gather several TLS records into one block per loop pass; binary downloads send
256 KiB plaintext blocks decrypted from the at-rest file, a share of several TLS records
per writable event. These tests check the bytes and the SHA-256 end to end, across quota
claims, at-rest chunk and block borders and the ends of each event's share.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL

from accounts.models import User
from ftps_gateway import tls_stream
from ftps_gateway.transfer_files import DownloadFile
from tests import certs
from tests.ftps_client import login
from transfers import quota
from transfers.atrest import CHUNK_SIZE, EncryptedReader, EncryptedWriter, MasterKey
from transfers.files import Download
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024
BIG = 64 * MIB + 12345  # not a multiple of a block, an at-rest chunk or a claim step


@pytest.fixture(scope="module")
def big_data() -> bytes:
    return os.urandom(BIG)


def _download(ftp, name: str, rest: int | None = None) -> bytes:
    received = bytearray()
    ftp.retrbinary(f"RETR {name}", received.extend, blocksize=MIB, rest=rest)
    return bytes(received)


def test_64_mib_upload_and_download_keep_the_sha256_with_quota_claims_interleaved(
    partner, gateway, big_data
):
    # A quota makes the upload claim a step (4 MiB) at a time while bytes arrive.
    User.objects.filter(pk=partner.user.pk).update(quota_bytes=BIG + 8 * MIB)
    digest = hashlib.sha256(big_data).hexdigest()
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        final = ftp.storbinary("STOR big.bin", io.BytesIO(big_data), blocksize=MIB)
        assert final.startswith("226") and digest in final
        assert ftp.size("big.bin") == BIG
        StoredFile.objects.filter(path="/big.bin").update(state=FileState.READY)
        downloaded = _download(ftp, "big.bin")
    finally:
        ftp.quit()
    assert len(downloaded) == BIG
    assert hashlib.sha256(downloaded).hexdigest() == digest
    assert quota.used_bytes(partner.user.pk) == BIG


def test_download_resumed_inside_a_block_sends_the_exact_tail(partner, gateway, big_data):
    data = big_data[: 5 * MIB + 777]
    offset = MIB + 256 * 1024 + 3  # inside a block and inside an at-rest chunk
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        ftp.storbinary("STOR part.bin", io.BytesIO(data), blocksize=MIB)
        StoredFile.objects.filter(path="/part.bin").update(state=FileState.READY)
        tail = _download(ftp, "part.bin", rest=offset)
    finally:
        ftp.quit()
    assert tail == data[offset:]


def test_upload_sent_in_one_burst_with_close_notify_is_complete(partner, gateway, big_data):
    # The client's last block and its close_notify arrive together: the bytes gathered
    # before the end of the stream must be written before the upload is finished.
    data = big_data[: 3 * MIB + 1]
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("STOR burst.bin")
        conn.sendall(data)
        conn.unwrap()
        conn.close()
        final = ftp.getmultiline()
    finally:
        ftp.quit()
    assert final.startswith("226") and hashlib.sha256(data).hexdigest() in final
    stored = StoredFile.objects.get(path="/burst.bin", state=FileState.RECEIVED)
    assert stored.size == len(data)


def test_ascii_download_and_listing_still_use_the_old_path(partner, gateway):
    text = b"one\r\ntwo\r\n" * 1000
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        ftp.storbinary("STOR notes.txt", io.BytesIO(text))
        StoredFile.objects.filter(path="/notes.txt").update(state=FileState.READY)
        lines: list[str] = []
        ftp.retrlines("RETR notes.txt", lines.append)
        names = ftp.nlst()
    finally:
        ftp.quit()
    assert lines == ["one", "two"] * 1000
    assert "notes.txt" in names


_TIMEOUT = struct.pack("ll", 15, 0)  # struct timeval: 15 s


class _SendingChannel:
    """What FileSender uses of pyftpdlib's data channel: a TLS socket and its counters."""

    bandwidth = None
    ac_out_buffer_size = 256 * 1024

    def __init__(self, sock: SSL.Connection) -> None:
        self.socket = sock
        self.tot_bytes_sent = 0
        self._closed = False
        self._ssl_want_read = self._ssl_want_write = False

    def handle_close(self) -> None:
        self._closed = True


@pytest.fixture
def tls_link(tmp_path: Path) -> Iterator[tuple[SSL.Connection, SSL.Connection]]:
    """Yield (sending end, receiving end) of a TLS connection over loopback TCP.

    The sending end is non-blocking, as the gateway's data sockets are; both ends have
    buffers of several MiB, so one event's share fits without a reader.
    """
    with _tls_link(tmp_path, 4 * MIB) as link:
        yield link


@contextlib.contextmanager
def _tls_link(tmp_path: Path, buffers: int) -> Iterator[tuple[SSL.Connection, SSL.Connection]]:
    credential = certs.make(tmp_path, "sender")
    server_ctx = SSL.Context(SSL.TLS_METHOD)
    server_ctx.use_certificate_file(credential.cert_path)
    server_ctx.use_privatekey_file(credential.key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffers)
    raw_client = socket.socket()
    raw_client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffers)
    raw_client.connect(listener.getsockname())
    raw_server, _ = listener.accept()
    listener.close()
    for raw in (raw_client, raw_server):  # pyOpenSSL wants blocking sockets: kernel timeouts
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEOUT)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEOUT)
    sender = SSL.Connection(server_ctx, raw_server)
    sender.set_accept_state()
    receiver = SSL.Connection(SSL.Context(SSL.TLS_METHOD), raw_client)
    receiver.set_connect_state()
    handshake = threading.Thread(target=receiver.do_handshake)
    handshake.start()
    sender.do_handshake()
    handshake.join(15)
    raw_server.setblocking(False)
    try:
        yield sender, receiver
    finally:
        raw_server.close()
        raw_client.close()


@pytest.fixture
def stored_download(tmp_path: Path) -> Iterator[tuple[DownloadFile, bytes]]:
    """Yield an at-rest encrypted file of a few chunks opened for download, and its bytes."""
    data = os.urandom(4 * CHUNK_SIZE + 5)
    master = MasterKey.generate()
    path = tmp_path / "stored.enc"
    with EncryptedWriter(path, master) as writer:
        writer.write(data)
    stored: Any = None  # FileSender reads only the plaintext
    file = DownloadFile(
        Download(stored, EncryptedReader(path, master), len(data)), "stored.bin", 0, 0.0
    )
    yield file, data
    file.close()


def _receive(receiver: SSL.Connection, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        got += receiver.recv(size - len(got))
    return bytes(got)


def test_a_writable_event_sends_its_whole_share_not_one_tls_record(tls_link, stored_download):
    # SSL_write returns after each 16 KiB record (pyOpenSSL sets partial writes): taking
    # that for a full socket sent one record per loop pass.
    sender, receiver = tls_link
    file, data = stored_download
    channel = _SendingChannel(sender)
    sending = tls_stream.FileSender(file)
    assert sending.pump(channel) is False
    assert channel.tot_bytes_sent == tls_stream.event_share() > tls_stream.RECORD
    assert _receive(receiver, channel.tot_bytes_sent) == data[: channel.tot_bytes_sent]


def test_events_cut_at_their_share_still_send_the_file_whole_and_in_order(
    tls_link, stored_download
):
    sender, receiver = tls_link
    file, data = stored_download
    channel = _SendingChannel(sender)
    pump = tls_stream.FileSender(file).pump
    received = bytearray()
    for _ in range(len(data) // tls_stream.SHARE_MIN + 2):
        done = pump(channel)
        received += _receive(receiver, channel.tot_bytes_sent - len(received))
        if done:
            break
    assert bytes(received) == data


def test_a_download_connection_writes_many_records_per_call(tls_link):
    sender, receiver = tls_link
    piece = os.urandom(tls_stream.SEND_BLOCK)
    assert tls_stream.whole_writes(sender)
    assert sender.send(piece) == len(piece)  # one call, 16 records
    assert _receive(receiver, len(piece)) == piece


def test_a_full_socket_mid_piece_is_retried_with_the_same_piece(tmp_path, stored_download):
    # Small socket buffers: SSL_write fills the socket in the middle of a piece, having
    # taken some of its records; OpenSSL refuses a retry with fewer bytes (bad length),
    # also when more downloads have started meanwhile and the share per event is smaller.
    file, data = stored_download
    others: list[tls_stream.FileSender] = []
    with _tls_link(tmp_path, 32 * 1024) as (sender, receiver):
        assert tls_stream.whole_writes(sender)
        channel = _SendingChannel(sender)
        pump = tls_stream.FileSender(file).pump
        received = bytearray()
        retried = 0
        while not pump(channel):
            if channel._ssl_want_write:
                retried += 1
                others = [tls_stream.FileSender(file) for _ in range(200 * (retried % 2))]
            channel._ssl_want_write = False
            received += receiver.recv(256 * 1024)
        while len(received) < len(data):
            received += receiver.recv(len(data) - len(received))
    assert retried
    assert bytes(received) == data
    del others


def test_an_upload_reads_records_straight_into_its_block_until_close_notify(tls_link):
    near, far = tls_link  # the gateway's end (non-blocking) and the client's
    assert tls_stream._ssl_pointer(near) is not None  # not pyOpenSSL's copying recv_into
    data = os.urandom(5 * MIB + 321)
    writer = threading.Thread(target=lambda: (far.sendall(data), far.shutdown()))
    writer.start()
    channel = _SendingChannel(near)
    block = memoryview(bytearray(MIB))
    received, ended = bytearray(), False
    deadline = time.monotonic() + 15
    while not ended and time.monotonic() < deadline:
        count, ended = tls_stream.gather(channel, block)
        received += block[:count]
        if not count and not ended:
            select.select([near.fileno()], [], [], 0.5)
    writer.join(15)
    assert ended and bytes(received) == data


def test_the_share_per_event_shrinks_with_the_downloads_in_progress(stored_download):
    file, _ = stored_download
    alone = tls_stream.FileSender(file)
    assert tls_stream.event_share() == tls_stream.SHARE_MAX
    many = [tls_stream.FileSender(file) for _ in range(200)]
    assert tls_stream.event_share() == tls_stream.SHARE_MIN
    del many
    assert tls_stream.event_share() == tls_stream.SHARE_MAX
    del alone

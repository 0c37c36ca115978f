"""One FTPS session carried from one delivery to the next to the same endpoint.

When an endpoint has more deliveries than connections (its connection limit reached, the
others' claims found no room and wait without a message), a worker that finished one takes
the oldest waiting one itself (`runner.run`) and sends it over the session it has open,
instead of a new TCP connection, TLS handshake, login, PBSZ/PROT, TYPE, FEAT and QUIT for
every file: a backlog of files to a partner that allows two connections goes out over two
logins, as a person with FileZilla would send it. The partner's server sees no more
connections than its limit (the session is carried to a delivery claimed under the same
limit, in place of the connection it would have opened; only between one delivery's record
and the next one's claim, milliseconds, may another worker's claim add one), and a session
is carried only:

- to a delivery whose endpoint settings are the ones it was opened with (a key over host,
  port, login and TLS settings: a changed password or pin opens a new one);
- after a delivery that succeeded: any error closes it (the server may be in any state);
- when the server still answers it: nothing unread on the control connection, and `NOOP`
  answered `200` (a server that timed the session out gets a new one);
- for at most `DELIVERY_SESSION_FILES` deliveries (1: a session per delivery).

Deliveries that each have a message on its way are left to their messages: a session
carried to them raced their own workers' claims (measured: half the claims wasted, more CPU
per file). Hand-written: ftplib has no pool, and a pool of idle sessions would hold
partners' connection slots between bursts; this carries a session only from a finished
delivery to a claimed one, in the same thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from deliveries import connection
from deliveries.ftps_client import FtpsClient, RemoteServer
from deliveries.models import PartnerEndpoint


def _key(server: RemoteServer) -> str:
    """Return what a session may be carried by: every setting it was opened with."""
    return hashlib.sha256(repr(dataclasses.astuple(server)).encode()).hexdigest()


class Session:
    """The open session a chain of deliveries to one endpoint is sent over."""

    def __init__(self) -> None:
        self._client: FtpsClient | None = None
        self._key = ""
        self.files = 0  # deliveries that finished over it

    @property
    def is_open(self) -> bool:
        """Return whether a session is kept for the next delivery."""
        return self._client is not None

    @contextmanager
    def client(self, endpoint: PartnerEndpoint) -> Iterator[FtpsClient]:
        """Yield a logged-in client for the endpoint: the kept session when it may carry
        this delivery, else a new one. Kept after the block ends normally, closed when it
        raises."""
        server = connection.remote_server(endpoint)
        key = _key(server)
        client = self._take(key)
        if client is None:
            client = FtpsClient(server)
            client.connect()
            self.files = 0
        client.begin_attempt(reused=self.files > 0)
        try:
            yield client
        except BaseException:
            client.close()
            raise
        self._client, self._key = client, key
        self.files += 1

    def _take(self, key: str) -> FtpsClient | None:
        client, self._client = self._client, None
        if client is None:
            return None
        if key != self._key or not client.still_open():
            client.close()
            return None
        return client

    def close(self) -> None:
        """Say QUIT on the kept session, if any."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

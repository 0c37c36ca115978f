"""What per-user bandwidth limits cost a transfer that is not limited (an A/B, not a test).

``.venv/bin/python -m bench.bandwidth_overhead [--mib 200] [--rounds 5]``

One throwaway platform (SQLite, temp data dir), one partner user and one stored file of
``--mib`` MiB. Each round downloads it once from a freshly forked gateway process per
variant, alternating the variants so drift on a shared machine hits them alike:

* ``without``: the data channel's byte path with no accounting code at all (the binary
  download's ``FileSender.pump`` without its bandwidth lines; ``send``/``handle_read``
  as they were before bandwidth limits);
* ``unlimited``: the code as shipped, for a user without limits (one ``is None`` test
  per call);
* ``limited-high``: the code as shipped, for a user limited to 100 GB/s (the bucket is
  charged on every call but never pauses).

Prints MB/s (decimal) and the gateway process's CPU seconds per GB for each; asserts
nothing.
"""

from __future__ import annotations

import argparse
import ftplib
import io
import os
import signal
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
VARIANTS = ("without", "unlimited", "limited-high")


def _setup(data_dir: Path) -> None:
    for key in [k for k in os.environ if k.startswith("MFT_") or k == "DATABASE_URL"]:
        del os.environ[key]
    os.environ.update(MFT_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="mft.settings",
                      MFT_LOG_LEVEL="WARNING", MFT_GATEWAY_AUTH_FAILED_DELAY_MS="0")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class _Client(ftplib.FTP_TLS):
    """Resume the control session on data connections, as real clients do."""

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[Any, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        control: Any = self.sock
        conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                        session=control.session)
        return conn, size


def _login(port: int, user: str, password: str) -> _Client:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    ftp = _Client(context=context, timeout=120)
    ftp.connect("127.0.0.1", port)
    ftp.auth()
    ftplib.FTP.login(ftp, user, password)
    ftp.prot_p()
    ftp.voidcmd("TYPE I")
    return ftp


def _without_accounting() -> None:
    """Put back the data channel's hot path as it was before bandwidth limits."""
    from pyftpdlib.exceptions import _RetryError
    from pyftpdlib.handlers import TLS_DTPHandler

    from ftps_gateway import data_channel, replies, throttle, tls_stream
    from mft.errors import PortsideError

    def send(self: Any, data: bytes) -> int:
        if not data:
            return 0
        return int(TLS_DTPHandler.send(self, data))

    def handle_read(self: Any) -> None:
        for _ in range(64):  # TLS records drained per loop pass, as it was then
            try:
                chunk = self.recv(self.ac_in_buffer_size)
            except _RetryError:
                return
            except OSError:
                self.handle_error()
                return
            if not chunk:
                self.transfer_finished = True
                return
            self.tot_bytes_received += len(chunk)
            if self._data_wrapper is not None:
                chunk = self._data_wrapper(chunk)
            try:
                self.file_obj.write(chunk)
            except PortsideError as exc:
                self._refusal = exc
                self._resp = (replies.for_error(exc), data_channel.log.info)
                self.close()
                return
            if self._closed:
                return

    def pump(self: Any, channel: Any) -> bool:
        while True:
            if self._pos == self._end:
                self._end, self._pos = self.file.readinto(self._view), 0
                if not self._end:
                    return True
            piece = self._view[self._pos:self._end]
            sent = tls_stream.send_view(channel, piece)
            if not sent:
                return False
            self._pos += sent
            channel.tot_bytes_sent += sent
            if sent < len(piece) or channel._closed:
                return False

    # A bench process of its own (forked per variant): nothing else sees these.
    tls_stream.FileSender.pump = pump  # type: ignore[method-assign]
    data_channel.DataChannel.send = send  # type: ignore[method-assign]
    data_channel.DataChannel.handle_read = handle_read  # type: ignore[method-assign]
    throttle.for_user = lambda user: None


def _fork_gateway(variant: str) -> tuple[int, int]:
    """Fork a gateway process for one variant; return its pid and explicit port."""
    from django.db import connections

    from ftps_gateway.server import GatewayConfig, GatewayProcess, bind_listeners

    config = GatewayConfig.from_settings(bind_address="127.0.0.1", explicit_port=0,
                                         implicit_port=None, workers=1)
    listeners = bind_listeners(config)
    port = listeners["explicit"].getsockname()[1]
    connections.close_all()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if variant == "without":
                _without_accounting()
            process = GatewayProcess(config, listeners)
            signal.signal(signal.SIGTERM, lambda *_: process.stop())
            signal.alarm(600)  # never outlive a stuck harness
            process.serve()
            code = 0
        finally:
            os._exit(code)
    for sock in listeners.values():
        sock.close()
    return pid, port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("gateway did not start")


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _download(variant: str, user: Any, password: str, size: int) -> tuple[float, float]:
    """Download the file from a fresh gateway; return (seconds, gateway CPU seconds)."""
    user.download_bytes_per_second = 100_000_000_000 if variant == "limited-high" else 0
    user.save(update_fields=["download_bytes_per_second"])
    pid, port = _fork_gateway(variant)
    try:
        _wait_listening(port)
        ftp = _login(port, user.username, password)
        received = 0

        def sink(block: bytes) -> None:
            nonlocal received
            received += len(block)

        cpu = _cpu_seconds(pid)
        started = time.perf_counter()
        ftp.retrbinary("RETR big.bin", sink, blocksize=MIB)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds(pid) - cpu
        ftp.quit()
        if received != size:
            raise RuntimeError(f"received {received} of {size} bytes")
        return seconds, cpu
    finally:
        _stop(pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bw-bench-") as tmp:
        _setup(Path(tmp))
        from accounts import services
        from mft import bootstrap
        from transfers.models import FileState, StoredFile

        bootstrap.ensure_certificate()
        made = services.create_partner_user("bench-bw", partner_name="Bench", generate=True,
                                            home=str(Path(tmp) / "home"))
        password = made.password or ""
        size = args.mib * MIB
        pid, port = _fork_gateway("unlimited")
        try:
            _wait_listening(port)
            ftp = _login(port, "bench-bw", password)
            ftp.storbinary("STOR big.bin", io.BytesIO(os.urandom(size)), blocksize=MIB)
            ftp.quit()
        finally:
            _stop(pid)
        StoredFile.objects.filter(path="/big.bin").update(state=FileState.READY)
        results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
        for round_ in range(args.rounds):
            order = VARIANTS if round_ % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                results[variant].append(_download(variant, made.user, password, size))
        print(f"{args.mib} MiB download, {args.rounds} rounds, median (min-max):")
        for variant, runs in results.items():
            rates = [size / s / 1e6 for s, _ in runs]
            cpu = [c / (size / 1e9) for _, c in runs]
            print(f"  {variant:13s} {statistics.median(rates):7.1f} MB/s "
                  f"({min(rates):.1f}-{max(rates):.1f}), gateway "
                  f"{statistics.median(cpu):.2f} CPU s/GB ({min(cpu):.2f}-{max(cpu):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

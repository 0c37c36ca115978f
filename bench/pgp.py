"""OpenPGP figures: encrypting a stored file for a partner, decrypting an upload.

``pgp.encrypt`` is a partner delivery's encryption (``deliveries/encryption.py``): a
1 GiB file stored at rest is decrypted as it is read and streamed through
``transfers.pgp.Keyring.encrypt_stream`` (python-gnupg pumping ``gpg``'s pipes) to the
recipient's key.  ``pgp.decrypt`` is the pipeline's decrypt step (``transfers/pgp_step.py``):
an at-rest PGP upload streamed through ``Keyring.decrypt_stream`` into a new at-rest file.
Each runs in a process of its own (:mod:`bench._pgp`), with the product's defaults
(compression on, AES-256 at rest, an ed25519/cv25519 key behind a passphrase).

``.rss`` figures: peak RSS of that Python process (reset after setup) plus ``gpg``'s peak
RSS, in MB; the issue's target is < 100 MB for 1 GiB, i.e. memory must not grow with the
file.  The Python process imports no Django; a worker's baseline is larger, its growth
the same (``python_growth_mb`` in the JSON).

Limits, same keys and files: the ``gpg`` command line reading and writing the files
itself (``pgp.encrypt.cli``, ``pgp.decrypt.cli``), its speed and its own peak RSS.  The
payload is incompressible (:func:`bench.tlsutil.pattern_bytes`), so compression costs
what it costs for zip or media files sent without ``compress=False``.

``BENCH_PGP_BYTES`` overrides the size (e.g. 2147483648 for the 2 GB of issue 4).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.core import (
    LIMIT,
    MB,
    Context,
    CpuWindow,
    GiB,
    MiB,
    Result,
    env_int,
    mb_per_s,
    measurement,
)
from bench.tlsutil import pattern_bytes
from transfers import atrest, pgp

ENCRYPT_CLI = "pgp.encrypt.cli"
ENCRYPT_CLI_RSS = "pgp.encrypt.cli.rss"
DECRYPT_CLI = "pgp.decrypt.cli"
DECRYPT_CLI_RSS = "pgp.decrypt.cli.rss"
S2K_COUNT = 65536  # gpg-agent's minimum: key generation in milliseconds, not seconds
WRITE_BLOCK = 1 * MiB


class PgpFiles:
    """A keyring with one key pair, and the plaintext both plain and at rest."""

    def __init__(self, ctx: Context) -> None:
        self.dir = ctx.workdir / "pgp"
        self.dir.mkdir()
        self.home = self.dir / "gnupg"  # short: gpg-agent's socket path is limited
        self.keyring = pgp.Keyring(self.home, s2k_count=S2K_COUNT)
        self.passphrase_file = self.dir / "passphrase"
        self.passphrase_file.write_text(os.urandom(16).hex())
        self.fingerprint = self.keyring.generate_platform_key(
            "Portside bench", "bench@portside.test", self.passphrase_file.read_text()
        )
        self.master_key_file = self.dir / "master.key"
        self.master_key_file.write_bytes(os.urandom(32))
        self.master = atrest.MasterKey(self.master_key_file.read_bytes())
        self.size = env_int("BENCH_PGP_BYTES", 0) or ctx.size(1 * GiB)
        self.plain = self.dir / "plain.bin"
        self.plain_at_rest = self.dir / "plain.atrest"
        self._write(self.plain, self.plain_at_rest)
        self.cipher = self.dir / "cipher.pgp"
        self.cipher_at_rest = self.dir / "cipher.atrest"

    def _write(self, plain: Path, at_rest: Path) -> None:
        block = pattern_bytes(WRITE_BLOCK)
        with open(plain, "wb") as out, atrest.EncryptedWriter(at_rest, self.master) as enc:
            left = self.size
            while left:
                data = block[: min(left, WRITE_BLOCK)]
                out.write(data)
                enc.write(data)
                left -= len(data)

    def gpg(self, *args: str) -> list[str]:
        """Return a gpg command line on the bench keyring."""
        return ["gpg", "--homedir", str(self.home), "--batch", "--no-tty", "--yes", *args]

    def encrypt_cli(self, out: Path) -> list[str]:
        return self.gpg(
            "--trust-model", "always", "--recipient", self.fingerprint,
            "--output", str(out), "--encrypt", str(self.plain),
        )  # fmt: skip

    def decrypt_cli(self, out: Path) -> list[str]:
        return self.gpg(
            "--pinentry-mode", "loopback", "--passphrase-file", str(self.passphrase_file),
            "--output", str(out), "--decrypt", str(self.cipher),
        )  # fmt: skip

    def ensure_cipher(self, ctx: Context) -> None:
        """Make the PGP message (plain and at rest) the decrypt figures read, untimed."""
        if not self.cipher.exists():
            run_timed(self.encrypt_cli(self.cipher), ctx.remaining())
        if not self.cipher_at_rest.exists():
            with (
                open(self.cipher, "rb") as src,
                atrest.EncryptedWriter(self.cipher_at_rest, self.master) as dst,
            ):
                while data := src.read(WRITE_BLOCK):
                    dst.write(data)

    def close(self) -> None:
        self.keyring.stop_agent()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def pgp_files(ctx: Context) -> Iterator[PgpFiles]:
    files = PgpFiles(ctx)
    try:
        yield files
    finally:
        files.close()


def run_timed(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run a command to completion (killed at the timeout); return its time and rusage."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    peak_kib = 0
    while True:
        # VmHWM, not ru_maxrss: that would count the harness's memory at the fork.
        peak_kib = max(peak_kib, _hwm_kib(proc.pid))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise TimeoutError(f"{argv[0]} did not finish in {timeout:.0f}s")
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not Popen
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv[:2])}… exited {proc.returncode}: {err[-400:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_kib": peak_kib,
    }


def _hwm_kib(pid: int) -> int:
    """Return a running process's peak RSS (VmHWM) in KiB; 0 once it has exited."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _cli_results(ctx: Context, names: tuple[str, str], argv: list[str], note: str) -> list[Result]:
    files: PgpFiles = ctx.shared("pgp", pgp_files)
    with CpuWindow() as win:
        got = run_timed(argv, ctx.remaining())
    extra = {"bytes": files.size, "gpg_cpu_s": round(got["cpu_s"], 3), **win.report()}
    return [
        Result(names[0], mb_per_s(files.size, got["wall_s"]), "MB/s", note=note, extra=extra),
        Result(names[1], got["peak_rss_kib"] * 1024 / MB, "MB", note=f"{note}: gpg peak RSS"),
    ]


@measurement("pgp.encrypt.cli", kind=LIMIT, produces=(ENCRYPT_CLI, ENCRYPT_CLI_RSS), timeout=900)
def encrypt_cli(ctx: Context) -> list[Result]:
    files: PgpFiles = ctx.shared("pgp", pgp_files)
    try:  # its output is the message the decrypt figures read
        return _cli_results(ctx, (ENCRYPT_CLI, ENCRYPT_CLI_RSS), files.encrypt_cli(files.cipher),
                            "gpg --encrypt file -> file")  # fmt: skip
    except BaseException:
        files.cipher.unlink(missing_ok=True)
        raise


@measurement("pgp.decrypt.cli", kind=LIMIT, produces=(DECRYPT_CLI, DECRYPT_CLI_RSS), timeout=900)
def decrypt_cli(ctx: Context) -> list[Result]:
    files: PgpFiles = ctx.shared("pgp", pgp_files)
    files.ensure_cipher(ctx)
    out = files.dir / "cli.plain"
    try:
        return _cli_results(ctx, (DECRYPT_CLI, DECRYPT_CLI_RSS), files.decrypt_cli(out),
                            "gpg --decrypt file -> file")  # fmt: skip
    finally:
        out.unlink(missing_ok=True)


def _figure(
    ctx: Context, op: str, src: Path, limits: tuple[str, str], *extra_args: str
) -> list[Result]:
    files: PgpFiles = ctx.shared("pgp", pgp_files)
    out = files.dir / f"product.{op}"
    args = ["--home", str(files.home), "--src", str(src), "--dst", str(out),
            "--master-key-file", str(files.master_key_file), *extra_args]  # fmt: skip
    try:
        with CpuWindow() as win, ctx.python_peer("bench._pgp", op, *args, name=f"pgp-{op}") as p:
            got = p.finish(grace=ctx.remaining())
    finally:
        out.unlink(missing_ok=True)
    if got["bytes"] != files.size:
        raise RuntimeError(f"{op}: {got['bytes']} bytes of plaintext, expected {files.size}")
    python_mb = got["python_peak_rss_kib"] * 1024 / MB
    gpg_mb = got["gpg_peak_rss_kib"] * 1024 / MB
    extra = {
        "bytes": files.size,
        "output_bytes": got["output_bytes"],
        "python_peak_rss_mb": round(python_mb, 1),
        "python_rss_before_mb": round(got["python_rss_before_kib"] * 1024 / MB, 1),
        "python_growth_mb": round(
            (got["python_peak_rss_kib"] - got["python_rss_before_kib"]) * 1024 / MB, 1
        ),
        "gpg_peak_rss_mb": round(gpg_mb, 1),
        "python_cpu_s": round(got["python_cpu_s"], 3),
        "gpg_cpu_s": round(got["gpg_cpu_s"], 3),
        **win.report(),
    }
    name = f"pgp.{op}"
    size_note = f"{files.size / MiB:,.0f} MiB"
    return [
        Result(name, mb_per_s(files.size, got["wall_s"]), "MB/s", limit=limits[0],
               note=f"{size_note}, at rest -> Keyring.{op}_stream", extra=extra),
        Result(f"{name}.rss", python_mb + gpg_mb, "MB", limit=limits[1],
               note=f"peak RSS: Python {python_mb:.0f} MB + gpg {gpg_mb:.0f} MB "
                    f"(Python grew {extra['python_growth_mb']} MB); target < 100 MB"),
    ]  # fmt: skip


@measurement("pgp.encrypt", produces=("pgp.encrypt", "pgp.encrypt.rss"), timeout=900)
def encrypt(ctx: Context) -> list[Result]:
    files: PgpFiles = ctx.shared("pgp", pgp_files)
    return _figure(ctx, "encrypt", files.plain_at_rest, (ENCRYPT_CLI, ENCRYPT_CLI_RSS),
                   "--recipient", files.fingerprint)  # fmt: skip


@measurement("pgp.decrypt", produces=("pgp.decrypt", "pgp.decrypt.rss"), timeout=900)
def decrypt(ctx: Context) -> list[Result]:
    files: PgpFiles = ctx.shared("pgp", pgp_files)
    files.ensure_cipher(ctx)
    return _figure(ctx, "decrypt", files.cipher_at_rest, (DECRYPT_CLI, DECRYPT_CLI_RSS),
                   "--passphrase-file", str(files.passphrase_file))  # fmt: skip

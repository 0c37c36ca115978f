"""Tests for transfers.pgp: key vetting, the platform keyring and streaming crypto.

Partners are played by the plain ``gpg`` command line in their own home directories, so
the platform side is checked against real GnuPG rather than against itself. Keys are
ed25519/cv25519 with a pinned S2K count so that generating one takes milliseconds.
"""

from __future__ import annotations

import io
import random
import secrets
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from transfers.pgp import DecryptResult, Keyring, PgpError, is_pgp_message, validate_public_key

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

PLATFORM_PASSPHRASE = "pp-" + secrets.token_urlsafe(16)
PARTNER_PASSPHRASE = "partner secret"
FAST_S2K = 65536  # gpg-agent's minimum; calibration can take seconds per key on a slow VM
PAYLOAD = b"invoice 2024-001;EUR;1200.00\n" * 1000


def _agents_of(home: Path) -> list[int]:
    """Return the pids of gpg-agent or dirmngr processes serving home."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and b"--homedir\0" + str(home).encode() + b"\0" in cmdline:
            pids.append(int(entry.name))
    return pids


def _kill_agents(home: Path) -> None:
    """Stop home's agents and fail if any survives."""
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False
    )
    _assert_no_agents(home)


def _assert_no_agents(home: Path) -> None:
    deadline = time.monotonic() + 5
    while _agents_of(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _agents_of(home), f"gpg-agent still running for {home}"


@dataclass
class Gpg:
    """A partner's own GnuPG, driven through the command line."""

    home: Path

    def run(
        self,
        *args: str,
        stdin: bytes = b"",
        passphrase: str = PARTNER_PASSPHRASE,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run gpg in batch mode on this home and return the completed process."""
        command = [
            "gpg",
            "--homedir",
            str(self.home),
            "--batch",
            "--yes",
            "--status-fd",
            "2",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
            "--trust-model",
            "always",
            *args,
        ]
        done = subprocess.run(command, input=stdin, capture_output=True, check=False)
        if check and done.returncode != 0:
            raise AssertionError(done.stderr.decode(errors="replace"))
        return done

    def new_key(
        self,
        uid: str,
        algorithm: str = "future-default",
        usage: str = "default",
        expire: str = "1y",
        *,
        created: str | None = None,
    ) -> str:
        """Generate a key (created at a past time if given); return its fingerprint."""
        clock = ("--faked-system-time", created) if created else ()
        done = self.run(*clock, "--quick-gen-key", uid, algorithm, usage, expire)
        return _created_fingerprint(done.stderr)

    def export(self, fingerprint: str, *, secret: bool = False) -> str:
        """Return the armored public (or secret) key."""
        command = "--export-secret-keys" if secret else "--export"
        return self.run("--armor", command, fingerprint).stdout.decode()


def _created_fingerprint(stderr: bytes) -> str:
    for line in stderr.decode().splitlines():
        if line.startswith("[GNUPG:] KEY_CREATED"):
            return line.split()[3]
    raise AssertionError(stderr.decode())


@pytest.fixture(scope="module")
def homes() -> Iterator[list[Path]]:
    """Hand out short GnuPG home directories; stop their agents and remove them at the end."""
    made: list[Path] = []
    yield made
    try:
        for home in made:
            _kill_agents(home)
    finally:
        for home in made:
            shutil.rmtree(home, ignore_errors=True)


def _new_home(homes: list[Path]) -> Path:
    # Short on purpose: without /run/user, gpg-agent's sockets live in the home itself.
    home = Path(tempfile.mkdtemp(prefix="pgp-", dir="/tmp"))
    (home / "gpg-agent.conf").write_text(f"s2k-count {FAST_S2K}\n")
    homes.append(home)
    return home


@pytest.fixture(scope="module")
def factory(homes: list[Path]) -> Gpg:
    """Return a partner-side GnuPG where test keys are made."""
    return Gpg(_new_home(homes))


@pytest.fixture(scope="module")
def keyring(homes: list[Path]) -> Iterator[Keyring]:
    """Return the platform keyring, in a directory it creates; stop its agent at the end."""
    ring = Keyring(_new_home(homes) / "keyring", s2k_count=FAST_S2K)
    yield ring
    ring.stop_agent()
    _assert_no_agents(ring.home)


@pytest.fixture(scope="module")
def platform_key(keyring: Keyring, factory: Gpg) -> str:
    """Return the fingerprint of the platform's own key, which partners have imported."""
    fingerprint = keyring.generate_platform_key(
        "Portside", "pgp@portside.test", PLATFORM_PASSPHRASE
    )
    factory.run("--import", stdin=keyring.export_public(fingerprint).encode())
    return fingerprint


@pytest.fixture(scope="module")
def partner(factory: Gpg, keyring: Keyring) -> str:
    """Return a partner key known to the platform."""
    fingerprint = factory.new_key("Acme Bank <mft@acme.test>")
    keyring.import_public_key(factory.export(fingerprint))
    return fingerprint


@pytest.fixture(scope="module")
def stranger(factory: Gpg) -> str:
    """Return a key the platform has never seen."""
    return factory.new_key("Mallory <m@evil.test>")


def _inbound(factory: Gpg, platform_key: str, *, sign_with: str | None = None) -> bytes:
    """Return a message a partner encrypts to the platform, optionally signed."""
    signing = ("--sign", "--local-user", sign_with) if sign_with else ()
    return factory.run("--encrypt", "--recipient", platform_key, *signing, stdin=PAYLOAD).stdout


def _decrypt(
    keyring: Keyring,
    message: bytes,
    *,
    passphrase: str = PLATFORM_PASSPHRASE,
    require_signature: bool = False,
    allowed_signers: list[str] | None = None,
    max_output_bytes: int | None = None,
) -> tuple[bytes, DecryptResult]:
    """Decrypt message on the platform side; return the plaintext and the result."""
    dst = io.BytesIO()
    result = keyring.decrypt_stream(
        io.BytesIO(message),
        dst,
        passphrase=passphrase,
        require_signature=require_signature,
        allowed_signers=allowed_signers,
        max_output_bytes=max_output_bytes,
    )
    return dst.getvalue(), result


# Vetting partner keys


def test_validate_describes_an_encryption_capable_key(factory: Gpg, partner: str) -> None:
    info = validate_public_key(factory.export(partner))
    assert info.fingerprint == partner
    assert info.user_ids == ("Acme Bank <mft@acme.test>",)
    assert (info.algorithm, info.bits) == ("EdDSA/ed25519", 255)
    assert info.expires_at is not None and info.expires_at > info.created
    assert info.usable_for_encryption


def test_validate_refuses_expired_key(factory: Gpg) -> None:
    old = factory.new_key("Old <old@acme.test>", expire="1d", created="20200101T000000")
    with pytest.raises(PgpError, match="has expired"):
        validate_public_key(factory.export(old))


def test_validate_refuses_revoked_key(factory: Gpg) -> None:
    revoked = factory.new_key("Gone <gone@acme.test>")
    certificate = (factory.home / "openpgp-revocs.d" / f"{revoked}.rev").read_text()
    # gpg stores the certificate defused with a leading colon so it is not imported by mistake.
    factory.run("--import", stdin=certificate.replace(":-----BEGIN", "-----BEGIN").encode())
    with pytest.raises(PgpError, match="is revoked"):
        validate_public_key(factory.export(revoked))


def test_validate_refuses_sign_only_key(factory: Gpg) -> None:
    signer = factory.new_key("Signer <s@acme.test>", "ed25519", "sign")
    with pytest.raises(PgpError, match="no usable encryption"):
        validate_public_key(factory.export(signer))


def test_validate_refuses_1024_bit_rsa_key(factory: Gpg) -> None:
    parameters = (
        "Key-Type: RSA\nKey-Length: 1024\nSubkey-Type: RSA\nSubkey-Length: 1024\n"
        "Name-Real: Legacy\nExpire-Date: 1y\n%no-protection\n%commit\n"
    )
    done = factory.run("--gen-key", stdin=parameters.encode())
    with pytest.raises(PgpError, match="1024-bit RSA primary key"):
        validate_public_key(factory.export(_created_fingerprint(done.stderr)))


def test_validate_refuses_secret_key(factory: Gpg, partner: str) -> None:
    with pytest.raises(PgpError, match="secret"):
        validate_public_key(factory.export(partner, secret=True))


def test_validate_refuses_secret_key_under_a_public_key_header(factory: Gpg, partner: str) -> None:
    disguised = factory.export(partner, secret=True).replace("PRIVATE KEY", "PUBLIC KEY")
    with pytest.raises(PgpError, match="secret"):
        validate_public_key(disguised)


def test_validate_refuses_several_keys(factory: Gpg, partner: str, stranger: str) -> None:
    with pytest.raises(PgpError, match="holds 2 keys"):
        validate_public_key(factory.run("--armor", "--export", partner, stranger).stdout.decode())


def test_validate_refuses_text_without_a_key_block() -> None:
    with pytest.raises(PgpError, match="Not an armored OpenPGP public key"):
        validate_public_key("hello")


def test_validate_refuses_a_key_block_holding_garbage() -> None:
    armored = (
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    with pytest.raises(PgpError, match="No OpenPGP public key found"):
        validate_public_key(armored)


def test_refused_key_never_enters_the_keyring(factory: Gpg, keyring: Keyring) -> None:
    signer = factory.new_key("Signer2 <s2@acme.test>", "ed25519", "sign")
    with pytest.raises(PgpError):
        keyring.import_public_key(factory.export(signer))
    with pytest.raises(PgpError, match="No key"):
        keyring.export_public(signer)


def test_import_public_key_makes_the_key_exportable(keyring: Keyring, partner: str) -> None:
    assert keyring.key_info(partner).usable_for_encryption
    assert validate_public_key(keyring.export_public(partner)).fingerprint == partner


def test_validate_reads_utf8_user_ids(factory: Gpg) -> None:
    fingerprint = factory.new_key("Müller GmbH: Zoë <zoe@acme.test>")
    assert validate_public_key(factory.export(fingerprint)).user_ids == (
        "Müller GmbH: Zoë <zoe@acme.test>",
    )


def test_keyring_directory_is_private(keyring: Keyring) -> None:
    assert keyring.home.stat().st_mode & 0o777 == 0o700


# Outbound: the platform encrypts to partners


def test_partner_decrypts_what_the_platform_encrypts_to_it(
    factory: Gpg, keyring: Keyring, partner: str
) -> None:
    dst = io.BytesIO()
    keyring.encrypt_stream(io.BytesIO(PAYLOAD), dst, [partner])
    assert factory.run("--decrypt", stdin=dst.getvalue()).stdout == PAYLOAD


def test_partner_verifies_the_platform_signature(
    factory: Gpg, keyring: Keyring, partner: str, platform_key: str
) -> None:
    dst = io.BytesIO()
    keyring.encrypt_stream(
        io.BytesIO(PAYLOAD),
        dst,
        [partner],
        sign_with=platform_key,
        passphrase=PLATFORM_PASSPHRASE,
        armor=True,
    )
    done = factory.run("--decrypt", stdin=dst.getvalue())
    assert dst.getvalue().startswith(b"-----BEGIN PGP MESSAGE-----")
    assert f"VALIDSIG {platform_key}".encode() in done.stderr


def test_encrypt_refuses_a_user_id_as_recipient(keyring: Keyring, partner: str) -> None:
    with pytest.raises(PgpError, match="full key fingerprint"):
        keyring.encrypt_stream(io.BytesIO(PAYLOAD), io.BytesIO(), ["mft@acme.test"])


def test_encrypt_refuses_a_key_not_in_the_keyring(keyring: Keyring, stranger: str) -> None:
    with pytest.raises(PgpError, match="Encryption failed"):
        keyring.encrypt_stream(io.BytesIO(PAYLOAD), io.BytesIO(), [stranger])


def test_encrypt_streams_64_mib_without_holding_it(keyring: Keyring, partner: str) -> None:
    size = 64 << 20
    counted = _CountingWriter()
    tracemalloc.start()
    try:
        with io.BufferedWriter(counted) as dst:
            keyring.encrypt_stream(
                io.BufferedReader(_PatternReader(size)), dst, [partner], compress=False
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counted.size > size
    assert peak < 8 << 20, f"peak Python memory {peak} bytes"


def test_decrypt_streams_64_mib_without_holding_it(
    keyring: Keyring, platform_key: str, tmp_path: Path
) -> None:
    size = 64 << 20
    message = tmp_path / "inbound.pgp"
    with message.open("wb") as dst:
        keyring.encrypt_stream(
            io.BufferedReader(_PatternReader(size)), dst, [platform_key], compress=False
        )
    counted = _CountingWriter()
    tracemalloc.start()
    try:
        with message.open("rb") as src, io.BufferedWriter(counted) as dst:
            keyring.decrypt_stream(src, dst, passphrase=PLATFORM_PASSPHRASE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counted.size == size
    assert peak < 8 << 20, f"peak Python memory {peak} bytes"


# Inbound: partners encrypt to the platform


def test_decrypts_an_inbound_file_sent_to_the_platform_key(
    factory: Gpg, keyring: Keyring, platform_key: str
) -> None:
    plaintext, result = _decrypt(keyring, _inbound(factory, platform_key))
    assert plaintext == PAYLOAD
    assert result.decryption_key == platform_key
    assert not result.signature_valid


def test_decrypt_refuses_unsigned_message_when_signature_required(
    factory: Gpg, keyring: Keyring, platform_key: str
) -> None:
    with pytest.raises(PgpError, match="not signed"):
        _decrypt(keyring, _inbound(factory, platform_key), require_signature=True)


def test_decrypt_accepts_valid_signature_and_names_the_signer(
    factory: Gpg, keyring: Keyring, platform_key: str, partner: str
) -> None:
    message = _inbound(factory, platform_key, sign_with=partner)
    plaintext, result = _decrypt(
        keyring, message, require_signature=True, allowed_signers=[partner]
    )
    assert plaintext == PAYLOAD
    assert result.signature_valid
    assert result.signer_fingerprint == partner


def test_decrypt_refuses_signature_by_an_unknown_key(
    factory: Gpg, keyring: Keyring, platform_key: str, stranger: str
) -> None:
    message = _inbound(factory, platform_key, sign_with=stranger)
    with pytest.raises(PgpError, match="cannot be checked"):
        _decrypt(keyring, message, require_signature=True)


def test_decrypt_refuses_signature_by_another_partner(
    factory: Gpg, keyring: Keyring, platform_key: str, partner: str
) -> None:
    other = factory.new_key("Other Bank <mft@other.test>")
    keyring.import_public_key(factory.export(other))
    message = _inbound(factory, platform_key, sign_with=other)
    with pytest.raises(PgpError, match="not one of the partner's keys"):
        _decrypt(keyring, message, require_signature=True, allowed_signers=[partner])


def test_decrypt_refuses_wrong_passphrase(
    factory: Gpg, keyring: Keyring, platform_key: str
) -> None:
    with pytest.raises(PgpError, match="wrong passphrase"):
        _decrypt(keyring, _inbound(factory, platform_key), passphrase="guess")


def test_decrypt_refuses_message_for_another_key(
    factory: Gpg, keyring: Keyring, stranger: str
) -> None:
    message = factory.run("--encrypt", "--recipient", stranger, stdin=PAYLOAD).stdout
    with pytest.raises(PgpError, match="not encrypted to a platform key"):
        _decrypt(keyring, message)


def test_decrypt_refuses_tampered_message(
    factory: Gpg, keyring: Keyring, platform_key: str
) -> None:
    message = bytearray(_inbound(factory, platform_key))
    message[-40] ^= 0x01
    with pytest.raises(PgpError, match="Decryption failed"):
        _decrypt(keyring, bytes(message))


def test_decrypt_stops_at_the_output_limit(
    factory: Gpg, keyring: Keyring, platform_key: str
) -> None:
    with pytest.raises(PgpError, match="exceeds the size limit"):
        _decrypt(keyring, _inbound(factory, platform_key), max_output_bytes=1000)


def test_decrypt_refuses_garbage(keyring: Keyring, platform_key: str) -> None:
    with pytest.raises(PgpError, match="not an OpenPGP message"):
        _decrypt(keyring, b"just some text\n" * 100)


# Recognising messages


def test_is_pgp_message_recognises_binary_and_armored_messages(
    factory: Gpg, platform_key: str, keyring: Keyring
) -> None:
    binary = _inbound(factory, platform_key)
    armored = factory.run("--armor", "--encrypt", "--recipient", platform_key, stdin=PAYLOAD).stdout
    symmetric = factory.run("--symmetric", stdin=PAYLOAD).stdout
    assert all(is_pgp_message(message[:64]) for message in (binary, armored, symmetric))


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"",
        b"plain text, not encrypted\n",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",  # zip
        b"\x85\x01\x0c\x09" + bytes(60),  # a PKESK-like tag with a wrong version byte
        b"-----BEGIN PGP SIGNATURE-----\n",
    ],
)
def test_is_pgp_message_rejects_other_data(first_bytes: bytes) -> None:
    assert not is_pgp_message(first_bytes)


def test_is_pgp_message_ignores_most_random_data() -> None:
    generator = random.Random(0)
    samples = [generator.randbytes(64) for _ in range(2000)]
    assert sum(map(is_pgp_message, samples)) < 10


class _PatternReader(io.RawIOBase):
    """A readable stream of size bytes produced on demand."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = bytes(range(256)) * 1024

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), len(self.block), self.left)
        buffer[:count] = self.block[:count]
        self.left -= count
        return count


class _CountingWriter(io.RawIOBase):
    """A writable stream that only counts what it is given."""

    size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        size = memoryview(data).nbytes
        self.size += size
        return size

"""OpenPGP for partner exchanges: vet partner keys, keep the platform keyring, stream crypto.

Why GnuPG driven through python-gnupg rather than Sequoia (pysequoia):

- GnuPG is what partners run. Banks, insurers and other MFT products exchange files with
  ``gpg`` (or with tools tested against it), so matching its behaviour — defaults, accepted
  algorithms, error cases — avoids interoperability surprises on the partner side.
- ``gnupg`` is packaged by Debian and every other distribution, so the container gets its
  security updates through ``apt``. pysequoia is a young (0.x) compiled Rust extension that
  Debian does not package: its updates would ride on our own dependency bumps and wheels.
- python-gnupg is maintained, pure Python and small. It runs ``gpg`` as a subprocess and
  pumps stdin and stdout from threads, so a file of any size streams through pipes and
  never sits in our memory; the key material stays in a separate process.

The platform keyring is a GnuPG home directory the platform owns (never the user's
``~/.gnupg``). Every operation is ``--batch`` with ``--pinentry-mode loopback``: a
passphrase, when needed, is given by the caller and never prompted for. Partner keys are
vetted by :func:`validate_public_key` before they enter it, which is why encryption and
decryption run with ``--trust-model always``: the web of trust plays no part; admission to
the keyring is the trust decision. No Django imports: the gateway, workers and tests use
this module as is.

GnuPG 2.2 reads and writes OpenPGP v4 (RFC 4880) keys and messages; it does not understand
v5 keys (Ed448 keys made by GnuPG 2.4) or v6 keys and messages (RFC 9580), so those are
refused.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal

import gnupg

__all__ = [
    "MAX_KEY_TEXT",
    "MIN_RSA_BITS",
    "DecryptResult",
    "KeyInfo",
    "Keyring",
    "PgpError",
    "is_pgp_message",
    "validate_public_key",
]

MIN_RSA_BITS: Final = 2048
# A public key with a photo id is a few tens of KiB; more means a flooded key (thousands of
# third-party signatures) that would make every gpg call on the keyring slow.
MAX_KEY_TEXT: Final = 1 << 20
# Bytes per read and write on gpg's pipes: the size of a Linux pipe buffer. Larger buffers
# measured no faster (about 270 MiB/s either way for 1 GiB) and memory stays flat regardless.
IO_BUFFER: Final = 64 * 1024
# sun_path holds 108 bytes on Linux; gpg-agent's longest socket name is S.gpg-agent.browser.
_MAX_SOCKET_PATH: Final = 107

_PUBLIC_ARMOR: Final = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_PRIVATE_ARMOR: Final = "-----BEGIN PGP PRIVATE KEY BLOCK-----"
_MESSAGE_ARMOR: Final = b"-----BEGIN PGP MESSAGE-----"
_FINGERPRINT: Final = re.compile(r"[0-9A-F]{40}")
_UID_ESCAPE: Final = re.compile(r"\\x([0-9a-fA-F]{2})")
# RFC 4880 9.1: RSA (1, 2, 3), ElGamal (16, 20) and DSA (17) weaken with size; ECC does not.
_SIZED_ALGORITHMS: Final = frozenset({"1", "2", "3", "16", "17", "20"})
_ALGORITHM_NAMES: Final = {
    "1": "RSA",
    "2": "RSA",
    "3": "RSA",
    "16": "ElGamal",
    "17": "DSA",
    "18": "ECDH",
    "19": "ECDSA",
    "20": "ElGamal",
    "22": "EdDSA",
}
_UNUSABLE_VALIDITY: Final = {
    "e": "has expired",
    "r": "is revoked",
    "i": "is invalid",
    "d": "is disabled",
}
# Signature statuses that make a signed message unacceptable, with what to tell the user.
_SIGNATURE_PROBLEMS: Final = {
    "BADSIG": "the signature is bad (the file was altered or the signature forged)",
    "ERRSIG": "the signature cannot be checked (the signer's key is not in the keyring)",
    "EXPSIG": "the signature has expired",
    "EXPKEYSIG": "the signing key has expired",
    "REVKEYSIG": "the signing key is revoked",
}
# gpg reports --max-output only in prose; _gpg runs it with LC_ALL=C so the text is stable.
_MAX_OUTPUT_MESSAGE: Final = "exceeded --max-output limit"
_GPG_BAD_PASSPHRASE: Final = 11  # GPG_ERR_BAD_PASSPHRASE, in the low 16 bits of error codes

_PLATFORM_KEY_PARAMETERS: Final = {
    "ed25519": (
        "Key-Type: eddsa",
        "Key-Curve: ed25519",
        "Key-Usage: sign",
        "Subkey-Type: ecdh",
        "Subkey-Curve: cv25519",
        "Subkey-Usage: encrypt",
    ),
    "rsa3072": (
        "Key-Type: rsa",
        "Key-Length: 3072",
        "Key-Usage: sign",
        "Subkey-Type: rsa",
        "Subkey-Length: 3072",
        "Subkey-Usage: encrypt",
    ),
}


class PgpError(Exception):
    """An OpenPGP operation failed, or its input was refused; the message says why."""


@dataclass(frozen=True)
class KeyInfo:
    """What the platform records about one OpenPGP public key."""

    fingerprint: str
    user_ids: tuple[str, ...]
    algorithm: str  # e.g. "RSA", "EdDSA/ed25519"
    bits: int
    created: datetime
    expires_at: datetime | None
    usable_for_encryption: bool


@dataclass(frozen=True)
class DecryptResult:
    """The outcome of decrypting one message (failures raise PgpError instead)."""

    ok: bool  # decrypted with its integrity check (MDC) passed; always True when returned
    signature_valid: bool
    signer_fingerprint: str | None  # primary key of a good signature's signer
    key_id: str | None  # the signature's issuer key id, known even when the key is not
    status: str  # one line for the audit log, e.g. "decrypted; signature valid"
    decryption_key: str | None = None  # fingerprint of the platform key that decrypted


def validate_public_key(armored: str, *, now: datetime | None = None) -> KeyInfo:
    """Return what an uploaded public key is, or refuse it with a PgpError saying why."""
    _check_key_text(armored)
    with tempfile.TemporaryDirectory(prefix="portside-pgp-") as home:
        # A dry-run import in a throwaway home: a refused key never touches a real keyring.
        gpg = _gpg(Path(home), agent=False)
        keys = list(gpg.scan_keys_mem(armored))
    if any(key["type"] == "sec" for key in keys):
        raise PgpError("This is a secret (private) key; upload only the public key.")
    if not keys:
        raise PgpError("No OpenPGP public key found in the text.")
    if len(keys) > 1:
        raise PgpError(f"The text holds {len(keys)} keys; upload one key at a time.")
    return _vet(keys[0], now or datetime.now(UTC))


def is_pgp_message(first_bytes: bytes) -> bool:
    """Return whether data starting with these bytes (64 or more) is an encrypted message."""
    text = first_bytes.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(_MESSAGE_ARMOR):
        return True
    tag, body = _first_packet(first_bytes)
    if tag == 10 and body[:3] == b"PGP":  # a marker packet may precede the real ones
        tag, body = _first_packet(body[3:])
    return _is_session_key_packet(tag, body)


class Keyring:
    """A GnuPG home directory the platform owns: partner public keys and platform keys."""

    def __init__(
        self, home: Path, *, gpg_binary: str = "gpg", s2k_count: int | None = None
    ) -> None:
        """Create or open the keyring in home (mode 0700) and write its agent settings.

        s2k_count pins the iteration count that protects secret keys instead of letting
        gpg-agent calibrate it (which can reach hundreds of millions on a slow or
        virtualised CPU and then costs seconds per decryption); tests pass the minimum.
        """
        self.home = Path(home)
        self.gpg_binary = gpg_binary
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)  # gpg refuses group- or world-readable homes; umask may differ
        self._write_agent_conf(s2k_count)
        self._check_socket_path()

    def import_public_key(self, armored: str) -> KeyInfo:
        """Vet a partner's public key, add it to the keyring and return what it is."""
        info = validate_public_key(armored)
        gpg = self._gpg(agent=False)
        # import-minimal drops third-party signatures: they are useless here and a flooded
        # key would otherwise slow every later gpg call on the keyring.
        result = gpg.import_keys(armored, extra_args=["--import-options", "import-minimal"])
        if info.fingerprint not in (result.fingerprints or []):
            raise PgpError(f"gpg did not import the key: {_last_error(result)}")
        # Merged with a copy already here (perhaps revoked since): vet what the keyring holds.
        return _vet(self._listing(info.fingerprint), datetime.now(UTC))

    def generate_platform_key(
        self,
        name: str,
        email: str,
        passphrase: str | None,
        *,
        algorithm: Literal["ed25519", "rsa3072"] = "ed25519",
        valid_days: int | None = None,
    ) -> str:
        """Create a platform key pair (signing primary, encryption subkey); return its fingerprint.

        ed25519/cv25519 is fast and modern; rsa3072 is for partners whose software predates
        elliptic curves (GnuPG 1.4, old PGP Desktop and BouncyCastle releases).
        """
        _check_parameter("name", name)
        _check_parameter("email", email)
        protection = (
            f"Passphrase: {_check_passphrase(passphrase)}" if passphrase else "%no-protection"
        )
        expire = f"{valid_days}d" if valid_days else "0"
        lines = [
            *_PLATFORM_KEY_PARAMETERS[algorithm],
            f"Name-Real: {_as_utf8(name)}",
            f"Name-Email: {_as_utf8(email)}",
            f"Expire-Date: {expire}",
            protection,
            "%commit",
            "",
        ]
        result = self._gpg(agent=True).gen_key("\n".join(lines))
        if not result.fingerprint:
            raise PgpError(f"Key generation failed: {_last_error(result)}")
        return str(result.fingerprint)

    def export_public(self, fingerprint: str) -> str:
        """Return the armored public key with this fingerprint."""
        armored = self._gpg(agent=False).export_keys(
            _check_fingerprint(fingerprint), armor=True, minimal=True
        )
        if not armored:
            raise PgpError(f"No key {fingerprint} in the keyring.")
        return str(armored)

    def signing_key(self) -> str:
        """Return the fingerprint of the keyring's own (secret) key that may sign, newest first."""
        now = datetime.now(UTC)
        usable = [key for key in self._gpg(agent=False).list_keys(secret=True)
                  if "s" in str(key.get("cap", "")).lower()]
        usable = [key for key in usable
                  if not (expires := _timestamp(str(key.get("expires", "")))) or expires > now]
        if not usable:
            raise PgpError("the keyring holds no secret key that can sign")
        newest = max(usable, key=lambda key: int(key.get("date") or 0))
        return str(newest["fingerprint"])

    def key_info(self, fingerprint: str) -> KeyInfo:
        """Return what the keyring holds for this fingerprint, usable or not."""
        return _key_info(self._listing(_check_fingerprint(fingerprint)))

    def encrypt_stream(
        self,
        src: BinaryIO,
        dst: BinaryIO,
        recipients: list[str],
        *,
        sign_with: str | None = None,
        passphrase: str | None = None,
        armor: bool = False,
        compress: bool = True,
    ) -> None:
        """Encrypt src to the recipients' keys into dst, optionally signing; stream both.

        Recipients and the signer are full fingerprints, never user ids: a user id could
        match a different key. Turn compress off for data that is already compressed (zip,
        gzip, media): it saves CPU and changes nothing in size. If this raises, dst holds a
        partial message and must be discarded.
        """
        if not recipients:
            raise PgpError("No recipients to encrypt to.")
        fingerprints = [_check_fingerprint(recipient) for recipient in recipients]
        signer = _check_fingerprint(sign_with) if sign_with else None
        secret = _check_passphrase(passphrase) if passphrase else None
        extra = [] if compress else ["--compress-algo", "none"]
        result = self._stream(
            dst,
            lambda gpg: gpg.encrypt_file(
                src,
                fingerprints,
                sign=signer,
                passphrase=secret,
                armor=armor,
                always_trust=True,
                extra_args=extra,
            ),
        )
        if not (result.ok and result.returncode == 0):
            raise PgpError(f"Encryption failed: {_encrypt_failure(result)}")

    def decrypt_stream(
        self,
        src: BinaryIO,
        dst: BinaryIO,
        *,
        passphrase: str | None,
        require_signature: bool = False,
        allowed_signers: Collection[str] | None = None,
        max_output_bytes: int | None = None,
    ) -> DecryptResult:
        """Decrypt src into dst, checking integrity and any signature; stream both.

        allowed_signers (fingerprints) narrows which keys' signatures count as valid: any
        key in the keyring otherwise, including other partners'. max_output_bytes stops a
        compression bomb (a small message that inflates to terabytes). If this raises, dst
        holds unauthenticated plaintext and must be discarded.
        """
        secret = _check_passphrase(passphrase) if passphrase else None
        extra = [] if max_output_bytes is None else ["--max-output", str(max_output_bytes)]
        result = self._stream(
            dst,
            lambda gpg: gpg.decrypt_file(
                src, passphrase=secret, always_trust=True, extra_args=extra
            ),
        )
        outcome = _decrypt_outcome(result, _allowed(allowed_signers))
        if outcome is None:
            raise PgpError(f"Decryption failed: {_decrypt_failure(result, passphrase)}")
        if require_signature and not outcome.signature_valid:
            raise PgpError(f"A valid signature is required: {outcome.status}")
        return outcome

    def stop_agent(self) -> None:
        """Stop this keyring's gpg-agent (it restarts on demand); call at shutdown and in tests."""
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            capture_output=True,
            timeout=30,
            check=False,
        )

    def _gpg(self, *, agent: bool) -> Any:
        return _gpg(self.home, agent=agent, binary=self.gpg_binary)

    def _listing(self, fingerprint: str) -> dict[str, Any]:
        keys = self._gpg(agent=False).list_keys(keys=[fingerprint])
        if not keys:
            raise PgpError(f"No key {fingerprint} in the keyring.")
        return dict(keys[0])

    def _stream(self, dst: BinaryIO, operation: Callable[[Any], Any]) -> Any:
        """Run a python-gnupg operation with gpg's output written to dst; return its result."""
        gpg = self._gpg(agent=True)
        sink = _Sink(dst)
        made: list[Any] = []
        gpg.on_data = sink
        gpg.result_map = {**gpg.result_map, "crypt": _recording(made, gpg.result_map["crypt"])}
        try:
            operation(gpg)
        except (BrokenPipeError, ValueError):
            # gpg stopped reading its input because it refused it; its status says why.
            if not made or made[0].returncode in (None, 0):
                raise
        if sink.error is not None:
            raise sink.error
        return made[0]

    def _write_agent_conf(self, s2k_count: int | None) -> None:
        lines = [
            "# Written by Portside at every start; edits are lost.",
            # Cache no passphrase: no unlocked key lingers in the agent, and a wrong
            # passphrase always fails instead of riding on a cached one. max-cache-ttl also
            # bounds the short-lived nonces gpg uses to add the subkey during key generation;
            # at 0 they expire after a second and generation fails when the agent is slow.
            "default-cache-ttl 0",
            "max-cache-ttl 600",
            "allow-loopback-pinentry",
        ]
        if s2k_count is not None:
            lines.append(f"s2k-count {s2k_count}")
        conf, text = self.home / "gpg-agent.conf", "\n".join(lines) + "\n"
        if not conf.exists() or conf.read_text() != text:
            # Atomically: workers open the keyring concurrently and an agent may be starting.
            staging = conf.with_name(f".gpg-agent.conf.{os.getpid()}")
            staging.write_text(text)
            staging.replace(conf)

    def _check_socket_path(self) -> None:
        found = subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--list-dirs", "socketdir"],
            capture_output=True,
            text=True,
            check=False,
        )
        socket = f"{found.stdout.strip()}/S.gpg-agent.browser"
        if len(socket.encode()) > _MAX_SOCKET_PATH:
            raise PgpError(
                f"The keyring path {self.home} is too long for gpg-agent's sockets; "
                "use a shorter path or run `gpgconf --create-socketdir`."
            )


class _Sink:
    """Write gpg's output to dst as it arrives; remember the first failure."""

    def __init__(self, dst: BinaryIO) -> None:
        self.dst = dst
        self.error: BaseException | None = None

    def __call__(self, data: bytes) -> bool:
        """Called by python-gnupg's reader thread for each chunk; False means "don't keep it"."""
        if data and self.error is None:
            try:
                self.dst.write(data)
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self.error = exc
        return False


def _gpg(home: Path, *, agent: bool, binary: str = "gpg") -> Any:
    """Return a python-gnupg handle on home, able to start gpg-agent only if agent is set."""
    options = [
        "--pinentry-mode",
        "loopback",
        "--no-auto-key-retrieve",
        "--disable-dirmngr",
        "--no-greeting",
    ]
    if not agent:
        options.append("--no-autostart")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GNUPGHOME", "GPG_AGENT_INFO")
    } | {"LC_ALL": "C"}
    gpg = gnupg.GPG(gpgbinary=binary, gnupghome=str(home), options=options, env=env)
    gpg.buffer_size = IO_BUFFER
    return gpg


def _recording(made: list[Any], factory: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap a python-gnupg result factory so the result survives an exception."""

    def make(gpg: Any) -> Any:
        made.append(factory(gpg))
        return made[-1]

    return make


def _check_key_text(armored: str) -> None:
    if len(armored) > MAX_KEY_TEXT:
        raise PgpError(f"The key is larger than {MAX_KEY_TEXT // 1024} KiB.")
    if _PRIVATE_ARMOR in armored:
        raise PgpError("This is a secret (private) key; upload only the public key.")
    if _PUBLIC_ARMOR not in armored:
        raise PgpError(f"Not an armored OpenPGP public key (no {_PUBLIC_ARMOR} line).")


def _vet(key: dict[str, Any], now: datetime) -> KeyInfo:
    """Return the KeyInfo of a listed key, or refuse it if it cannot serve a partner."""
    info = _key_info(key)
    reason = _UNUSABLE_VALIDITY.get(key.get("trust", ""))
    if reason is None and info.expires_at is not None and info.expires_at <= now:
        reason = _UNUSABLE_VALIDITY["e"]
    if reason:
        raise PgpError(f"The key {info.fingerprint} {reason}.")
    weak = _weak_part(key)
    if weak:
        raise PgpError(
            f"The key {info.fingerprint} has a {weak}; at least {MIN_RSA_BITS} bits are required."
        )
    if not info.usable_for_encryption:
        raise PgpError(
            f"The key {info.fingerprint} has no usable encryption (sub)key; it can only sign."
        )
    return info


def _key_info(key: dict[str, Any]) -> KeyInfo:
    algorithm = _ALGORITHM_NAMES.get(key["algo"], f"algorithm {key['algo']}")
    return KeyInfo(
        fingerprint=key["fingerprint"],
        user_ids=tuple(_user_id(uid) for uid in key.get("uids", [])),
        algorithm=f"{algorithm}/{key['curve']}" if key.get("curve") else algorithm,
        bits=int(key["length"] or 0),
        created=_timestamp(key["date"]) or datetime.fromtimestamp(0, UTC),
        expires_at=_timestamp(key.get("expires", "")),
        # gpg capitalises a capability letter when a usable (sub)key of the key provides it.
        usable_for_encryption="E" in key.get("cap", ""),
    )


def _weak_part(key: dict[str, Any]) -> str | None:
    """Describe the first too-short RSA, DSA or ElGamal part still in use, if any."""
    parts = [("primary key", key)]
    parts += [
        ("subkey", sub)
        for sub in key.get("subkey_info", {}).values()
        if sub.get("trust") not in ("e", "r")
    ]
    for label, part in parts:
        bits = int(part.get("length") or 0)
        if part.get("algo") in _SIZED_ALGORITHMS and bits < MIN_RSA_BITS:
            return f"{bits}-bit {_ALGORITHM_NAMES[part['algo']]} {label}"
    return None


def _user_id(listed: str) -> str:
    """Return a user id as text: gpg lists UTF-8 with \\xNN escapes, read here as latin-1."""
    raw = _UID_ESCAPE.sub(lambda match: chr(int(match[1], 16)), listed)
    return raw.encode("latin-1").decode("utf-8", errors="replace")


def _timestamp(value: str) -> datetime | None:
    """Return the UTC time of a colon-listing timestamp (seconds since the epoch)."""
    return datetime.fromtimestamp(int(value), UTC) if value.isdigit() else None


def _check_fingerprint(value: str) -> str:
    fingerprint = value.replace(" ", "").upper()
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise PgpError(f"Not a full key fingerprint (40 hex digits): {value!r}")
    return fingerprint


def _check_parameter(label: str, value: str) -> None:
    if not value.strip() or any(ord(char) < 32 for char in value):
        raise PgpError(f"The {label} must be one line of printable text.")


def _check_passphrase(passphrase: str) -> str:
    """Return the passphrase as python-gnupg must send it, refusing what gpg cannot read."""
    if "\n" in passphrase or "\r" in passphrase:
        raise PgpError("A passphrase cannot contain line breaks.")
    return _as_utf8(passphrase)


def _as_utf8(text: str) -> str:
    """Return text such that python-gnupg, which encodes as latin-1, sends its UTF-8 bytes."""
    return text.encode("utf-8").decode("latin-1")


def _allowed(signers: Collection[str] | None) -> frozenset[str] | None:
    return None if signers is None else frozenset(map(_check_fingerprint, signers))


def _statuses(stderr: str) -> list[tuple[str, list[str]]]:
    """Return gpg's status lines ("[GNUPG:] KEYWORD args…") as (keyword, args) pairs."""
    found = []
    for line in stderr.splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, *args = line[9:].split()
            found.append((keyword, args))
    return found


def _decrypt_outcome(result: Any, allowed: frozenset[str] | None) -> DecryptResult | None:
    """Return what a decryption achieved, or None if it produced no trustworthy plaintext."""
    statuses = _statuses(result.stderr)
    seen = dict(statuses)
    if "DECRYPTION_OKAY" not in seen or {"DECRYPTION_FAILED", "BADMDC"} & seen.keys():
        return None
    # gpg still says DECRYPTION_OKAY when writing the plaintext failed (e.g. --max-output);
    # only a signature problem explains a non-zero exit after a good decryption.
    signature_trouble = any(keyword in _SIGNATURE_PROBLEMS for keyword in seen)
    if _MAX_OUTPUT_MESSAGE in result.stderr or (result.returncode and not signature_trouble):
        return None
    problem, signer, issuer = _signature(statuses, allowed)
    return DecryptResult(
        ok=True,
        signature_valid=problem is None,
        signer_fingerprint=signer if problem is None else None,
        key_id=issuer,
        status=f"decrypted; {problem or f'signature valid ({signer})'}",
        decryption_key=seen["DECRYPTION_KEY"][1] if "DECRYPTION_KEY" in seen else None,
    )


def _signature(
    statuses: list[tuple[str, list[str]]], allowed: frozenset[str] | None
) -> tuple[str | None, str | None, str | None]:
    """Return (what is wrong with the signature or None, signer fingerprint, issuer key id)."""
    signers = [
        args[9] if len(args) > 9 else args[0] for keyword, args in statuses if keyword == "VALIDSIG"
    ]
    signer = signers[0] if signers else None
    issuer = next(
        (args[0] for keyword, args in statuses if keyword in ("GOODSIG", *_SIGNATURE_PROBLEMS)),
        None,
    )
    problem = next(
        (_SIGNATURE_PROBLEMS[keyword] for keyword, _ in statuses if keyword in _SIGNATURE_PROBLEMS),
        None,
    )
    if problem is None and issuer is None:
        problem = "the message is not signed"
    elif problem is None and signer is None:
        problem = "the signature could not be verified"
    elif problem is None and allowed is not None and not allowed.intersection(signers):
        problem = f"the signer {signer} is not one of the partner's keys"
    return problem, signer, issuer


def _decrypt_failure(result: Any, passphrase: str | None) -> str:
    """Return why a decryption failed, as best gpg's status lines tell."""
    statuses = _statuses(result.stderr)
    seen = dict(statuses)
    errors = [args for keyword, args in statuses if keyword in ("ERROR", "FAILURE")]
    if _MAX_OUTPUT_MESSAGE in result.stderr:
        return "the plaintext exceeds the size limit"
    if any(args[-1].isdigit() and int(args[-1]) & 0xFFFF == _GPG_BAD_PASSPHRASE for args in errors):
        return "wrong passphrase for the platform key"
    if "NEED_PASSPHRASE" in seen and not passphrase:
        return "the platform key needs a passphrase"
    if "NO_SECKEY" in seen:
        ids = ", ".join(args[0] for keyword, args in statuses if keyword == "NO_SECKEY")
        return f"the message is not encrypted to a platform key (it is for {ids})"
    if "NODATA" in seen:
        return "not an OpenPGP message"
    if "PLAINTEXT" in seen and "BEGIN_DECRYPTION" not in seen:
        return "the message is not encrypted (signed or literal data only)"
    if {"BADMDC", "DECRYPTION_FAILED"} & seen.keys():
        return "the message is corrupt or was altered"
    return _last_error(result)


def _encrypt_failure(result: Any) -> str:
    if result.status_detail:
        return f"{result.status}: {result.status_detail}"
    return _last_error(result)


def _last_error(result: Any) -> str:
    """Return the last line gpg wrote that is not a status line."""
    lines = [
        line
        for line in (result.stderr or "").splitlines()
        if line and not line.startswith("[GNUPG:]")
    ]
    return lines[-1].removeprefix("gpg: ") if lines else getattr(result, "status", "") or "?"


def _first_packet(data: bytes) -> tuple[int | None, bytes]:
    """Return the tag and the (possibly truncated) body of the packet data starts with."""
    if not data or not data[0] & 0x80:
        return None, b""
    if data[0] & 0x40:  # new format: tag in the low six bits, then a 1-, 2- or 5-byte length
        first = data[1] if len(data) > 1 else 0
        if 224 <= first < 255:  # a partial length, which session key packets never use
            return None, b""
        return data[0] & 0x3F, data[2 if first < 192 else 3 if first < 224 else 6 :]
    length_type = data[0] & 0x03  # old format: tag in bits 2-5, then 1, 2, 4 or no length bytes
    return (data[0] >> 2) & 0x0F, data[1 + (1, 2, 4, 0)[length_type] :]


def _is_session_key_packet(tag: int | None, body: bytes) -> bool:
    """Return whether a packet opens an encrypted message: a public or symmetric session key."""
    # Recognised even in the RFC 9580 versions GnuPG 2.2 cannot decrypt, so such an upload
    # fails loudly instead of being stored as if it were plaintext.
    if tag == 1:  # PKESK: v3 is version, 8-byte key id, public-key algorithm; then v6
        v3 = len(body) >= 10 and body[0] == 3 and body[9] in (1, 2, 16, 18, 25, 26)
        return v3 or body[:1] == b"\x06"
    if tag == 3:  # SKESK v4/v5: version, cipher algorithm, then the S2K specifier; then v6
        v4 = len(body) >= 3 and body[0] in (4, 5) and 1 <= body[1] <= 13
        return v4 or body[:1] == b"\x06"
    return False

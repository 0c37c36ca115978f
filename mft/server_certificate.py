"""The gateway's server certificate: create a self-signed one when an install has none, and
replace it (PEM, PKCS#12, generated) atomically and audited while gateways run."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from audit import events
from audit.events import Origin


def ensure_self_signed(cert_path: Path, key_path: Path, *, names: list[str]) -> bool:
    """Write an ECDSA P-256 self-signed pair unless the certificate exists; True if created."""
    if cert_path.exists():
        return False
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Portside")])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True


def default_names(bind_address: str) -> list[str]:
    """Return the names a development certificate should carry."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if bind_address not in names and bind_address not in ("0.0.0.0", "::"):
        names.insert(0, bind_address)
    return names


def sha256_fingerprint(cert_path: Path) -> str:
    """Return the certificate's SHA-256 fingerprint as colon-separated hex."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """Refuse a certificate and key that do not belong together or are expired."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    if public != cert.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ValueError("the private key does not match the certificate")
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        raise ValueError(f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace a file in one rename so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def install_pem(cert_pem: bytes, key_pem: bytes) -> None:
    """Validate and install a PEM certificate (chain) and key as the gateway's."""
    from django.conf import settings

    _check_pair(cert_pem, key_pem)
    # Key first: a gateway reloading in between sees a mismatched pair, refuses it, and
    # keeps serving the old one until the certificate lands too.
    _write_atomically(settings.TLS_KEY_FILE, key_pem, 0o600)
    _write_atomically(settings.TLS_CERT_FILE, cert_pem, 0o644)


def install_pkcs12(bundle: bytes, password: bytes | None) -> None:
    """Install the certificate, chain and key from a PKCS#12 bundle."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    key, cert, chain = pkcs12.load_key_and_certificates(bundle, password)
    if key is None or cert is None:
        raise ValueError("the PKCS#12 bundle holds no key or no certificate")
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain])
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    install_pem(cert_pem, key_pem)


def replace_self_signed(*, names: list[str]) -> None:
    """Generate a new self-signed pair and install it."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        cert, key = Path(scratch) / "c.pem", Path(scratch) / "k.pem"
        ensure_self_signed(cert, key, names=names)
        install_pem(cert.read_bytes(), key.read_bytes())


def describe(cert_path: Path) -> dict[str, str]:
    """Return the installed certificate's subject, validity and fingerprint."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": sha256_fingerprint(cert_path)}


def _installed(origin: Origin, how: str) -> dict[str, str]:
    """Audit a replaced certificate; return what is installed now."""
    from django.conf import settings

    info = describe(settings.TLS_CERT_FILE)
    events.admin_change(origin=origin, action="certificate.replace", obj=None,
                        after={**info, "how": how})
    return info


def import_pem(cert_pem: bytes, key_pem: bytes, *, origin: Origin) -> dict[str, str]:
    """Install a PEM certificate (chain) and key (audited); return the new one's details."""
    try:
        install_pem(cert_pem, key_pem)
    except TypeError as exc:  # an encrypted key: cryptography wants its password
        raise ValueError(f"cannot read the private key: {exc}") from None
    return _installed(origin, "pem")


def import_pkcs12(bundle: bytes, password: bytes | None, *, origin: Origin) -> dict[str, str]:
    """Install a PKCS#12 bundle (audited); return the new certificate's details."""
    try:
        install_pkcs12(bundle, password)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot read the PKCS#12 bundle: {exc}") from None
    return _installed(origin, "pkcs12")


def generate(names: list[str], *, origin: Origin) -> dict[str, str]:
    """Install a new self-signed certificate for the names (audited); return its details."""
    replace_self_signed(names=names)
    return _installed(origin, "generated")

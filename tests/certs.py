"""Client certificates for gateway tests: a throwaway CA, issued and self-signed certificates,
and their registration for a partner through the same parser the product uses."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Credential:
    """A certificate and its key, in memory and as files a client can load."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: str
    key_path: str

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def files(self) -> tuple[str, str]:
        """Return (certificate file, key file), as ssl.load_cert_chain and curl want them."""
        return self.cert_path, self.key_path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Corp")])


def make(folder: Path, common_name: str, *, issuer: Credential | None = None,
         is_ca: bool = False, days: tuple[int, int] = (-1, 30)) -> Credential:
    """Create a certificate valid from days[0] to days[1] (relative to now) and its files.

    Without an issuer it is self-signed.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    signer_key = issuer.key if issuer else key
    signer_name = issuer.cert.subject if issuer else _name(common_name)
    cert = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(signer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(signer_key, hashes.SHA256())
    )
    stem = folder / common_name.replace(" ", "-")
    cert_path, key_path = Path(f"{stem}.crt"), Path(f"{stem}.key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return Credential(cert, key, str(cert_path), str(key_path))


def register(user: Any, credential: Credential, *, for_user: bool = True) -> Any:
    """Register a certificate (or CA) for the user's partner; return the row."""
    from accounts.certificates import parse_pem
    from accounts.models import ClientCertificate

    parsed = parse_pem(credential.pem)
    return ClientCertificate.objects.create(
        partner=user.partner,
        user=user if for_user and not parsed.is_ca else None,
        pem=parsed.pem, fingerprint_sha256=parsed.fingerprint_sha256,
        subject=parsed.subject, issuer=parsed.issuer, serial=parsed.serial,
        not_before=parsed.not_before, not_after=parsed.not_after, is_ca=parsed.is_ca)


def set_login_method(user: Any, method: str) -> None:
    """Change how the user must prove who they are."""
    user.login_method = method
    user.save(update_fields=["login_method"])


def fingerprint(credential: Credential) -> str:
    """Return the certificate's lowercase hex SHA-256 fingerprint, as the gateway logs it."""
    return credential.cert.fingerprint(hashes.SHA256()).hex()

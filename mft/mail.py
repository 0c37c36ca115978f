"""Read the outgoing-mail configuration from one URL, as DATABASE_URL does for the database.

`MFT_EMAIL_URL` forms:

- `smtp+tls://user:password@host:587` — SMTP with STARTTLS (the usual submission port)
- `smtps://user:password@host:465` — SMTP over TLS from the first byte
- `smtp://host:25` — plain SMTP, for a relay on the same host or network
- `file:///path/to/folder` — each message written to a file (the default, under the data dir)
- `console://` — messages printed to standard output (development)

User and password are URL-encoded (`%40` for `@`). Unset, messages are written to
`MFT_DATA_DIR/outbox` and a system check says that mail is not configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_SMTP = "django.core.mail.backends.smtp.EmailBackend"
_FILE = "django.core.mail.backends.filebased.EmailBackend"
_CONSOLE = "django.core.mail.backends.console.EmailBackend"
_DEFAULT_PORTS = {"smtp": 25, "smtp+tls": 587, "smtps": 465}


@dataclass(frozen=True)
class EmailConfig:
    """Django's EMAIL_* settings, read from one URL."""

    backend: str
    configured: bool
    host: str = "localhost"
    port: int = 25
    user: str = ""
    password: str = ""
    use_tls: bool = False
    use_ssl: bool = False
    file_path: str = ""


def email_from_url(url: str, outbox: Path) -> EmailConfig:
    """Return the mail settings a URL describes; an empty URL writes files to the outbox."""
    if not url:
        return EmailConfig(backend=_FILE, configured=False, file_path=str(outbox))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "console":
        return EmailConfig(backend=_CONSOLE, configured=True)
    if scheme == "file":
        if not parts.path.startswith("/"):
            raise ImproperlyConfigured("MFT_EMAIL_URL file:// needs an absolute folder path")
        return EmailConfig(backend=_FILE, configured=True, file_path=unquote(parts.path))
    if scheme not in _DEFAULT_PORTS:
        raise ImproperlyConfigured(
            f"MFT_EMAIL_URL scheme {scheme!r} is not supported "
            "(use smtp+tls://, smtps://, smtp://, file:// or console://)")
    if not parts.hostname:
        raise ImproperlyConfigured("MFT_EMAIL_URL names no SMTP host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ImproperlyConfigured("MFT_EMAIL_URL has an invalid port") from None
    return EmailConfig(
        backend=_SMTP, configured=True, host=parts.hostname, port=port,
        user=unquote(parts.username or ""), password=unquote(parts.password or ""),
        use_tls=scheme == "smtp+tls", use_ssl=scheme == "smtps")

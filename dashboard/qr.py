"""QR codes for authenticator enrolment, drawn as inline SVG (no image library needed)."""

from __future__ import annotations

from base64 import b32encode

import qrcode
import qrcode.image.svg


def svg(data: str) -> str:
    """Return an SVG element holding the QR code of the text (an otpauth:// URL)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    markup: str = image.to_string(encoding="unicode")
    return markup.replace("<svg ", '<svg role="img" aria-label="QR code to scan" ', 1)


def spaced_secret(key: bytes) -> str:
    """Return a key in base32, in groups of four, for typing into an app by hand."""
    text = b32encode(key).decode().rstrip("=")
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))

"""The signed envelope of a configuration export: format, version, Ed25519 signature.

Signed with the install's Ed25519 key, the one that signs audit archives
(`audit.retention.signing_key`, `MFT_DATA_DIR/audit-signing.key`). The signature covers
the canonical JSON of the body (sorted keys, no spaces), so re-indenting the file keeps
it valid and changing any value breaks it. An import trusts this install's own key, or
the public key of the install the document came from (`--public-key`).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.retention import signing_key

FORMAT = "portside-config"
VERSION = 1


class DocumentRefused(Exception):
    """The document is not one this install may import (signature, format or version)."""


def canonical(body: dict[str, Any]) -> bytes:
    """Return the bytes a signature covers."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(body: dict[str, Any]) -> dict[str, Any]:
    """Return the signed document around a body."""
    key = signing_key()
    return {
        "format": FORMAT,
        "version": VERSION,
        "signature": {
            "algorithm": "ed25519",
            "public_key": base64.b64encode(_raw(key.public_key())).decode(),
            "value": base64.b64encode(key.sign(canonical(body))).decode(),
        },
        "body": body,
    }


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """Return an Ed25519 public key from PEM (an install's `audit-signing.key.pub`)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise DocumentRefused(f"the public key is not PEM: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DocumentRefused("the public key is not an Ed25519 key")
    return key


def verified_body(document: Any, trusted: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """Return the body of a document whose format, version and signature check out."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DocumentRefused(f"not a Portside configuration export (format {FORMAT!r})")
    if document.get("version") != VERSION:
        raise DocumentRefused(f"unknown format version {document.get('version')!r}; this "
                              f"install reads version {VERSION}")
    signature, body = document.get("signature"), document.get("body")
    if not isinstance(signature, dict) or not isinstance(body, dict):
        raise DocumentRefused("the document has no signature or no body")
    public = trusted or signing_key().public_key()
    if signature.get("algorithm") != "ed25519" or signature.get("public_key") != \
            base64.b64encode(_raw(public)).decode():
        raise DocumentRefused("signed by another key: give the exporting install's public "
                              "key (MFT_DATA_DIR/audit-signing.key.pub) with --public-key")
    try:
        public.verify(base64.b64decode(str(signature.get("value", ""))), canonical(body))
    except (InvalidSignature, ValueError):
        raise DocumentRefused("the signature does not verify: the document was changed "
                              "after it was exported") from None
    return body

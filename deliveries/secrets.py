"""Seal endpoint secrets (passwords, private keys) for their database columns.

Envelope encryption under the install's master key, like files at rest: each value gets a
random AES-256-GCM key, wrapped by `transfers.storage.master_key()`; the master key's id is
kept so values stay readable during and after a key rotation (`storage.known_keys()`), and
`reseal()` moves a value to the current key. The master key object never exposes its bytes,
so wrapping (not deriving) is how a key is tied to it.

The additional data names the purpose, the column and the row, so a sealed value cannot be
opened as anything else: a password copied into another endpoint's row, or into the
private-key column, fails authentication.

Format: ``psec1:`` + base64(key id (8) | wrapped key (60) | nonce (12) | ciphertext | tag).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from transfers import atrest, storage

PREFIX = "psec1:"
_LABEL = b"portside/deliveries/secret/v1"
_KEY_ID = atrest.KEY_ID_SIZE
_WRAPPED = atrest.WRAPPED_KEY_SIZE
_NONCE = atrest.NONCE_SIZE


class SecretUnavailable(Exception):
    """A sealed value cannot be opened: unknown master key, or not authentic."""


def _aad(context: str, key_id: str) -> bytes:
    return b"|".join((_LABEL, context.encode(), key_id.encode()))


def seal(plaintext: str, *, context: str) -> str:
    """Return the sealed form of a secret ("" stays "")."""
    if not plaintext:
        return ""
    master = storage.master_key()
    aad = _aad(context, master.key_id)
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE)
    body = AESGCM(data_key).encrypt(nonce, plaintext.encode(), aad)
    blob = bytes.fromhex(master.key_id) + master.wrap(data_key, aad) + nonce + body
    return PREFIX + base64.b64encode(blob).decode()


def unseal(sealed: str, *, context: str) -> str:
    """Return the secret inside a sealed value ("" stays "")."""
    if not sealed:
        return ""
    if not sealed.startswith(PREFIX):
        raise SecretUnavailable("not a sealed secret")
    try:
        blob = base64.b64decode(sealed[len(PREFIX):], validate=True)
    except binascii.Error:
        raise SecretUnavailable("sealed secret is not base64") from None
    key_id = blob[:_KEY_ID].hex()
    master = storage.known_keys().get(key_id)
    if master is None:
        raise SecretUnavailable(f"sealed with master key {key_id}, which this install lacks")
    aad = _aad(context, key_id)
    wrapped_end = _KEY_ID + _WRAPPED
    try:
        data_key = master.unwrap(blob[_KEY_ID:wrapped_end], aad)
        nonce, body = blob[wrapped_end:wrapped_end + _NONCE], blob[wrapped_end + _NONCE:]
        return AESGCM(data_key).decrypt(nonce, body, aad).decode()
    except (atrest.IntegrityError, InvalidTag, ValueError):
        raise SecretUnavailable("sealed secret failed authentication") from None


def key_id_of(sealed: str) -> str | None:
    """Return the id of the master key a sealed value is wrapped with."""
    if not sealed.startswith(PREFIX):
        return None
    return base64.b64decode(sealed[len(PREFIX):])[:_KEY_ID].hex()


def reseal(sealed: str, *, context: str) -> str:
    """Return the value sealed under the current master key (unchanged if it already is)."""
    if not sealed or key_id_of(sealed) == storage.master_key().key_id:
        return sealed
    return seal(unseal(sealed, context=context), context=context)

"""Channel credentials at rest: sealed with Fernet (AES-128-CBC + HMAC-SHA256).

A Sealer holds one or more keys (BROADCASTER_SECRET_KEY, comma-separated): the first seals, all
of them open, so keys can be rotated by putting a new one first. A key is a Fernet key (32
url-safe base64 bytes) or any passphrase of 32+ characters, stretched with HKDF-SHA256.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretKeyError(ValueError):
    """The secret key is missing or unusable."""


def _is_fernet_key(key: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def is_usable_key(key: str) -> bool:
    """A Fernet key, or a passphrase long enough to stretch into one."""
    return _is_fernet_key(key) or len(key) >= 32


def _fernet(key: str) -> Fernet:
    if _is_fernet_key(key):
        return Fernet(key.encode())
    if not is_usable_key(key):
        raise SecretKeyError(
            "BROADCASTER_SECRET_KEY entries must be Fernet keys or passphrases of 32+ characters"
        )
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"broadcaster credentials v1"
    ).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class Sealer:
    def __init__(self, keys: tuple[str, ...]) -> None:
        """`keys`: the sealing key first, then older ones that still open."""
        if not keys:
            raise SecretKeyError("no secret key configured")
        self._fernet = MultiFernet([_fernet(k) for k in keys])

    def seal(self, values: Mapping[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(dict(values)).encode()).decode()

    def open(self, sealed: str) -> dict[str, str]:
        try:
            data = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken:
            raise SecretKeyError(
                "stored credentials cannot be opened with BROADCASTER_SECRET_KEY: was the key "
                "changed without keeping the old one?"
            ) from None
        return {str(k): str(v) for k, v in data.items()}


def key_beside(path: Path) -> str:
    """The key stored beside a SQLite database file, made on first use (mode 0600)."""
    key_file = path.with_name(path.name + ".key")
    if key_file.exists():
        return key_file.read_text().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key

"""Encryption of sensitive columns at rest (policy: DATA-001): AES-256-GCM with one master key.

Contract:
- ``encrypt`` returns a text token ``v1:<base64(nonce | ciphertext+tag)>`` that fits a TEXT column; the
  96-bit nonce is random for every call, so equal values give different tokens.
- ``aad`` names what the value is for (``"ocpp.id_token"``, ``"ocpp.station_password:CP01"``): a token
  copied into another column or row does not decrypt there. ``decrypt`` raises ``VaultError`` for a wrong
  key, a wrong ``aad`` or any changed byte; it never returns unauthenticated data.
- ``blind_index`` gives a keyed, deterministic digest for equality look-ups of encrypted values (an id token
  presented by a station). Callers normalise first (OCPP id tokens are case-insensitive ``CiString``s).
- The master key comes from ``$AMPGATE_VAULT_KEY`` (base64 of 32 bytes) or from ``data_dir/vault.key``,
  created once with mode 0600. Losing the key loses the encrypted data; ``factory-reset`` erases it on
  purpose (DATA-002). The AES and HMAC keys are derived from it with HKDF, so the master key itself is
  never used by two algorithms.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import GatewayError
from gateway.security.files import fsync_dir, temp_name, write_exclusive

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits: the nonce length GCM is specified for (NIST SP 800-38D, 8.2)
TAG_BYTES = 16
KEY_FILE = "vault.key"
KEY_ENV = "AMPGATE_VAULT_KEY"
FORMAT_VERSION = "v1"  # prefix of every token; a new format gets a new prefix

_ENCRYPTION_INFO = b"ampgate.vault.aes-256-gcm.v1"
_BLIND_INDEX_INFO = b"ampgate.vault.blind-index.v1:"


class VaultError(GatewayError):
    """The vault cannot be opened (bad or exposed key) or a value does not decrypt."""


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(master)


class Vault:
    """Encrypts and decrypts values with keys derived from one 32-byte master key."""

    __slots__ = ("_aead", "_index_keys", "_master")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise VaultError(f"the vault key must be {KEY_BYTES} bytes, got {len(key)}")
        self._master = bytes(key)
        self._aead = AESGCM(_derive(self._master, _ENCRYPTION_INFO))
        self._index_keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return "Vault(<key hidden>)"

    # -- opening -------------------------------------------------------------------------------------------

    @classmethod
    def from_data_dir(cls, data_dir: Path, env: str = KEY_ENV) -> Vault:
        """The vault whose key is in ``$env`` if set, else in ``data_dir/vault.key`` (created on first use)."""
        encoded = os.environ.get(env)
        if encoded:
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (ValueError, binascii.Error) as err:
                raise VaultError(f"${env} is not valid base64") from err
            if len(key) != KEY_BYTES:
                raise VaultError(f"${env} must hold {KEY_BYTES} bytes (base64), it holds {len(key)}")
            return cls(key)
        path = Path(data_dir) / KEY_FILE
        try:
            return cls(_read_key_file(path))
        except FileNotFoundError:
            pass
        return cls(_create_key_file(path))

    # -- values --------------------------------------------------------------------------------------------

    def encrypt(self, plaintext: str | bytes, *, aad: str) -> str:
        """``plaintext`` sealed for the purpose ``aad``, as a ``v1:...`` text token."""
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else bytes(plaintext)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, data, _aad(aad))
        return f"{FORMAT_VERSION}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, *, aad: str) -> bytes:
        """The plaintext of ``token``; ``VaultError`` if it was changed, sealed for another ``aad`` or key."""
        version, sep, body = token.partition(":")
        if not sep or version != FORMAT_VERSION:
            raise VaultError("not a vault token (expected 'v1:...')")
        try:
            raw = base64.b64decode(body, validate=True)
        except (ValueError, binascii.Error) as err:
            raise VaultError("vault token is not valid base64") from err
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            raise VaultError("vault token is too short")
        try:
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(aad))
        except InvalidTag:
            raise VaultError(
                f"cannot decrypt a value for {aad!r}: wrong key, wrong purpose or tampered value"
            ) from None

    def decrypt_str(self, token: str, *, aad: str) -> str:
        try:
            return self.decrypt(token, aad=aad).decode("utf-8")
        except UnicodeDecodeError as err:
            raise VaultError(f"the value for {aad!r} is not text") from err

    def blind_index(self, value: str, *, purpose: str) -> str:
        """A hex HMAC-SHA256 of ``value`` under a key derived for ``purpose``: equal in, equal out."""
        key = self._index_keys.get(purpose)
        if key is None:
            key = self._index_keys[purpose] = _derive(self._master, _BLIND_INDEX_INFO + purpose.encode("utf-8"))
        return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _aad(purpose: str) -> bytes:
    # The token version is authenticated too, so a future format cannot be confused with this one.
    return f"{FORMAT_VERSION}|{purpose}".encode()


# -- the key file ---------------------------------------------------------------------------------------------


def _read_key_file(path: Path) -> bytes:
    """The key in ``path``; refuses a file others may read (like TLS-004 for private keys)."""
    # O_NOFOLLOW and fstat on the open descriptor: what is checked is what is read, and a symbolic link
    # planted in the data directory cannot point the vault at another file.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise VaultError(f"{path} is a symbolic link; the key must be a regular file") from err
        raise VaultError(f"cannot read {path}: {err.strerror}") from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise VaultError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise VaultError(
                f"{path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"run 'chmod 600 {path}' and consider the key exposed"
            )
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise VaultError(f"{path} must hold exactly {KEY_BYTES} bytes, it holds {len(key)}")
    return key


def _create_key_file(path: Path) -> bytes:
    """Write a new random key to ``path`` atomically; if another process won the race, use its key.

    The key is written to a temporary file (O_CREAT|O_EXCL, mode 0600 from the start, never widened) and
    hard-linked to its name, so the name appears only with the whole key behind it: a crash leaves either
    no key file or a complete one, never an empty key that would lock the data away.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = temp_name(path)
    write_exclusive(tmp, key)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read_key_file(path)
    except OSError:
        # A file system without hard links: create the name itself exclusively instead.
        try:
            write_exclusive(path, key)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)
    return key



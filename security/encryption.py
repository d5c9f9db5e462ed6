"""Encryption at rest: AES-256-GCM with the key from MYHUG_DATA_KEY, for fields and for the blob store."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12
_VERSION = b"\x01"  # lets a later key rotation or algorithm change tell old ciphertexts apart


class DecryptionError(Exception):
    """Wrong key, or data that was altered."""


def encrypt(key: bytes, plaintext: bytes, context: str) -> bytes:
    """`context` is bound as associated data: a ciphertext moved to another field or blob does not decrypt."""
    nonce = secrets.token_bytes(_NONCE)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, context.encode())


def decrypt(key: bytes, blob: bytes, context: str) -> bytes:
    if not blob or blob[:1] != _VERSION:
        raise DecryptionError("unknown ciphertext format")
    nonce, body = blob[1 : 1 + _NONCE], blob[1 + _NONCE :]
    try:
        return AESGCM(key).decrypt(nonce, body, context.encode())
    except Exception as exc:  # cryptography raises InvalidTag
        raise DecryptionError("cannot decrypt: wrong key or altered data") from exc


@dataclass(frozen=True)
class StoredBlob:
    """A file of the blob store, as its listing finds it."""

    blob_id: str
    modified: float  # when it was last written (POSIX time)
    complete: bool = True  # False: a write that never finished (its `.tmp`, left by a crash before the rename)


class BlobStore:
    """Encrypted files under one folder, named by a random id; the database keeps only the id and the digest."""

    def __init__(self, root: str | Path, key: bytes):
        self.root = Path(root)
        self.key = key

    def _path(self, blob_id: str) -> Path:
        if not blob_id.isalnum():
            raise ValueError("invalid blob id")
        return self.root / blob_id[:2] / blob_id

    def put(self, data: bytes, context: str) -> str:
        blob_id = secrets.token_hex(16)
        path = self._path(blob_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(encrypt(self.key, data, f"{context}:{blob_id}"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # never a half-written blob under its final name
        return blob_id

    def delete(self, blob_id: str) -> None:
        """Remove a blob that no record refers to (an upload whose transition was refused)."""
        self._path(blob_id).unlink(missing_ok=True)

    def get(self, blob_id: str, context: str) -> bytes:
        return decrypt(self.key, self._path(blob_id).read_bytes(), f"{context}:{blob_id}")

    def listing(self) -> Iterator[StoredBlob]:
        """Every file of the store, one shard folder after the other, in the order the folders give them: nothing
        is collected, the store may hold millions of files. Files the store did not write are not listed."""
        if not self.root.is_dir():
            return
        with os.scandir(self.root) as shards:
            for shard in shards:
                if len(shard.name) != 2 or not shard.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(shard.path) as entries:
                    for entry in entries:
                        stored = _stored(shard.name, entry)
                        if stored is not None:
                            yield stored

    def discard(self, stored: StoredBlob) -> None:
        """Remove a listed file (a blob, or the leftover of a write that never finished)."""
        path = self._path(stored.blob_id)
        (path if stored.complete else path.with_suffix(".tmp")).unlink(missing_ok=True)


def _stored(shard: str, entry: os.DirEntry) -> StoredBlob | None:
    name, complete = entry.name, True
    if name.endswith(".tmp"):
        name, complete = name.removesuffix(".tmp"), False
    if not (name.isalnum() and name[:2] == shard and entry.is_file(follow_symlinks=False)):
        return None
    try:
        modified = entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:  # deleted since the folder was read
        return None
    return StoredBlob(name, modified, complete)


class _Keyring:
    """The data key of the running process, set once by the app factory or the CLI (never read at import)."""

    key: bytes | None = None

    def require(self) -> bytes:
        if self.key is None:
            raise RuntimeError("the data key is not configured (create_app or the CLI sets it)")
        return self.key


keyring = _Keyring()


def configure(key: bytes) -> None:
    keyring.key = key


def encrypt_field(value: str, context: str) -> bytes:
    return encrypt(keyring.require(), value.encode(), context)


def decrypt_field(blob: bytes, context: str) -> str:
    return decrypt(keyring.require(), bytes(blob), context).decode()

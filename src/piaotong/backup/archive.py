"""The archive (备份文件): the `.ptbk` container format, read and written as a stream.

Archive format, version 2 (integers big-endian):

  header, 61 bytes, authenticated as associated data of every chunk
     0  magic         8  b"PTBK\\r\\n\\x1a\\n" (like PNG's: text-mode copies are detected)
     8  version       1  2 (1 is still read)
     9  cipher        1  0 = none (--unencrypted), 1 = AES-256-GCM in chunks
    10  chunk size    4  plaintext bytes per chunk (1 MiB); 0 when not encrypted
    14  key id        8  zero when not encrypted
    22  salt         32  random; file key = HKDF-SHA256(backup key, salt, "piaotong backup v1")
    54  nonce prefix  7  random
  body
    cipher 0: the payload.
    cipher 1: chunk i (from 0) = AES-256-GCM(file key, nonce, chunk plaintext, aad = header),
              ciphertext then 16-byte tag, where nonce = prefix ‖ i (4 bytes) ‖ last flag (1
              byte). Every chunk but the last holds exactly `chunk size` plaintext bytes; the
              last holds 0..chunk size bytes and is sealed with last flag 1.
  payload: a gzip-compressed tar stream of, in order: manifest.json, the database
  (database.sqlite3, or database.pgdump in pg_dump's custom format), keys/<file> for each
  file of PIAOTONG_KEY_DIR, then media/<relative path> for every file under MEDIA_ROOT (uploaded
  qualification documents), each streamed from disk.

Versions: version 2 added the media members and the manifest's "media" section (a count and
each file's size and SHA-256, keyed by its path relative to MEDIA_ROOT). Version 1 archives
(no media members, no "media" section) are still read and restored; they leave MEDIA_ROOT as
it is. The header layout and the key derivation are unchanged between the two versions. A
Piaotong that reads only version 1 refuses a version 2 archive by its header, rather than
silently restoring it without its documents.

Why chunks: an archive may be gigabytes and both ends stream it in bounded memory, but GCM
authenticates only whole messages. This construction (STREAM, Hoang, Reyhanitabar, Rogaway and
Vizár 2015, as in Tink and age) authenticates each chunk and its place: the counter catches
reordered or dropped chunks, the last flag catches truncation at a chunk boundary and appended
data, and the header as associated data cannot be edited. The random salt gives every archive
its own key, so nonces never repeat across archives made with one backup key.

Beside the archive, `<archive>.sha256` holds its SHA-256 in `sha256sum` format.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from piaotong.backup.keys import KEY_ENV, hkdf, key_id
from piaotong.backup.reporting import BackupError, Progress, human_size

MAGIC = b"PTBK\r\n\x1a\n"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CIPHER_NONE = 0
CIPHER_AES_256_GCM = 1
CHUNK_SIZE = 1 << 20
# A restore allocates one chunk: bound what a crafted header can ask for.
MAX_CHUNK_SIZE = 16 << 20
TAG_SIZE = 16
MANIFEST = "manifest.json"
DATABASE_MEMBERS = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
KEYS = "keys"
MEDIA = "media"
PROGRESS_STEP = 64 << 20


# ---- the archive's outer layer: header and chunked encryption ---------------------------------

_HEADER = struct.Struct(">8sBBI8s32s7s")
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True)
class Header:
    """The clear-text start of an archive; every chunk authenticates it as associated data."""

    cipher: int
    chunk_size: int = 0
    key_id: bytes = bytes(8)
    salt: bytes = bytes(32)
    nonce_prefix: bytes = bytes(7)
    version: int = FORMAT_VERSION

    @classmethod
    def for_key(cls, key: bytes, chunk_size: int = CHUNK_SIZE) -> Header:
        return cls(CIPHER_AES_256_GCM, chunk_size, key_id(key), os.urandom(32), os.urandom(7))

    def pack(self) -> bytes:
        """
        >>> Header.unpack(Header(CIPHER_NONE).pack()) == Header(CIPHER_NONE)
        True
        """
        fields = (self.version, self.cipher, self.chunk_size, self.key_id)
        return _HEADER.pack(MAGIC, *fields, self.salt, self.nonce_prefix)

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        if not data.startswith(MAGIC):
            raise BackupError("not a Piaotong backup archive (it does not start with PTBK)")
        if len(data) < HEADER_SIZE:
            raise BackupError("the archive is truncated: its header is incomplete")
        _, version, cipher, chunk_size, kid, salt, prefix = _HEADER.unpack(data[:HEADER_SIZE])
        if version not in READABLE_VERSIONS:
            raise BackupError(
                f"archive format version {version} is unknown here (this Piaotong reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}): restore it with the Piaotong release "
                "that wrote it"
            )
        encrypted_ok = cipher == CIPHER_AES_256_GCM and 0 < chunk_size <= MAX_CHUNK_SIZE
        if not (encrypted_ok or cipher == CIPHER_NONE):
            raise BackupError(f"archive header is damaged (cipher {cipher}, chunk {chunk_size})")
        return cls(cipher, chunk_size, kid, salt, prefix, version)

    def cipher_for(self, key: bytes) -> AESGCM:
        return AESGCM(hkdf(key, 32, salt=self.salt, info=b"piaotong backup v1"))


def chunk_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    """The nonce of chunk `index`: prefix ‖ index ‖ last flag.

    >>> chunk_nonce(bytes(7), 258, last=True).hex()
    '000000000000000000010201'
    """
    if index >= 1 << 32:
        raise BackupError("archive too large: more than 2^32 chunks")
    return prefix + struct.pack(">IB", index, last)


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...
    def flush(self) -> object: ...


class Source(Protocol):
    def read(self, size: int, /) -> bytes: ...
    def seek(self, offset: int, /) -> object: ...


class ChunkSealer:
    """Encrypts what is written to it into chunks; `finish()` seals the last one."""

    def __init__(self, out: Sink, key: bytes, header: Header) -> None:
        self._out, self._header = out, header
        self._aead, self._aad = header.cipher_for(key), header.pack()
        self._buffer = bytearray()
        self._index = 0

    def write(self, data: bytes) -> int:
        self._buffer += data
        # Strictly more than a chunk: a full chunk is held back, since only finish() knows
        # whether it is the last one.
        while len(self._buffer) > self._header.chunk_size:
            self._seal(bytes(self._buffer[: self._header.chunk_size]), last=False)
            del self._buffer[: self._header.chunk_size]
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def finish(self) -> None:
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _seal(self, plaintext: bytes, last: bool) -> None:
        nonce = chunk_nonce(self._header.nonce_prefix, self._index, last)
        self._out.write(self._aead.encrypt(nonce, plaintext, self._aad))
        self._index += 1


class ChunkOpener:
    """Reads the chunks a ChunkSealer wrote, authenticating each before returning its bytes.

    One chunk is read ahead: the end of the file is what says a chunk must be the last one.
    """

    def __init__(self, source: Source, key: bytes, header: Header) -> None:
        self._source, self._header = source, header
        self._aead, self._aad = header.cipher_for(key), header.pack()
        self._sealed_size = header.chunk_size + TAG_SIZE
        self._ahead = source.read(self._sealed_size)
        self._plain, self._pos, self._index = b"", 0, 0
        self.finished = False

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(self._header.chunk_size), b""))
        while self._pos == len(self._plain) and not self.finished:
            self._open_next()
        data = self._plain[self._pos : self._pos + size]
        self._pos += len(data)
        return data

    def seek(self, offset: int, /) -> int:
        raise io.UnsupportedOperation("an encrypted archive is read once, front to back")

    def _open_next(self) -> None:
        sealed, self._ahead = self._ahead, self._source.read(self._sealed_size)
        last = not self._ahead
        nonce = chunk_nonce(self._header.nonce_prefix, self._index, last)
        try:
            self._plain = self._aead.decrypt(nonce, sealed, self._aad)
        except InvalidTag:
            raise BackupError(
                f"the archive failed authentication at chunk {self._index}: it was altered or "
                "truncated after it was written"
            ) from None
        self._pos, self._index, self.finished = 0, self._index + 1, last


@contextmanager
def payload_writer(out: Sink, key: bytes | None, chunk_size: int = CHUNK_SIZE) -> Iterator[Sink]:
    """Write the header to `out`, then yield where the payload goes (encrypting if keyed)."""
    if key is None:
        out.write(Header(CIPHER_NONE).pack())
        yield out
        return
    header = Header.for_key(key, chunk_size)
    out.write(header.pack())
    sealer = ChunkSealer(out, key, header)
    yield sealer
    sealer.finish()


def payload_reader(file: Source, key: bytes | None, *, allow_unencrypted: bool = False) -> Source:
    """Read the header from `file` and return a reader of the authenticated payload.

    An unencrypted archive is read only when asked for: it proves nothing about who made it,
    and one flipped header byte would otherwise pass an altered archive off as unencrypted.
    """
    header = Header.unpack(file.read(HEADER_SIZE))
    if header.cipher == CIPHER_NONE:
        if not allow_unencrypted:
            raise BackupError(
                "the archive is not encrypted, so nothing proves who made it: if you wrote it "
                "with `piaotong backup --unencrypted`, restore it with --unencrypted"
            )
        return file
    if key is None:
        raise BackupError(
            f"the archive is encrypted (key id {header.key_id.hex()}): set {KEY_ENV} to the key "
            "it was made with"
        )
    if key_id(key) != header.key_id:
        raise BackupError(
            f"wrong backup key: the archive needs key id {header.key_id.hex()}, but {KEY_ENV} "
            f"has key id {key_id(key).hex()}"
        )
    return ChunkOpener(file, key, header)


class HashingWriter:
    """Passes bytes on to a file, hashing and counting them and reporting every 64 MiB."""

    def __init__(self, out: BinaryIO, progress: Progress) -> None:
        self._out, self._progress = out, progress
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.sha256.update(data)
        before, self.size = self.size, self.size + len(data)
        if self.size // PROGRESS_STEP > before // PROGRESS_STEP:
            self._progress(f"  {human_size(self.size)} written")
        return len(data)

    def flush(self) -> None:
        self._out.flush()


# ---- the checksum file ------------------------------------------------------------------------


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def file_digest(path: Path) -> dict[str, Any]:
    with open(path, "rb") as file:
        sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": sha256}


def verify_checksum(path: Path, progress: Progress) -> str:
    """Compare the archive with `<archive>.sha256`; return the SHA-256."""
    sidecar = checksum_path(path)
    if not path.is_file():
        raise BackupError(f"{path}: no such archive")
    if not sidecar.is_file():
        raise BackupError(f"{sidecar} is missing: copy the checksum file along with the archive")
    expected = (sidecar.read_text().split() or [""])[0].lower()
    progress(f"Checking SHA-256 of {path.name} ({human_size(path.stat().st_size)})")
    actual = file_digest(path)["sha256"]
    if actual != expected:
        raise BackupError(
            f"{path.name} has SHA-256 {actual}, but {sidecar.name} says {expected or '(nothing)'}: "
            "the archive was altered, truncated or damaged in transit"
        )
    return str(actual)


# ---- media member names -----------------------------------------------------------------------


def media_relative(relative: str) -> str:
    """A media file's path relative to MEDIA_ROOT, checked: nothing it names escapes MEDIA_ROOT.

    >>> media_relative("qualifications/ab.pdf")
    'qualifications/ab.pdf'
    >>> media_relative("../evil")
    Traceback (most recent call last):
    ...
    piaotong.backup.reporting.BackupError: media path '../evil' is not a plain relative path
    """
    parts = relative.split("/")
    plain = (
        relative != ""
        and not relative.startswith("/")
        and "\\" not in relative
        and "\x00" not in relative
        and all(part not in {"", ".", ".."} for part in parts)
    )
    if not plain:
        raise BackupError(f"media path {relative!r} is not a plain relative path")
    return relative

"""The archive's outer layer without a database: header, chunked AES-256-GCM, keys.

Chunks of 16 bytes make every boundary case a few dozen bytes long.
"""

from __future__ import annotations

import base64
import io
import os

import pytest

from piaotong.backup import BackupError, generate_key, key_id, parse_key
from piaotong.backup.archive import (
    FORMAT_VERSION,
    HEADER_SIZE,
    TAG_SIZE,
    payload_reader,
    payload_writer,
)

KEY = parse_key(generate_key())
CHUNK = 16


def seal(plaintext: bytes, key: bytes | None = KEY, pieces: int = 7) -> bytes:
    """The archive bytes for `plaintext`, written in uneven pieces as gzip would."""
    out = io.BytesIO()
    with payload_writer(out, key, chunk_size=CHUNK) as sink:
        for start in range(0, len(plaintext), pieces):
            sink.write(plaintext[start : start + pieces])
    return out.getvalue()


def open_all(
    data: bytes, key: bytes | None = KEY, read_size: int = 5, *, allow_unencrypted: bool = False
) -> bytes:
    reader = payload_reader(io.BytesIO(data), key, allow_unencrypted=allow_unencrypted)
    return b"".join(iter(lambda: reader.read(read_size), b""))


def chunks(sealed: bytes) -> list[bytes]:
    body = sealed[HEADER_SIZE:]
    step = CHUNK + TAG_SIZE
    return [body[i : i + step] for i in range(0, len(body), step)]


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32, 33, 100])
def test_it_round_trips_payloads_around_chunk_boundaries(length: int) -> None:
    plaintext = os.urandom(length)
    sealed = seal(plaintext)
    assert plaintext not in sealed or length < 8
    assert open_all(sealed) == open_all(sealed, read_size=1000) == plaintext


def test_it_seals_the_last_chunk_even_when_the_payload_fills_whole_chunks() -> None:
    assert [len(c) for c in chunks(seal(bytes(32)))] == [CHUNK + TAG_SIZE] * 2
    assert [len(c) for c in chunks(seal(b""))] == [TAG_SIZE]


def test_it_refuses_every_single_flipped_bit_header_included() -> None:
    sealed = seal(os.urandom(40))
    for position in range(len(sealed)):
        altered = bytearray(sealed)
        altered[position] ^= 0x01
        with pytest.raises(BackupError):
            open_all(bytes(altered))


def test_it_refuses_every_truncation_including_at_chunk_boundaries() -> None:
    sealed = seal(os.urandom(40))
    boundaries = {HEADER_SIZE + n * (CHUNK + TAG_SIZE) for n in range(3)}
    assert boundaries < set(range(len(sealed)))
    for length in range(len(sealed)):
        with pytest.raises(BackupError):
            open_all(sealed[:length])


def test_it_refuses_reordered_repeated_and_appended_chunks() -> None:
    sealed = seal(os.urandom(40))
    header, (first, second, last) = sealed[:HEADER_SIZE], chunks(sealed)
    for body in [
        second + first + last,
        first + first + second + last,
        first + second + last + last,
    ]:
        with pytest.raises(BackupError, match="failed authentication"):
            open_all(header + body)


def test_it_refuses_chunks_moved_from_another_archive_made_with_the_same_key() -> None:
    one, other = seal(bytes(40)), seal(bytes(40))
    spliced = one[:HEADER_SIZE] + chunks(one)[0] + b"".join(chunks(other)[1:])
    with pytest.raises(BackupError, match="failed authentication at chunk 1"):
        open_all(spliced)


def test_it_names_both_key_ids_when_the_key_is_wrong() -> None:
    other = parse_key(generate_key())
    with pytest.raises(BackupError, match="wrong backup key") as excinfo:
        open_all(seal(b"invoices"), key=other)
    assert key_id(KEY).hex() in str(excinfo.value) and key_id(other).hex() in str(excinfo.value)


def test_it_asks_for_the_key_of_an_encrypted_archive() -> None:
    with pytest.raises(BackupError, match=f"encrypted \\(key id {key_id(KEY).hex()}\\)"):
        open_all(seal(b"invoices"), key=None)


def test_it_reads_an_unencrypted_payload_only_when_asked_to() -> None:
    sealed = seal(b"invoices", key=None)
    assert sealed[HEADER_SIZE:] == b"invoices"
    with pytest.raises(BackupError, match="not encrypted, so nothing proves who made it"):
        open_all(sealed)
    assert open_all(sealed, key=None, allow_unencrypted=True) == b"invoices"
    assert open_all(sealed, key=KEY, allow_unencrypted=True) == b"invoices"


def test_it_refuses_an_encrypted_archive_whose_header_claims_it_is_not() -> None:
    downgraded = bytearray(seal(b"invoices"))
    downgraded[9] = 0  # the cipher byte
    with pytest.raises(BackupError, match="not encrypted"):
        open_all(bytes(downgraded))


def test_it_refuses_files_that_are_not_archives_or_of_an_unknown_version() -> None:
    with pytest.raises(BackupError, match="not a Piaotong backup"):
        open_all(b"PK\x03\x04 a zip file")
    newer = bytearray(seal(b"x"))
    newer[8] = FORMAT_VERSION + 1
    with pytest.raises(BackupError, match=f"format version {FORMAT_VERSION + 1} is unknown"):
        open_all(bytes(newer))


def test_it_reads_one_chunk_at_a_time_however_much_is_asked_for() -> None:
    class Source(io.BytesIO):
        sizes: list[int | None] = []

        def read(self, size: int | None = -1, /) -> bytes:
            self.sizes.append(size)
            return super().read(size)

    source = Source(seal(os.urandom(200)))
    reader = payload_reader(source, KEY)
    assert len(reader.read(10_000)) <= CHUNK
    assert source.sizes == [HEADER_SIZE, CHUNK + TAG_SIZE, CHUNK + TAG_SIZE]


@pytest.mark.parametrize(
    "text",
    ["", "c2hvcnQ=", "not base64!", base64.b64encode(bytes(33)).decode()],
    ids=["empty", "5-bytes", "not-base64", "33-bytes"],
)
def test_it_refuses_keys_that_are_not_base64_of_32_bytes(text: str) -> None:
    with pytest.raises(BackupError, match="base64 of 32 bytes"):
        parse_key(text)

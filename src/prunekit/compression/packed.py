"""The packed container: fixed prefix, JSON header, checksummed sections, SHA-256 trailer.

Layout (all integers little-endian; byte-by-byte description in ``docs/compression.md``)::

    0   4  magic  b"PKDC"
    4   2  format version (uint16)
    6   2  flags (uint16, 0)
    8   4  header length H (uint32)
    12  8  file length (uint64, whole file including the trailer)
    20  4  CRC32 of bytes 0..19
    24  H  header: UTF-8 JSON object (version 2: zlib-compressed; version 1: plain); its
           "sections" maps each section name to {"offset", "length", "crc32"}, offsets counted
           from the end of the header
    ..     sections, back to back
    -32 32 SHA-256 of every byte before it

The whole-file SHA-256 is the integrity guarantee (any change anywhere is detected); the prefix
CRC32 lets the version be trusted before anything else is read, and the per-section CRC32s say
*which* part is damaged. This module knows nothing about weights: it packs a header and named byte sections, and on
reading checks everything before anything is interpreted. It never executes code (JSON only).
"""

from __future__ import annotations

import hashlib
import json
import reprlib
import struct
import zlib
from collections.abc import Iterable
from typing import Any

from prunekit.errors import CheckpointError

MAGIC = b"PKDC"
#: Version written; every version from 1 up to it can be read. 2 compresses the JSON header.
FORMAT_VERSION = 2
_PREFIX = struct.Struct("<4sHHIQ")
PREFIX_SIZE = _PREFIX.size + 4  # + CRC32
TRAILER_SIZE = 32
MIN_SIZE = PREFIX_SIZE + 2 + TRAILER_SIZE  # the smallest header is "{}"
#: Largest JSON header (uncompressed) written or read: bounds what a tiny file can inflate to.
MAX_HEADER_BYTES = 16 << 20
_SECTION_KEYS = {"offset", "length", "crc32"}
_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlong, _REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 30, 40, 40, 3


def describe(value: Any) -> str:
    """A short ``repr`` of a header value for error messages (huge numbers and lists are cut)."""
    return _REPR.repr(value)


def pack(header: dict[str, Any], sections: Iterable[tuple[str, bytes]], version: int = FORMAT_VERSION) -> bytes:
    """Serialise ``header`` plus named ``sections`` into one file image (format ``version``).

    ``header`` must be JSON-serialisable and must not contain the key ``"sections"`` (added here).
    """
    if not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"can write format versions 1..{FORMAT_VERSION}, not {version}")
    if "sections" in header:
        raise ValueError("header key 'sections' is reserved for the section table")
    table: dict[str, dict[str, Any]] = {}
    blobs: list[bytes] = []
    offset = 0
    for name, blob in sections:
        if name in table:
            raise ValueError(f"duplicate section name {name!r}")
        blob = bytes(blob)
        table[name] = {"offset": offset, "length": len(blob), "crc32": zlib.crc32(blob)}
        blobs.append(blob)
        offset += len(blob)
    # Key order is kept as given (deterministic, and meaningful for ordered settings like overrides).
    head = json.dumps({**header, "sections": table}, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(f"the JSON header is {len(head)} bytes, more than the {MAX_HEADER_BYTES} a file may hold")
    if version >= 2:
        head = zlib.compress(head, 9)
    file_len = PREFIX_SIZE + len(head) + offset + TRAILER_SIZE
    prefix = _PREFIX.pack(MAGIC, version, 0, len(head), file_len)
    body = b"".join([prefix, struct.pack("<I", zlib.crc32(prefix)), head, *blobs])
    return body + hashlib.sha256(body).digest()


def unpack(data: bytes, source: str = "<bytes>") -> tuple[dict[str, Any], dict[str, bytes]]:
    """Check and split a file image into ``(header, {section name: bytes})``.

    Raises :class:`CheckpointError` for anything that is not an intact file of a supported version.
    """
    data = bytes(data)
    size = len(data)
    if data[:4] != MAGIC[: min(4, size)] or size == 0:
        raise CheckpointError(f"{source} is not a prunekit compressed file (it does not start with {MAGIC!r})")
    if size < PREFIX_SIZE:
        raise CheckpointError(f"{source} is truncated: {size} bytes, shorter than the {PREFIX_SIZE}-byte fixed prefix")
    magic, version, flags, head_len, file_len = _PREFIX.unpack_from(data)
    (crc,) = struct.unpack_from("<I", data, _PREFIX.size)
    if zlib.crc32(data[: _PREFIX.size]) != crc:
        raise CheckpointError(f"{source} is corrupted: the fixed prefix (bytes 0-23) fails its CRC32 check")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source} uses compressed-file format version {version}; this prunekit reads versions up to "
            f"{FORMAT_VERSION}. Upgrade prunekit to read it."
        )
    if version < 1 or flags != 0:
        raise CheckpointError(f"{source} has an invalid format version {version} / flags {flags:#x}")
    if size < file_len:
        raise CheckpointError(f"{source} is truncated: {size} of {file_len} bytes present; re-create or re-copy the file")
    if size > file_len:
        raise CheckpointError(f"{source} has {size - file_len} unexpected bytes after its end ({file_len} bytes)")
    if PREFIX_SIZE + head_len + TRAILER_SIZE > file_len:
        raise CheckpointError(f"{source} is corrupted: header length {head_len} exceeds the file")
    body_end = size - TRAILER_SIZE
    if hashlib.sha256(data[:body_end]).digest() != data[body_end:]:
        raise CheckpointError(f"{source} is corrupted: {_locate_damage(data, head_len, version)}; the file cannot be trusted")
    header = _parse_header(data[PREFIX_SIZE : PREFIX_SIZE + head_len], version, source)
    sections = _split_sections(header, data, PREFIX_SIZE + head_len, body_end, source)
    return header, sections


def _header_json(raw: bytes, version: int) -> Any:
    """The decoded JSON header; ``ValueError``/``RecursionError`` when it is unreadable or too large."""
    return json.loads(_header_text(raw, version).decode("utf-8"), parse_constant=_reject_constant)


def _header_text(raw: bytes, version: int) -> bytes:
    """The header's JSON bytes, inflated (version 2) to at most :data:`MAX_HEADER_BYTES`."""
    text = raw
    if version >= 2:
        inflate = zlib.decompressobj()
        text = inflate.decompress(raw, MAX_HEADER_BYTES + 1)
        if len(text) <= MAX_HEADER_BYTES and (not inflate.eof or inflate.unused_data):
            raise ValueError("its zlib stream is truncated or followed by stray bytes")
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"it is larger than the {MAX_HEADER_BYTES} bytes a header may hold")
    return text


def _reject_constant(name: str) -> None:
    raise ValueError(f"it holds the non-JSON number {name}")


def _parse_header(raw: bytes, version: int, source: str) -> dict[str, Any]:
    try:
        header = _header_json(raw, version)
    except (ValueError, RecursionError, zlib.error) as exc:
        raise CheckpointError(f"{source} has an unreadable JSON header ({exc})") from exc
    if not isinstance(header, dict) or not isinstance(header.get("sections"), dict):
        raise CheckpointError(f"{source} has a malformed header: no section table")
    return header


def _split_sections(header: dict[str, Any], data: bytes, start: int, end: int, source: str) -> dict[str, bytes]:
    sections: dict[str, bytes] = {}
    expected = 0
    # Sections must tile the data area; check them in (offset, length) order.
    for name, offset, length, crc in sorted(_section_rows(header["sections"], source), key=lambda row: row[1:3]):
        if offset != expected or length < 0 or start + offset + length > end:
            raise CheckpointError(
                f"{source} has a malformed section table at {describe(name)}: offset {offset}, length {length} do not "
                f"continue the sections before it (next offset {expected}) inside the {end - start}-byte data area"
            )
        blob = data[start + offset : start + offset + length]
        if zlib.crc32(blob) != crc:
            raise CheckpointError(f"{source} is corrupted: section {describe(name)} fails its CRC32 check")
        sections[name] = blob
        expected = offset + length
    if start + expected != end:
        raise CheckpointError(f"{source} is corrupted: sections cover {expected} bytes, the file holds {end - start}")
    return sections


def _section_rows(table: dict[str, Any], source: str) -> list[tuple[str, int, int, int]]:
    """``(name, offset, length, crc32)`` per section table entry, each an exact-integer triple."""
    rows = []
    for name, info in table.items():
        if not isinstance(info, dict) or info.keys() != _SECTION_KEYS or any(type(v) is not int for v in info.values()):
            raise CheckpointError(
                f"{source} has a malformed section table: entry {describe(name)} must hold exactly the integers "
                f"'offset', 'length' and 'crc32', got {describe(info)}"
            )
        rows.append((name, info["offset"], info["length"], info["crc32"]))
    return rows


def _locate_damage(data: bytes, head_len: int, version: int) -> str:
    """Best-effort description of where a whole-file checksum mismatch comes from."""
    start = PREFIX_SIZE + head_len
    try:
        header = _header_json(data[PREFIX_SIZE:start], version)
        bad = []
        for name, info in header["sections"].items():
            blob = data[start + int(info["offset"]) : start + int(info["offset"]) + int(info["length"])]
            if zlib.crc32(blob) != int(info["crc32"]):
                bad.append(name)
    except Exception:  # the header itself is damaged: that is the finding
        return "the whole-file SHA-256 does not match and the JSON header is damaged"
    if bad:
        return f"the whole-file SHA-256 does not match; damaged section(s): {', '.join(bad[:5])}"
    return "the whole-file SHA-256 does not match (damage in the header or the trailer)"

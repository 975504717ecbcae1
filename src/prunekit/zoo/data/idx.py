"""Parse IDX files (the MNIST format), gzip-compressed or not, with numpy only.

Layout: two zero bytes, a type code, the number of dimensions ``n``, then ``n`` big-endian
uint32 sizes, then the values in C order (big-endian for multi-byte types).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from prunekit.errors import DataError

#: IDX type code → numpy dtype (big-endian, as stored).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (``.gz`` detected from its content) into a native-endian array.

    Raises :class:`DataError` naming the file when it is not valid gzip or not valid IDX.
    """
    target = Path(path)
    data = target.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise _malformed(target, f"gzip data is damaged or truncated ({exc})") from exc
    return parse_idx(data, target)


def parse_idx(data: bytes, source: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Decode uncompressed IDX ``data``; ``source`` names the file in error messages."""
    if len(data) < 4:
        raise _malformed(source, f"only {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise _malformed(source, f"bad magic number 0x{data[:4].hex()} (the first two bytes must be zero)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise _malformed(source, f"unknown IDX type code 0x{code:02x}")
    if ndim == 0:
        raise _malformed(source, "IDX header declares zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _malformed(source, f"header declares {ndim} dimensions but the file ends after {len(data)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise _malformed(source, f"shape {dims} needs {expected} bytes of data, found {len(data) - header}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False) if dtype.itemsize > 1 else array


def _malformed(source: str | os.PathLike[str], what: str) -> DataError:
    return DataError(f"malformed IDX file {source}: {what}; move it aside (rename it) and download it again")

"""Vectorised bit packing: variable- or fixed-length codes, most significant bit first.

A stream is the concatenation of each code's ``length`` low bits, written from its most significant
bit down, into bytes filled from bit 7 down to bit 0, zero-padded to a whole byte. Codes are at
most :data:`MAX_CODE_BITS` bits long so that any code fits in one unaligned 64-bit read.
"""

from __future__ import annotations

import numpy as np

#: Longest code the packer and the 64-bit window reader handle (64 minus a 7-bit in-byte shift).
MAX_CODE_BITS = 57


def pack_codes(codes: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Concatenate ``codes[i]`` in ``lengths[i]`` bits each; return ``(bytes, total_bits)``."""
    codes = np.asarray(codes, dtype=np.uint64).ravel()
    lengths = np.asarray(lengths, dtype=np.int64).ravel()
    if codes.shape != lengths.shape:
        raise ValueError(f"codes and lengths differ in size: {codes.size} vs {lengths.size}")
    if codes.size == 0:
        return b"", 0
    if lengths.min() < 1 or lengths.max() > MAX_CODE_BITS:
        raise ValueError(f"code lengths must lie in [1, {MAX_CODE_BITS}], got [{lengths.min()}, {lengths.max()}]")
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    starts = ends - lengths
    n_words = (total + 63) // 64
    words = np.zeros(n_words + 1, dtype=np.uint64)
    # Left-justify each code in a 64-bit word, then place it at its bit offset within its word.
    mask = (np.uint64(1) << lengths.astype(np.uint64)) - np.uint64(1)
    left = (codes & mask) << (np.uint64(64) - lengths.astype(np.uint64))
    word = starts >> 6
    off = (starts & 63).astype(np.uint64)
    first = np.concatenate(([0], np.flatnonzero(np.diff(word)) + 1))
    # Codes never overlap, so OR-ing the codes that start in one word builds that word.
    words[word[first]] = np.bitwise_or.reduceat(left >> off, first)
    # A code crossing into the next word: at most one per word, so plain assignment-OR is safe.
    cross = np.flatnonzero((starts & 63) + lengths > 64)
    if cross.size:
        words[word[cross] + 1] |= left[cross] << (np.uint64(64) - off[cross])
    data = words[:n_words].astype(">u8").tobytes()[: (total + 7) // 8]
    return data, total


def pack_fixed(values: np.ndarray, width: int) -> tuple[bytes, int]:
    """Pack non-negative integers ``< 2**width`` in ``width`` bits each."""
    values = np.asarray(values).ravel()
    if values.size and (values.min() < 0 or int(values.max()) >> width):
        raise ValueError(f"values do not fit in {width} bits")
    return pack_codes(values.astype(np.uint64), np.full(values.size, width, dtype=np.int64))


def unpack_fixed(data: bytes, count: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack_fixed`: ``count`` integers of ``width`` bits (int64)."""
    if count == 0:
        return np.empty(0, dtype=np.int64)
    if count * width > len(data) * 8:
        raise ValueError(f"stream holds {len(data) * 8} bits, {count} values of {width} bits need {count * width}")
    positions = np.arange(count, dtype=np.int64) * width
    return peek(data, positions, width).astype(np.int64)


def peek(data: bytes, positions: np.ndarray, nbits: int) -> np.ndarray:
    """The ``nbits`` bits starting at each bit position (beyond the end reads as zero), as uint64."""
    if not 1 <= nbits <= MAX_CODE_BITS:
        raise ValueError(f"can read 1..{MAX_CODE_BITS} bits at a time, not {nbits}")
    padded = np.frombuffer(bytes(data) + b"\0" * 8, dtype=np.uint8)
    # Unaligned big-endian 64-bit view starting at every byte: one read covers any code at any bit.
    windows = np.ndarray(shape=(len(data) + 1,), dtype=">u8", buffer=padded, offset=0, strides=(1,))
    positions = np.asarray(positions, dtype=np.int64)
    w = windows[positions >> 3].astype(np.uint64)
    w <<= (positions & 7).astype(np.uint64)
    return w >> np.uint64(64 - nbits)

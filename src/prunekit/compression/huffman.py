"""Canonical Huffman coding of integer symbol arrays.

Code lengths come from the classic heap construction over symbol frequencies (ties broken by
symbol order, so the result is deterministic). Codes are then assigned canonically: symbols sorted
by ``(length, symbol)`` get consecutive code values, shifted left whenever the length grows. So
the code lengths alone describe the code, and that is all a file stores.

Encoding is vectorised (:func:`prunekit.compression.bitpack.pack_codes`). Decoding reads a
left-justified window at every bit position, finds each window's code length with a
``searchsorted`` over the canonical per-length limits, and then walks the chain of code starts.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from prunekit.compression.bitpack import MAX_CODE_BITS, pack_codes, peek

_DECODE_CHUNK = 1 << 20  # bit positions per vectorised decode step (bounds memory)


def code_lengths(frequencies: np.ndarray) -> np.ndarray:
    """Optimal (Huffman) code lengths for ``frequencies``; 0 for symbols that never occur.

    A single occurring symbol gets a 1-bit code. Returns uint8, same size as ``frequencies``.
    """
    freq = np.asarray(frequencies, dtype=np.int64).ravel()
    if freq.size and freq.min() < 0:
        raise ValueError("symbol frequencies must be non-negative")
    lengths = np.zeros(freq.size, dtype=np.int64)
    present = np.flatnonzero(freq)
    if present.size == 1:
        lengths[present] = 1
    if present.size <= 1:
        return lengths.astype(np.uint8)
    m = present.size
    parent = np.full(2 * m - 1, -1, dtype=np.int64)
    # Heap entries (weight, node id): leaves 0..m-1 in symbol order, internal nodes m.. in creation order.
    heap = [(int(w), i) for i, w in enumerate(freq[present])]
    heapq.heapify(heap)
    nxt = m
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (w1 + w2, nxt))
        nxt += 1
    # Depth of each node: parents always have larger ids, so one pass from the root down suffices.
    par = parent.tolist()
    depth = [0] * (2 * m - 1)
    for node in range(2 * m - 3, -1, -1):
        depth[node] = depth[par[node]] + 1
    lengths[present] = depth[:m]
    if lengths.max() > 255:
        raise ValueError("Huffman code longer than 255 bits")
    return lengths.astype(np.uint8)


@dataclass(frozen=True)
class HuffmanCode:
    """A canonical prefix code over symbols ``0 .. alphabet_size - 1`` described by its lengths."""

    lengths: np.ndarray  # uint8 per symbol; 0 = symbol absent

    @classmethod
    def from_frequencies(cls, frequencies: np.ndarray) -> HuffmanCode:
        """The Huffman code for the given per-symbol counts."""
        return cls(code_lengths(frequencies))

    @classmethod
    def from_symbols(cls, symbols: np.ndarray, alphabet_size: int | None = None) -> HuffmanCode:
        """The Huffman code for the empirical distribution of ``symbols``."""
        symbols = np.asarray(symbols).ravel()
        size = alphabet_size if alphabet_size is not None else (int(symbols.max()) + 1 if symbols.size else 0)
        return cls.from_frequencies(np.bincount(symbols.astype(np.int64), minlength=size))

    def __post_init__(self) -> None:
        lengths = np.asarray(self.lengths, dtype=np.uint8).ravel()
        object.__setattr__(self, "lengths", lengths)
        if lengths.size and int(lengths.max()) > MAX_CODE_BITS:
            raise ValueError(f"code lengths above {MAX_CODE_BITS} bits are not supported")
        if self.kraft_sum() > 1.0:
            raise ValueError("code lengths violate the Kraft inequality: not a prefix code")

    @property
    def alphabet_size(self) -> int:
        return int(self.lengths.size)

    @property
    def max_length(self) -> int:
        return int(self.lengths.max()) if self.lengths.size else 0

    def kraft_sum(self) -> float:
        """``sum(2**-length)`` over present symbols: 1 for a complete code (all Huffman codes with 2+ symbols)."""
        present = self.lengths[self.lengths > 0].astype(np.float64)
        return float(np.sum(np.exp2(-present)))

    def codes(self) -> np.ndarray:
        """Canonical code value of each symbol (uint64; meaningless where the length is 0)."""
        lengths = self.lengths.astype(np.int64)
        order = _canonical_order(lengths)
        codes = np.zeros(lengths.size, dtype=np.uint64)
        code = 0
        prev = 0
        for sym in order.tolist():  # at most alphabet_size steps, once per code
            length = int(lengths[sym])
            code <<= length - prev
            codes[sym] = code
            code += 1
            prev = length
        return codes

    def encoded_bits(self, frequencies: np.ndarray) -> int:
        """Bits needed to encode symbols with these counts (no padding)."""
        freq = np.asarray(frequencies, dtype=np.int64).ravel()
        return int(np.dot(freq, self.lengths[: freq.size].astype(np.int64)))

    def encode(self, symbols: np.ndarray) -> tuple[bytes, int]:
        """Encode ``symbols`` MSB-first; returns ``(bytes, bit_count)``; padding bits are zero."""
        symbols = np.asarray(symbols).ravel().astype(np.int64)
        if symbols.size == 0:
            return b"", 0
        if symbols.min() < 0 or symbols.max() >= self.alphabet_size:
            raise ValueError(f"symbols must lie in [0, {self.alphabet_size}), got [{symbols.min()}, {symbols.max()}]")
        lengths = self.lengths.astype(np.int64)[symbols]
        if lengths.min() == 0:
            bad = int(symbols[np.argmin(lengths)])
            raise ValueError(f"symbol {bad} has no code (it had frequency 0 when the code was built)")
        return pack_codes(self.codes()[symbols], lengths)

    def decode(self, data: bytes, count: int, nbits: int | None = None) -> np.ndarray:
        """Decode ``count`` symbols from ``data`` (int64). Raises ``ValueError`` on invalid input.

        ``nbits`` (default: all of ``data``) bounds the stream; decoding past it is an error, and
        when given explicitly the symbols must use exactly ``nbits`` bits.
        """
        total = len(data) * 8 if nbits is None else int(nbits)
        if total > len(data) * 8:
            raise ValueError(f"stream claims {total} bits but holds {len(data) * 8}")
        if count == 0:
            if nbits:
                raise ValueError(f"corrupt stream: no symbols but {nbits} declared bits")
            return np.empty(0, dtype=np.int64)
        if self.max_length == 0:
            raise ValueError("cannot decode symbols with an empty code")
        big = self.max_length
        lengths = self.lengths.astype(np.int64)
        order = _canonical_order(lengths)
        used = np.unique(lengths[order])
        counts = np.bincount(lengths[order], minlength=big + 1)
        # first[l]: canonical code value of the first symbol of length l; offset[l]: its rank in order.
        first = np.zeros(big + 2, dtype=np.int64)
        offset = np.zeros(big + 2, dtype=np.int64)
        code = 0
        rank = 0
        for length in range(1, big + 1):
            code <<= 1
            first[length] = code
            offset[length] = rank
            code += int(counts[length])
            rank += int(counts[length])
        # limit[l] (left-justified to `big` bits): windows below it have a code of length <= l.
        limits = np.array([(first[l] + counts[l]) << (big - l) for l in used], dtype=np.uint64)
        pieces: list[np.ndarray] = []
        remaining = count
        p = 0  # absolute bit position of the next code
        for lo in range(0, total, _DECODE_CHUNK):
            if remaining == 0 or p >= total:
                break
            hi = min(total, lo + _DECODE_CHUNK)
            if p >= hi:
                continue
            pos = np.arange(lo, hi, dtype=np.int64)
            window = peek(data, pos, big)
            which = np.searchsorted(limits, window, side="right")
            valid = which < used.size
            ln = used[np.minimum(which, used.size - 1)]
            idx = offset[ln] + (window >> (big - ln).astype(np.uint64)).astype(np.int64) - first[ln]
            step = np.where(valid, ln, total + 1)  # an invalid code jumps past the end
            symbol_at = order[np.clip(np.where(valid, idx, 0), 0, order.size - 1)]
            local, starts = _walk(step.tolist(), p - lo, remaining)
            pieces.append(symbol_at[np.asarray(starts, dtype=np.int64)])
            remaining -= len(starts)
            p = lo + local
        if remaining or p > total:
            raise ValueError(f"corrupt stream: {count} symbols do not fit in {total} bits")
        if nbits is not None and p != total:
            raise ValueError(f"corrupt stream: {count} symbols use {p} bits, the stream declares {total}")
        return np.concatenate(pieces)


def _walk(step: list[int], local: int, limit: int) -> tuple[int, list[int]]:
    """Follow code starts inside one chunk: next start = start + code length there."""
    n = len(step)
    starts: list[int] = []
    append = starts.append
    while local < n and limit:
        append(local)
        local += step[local]
        limit -= 1
    return local, starts


def _canonical_order(lengths: np.ndarray) -> np.ndarray:
    """Present symbols sorted by (length, symbol)."""
    present = np.flatnonzero(lengths)
    return present[np.argsort(lengths[present], kind="stable")]


def entropy_bits(frequencies: np.ndarray) -> float:
    """Shannon lower bound (bits) for coding symbols with these counts symbol by symbol."""
    freq = np.asarray(frequencies, dtype=np.float64).ravel()
    freq = freq[freq > 0]
    if freq.size == 0:
        return 0.0
    p = freq / freq.sum()
    return max(0.0, float(-(freq * np.log2(p)).sum()))

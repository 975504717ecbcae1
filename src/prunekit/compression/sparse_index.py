"""Relative sparse indices with filler entries (Deep Compression, Sec. 2 and Fig. 2).

A sparse weight is a list of *entries* in flattened (row-major) order. Each entry stores

- ``gap``: how many zero positions it skips after the previous entry (the first entry counts from
  the start), a number in ``[0, 2**index_bits - 1]``; and
- ``symbol``: its codebook index, or the reserved :func:`filler symbol <filler_symbol>` ``k``
  (one past the last codebook index) for a *filler entry*, whose weight is an explicit zero.

When more than ``2**index_bits - 1`` zeros separate two nonzeros, filler entries are inserted: each
filler skips the maximum ``2**index_bits - 1`` zeros and occupies the next position itself (as a
zero), i.e. it advances ``2**index_bits`` positions. A run of ``r`` zeros thus needs ``r >>
index_bits`` fillers, after which the real entry stores the remainder ``r & (2**index_bits - 1)``.
Zeros after the last nonzero are implied by the tensor's shape and cost nothing.

Position of entry ``j`` = ``sum(gap[:j+1]) + j``. Pure core: numpy in, numpy out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def filler_symbol(codebook_size: int) -> int:
    """The symbol of a filler entry for a codebook of ``codebook_size`` values: ``codebook_size``."""
    return int(codebook_size)


@dataclass(frozen=True)
class SparseEntries:
    """Entry streams of one sparse tensor: ``gaps`` and ``symbols``, same length (int64)."""

    gaps: np.ndarray
    symbols: np.ndarray
    n_fillers: int

    @property
    def n_entries(self) -> int:
        return int(self.gaps.size)


def count_fillers(positions: np.ndarray, index_bits: int) -> int:
    """Number of filler entries needed for sorted flat ``positions`` at ``index_bits``."""
    runs = _runs(np.asarray(positions, dtype=np.int64))
    return int((runs >> index_bits).sum())


def encode_entries(positions: np.ndarray, symbols: np.ndarray, index_bits: int, codebook_size: int) -> SparseEntries:
    """Turn strictly increasing flat ``positions`` and their codebook ``symbols`` into entries."""
    positions = np.asarray(positions, dtype=np.int64).ravel()
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if positions.shape != symbols.shape:
        raise ValueError(f"positions and symbols differ in size: {positions.size} vs {symbols.size}")
    if not 1 <= index_bits <= 32:
        raise ValueError(f"index_bits must lie in [1, 32], got {index_bits}")
    runs = _runs(positions)
    if runs.size and runs.min() < 0:
        raise ValueError("positions must be strictly increasing and non-negative")
    fillers = runs >> index_bits
    n_fill = int(fillers.sum())
    total = positions.size + n_fill
    max_gap = (1 << index_bits) - 1
    gaps = np.full(total, max_gap, dtype=np.int64)
    syms = np.full(total, filler_symbol(codebook_size), dtype=np.int64)
    real = np.arange(positions.size, dtype=np.int64) + np.cumsum(fillers)
    gaps[real] = runs & max_gap
    syms[real] = symbols
    return SparseEntries(gaps, syms, n_fill)


def decode_entries(gaps: np.ndarray, symbols: np.ndarray, index_bits: int, codebook_size: int, numel: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_entries`: ``(positions, symbols)`` of the real (non-filler) entries.

    Raises ``ValueError`` when the streams are inconsistent (a filler without a maximal gap, a
    symbol outside the codebook, a position beyond ``numel``).
    """
    gaps = np.asarray(gaps, dtype=np.int64).ravel()
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if gaps.shape != symbols.shape:
        raise ValueError(f"gap and symbol streams differ in length: {gaps.size} vs {symbols.size}")
    max_gap = (1 << index_bits) - 1
    if gaps.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if gaps.min() < 0 or gaps.max() > max_gap:
        raise ValueError(f"gap outside [0, {max_gap}]")
    if symbols.min() < 0 or symbols.max() > codebook_size:
        raise ValueError(f"symbol outside [0, {codebook_size}]")
    filler = symbols == filler_symbol(codebook_size)
    if (gaps[filler] != max_gap).any():
        raise ValueError("a filler entry must skip the maximal gap")
    positions = np.cumsum(gaps + 1) - 1
    if positions[-1] >= numel:
        raise ValueError(f"entry position {int(positions[-1])} is outside a tensor of {numel} elements")
    keep = ~filler
    return positions[keep], symbols[keep]


def _runs(positions: np.ndarray) -> np.ndarray:
    """Zeros skipped before each position (the first counts from position 0)."""
    if positions.size == 0:
        return positions
    return np.diff(positions, prepend=-1) - 1


@dataclass(frozen=True)
class CompactEntries:
    """Compact position coding of one sparse tensor (``index_coding: compact``).

    The tensor is viewed as a ``rows x cols`` matrix (``rows = shape[0]``). ``support`` marks the
    rows, then the columns, that hold any nonzero; positions are counted in the matrix reduced to
    those rows and columns. ``gaps`` holds one symbol per nonzero (zeros skipped before it, below
    ``2**index_bits``) plus an *escape* symbol ``2**index_bits`` for each ``2**index_bits`` zeros
    skipped without an entry, so gaps longer than the index width cost no weight symbol.
    """

    support: np.ndarray  # bool, rows + cols
    gaps: np.ndarray  # int64, nnz + n_escapes symbols in [0, 2**index_bits]
    n_escapes: int


def encode_compact(positions: np.ndarray, shape: tuple[int, ...], index_bits: int) -> CompactEntries:
    """Compact-code strictly increasing flat ``positions`` of a tensor of ``shape``."""
    rows, cols = matrix_view(shape)
    positions = np.asarray(positions, dtype=np.int64).ravel()
    if not 1 <= index_bits <= 32:
        raise ValueError(f"index_bits must lie in [1, 32], got {index_bits}")
    r, c = np.divmod(positions, cols)
    row_on = np.zeros(rows, dtype=bool)
    col_on = np.zeros(cols, dtype=bool)
    row_on[r] = True
    col_on[c] = True
    reduced = (np.cumsum(row_on)[r] - 1) * int(col_on.sum()) + np.cumsum(col_on)[c] - 1
    runs = _runs(reduced)
    if runs.size and runs.min() < 0:
        raise ValueError("positions must be strictly increasing and non-negative")
    escapes = runs >> index_bits
    escape = 1 << index_bits
    gaps = np.full(positions.size + int(escapes.sum()), escape, dtype=np.int64)
    gaps[np.arange(positions.size, dtype=np.int64) + np.cumsum(escapes)] = runs & (escape - 1)
    return CompactEntries(np.concatenate([row_on, col_on]), gaps, int(escapes.sum()))


def decode_compact(gaps: np.ndarray, support: np.ndarray, shape: tuple[int, ...], index_bits: int) -> np.ndarray:
    """Inverse of :func:`encode_compact`: the flat positions of the nonzeros.

    Raises ``ValueError`` when the streams are inconsistent (a symbol above the escape, a position
    outside the reduced matrix, a support of the wrong length).
    """
    rows, cols = matrix_view(shape)
    support = np.asarray(support, dtype=bool).ravel()
    if support.size != rows + cols:
        raise ValueError(f"support holds {support.size} flags, a {rows}x{cols} matrix needs {rows + cols}")
    gaps = np.asarray(gaps, dtype=np.int64).ravel()
    escape = 1 << index_bits
    if gaps.size and (gaps.min() < 0 or gaps.max() > escape):
        raise ValueError(f"gap symbol outside [0, {escape}]")
    real = gaps != escape
    ends = np.cumsum(np.where(real, gaps + 1, escape))
    reduced = ends[real] - 1
    row_idx, col_idx = np.flatnonzero(support[:rows]), np.flatnonzero(support[rows:])
    if reduced.size and reduced[-1] >= row_idx.size * col_idx.size:
        raise ValueError(f"entry position {int(reduced[-1])} is outside the {row_idx.size}x{col_idx.size} support")
    r, c = np.divmod(reduced, max(1, col_idx.size))
    return row_idx[r] * cols + col_idx[c]


def matrix_view(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(rows, cols)`` of a tensor seen as a matrix: the first dimension by the product of the others."""
    if not shape:
        return 1, 1
    rows = int(shape[0])
    cols = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    return rows, cols

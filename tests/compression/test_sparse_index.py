"""Relative sparse indices with filler entries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.compression.sparse_index import count_fillers, decode_entries, encode_entries, filler_symbol


def test_paper_figure_2_style_example():
    # 3-bit gaps hold runs of up to 7 zeros; nonzeros at 1, 4 and 15 (11 zeros after 4 -> 1 filler).
    entries = encode_entries(np.array([1, 4, 15]), np.array([2, 0, 1]), index_bits=3, codebook_size=4)
    assert entries.gaps.tolist() == [1, 2, 7, 2]
    assert entries.symbols.tolist() == [2, 0, filler_symbol(4), 1]
    assert entries.n_fillers == 1
    positions, symbols = decode_entries(entries.gaps, entries.symbols, 3, 4, numel=16)
    assert positions.tolist() == [1, 4, 15] and symbols.tolist() == [2, 0, 1]


@pytest.mark.parametrize(
    ("run", "fillers", "last_gap"),
    [(7, 0, 7), (8, 1, 0), (9, 1, 1), (15, 1, 7), (16, 2, 0), (100, 12, 4)],
)
def test_filler_count_for_runs_beyond_the_bound(run, fillers, last_gap):
    # one zero run of `run` zeros before the only nonzero, 3-bit gaps (max run 7 per entry)
    entries = encode_entries(np.array([run]), np.array([0]), index_bits=3, codebook_size=2)
    assert entries.n_fillers == fillers == count_fillers(np.array([run]), 3)
    assert entries.gaps.tolist() == [7] * fillers + [last_gap]
    assert entries.symbols.tolist() == [2] * fillers + [0]
    positions, _ = decode_entries(entries.gaps, entries.symbols, 3, 2, numel=run + 1)
    assert positions.tolist() == [run]


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 10), st.integers(1, 20), st.data())
def test_round_trip_random_positions(numel, index_bits, k, data):
    positions = np.array(sorted(data.draw(st.sets(st.integers(0, numel - 1), max_size=min(numel, 200)))), dtype=np.int64)
    symbols = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=positions.size, max_size=positions.size)), dtype=np.int64)
    entries = encode_entries(positions, symbols, index_bits, k)
    assert entries.gaps.max(initial=0) <= (1 << index_bits) - 1
    assert entries.n_entries == positions.size + entries.n_fillers
    pos, sym = decode_entries(entries.gaps, entries.symbols, index_bits, k, numel)
    np.testing.assert_array_equal(pos, positions)
    np.testing.assert_array_equal(sym, symbols)


def test_decode_rejects_inconsistent_streams():
    with pytest.raises(ValueError, match="filler"):
        decode_entries(np.array([3]), np.array([4]), 3, 4, numel=10)  # filler with a non-maximal gap
    with pytest.raises(ValueError, match="outside"):
        decode_entries(np.array([7, 7]), np.array([0, 1]), 3, 4, numel=10)  # position 15 >= 10
    with pytest.raises(ValueError, match="increasing"):
        encode_entries(np.array([3, 3]), np.array([0, 0]), 3, 4)

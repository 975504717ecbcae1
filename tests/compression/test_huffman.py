"""Canonical Huffman coding: optimality, canonical form, round trips, edge cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.compression.bitpack import pack_codes, pack_fixed, unpack_fixed
from prunekit.compression.huffman import HuffmanCode, code_lengths, entropy_bits


def _total_bits(freq: list[int]) -> int:
    return HuffmanCode.from_frequencies(np.array(freq)).encoded_bits(np.array(freq))


def _brute_force_optimum(freq: list[int]) -> int:
    """Cheapest prefix code by enumerating every length vector that satisfies Kraft's inequality."""
    n = len(freq)
    best = math.inf
    for lengths in itertools.product(range(1, n), repeat=n):
        if sum(2.0**-length for length in lengths) <= 1.0:
            best = min(best, sum(f * length for f, length in zip(freq, lengths)))
    return int(best)


@pytest.mark.parametrize("probs", [[0.5, 0.25, 0.125, 0.125], [0.25] * 4, [0.5, 0.25, 0.0625, 0.0625, 0.0625, 0.0625]])
def test_dyadic_distribution_average_length_equals_entropy(probs):
    freq = np.array([round(p * 1024) for p in probs])
    code = HuffmanCode.from_frequencies(freq)
    assert code.encoded_bits(freq) == pytest.approx(entropy_bits(freq), abs=1e-9)
    np.testing.assert_array_equal(code.lengths, [-math.log2(p) for p in probs])


@pytest.mark.parametrize(
    ("freq", "optimum"),
    [
        ([45, 13, 12, 16, 9, 5], 224),  # CLRS 16.3 example (thousands of characters)
        ([1, 1, 2, 3, 5, 8, 13, 21], 132),  # Fibonacci weights: the deepest possible tree
        ([10] * 8, 240),  # uniform over 8 symbols: 3 bits each
        ([7, 0, 0, 3], 10),  # absent symbols get no code
    ],
)
def test_total_length_matches_textbook_optimum(freq, optimum):
    assert _total_bits(freq) == optimum


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=2, max_size=5))
def test_huffman_total_equals_brute_force_optimum(freq):
    assert _total_bits(freq) == _brute_force_optimum(freq)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=2, max_size=300))
def test_kraft_equality_and_entropy_bounds(freq):
    freq_arr = np.array(freq)
    code = HuffmanCode.from_frequencies(freq_arr)
    present = int((freq_arr > 0).sum())
    if present >= 2:
        assert code.kraft_sum() == 1.0  # a Huffman code is complete
        h = entropy_bits(freq_arr)
        assert h - 1e-6 <= code.encoded_bits(freq_arr) < h + freq_arr.sum()  # H <= L < H + 1 per symbol
    assert ((code.lengths > 0) == (freq_arr > 0)).all()


def test_canonical_codes_are_prefix_free_and_ordered():
    freq = np.array([5, 1, 7, 7, 2, 0, 30, 1])
    code = HuffmanCode.from_frequencies(freq)
    codes, lengths = code.codes(), code.lengths.astype(int)
    words = {s: format(int(codes[s]), f"0{lengths[s]}b") for s in np.flatnonzero(lengths)}
    for a, b in itertools.permutations(words, 2):
        assert not words[b].startswith(words[a])
    # canonical: sorted by (length, symbol), code values are consecutive within a length
    order = sorted(words, key=lambda s: (lengths[s], s))
    as_ints = [int(words[s], 2) << (lengths.max() - lengths[s]) for s in order]
    assert as_ints == sorted(as_ints)
    assert HuffmanCode(code.lengths).codes().tolist() == codes.tolist()  # lengths alone define the code


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=400), st.integers(0, 3))
def test_encode_decode_round_trip(symbols, extra_alphabet):
    s = np.array(symbols, dtype=np.int64)
    alphabet = (int(s.max()) + 1 if s.size else 1) + extra_alphabet
    code = HuffmanCode.from_symbols(s, alphabet)
    data, nbits = code.encode(s)
    assert len(data) == (nbits + 7) // 8
    np.testing.assert_array_equal(code.decode(data, s.size, nbits), s)


def test_empty_input():
    code = HuffmanCode.from_symbols(np.array([], dtype=np.int64), 4)
    assert code.encode(np.array([], dtype=np.int64)) == (b"", 0)
    assert code.decode(b"", 0, 0).size == 0
    assert code.max_length == 0


def test_single_symbol_gets_one_bit():
    s = np.full(13, 7)
    code = HuffmanCode.from_symbols(s)
    assert code.lengths[7] == 1 and code.lengths.sum() == 1
    data, nbits = code.encode(s)
    assert nbits == 13 and len(data) == 2
    np.testing.assert_array_equal(code.decode(data, 13, nbits), s)


def test_65536_symbol_alphabet_round_trip():
    rng = np.random.default_rng(0)
    s = np.concatenate([np.arange(65536), rng.integers(0, 300, 50_000)])
    code = HuffmanCode.from_symbols(s, 65536)
    assert (code.lengths > 0).all() and code.kraft_sum() == 1.0
    data, nbits = code.encode(s)
    np.testing.assert_array_equal(code.decode(data, s.size, nbits), s)


def test_deterministic_lengths_with_ties():
    freq = np.array([3, 3, 3, 3, 3, 3])
    assert code_lengths(freq).tolist() == code_lengths(freq.copy()).tolist() == [3, 3, 3, 3, 2, 2]


def test_decode_rejects_inconsistent_streams():
    code = HuffmanCode.from_frequencies(np.array([1, 1, 2]))
    data, nbits = code.encode(np.array([0, 1, 2, 2]))
    with pytest.raises(ValueError):
        code.decode(data, 5, nbits)  # more symbols than bits
    with pytest.raises(ValueError):
        code.decode(data, 3, nbits)  # bits left over
    single = HuffmanCode.from_symbols(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError):
        single.decode(b"\xff", 3, 3)  # "1" is not a code of the 1-symbol code


def test_encode_rejects_symbols_without_code():
    code = HuffmanCode.from_frequencies(np.array([4, 0, 1]))
    with pytest.raises(ValueError, match="no code"):
        code.encode(np.array([1]))


def test_pack_codes_msb_first():
    data, nbits = pack_codes(np.array([0b1, 0b01, 0b11111]), np.array([1, 2, 5]))
    assert nbits == 8 and data == bytes([0b10111111])
    data, nbits = pack_codes(np.array([0b101]), np.array([3]))
    assert data == bytes([0b10100000]) and nbits == 3


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 33), st.data())
def test_fixed_width_round_trip(width, data):
    values = data.draw(st.lists(st.integers(0, (1 << width) - 1), max_size=200))
    packed, nbits = pack_fixed(np.array(values, dtype=np.int64), width)
    assert nbits == width * len(values)
    np.testing.assert_array_equal(unpack_fixed(packed, len(values), width), values)


def test_codes_crossing_64_bit_words():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 58, 5000)
    codes = rng.integers(0, 1 << 62, 5000, dtype=np.int64).astype(np.uint64) & ((np.uint64(1) << lengths.astype(np.uint64)) - np.uint64(1))
    data, nbits = pack_codes(codes, lengths)
    bits = "".join(format(int(c), f"0{n}b") for c, n in zip(codes, lengths))
    assert nbits == len(bits)
    assert data == int(bits + "0" * (-len(bits) % 8), 2).to_bytes(len(data), "big")

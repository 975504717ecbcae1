"""Slow sweep: every single-bit flip of small packed files, then thousands of hostile headers."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
import torch

from prunekit.compression import CompressionConfig, compress_model
from prunekit.compression import packed

from .helpers import TinyMLP, prune_
from .hostile import mutate, outcome, repack, split_file

N_HEADER_MUTATIONS = 4000


def _files(tmp_path) -> dict[str, bytes]:
    """A Huffman and a fixed-width version-2 file of a small pruned MLP, and the Huffman one as version 1."""
    out = {}
    for huffman in (True, False):
        torch.manual_seed(3)
        model = prune_(TinyMLP((6, 5, 3)), 0.5)
        compress_model(model, tmp_path / "f.pkdc", CompressionConfig(fc_bits=2, fc_index_bits=2, huffman=huffman))
        out[f"{'huffman' if huffman else 'fixed'}-v2"] = (tmp_path / "f.pkdc").read_bytes()
    header, sections = packed.unpack(out["huffman-v2"])
    del header["sections"]
    out["huffman-v1"] = packed.pack(header, list(sections.items()), version=1)
    return out


def _bit_flips(files: dict[str, bytes], counts: Counter[str], escapes: list[str]) -> None:
    for label, data in files.items():
        header, _, _ = split_file(data)
        buf = bytearray(data)
        for bit in range(len(data) * 8):
            buf[bit // 8] ^= 1 << (bit % 8)
            result = outcome(bytes(buf), header)
            buf[bit // 8] ^= 1 << (bit % 8)
            counts["flip cases"] += 1
            if result == "rejected":
                counts["flip rejected"] += 1
            else:  # the whole file is checksummed: any accepted flip is an escape
                escapes.append(f"{label} bit {bit}: {result}")


def _hostile_headers(files: dict[str, bytes], counts: Counter[str], escapes: list[str]) -> None:
    rng = random.Random(0)
    parts = {label: split_file(data) for label, data in files.items()}
    for case in range(N_HEADER_MUTATIONS):
        label = rng.choice(sorted(parts))
        header, area, version = parts[label]
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            header = mutate(header, rng)
        result = outcome(repack(header, area, version), header)
        counts["header cases"] += 1
        counts[f"header {result if not result.startswith('escape') else 'escapes'}"] += 1
        if result.startswith("escape"):
            escapes.append(f"{label} mutation {case}: {result}")


@pytest.mark.slow
def test_bit_flip_and_hostile_header_sweep_has_no_escapes(tmp_path):
    files = _files(tmp_path)
    counts: Counter[str] = Counter()
    escapes: list[str] = []
    start = time.perf_counter()
    _bit_flips(files, counts, escapes)
    flips_s = time.perf_counter() - start
    _hostile_headers(files, counts, escapes)
    total_s = time.perf_counter() - start
    print(
        f"\nbit flips: {counts['flip cases']} tried, {counts['flip rejected']} rejected, "
        f"{counts['flip cases'] - counts['flip rejected']} escapes ({flips_s:.1f} s)"
        f"\nhostile headers: {counts['header cases']} tried, {counts['header rejected']} rejected, "
        f"{counts['header accepted']} loaded with their declared shapes, {counts['header escapes']} escapes "
        f"({total_s - flips_s:.1f} s)"
    )
    assert not escapes, "\n".join(escapes[:20])

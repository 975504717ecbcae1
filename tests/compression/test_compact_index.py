"""Compact relative indices (support flags + escape symbols) and float16 codebooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit.compression import CompressionConfig, compress_model, decode_compressed, read_compressed, share_weights
from prunekit.compression.sparse_index import decode_compact, encode_compact
from prunekit.errors import CheckpointError

from .helpers import prune_
from .hostile import SOURCE, replaced, repack, split_file


def test_example_support_flags_and_escapes():
    # 3x4 matrix, nonzeros at flat 0, 1, 2 and 11: row 1 is empty, so the support is 2x4 and 11 -> 7.
    entries = encode_compact(np.array([0, 1, 2, 11]), (3, 4), index_bits=1)
    assert entries.support.tolist() == [True, False, True, True, True, True, True]
    # runs 0, 0, 0, 4: 1-bit gaps hold runs of 1, so 4 zeros = 2 escapes (2 zeros each) + gap 0.
    assert entries.gaps.tolist() == [0, 0, 0, 2, 2, 0] and entries.n_escapes == 2
    assert decode_compact(entries.gaps, entries.support, (3, 4), 1).tolist() == [0, 1, 2, 11]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=3), st.integers(1, 6), st.data())
def test_compact_positions_round_trip(shape, index_bits, data):
    numel = int(np.prod(shape))
    positions = np.array(sorted(data.draw(st.sets(st.integers(0, numel - 1), max_size=numel))), dtype=np.int64)
    entries = encode_compact(positions, tuple(shape), index_bits)
    assert (entries.gaps <= 1 << index_bits).all()
    assert decode_compact(entries.gaps, entries.support, tuple(shape), index_bits).tolist() == positions.tolist()


def test_decode_compact_rejects_inconsistent_streams():
    support = np.ones(7, dtype=bool)
    with pytest.raises(ValueError, match=r"gap symbol outside \[0, 2\]"):
        decode_compact(np.array([3]), support, (3, 4), 1)
    with pytest.raises(ValueError, match="outside the 3x4 support"):
        decode_compact(np.array([2] * 6 + [0]), support, (3, 4), 1)
    with pytest.raises(ValueError, match="a 3x4 matrix needs 7"):
        decode_compact(np.array([0]), support[:5], (3, 4), 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(1, 9), min_size=2, max_size=4), density=st.floats(0.0, 1.0), bits=st.integers(1, 6),
       index_bits=st.integers(1, 5), huffman=st.booleans(), seed=st.integers(0, 2**16))
def test_compact_files_round_trip_exactly(tmp_path, shape, density, bits, index_bits, huffman, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=gen)
    w[torch.rand(*shape, generator=gen) >= density] = 0
    layer = nn.Linear(1, 1)
    layer.weight = nn.Parameter(w)
    spec = CompressionConfig(fc_bits=bits, fc_index_bits=index_bits, huffman=huffman, index_coding="compact")
    result = share_weights(layer, spec)
    compress_model(layer, tmp_path / "c.pkdc", quantization=result)
    got = read_compressed(tmp_path / "c.pkdc").quantization["weight"]
    assert torch.equal(got.dense(), layer.weight.detach()) and torch.equal(got.mask, w != 0)


def _sparse_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = prune_(nn.Sequential(nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 10)), 0.9)
    with torch.no_grad():
        model[0].weight[:, :60] = 0  # dead inputs, as MNIST's border pixels
        model[0].weight[:20] = 0  # dead units
    return model


def test_compact_coding_is_smaller_and_keeps_the_paper_accounting(tmp_path):
    model = _sparse_mlp()
    base = CompressionConfig(fc_bits=5, fc_index_bits=3)
    paper = compress_model(model, tmp_path / "f.pkdc", base)
    compact = compress_model(model, tmp_path / "c.pkdc", base.model_copy(update={"index_coding": "compact"}))
    assert compact.file_bytes < paper.file_bytes
    a, b = paper.layers[0], compact.layers[0]
    # P and P+Q stages follow the paper's format either way; only the stored (H) stage differs.
    assert (a.n_entries, a.n_fillers, a.pruned_bits, a.quantized_bits) == (b.n_entries, b.n_fillers, b.pruned_bits, b.quantized_bits)
    assert b.support_bytes == (100 + 200 + 7) // 8 and b.huffman_bits < a.huffman_bits
    assert torch.equal(read_compressed(tmp_path / "c.pkdc").quantization["0.weight"].dense(),
                       read_compressed(tmp_path / "f.pkdc").quantization["0.weight"].dense())


def test_float16_codebooks_round_the_centroids_and_halve_the_codebook(tmp_path):
    model = _sparse_mlp()
    spec = CompressionConfig(fc_bits=6, index_coding="compact")
    q = share_weights(model, spec, apply=False)
    full = compress_model(model, tmp_path / "a.pkdc", spec)
    half = compress_model(model, tmp_path / "b.pkdc", spec.model_copy(update={"codebook_dtype": "float16"}))
    k = sum(layer.n_clusters for layer in q.layers.values())
    assert (full.file_bytes - full.file_overhead_bytes) - (half.file_bytes - half.file_overhead_bytes) == 2 * k
    got = read_compressed(tmp_path / "b.pkdc").quantization["0.weight"]
    assert torch.equal(got.codebook, q["0.weight"].codebook.half().float())


def test_damaged_compact_headers_are_rejected(tmp_path):
    compress_model(_sparse_mlp(), tmp_path / "c.pkdc", CompressionConfig(fc_bits=3, fc_index_bits=2, index_coding="compact"))
    header, area, _ = split_file((tmp_path / "c.pkdc").read_bytes())
    cases = [
        (replaced(header, ("layers", 0, "index_coding"), "zigzag"), "index_coding 'zigzag' is not one of compact"),
        (replaced(header, ("layers", 0, "n_entries"), header["layers"][0]["nnz"] + 1), "is not nnz ="),
        (replaced(header, ("layers", 0, "codebook_dtype"), "float16"), "n_clusters 8 needs 16"),
        (replaced(header, ("layers", 0, "support"), header["layers"][0]["codebook"]), "support section '0.weight:codebook' holds"),
        (replaced(header, ("layers", 0, "weights", "lengths_count"), 10**6), r"weights.lengths_count 1000000 is out of range \(0..8\)"),
        (replaced(header, ("layers", 0, "gaps", "lengths_count"), 0), "0 4-bit code lengths need 0"),
        (replaced(header, ("layers", 0, "gaps", "lengths_width"), 8), r"gaps.lengths_width 8 is out of range \(4..4\)"),
    ]
    assert header["layers"][0]["weights"]["lengths_width"] == 4  # compact layers store 4-bit code lengths
    for bad, fragment in cases:
        with pytest.raises(CheckpointError, match=fragment) as info:
            decode_compressed(repack(bad, area), source=SOURCE)
        assert str(info.value).startswith(SOURCE)
    legacy = {k: v for k, v in header["layers"][0].items() if k != "index_coding"}
    with pytest.raises(CheckpointError, match="has a support section but no index_coding 'compact'"):
        decode_compressed(repack(replaced(header, ("layers", 0), legacy), area), source=SOURCE)


def test_float16_codebooks_stay_bit_identical_through_sharing_and_fine_tuning(tmp_path):
    from prunekit.compression import attach_weight_sharing

    model = _sparse_mlp()
    spec = CompressionConfig(fc_bits=4, codebook_dtype="float16", index_coding="compact")
    handle = attach_weight_sharing(model, spec)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1e-4)  # a "fine-tuned" codebook, not representable in float16
    result = handle.strip()
    assert torch.equal(result["0.weight"].codebook, result["0.weight"].codebook.half().float())
    compress_model(model, tmp_path / "h.pkdc", quantization=result)
    state = read_compressed(tmp_path / "h.pkdc").state_dict()
    assert torch.equal(state["0.weight"], model[0].weight.detach())


@pytest.mark.slow  # a whole (tiny) recipe run: over a minute on a contended CPU
def test_a_recipe_compresses_compact_with_float16_codebooks_and_biases_bit_identically(tmp_path):
    import json

    from prunekit.experiment.recipe import load_recipe
    from prunekit.experiment.runner import run_recipe
    from tests.experiment.recipes import tiny_recipe

    raw = tiny_recipe(baselines=[], schedule=None, sparsity=0.8)
    raw["evaluate"] = {"latency": False}
    recipe = load_recipe(raw, ["compress.fc_bits=4", "compress.index_coding=compact", "compress.codebook_dtype=float16",
                               "compress.extras_precision=float16", "compress.finetune.epochs=1"])
    comp = json.loads((run_recipe(recipe, tmp_path, progress=False) / "summary.json").read_text())["compression"]
    assert comp["bit_identical"] and comp["predictions_identical"]
    assert comp["accuracy_decompressed"] == comp["accuracy_quantized"]
    assert all(layer["support_bytes"] > 0 for layer in comp["layers"])
    assert comp["extras"]["stored_bytes"] * 2 == comp["extras"]["dense_bytes"]

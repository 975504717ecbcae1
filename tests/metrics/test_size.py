"""count_parameters / SizeReport and size_on_disk against hand counts written out as arithmetic.

Oracles: parameter counts from the layer shapes; nonzeros from which rows the masks drop; bytes on
disk from the file ``safetensors`` writes for the same state (``os.path.getsize``) and from its
documented layout: 8-byte little-endian header length, JSON header, then the raw tensor bytes.
"""

import copy
import json
import lzma
import os
import struct

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from prunekit import prune_unstructured
from prunekit.masks import MaskSet, strip
from prunekit.metrics import SizeReport, count_parameters, size_on_disk
from prunekit.pruners.unstructured import UnstructuredConfig


def _ones(model: nn.Module) -> nn.Module:
    """Every parameter set to 1, so that no value is zero by chance."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    return model


def _conv_bn_fc() -> nn.Module:
    # conv weight 4·2·3·3, bias 4 | bn weight 4, bias 4 (+ buffers) | fc weight 5·(4·6·6), bias 5
    return _ones(nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)))


def _drop_rows(shape: tuple[int, ...], rows: int) -> torch.Tensor:
    mask = torch.ones(shape, dtype=torch.bool)
    mask[:rows] = False
    return mask


PARAMS = (4 * 2 * 3 * 3 + 4) + (4 + 4) + (5 * 144 + 5)
PRUNABLE = 4 * 2 * 3 * 3 + 5 * 144


def test_dense_counts_cover_every_parameter_and_only_conv_linear_weights_are_prunable() -> None:
    size = count_parameters(_conv_bn_fc())
    assert size == SizeReport(params=PARAMS, nonzero_params=PARAMS, prunable_params=PRUNABLE, nonzero_prunable_params=PRUNABLE)
    assert size.sparsity == 0.0
    assert size.compression_ratio == 1.0


def test_masked_counts_sparsity_and_compression_ratio() -> None:
    model = _conv_bn_fc()
    # one of 4 conv output channels (1·2·3·3 weights) and 2 of 5 fc rows (2·144 weights) masked
    MaskSet({"0.weight": _drop_rows((4, 2, 3, 3), 1), "4.weight": _drop_rows((5, 144), 2)}).attach(model)
    masked = 1 * 2 * 3 * 3 + 2 * 144
    size = count_parameters(model)
    assert size.params == PARAMS and size.prunable_params == PRUNABLE  # masks hide values, not parameters
    assert size.nonzero_params == PARAMS - masked
    assert size.nonzero_prunable_params == PRUNABLE - masked
    assert size.sparsity == pytest.approx(masked / PRUNABLE)
    assert size.compression_ratio == pytest.approx(PARAMS / (PARAMS - masked))
    assert size.to_dict() == {
        "params": PARAMS, "nonzero_params": PARAMS - masked, "prunable_params": PRUNABLE,
        "nonzero_prunable_params": PRUNABLE - masked,
        "compression_ratio": pytest.approx(PARAMS / (PARAMS - masked)), "sparsity": pytest.approx(masked / PRUNABLE),
    }


def test_zero_values_outside_prunable_weights_count_as_zeros_but_not_as_sparsity() -> None:
    model = _conv_bn_fc()
    with torch.no_grad():
        model[4].bias.zero_()  # 5 zero biases
        model[1].weight[:2] = 0.0  # 2 zero BatchNorm scales
    size = count_parameters(model)
    assert size.nonzero_params == PARAMS - 5 - 2
    assert size.nonzero_prunable_params == PRUNABLE
    assert size.sparsity == 0.0
    assert size.compression_ratio == pytest.approx(PARAMS / (PARAMS - 7))


def test_counts_after_prune_unstructured_layer_and_global_scope() -> None:
    def model() -> nn.Module:
        m = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 4))
        with torch.no_grad():  # distinct magnitudes: layer 1 holds 1..80, layer 2 holds 1000..1031
            m[0].weight.copy_(torch.arange(1.0, 81.0).reshape(8, 10))
            m[2].weight.copy_(torch.arange(1000.0, 1032.0).reshape(4, 8))
            m[0].bias.fill_(1.0)
            m[2].bias.fill_(1.0)
        return m

    params, prunable = 10 * 8 + 8 + 8 * 4 + 4, 10 * 8 + 8 * 4
    layer = model()
    prune_unstructured(layer, UnstructuredConfig(sparsity=0.25, scope="layer"))  # 20 of 80, 8 of 32
    size = count_parameters(layer)
    assert (size.params, size.prunable_params) == (params, prunable)
    assert size.nonzero_prunable_params == prunable - (80 // 4 + 32 // 4)
    assert size.nonzero_params == params - (80 // 4 + 32 // 4)
    assert size.sparsity == pytest.approx(0.25)

    glob = model()
    prune_unstructured(glob, UnstructuredConfig(sparsity=0.5, scope="global"))  # the 56 smallest: all in layer 1
    size = count_parameters(glob)
    assert size.nonzero_prunable_params == (80 - 56) + 32
    assert size.nonzero_params == params - 56
    assert size.compression_ratio == pytest.approx(params / (params - 56))


def test_a_mask_on_a_weight_already_zero_is_not_counted_twice() -> None:
    model = _ones(nn.Sequential(nn.Linear(4, 3)))
    with torch.no_grad():
        model[0].weight[0] = 0.0  # row 0 zero by value
    MaskSet({"0.weight": _drop_rows((3, 4), 2)}).attach(model)  # rows 0 and 1 masked
    size = count_parameters(model)
    assert size.nonzero_prunable_params == 3 * 4 - 2 * 4
    assert size.nonzero_params == (3 * 4 + 3) - 2 * 4


def test_a_masked_module_that_is_the_whole_model_counts_its_weight_once() -> None:
    """The model itself parametrized: its raw original sits at ``parametrizations.weight.original``
    (no leading dot) and must not be counted beside the effective ``weight``."""
    model = _ones(nn.Linear(4, 3))
    MaskSet({"weight": _drop_rows((3, 4), 1)}).attach(model)
    size = count_parameters(model)
    assert size == SizeReport(params=3 * 4 + 3, nonzero_params=3 * 4 + 3 - 4, prunable_params=3 * 4, nonzero_prunable_params=3 * 4 - 4)
    # on disk: the effective weight and the bias, neither the raw original nor the mask buffer
    assert size_on_disk(model).raw_bytes == size_on_disk(_ones(nn.Linear(4, 3))).raw_bytes


def test_a_model_without_conv_or_linear_weights_is_not_sparse() -> None:
    size = count_parameters(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()))
    assert (size.params, size.prunable_params) == (3 + 3, 0)
    assert size.sparsity == 0.0


# --- size on disk -----------------------------------------------------------------------------


def _header(path: str) -> tuple[int, dict]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return length, json.loads(f.read(length))


def test_raw_bytes_equal_the_safetensors_file_of_the_state_dict(tmp_path) -> None:
    model = _conv_bn_fc()
    path = str(tmp_path / "model.safetensors")
    save_file(model.state_dict(), path)
    disk = size_on_disk(model)
    assert disk.raw_bytes == os.path.getsize(path)
    # the format: 8 bytes of header length, the header, then float32 values and one int64 counter
    length, header = _header(path)
    floats = (4 * 2 * 3 * 3 + 4) + (4 + 4 + 4 + 4) + (5 * 144 + 5)  # conv | bn weight, bias, running mean, var | fc
    assert os.path.getsize(path) == 8 + length + 4 * floats + 8 * 1
    assert header["1.num_batches_tracked"]["dtype"] == "I64" and header["4.weight"]["shape"] == [5, 144]
    with open(path, "rb") as f:
        assert disk.compressed_bytes == len(lzma.compress(f.read(), preset=9))


def test_masked_model_on_disk_is_its_stripped_state_without_masks(tmp_path) -> None:
    model = _conv_bn_fc()
    MaskSet({"0.weight": _drop_rows((4, 2, 3, 3), 1), "4.weight": _drop_rows((5, 144), 2)}).attach(model)
    stripped = strip(copy.deepcopy(model))
    path = str(tmp_path / "stripped.safetensors")
    save_file(stripped.state_dict(), path)
    _, header = _header(path)
    assert not any("parametrizations" in k or "mask" in k for k in header)
    assert size_on_disk(model).raw_bytes == os.path.getsize(path)
    assert size_on_disk(model).raw_bytes == size_on_disk(_conv_bn_fc()).raw_bytes  # zeros are stored, not dropped


def test_raw_bytes_follow_the_dtype(tmp_path) -> None:
    model = nn.Linear(64, 32, bias=False)
    length, _ = _header_of(model.state_dict(), tmp_path / "f32.safetensors")
    assert size_on_disk(model).raw_bytes == 8 + length + 4 * 64 * 32
    half = nn.Linear(64, 32, bias=False).half()
    length, _ = _header_of(half.state_dict(), tmp_path / "f16.safetensors")
    assert size_on_disk(half).raw_bytes == 8 + length + 2 * 64 * 32
    double = nn.Linear(64, 32, bias=False).double()
    length, _ = _header_of(double.state_dict(), tmp_path / "f64.safetensors")
    assert size_on_disk(double).raw_bytes == 8 + length + 8 * 64 * 32


def _header_of(state: dict, path) -> tuple[int, dict]:
    save_file(state, str(path))
    return _header(str(path))


def test_compressed_bytes_shrink_with_sparsity() -> None:
    dense = nn.Sequential(nn.Linear(256, 128))
    sparse = copy.deepcopy(dense)
    MaskSet({"0.weight": _drop_rows((128, 256), 120)}).attach(sparse)  # 120 of 128 rows masked
    a, b = size_on_disk(dense), size_on_disk(sparse)
    assert a.raw_bytes == b.raw_bytes
    assert b.compressed_bytes < a.compressed_bytes / 4  # random floats barely compress; zeros do
    assert a.to_dict() == {"raw_bytes": a.raw_bytes, "compressed_bytes": a.compressed_bytes}

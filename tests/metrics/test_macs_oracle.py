"""count_macs and count_parameters against hand-counted figures (written out as arithmetic).

Convolution/linear MACs: weight size × positions it is applied at (output positions; input
positions for a transposed convolution), per example. Effective MACs: nonzero weights instead.
"""

import torch
from torch import nn

from prunekit.masks import MaskSet
from prunekit.metrics import count_macs, count_parameters


def _ones(module: nn.Module) -> nn.Module:
    """Every parameter set to 1, so that no weight or bias is zero by chance."""
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(1.0)
    return module


def _keep_from(shape: tuple[int, ...], axis: int, start: int) -> torch.Tensor:
    """Mask dropping entries ``[:start]`` along ``axis``."""
    mask = torch.ones(shape, dtype=torch.bool)
    mask.narrow(axis, 0, start).fill_(False)
    return mask


def _conv_net() -> nn.Module:
    return _ones(nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3), nn.Flatten(), nn.Linear(8 * 30 * 30, 10),
    ))


def test_conv_net_dense_macs_and_params() -> None:
    report = count_macs(_conv_net(), torch.randn(2, 3, 32, 32))
    conv1, conv2, fc = 3 * 16 * 3 * 3 * 32 * 32, 16 * 8 * 3 * 3 * 30 * 30, 8 * 30 * 30 * 10
    assert [(x.name, x.dense) for x in report.layers] == [("0", conv1), ("2", conv2), ("4", fc)]
    assert report.dense == report.effective == conv1 + conv2 + fc
    assert report.other == 0
    size = count_parameters(_conv_net())
    assert size.params == size.nonzero_params == (3 * 16 * 3 * 3 + 16) + (16 * 8 * 3 * 3 + 8) + (8 * 30 * 30 * 10 + 10)
    assert size.prunable_params == 3 * 16 * 3 * 3 + 16 * 8 * 3 * 3 + 8 * 30 * 30 * 10


def test_conv_net_masked_effective_macs_and_params() -> None:
    model = _conv_net()
    MaskSet({"0.weight": _keep_from((16, 3, 3, 3), 0, 4)}).attach(model)  # 4 of 16 output channels off
    report = count_macs(model, torch.randn(2, 3, 32, 32))
    conv2, fc = 16 * 8 * 3 * 3 * 30 * 30, 8 * 30 * 30 * 10
    assert report.dense == 3 * 16 * 3 * 3 * 32 * 32 + conv2 + fc
    assert report.effective == (16 - 4) * 3 * 3 * 3 * 32 * 32 + conv2 + fc
    size = count_parameters(model)
    assert size.params - size.nonzero_params == 4 * 3 * 3 * 3
    assert size.prunable_params - size.nonzero_prunable_params == 4 * 3 * 3 * 3


def test_linear_net_dense_and_masked() -> None:
    model = _ones(nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 5)))
    assert count_macs(model, torch.randn(4, 20)).dense == 20 * 10 + 10 * 5
    MaskSet({"0.weight": _keep_from((10, 20), 1, 5)}).attach(model)  # 5 of 20 input features off
    report = count_macs(model, torch.randn(4, 20))
    assert (report.dense, report.effective) == (20 * 10 + 10 * 5, (20 - 5) * 10 + 10 * 5)
    size = count_parameters(model)
    assert (size.params, size.nonzero_params) == ((20 * 10 + 10) + (10 * 5 + 5), (20 * 10 + 10) + (10 * 5 + 5) - 5 * 10)


def test_linear_over_a_sequence_counts_every_position() -> None:
    report = count_macs(_ones(nn.Linear(20, 10)), torch.randn(2, 7, 20))
    assert report.dense == report.effective == 7 * 20 * 10


def test_grouped_and_depthwise_conv() -> None:
    model = _ones(nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, groups=4), nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)))
    report = count_macs(model, torch.randn(1, 8, 10, 10))
    grouped, depthwise = 16 * (8 // 4) * 3 * 3 * 10 * 10, 16 * 1 * 3 * 3 * 10 * 10
    assert [x.dense for x in report.layers] == [grouped, depthwise]
    assert report.dense == grouped + depthwise
    assert count_parameters(model).params == (16 * (8 // 4) * 3 * 3 + 16) + 16 * 1 * 3 * 3


def test_conv_transpose_dense_macs_count_input_positions() -> None:
    model = _ones(nn.ConvTranspose2d(8, 4, 3, stride=2))  # 6×6 in, 13×13 out
    report = count_macs(model, torch.randn(2, 8, 6, 6))
    assert [(x.kind, x.dense, x.effective) for x in report.layers] == [("ConvTranspose2d", 8 * 4 * 3 * 3 * 6 * 6, 8 * 4 * 3 * 3 * 6 * 6)]
    assert report.dense == 8 * 4 * 3 * 3 * 6 * 6
    assert report.other == 0
    assert count_parameters(model).params == 8 * 4 * 3 * 3 + 4


def test_masked_conv_transpose_counts_only_nonzero_weights() -> None:
    model = _ones(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ConvTranspose2d(8, 4, 3, stride=2)))  # 8×8 → 6×6 → 13×13
    MaskSet({"1.weight": _keep_from((8, 4, 3, 3), 0, 2)}).attach(model)  # 2 of 8 input channels off
    report = count_macs(model, torch.randn(2, 3, 8, 8))
    conv = 3 * 8 * 3 * 3 * 6 * 6
    assert report.dense == conv + 8 * 4 * 3 * 3 * 6 * 6
    assert report.effective == conv + (8 - 2) * 4 * 3 * 3 * 6 * 6
    assert report.layers[1].effective == (8 - 2) * 4 * 3 * 3 * 6 * 6


def test_grouped_conv_transpose_1d() -> None:
    model = _ones(nn.ConvTranspose1d(8, 6, 5, stride=3, groups=2))  # weight (8, 6 // 2, 5)
    report = count_macs(model, torch.randn(1, 8, 10))
    assert report.dense == report.effective == 8 * (6 // 2) * 5 * 10
    with torch.no_grad():
        model.weight[:, 0] = 0  # one of the 3 output channels of each group
    assert count_macs(model, torch.randn(1, 8, 10)).effective == 8 * (6 // 2 - 1) * 5 * 10


def test_bias_adds_params_but_no_macs() -> None:
    with_bias, without = _ones(nn.Linear(6, 3)), _ones(nn.Linear(6, 3, bias=False))
    x = torch.randn(1, 6)
    assert count_macs(with_bias, x).dense == count_macs(without, x).dense == 6 * 3
    size = count_parameters(with_bias)
    assert (size.params, size.prunable_params) == (6 * 3 + 3, 6 * 3)
    conv = _ones(nn.Conv2d(2, 4, 1))
    assert count_macs(conv, torch.randn(1, 2, 5, 5)).dense == 2 * 4 * 1 * 1 * 5 * 5
    assert count_parameters(conv).params == 2 * 4 + 4

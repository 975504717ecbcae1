"""Conv-2/4/6 of the lottery-ticket paper (Frankle & Carbin 2019, Figure 2): layers, shapes and sizes."""

import pytest
import torch
from torch import nn

from prunekit.zoo import create_model


def _layers(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in model.named_parameters() if name.endswith("weight")]


def test_conv2_is_the_papers_two_convs_of_64_a_pool_and_fc_256_256_10_with_4_3m_weights():
    model = create_model("conv2", 10, (3, 32, 32))
    assert _layers(model) == [("features.0.weight", (64, 3, 3, 3)), ("features.2.weight", (64, 64, 3, 3)),
                              ("classifier.0.weight", (256, 64 * 16 * 16)), ("classifier.2.weight", (256, 256)),
                              ("classifier.4.weight", (10, 256))]
    assert [type(m).__name__ for m in model.features] == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"]
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    assert weights == 1_728 + 36_864 + 4_194_304 + 65_536 + 2_560 == 4_300_992  # the paper: 4.3M
    assert sum(p.numel() for p in model.parameters()) == 4_301_642
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("depth", "weights"), [(4, 2_425_024), (6, 2_261_184)])
def test_conv4_and_conv6_sizes(depth, weights):
    # Conv-4 matches the paper's 2.4M; Conv-6 has 2.26M weights with the paper's own layer list
    # (convs 1.14M + fc 1.12M), not the 1.7M its Figure 2 prints.
    model = create_model(f"conv{depth}", 10, (3, 32, 32))
    assert sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight")) == weights
    assert _layers(model)[-3][1] == (256, {4: 128 * 8 * 8, 6: 256 * 4 * 4}[depth])
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)

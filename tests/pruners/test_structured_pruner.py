"""StructuredPruner: targets, rounding, ignored layers, iterative steps, config validation."""

from __future__ import annotations

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.metrics import count_macs
from prunekit.pruners import StructuredConfig, StructuredPruner
from prunekit.zoo import create_model

X32 = torch.randn(1, 3, 32, 32)



@pytest.mark.parametrize("name", ["resnet56", "mobilenetv2"])
@pytest.mark.parametrize("round_to", [1, 8])
def test_macs_target_within_two_percent(name: str, round_to: int) -> None:
    model = create_model(name)
    dense = count_macs(model, X32).dense
    result = StructuredPruner(macs_reduction=2.0, round_to=round_to).prune(model, X32)
    assert abs(count_macs(model, X32).dense - dense / 2) <= 0.02 * dense / 2
    assert result.macs_before == dense and abs(result.macs_reduction - 2.0) <= 0.041
    if round_to == 8:
        pruned = [x for x in result.layers if x.after != x.before]
        assert pruned and all(x.after % 8 == 0 for x in pruned)


def test_params_target_within_two_percent() -> None:
    model = create_model("resnet56")
    result = StructuredPruner(max_params=400_000).prune(model, X32)
    assert abs(result.params_after - 400_000) <= 0.02 * 400_000


def test_uniform_ratio_and_layer_patterns() -> None:
    model = create_model("vgg16")
    result = StructuredPruner(ratio=0.5, layer_ratios={"features.0": 0.25}).prune(model, X32)
    after = {x.name: (x.before, x.after) for x in result.layers}
    assert after["features.0"] == (64, 48)
    assert after["features.3"] == (64, 32)
    assert after["classifier.3"] == (10, 10)  # the classifier output is never pruned


def test_layer_round_to_frees_narrow_layers(caplog: pytest.LogCaptureFixture) -> None:
    """ResNet-56's first stage has 16 channels: round_to=16 cannot prune it, so 3x is out of reach (with a hint)."""
    strict = StructuredPruner(macs_reduction=3.0, round_to=16).prune(create_model("resnet56"), X32)
    assert strict.macs_reduction < 2.5
    assert "no more channels than their rounding step" in caplog.text and "layer_round_to, e.g. {'conv1': 8}" in caplog.text
    result = StructuredPruner(macs_reduction=3.0, round_to=16, layer_round_to={"layer1.*": 8}).prune(create_model("resnet56"), X32)
    assert abs(result.macs_reduction - 3.0) <= 0.06
    for layer in result.layers:
        if layer.after != layer.before:
            assert layer.after % (8 if layer.name == "conv1" or layer.name.startswith("layer1.") else 16) == 0, layer
    assert any(layer.name.startswith("layer1.") and layer.after == 8 for layer in result.layers)


def test_unmatched_layer_patterns_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"layer_round_to: pattern\(s\) \['layr1\.\*'\] match no module"):
        StructuredPruner(ratio=0.5, layer_round_to={"layr1.*": 8}).prune(create_model("resnet20"), X32)
    with pytest.raises(ConfigError, match="layer_ratios"):
        StructuredPruner(ratio=0.5, layer_ratios={"features.0": 0.2}).prune(create_model("resnet20"), X32)
    with pytest.raises(ConfigError, match="layer_round_to values must be"):
        StructuredPruner(ratio=0.5, layer_round_to={"layer1.*": 0})


def test_global_ranking_respects_the_per_layer_cap() -> None:
    model = create_model("resnet20")
    result = StructuredPruner(ratio=0.6, allocation="global", max_layer_ratio=0.7).prune(model, X32)
    for layer in result.layers:
        assert layer.after >= layer.before - int(0.7 * layer.before)


def test_ignored_layers_are_untouched() -> None:
    model = create_model("resnet20")
    before = {n: p.shape for n, p in model.named_parameters()}
    StructuredPruner(ratio=0.5, ignored_layers=("layer2.*",)).prune(model, X32)
    after = {n: p.shape for n, p in model.named_parameters()}
    assert all(after[n] == before[n] for n in before if n.startswith("layer2."))
    assert any(after[n] != before[n] for n in before if n.startswith("layer3."))


def test_iterative_steps_reach_the_target_gradually() -> None:
    model = create_model("resnet20")
    dense = count_macs(model, X32).dense
    pruner = StructuredPruner(macs_reduction=2.0, steps=3)
    seen = []
    for fraction in pruner.schedule():
        pruner.step(model, X32, fraction)
        seen.append(count_macs(model, X32).dense)
    assert seen[0] > seen[1] > seen[2]
    assert abs(seen[-1] - dense / 2) <= 0.02 * dense / 2


def test_iterative_ratio_is_relative_to_the_original() -> None:
    model = create_model("vgg16")
    pruner = StructuredPruner(ratio=0.5, steps=2)
    for fraction in pruner.schedule():
        result = pruner.step(model, X32, fraction)
    assert {x.name: x.after for x in result.layers}["features.0"] == 32


def test_taylor_with_calibration_and_importance_object() -> None:
    from prunekit.importance import collect_calibration, make_criterion

    model = create_model("resnet20")
    pruner = StructuredPruner(ratio=0.3, importance="taylor")
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))]
    pruner.prune(model, X32, calibration=collect_calibration(model, batches, pruner.criterion.needs))
    assert all(p.grad is None for p in model.parameters())
    StructuredPruner(ratio=0.3, importance=make_criterion("fpgm")).prune(model, X32)
    assert model(X32).shape == (1, 10)


def test_taylor_from_grad_fields_still_works_with_a_warning() -> None:
    model = create_model("resnet20")
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    with pytest.warns(DeprecationWarning, match="collect_calibration"):
        StructuredPruner(ratio=0.3, importance="taylor").prune(model, X32)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="one target"):
        StructuredPruner(ratio=0.5, macs_reduction=2.0)
    with pytest.raises(ConfigError, match="no target"):
        StructuredPruner()
    with pytest.raises(ConfigError, match="ratio"):
        StructuredPruner(ratio=1.5)
    with pytest.raises(ConfigError):
        StructuredPruner(ratio=0.5, unknown=1)
    cfg = StructuredConfig(macs_reduction=2.0)
    assert cfg.resolved_allocation == "global" and StructuredConfig.model_validate(cfg.model_dump()) == cfg


def test_result_report() -> None:
    model = create_model("lenet5")
    result = StructuredPruner(ratio=0.5).prune(model, torch.randn(1, 1, 28, 28))
    table = result.table()
    assert "| features.0 | Conv2d | 20 | 10 |" in table
    assert result.to_dict()["params_reduction"] > 1

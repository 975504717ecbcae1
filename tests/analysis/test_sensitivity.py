import torch
from torch import nn

from prunekit.analysis import SensitivityResult, allocate_by_sensitivity, layer_sensitivity
from prunekit.masks import MaskSet


def _net_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(256, 1, 4, 4)
    y = model(x).argmax(1)  # the model is perfect on these labels: baseline accuracy 1.0
    return model, [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]


def test_sensitivity_measures_every_layer_and_restores_the_model():
    model, batches = _net_and_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = layer_sensitivity(model, batches, sparsities=(0.0, 0.5, 0.99), progress=False)
    assert result.baseline == 1.0
    assert set(result.accuracy) == {"1.weight", "3.weight"}
    assert all(acc[0] == 1.0 for acc in result.accuracy.values())   # sparsity 0 changes nothing
    assert all(acc[2] < 1.0 for acc in result.accuracy.values())    # 99% of a layer hurts
    assert len(MaskSet.from_model(model)) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_allocation_picks_the_highest_sparsity_within_the_budget():
    result = SensitivityResult(0.9, [0.5, 0.8, 0.95], {"a": [0.9, 0.895, 0.7], "b": [0.85, 0.8, 0.5]})
    assert allocate_by_sensitivity(result, max_drop=0.01) == {"a": 0.8, "b": 0.0}
    assert allocate_by_sensitivity(result, max_drop=0.05) == {"a": 0.8, "b": 0.5}

"""The layer-kind table: every record round-trips, and the old per-module tables are views of it."""

import pytest
import torch
from torch import nn

from prunekit import layer_kinds
from prunekit.compression.spec import LAYER_KINDS, layer_kind
from prunekit.layer_kinds import LAYER_TABLE, kind_of, output_channels
from prunekit.masks import PRUNABLE_LAYERS
from prunekit.masks.nm import NM_LAYERS
from prunekit.metrics import WEIGHT_LAYERS

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _instance(cls: type[nn.Module]) -> nn.Module:
    """6 input and 4 output channels (2 groups where the type has groups)."""
    return nn.Linear(6, 4) if cls is nn.Linear else cls(6, 4, 3, groups=2)


@pytest.mark.parametrize("cls", list(LAYER_TABLE), ids=lambda c: c.__name__)
def test_every_record_round_trips(cls: type[nn.Module]) -> None:
    module = _instance(cls)
    record = kind_of(module)
    assert record is LAYER_TABLE[cls] and record.module_type is cls
    assert output_channels(module) == 4 == getattr(module, "out_channels", getattr(module, "out_features", None))
    weight = getattr(module, record.weight)
    groups = getattr(module, "groups", 1)
    per_group = {ax: groups if ax == record.grouped_axis else 1 for ax in (record.in_axis, record.out_axis)}
    assert weight.shape[record.in_axis] * per_group[record.in_axis] == 6
    assert weight.shape[record.out_axis] * per_group[record.out_axis] == 4
    x = torch.randn(2, 6) if cls is nn.Linear else torch.randn(2, 6, *(5,) * (weight.dim() - 2))
    assert x.shape[record.channel_dim] == 6 and module(x).shape[record.channel_dim] == 4


def test_lookup_walks_the_mro() -> None:
    class MyConv(nn.Conv2d):
        pass

    assert kind_of(MyConv(3, 5, 1)) is LAYER_TABLE[nn.Conv2d]
    assert kind_of(nn.LazyLinear(4)) is LAYER_TABLE[nn.Linear]
    assert output_channels(MyConv(3, 5, 1)) == 5
    for module in (nn.ReLU(), nn.BatchNorm2d(3), nn.Embedding(4, 2), nn.Sequential()):
        assert kind_of(module) is None and output_channels(module) is None


def test_old_tables_are_views_of_the_table_with_the_same_members() -> None:
    assert set(PRUNABLE_LAYERS) == {*CONVS, *TRANSPOSED, nn.Linear} and len(PRUNABLE_LAYERS) == 7
    assert set(WEIGHT_LAYERS) == {*CONVS, nn.Linear} and len(WEIGHT_LAYERS) == 4
    assert set(NM_LAYERS) == {nn.Linear, *CONVS} and len(NM_LAYERS) == 4
    assert dict(LAYER_KINDS) == {**{c: "conv" for c in (*CONVS, *TRANSPOSED)}, nn.Linear: "fc"}
    assert set(layer_kinds.MACS_LAYERS) == {*CONVS, *TRANSPOSED, nn.Linear}
    assert layer_kind(nn.ConvTranspose2d(2, 2, 1)) == "conv" and layer_kind(nn.Linear(2, 2)) == "fc"
    assert layer_kind(nn.ReLU()) is None


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        LAYER_TABLE[nn.Bilinear] = LAYER_TABLE[nn.Linear]  # type: ignore[index]
    with pytest.raises(AttributeError):
        LAYER_TABLE[nn.Linear].prunable = False  # type: ignore[misc]

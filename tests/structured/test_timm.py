"""Smoke tests on timm architectures (through the torchvision stand-in), pruned 50%."""

from __future__ import annotations

import pytest
import torch

from prunekit.pruners import StructuredPruner

CASES = {
    "resnet18": {},
    "vit_tiny_patch16_224": {"img_size": 64},
    "convnext_atto": {},
    "mixer_s16_224": {"img_size": 64},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_timm_model_pruned_half(timm, name: str) -> None:
    model = timm.create_model(name, pretrained=False, num_classes=10, **CASES[name]).eval()
    x = torch.randn(1, 3, 64, 64)
    heads_before = [m.num_heads for m in model.modules() if hasattr(m, "num_heads")]
    result = StructuredPruner(ratio=0.5, attention="heads").prune(model, x)
    assert model(x).shape == (1, 10)
    assert result.params_after < 0.5 * result.params_before
    heads_after = [m.num_heads for m in model.modules() if hasattr(m, "num_heads")]
    assert heads_after == [h - h // 2 for h in heads_before]
    for m in model.modules():
        if hasattr(m, "num_heads") and hasattr(m, "qkv"):
            assert m.qkv.out_features == 3 * m.num_heads * m.head_dim == 3 * m.attn_dim


def _norm_act_net(timm, act_layer) -> torch.nn.Module:
    from timm.layers import BatchNormAct2d

    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), BatchNormAct2d(8, act_layer=act_layer), torch.nn.Conv2d(8, 4, 1)).eval()


def test_norm_act_with_elementwise_act_is_one_leaf_like_bn_then_relu(timm) -> None:
    from prunekit.structured.graph import DependencyGraph

    torch.manual_seed(0)
    net = _norm_act_net(timm, torch.nn.ReLU)
    x = torch.randn(2, 3, 8, 8)
    graph = DependencyGraph.build(net, (x,))
    calls = [n.target for n in graph.prop.trace.graph.nodes if n.op == "call_module"]
    assert calls == ["0", "1", "2"]  # the norm-act layer is a leaf: its act is not traced into
    members = {(m.fqn, m.role) for g in graph.prunable_groups() for m in g.members}
    assert members == {("0.weight", "out"), ("0.bias", "bias"), ("1.weight", "norm_weight"), ("1.bias", "norm_bias"),
                       ("1.running_mean", "stat"), ("1.running_var", "stat"), ("2.weight", "in")}
    net[1].running_var.uniform_(0.5, 2.0)
    net[1].running_mean.normal_()
    reference = net(x)
    StructuredPruner(ratio=0.5).prune(net, x)
    assert net[1].num_features == net[0].out_channels == 4
    assert net(x).shape == reference.shape


def test_norm_act_with_a_parameterised_act_is_traced_through(timm) -> None:
    from prunekit.structured.graph import DependencyGraph

    net = _norm_act_net(timm, torch.nn.PReLU)
    graph = DependencyGraph.build(net, (torch.randn(2, 3, 8, 8),))
    calls = [n.target for n in graph.prop.trace.graph.nodes if n.op == "call_module"]
    assert "1" not in calls and "1.act" in calls

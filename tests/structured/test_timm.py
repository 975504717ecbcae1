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

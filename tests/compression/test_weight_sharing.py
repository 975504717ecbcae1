"""Weight sharing on models: spec rules, zeros, centroid fine-tuning through parametrize."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.compression import (
    CompressionConfig,
    attach_weight_sharing,
    quantize_model,
    quantize_tensor,
    share_weights,
    strip_weight_sharing,
)
from prunekit.errors import ConfigError, StructureError

from .helpers import TinyConvNet, TinyMLP, prune_


def test_zeros_stay_zero_and_codebook_sizes_follow_the_spec():
    model = prune_(TinyConvNet(), 0.6)
    zeros = {n: (p == 0) for n, p in model.named_parameters() if p.dim() > 1}
    result = share_weights(model, CompressionConfig(conv_bits=3, fc_bits=2))
    assert set(result.layers) == set(zeros)
    for name, p in model.named_parameters():
        if name in zeros:
            assert torch.equal(p == 0, zeros[name])  # exactly the pruned positions are zero
            layer = result[name]
            assert layer.n_clusters <= (8 if layer.kind == "conv" else 4)
            assert torch.equal(p.detach(), layer.dense())
            assert set(p[p != 0].tolist()) <= set(layer.codebook.tolist())
    assert result["classifier.weight"].kind == "fc" and result["features.0.weight"].kind == "conv"


def test_overrides_first_match_wins_and_exclude_leaves_weights_alone():
    model = prune_(TinyConvNet(), 0.5)
    before = model.features[3].weight.detach().clone()
    spec = CompressionConfig(overrides={"features.0.*": 2, "features.*": 6}, exclude=("features.3.weight",))
    result = share_weights(model, spec)
    assert result["features.0.weight"].bits == 2 and result["features.0.weight"].n_clusters <= 4
    assert result["classifier.weight"].bits == 5
    assert "features.3.weight" not in result.layers
    assert torch.equal(model.features[3].weight, before)
    with pytest.raises(ConfigError, match="matches no conv/linear weight"):
        share_weights(model, {"overrides": {"feature.*": 4}})
    with pytest.raises(ConfigError, match="invalid compression spec"):
        share_weights(model, {"fc_bits": 17})


def test_apply_false_leaves_model_untouched_and_is_deterministic():
    model = prune_(TinyMLP(), 0.5)
    before = copy.deepcopy(model.state_dict())
    a = share_weights(model, CompressionConfig(init="random", seed=3), apply=False)
    b = share_weights(model, CompressionConfig(init="random", seed=3), apply=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    for name in a.layers:
        assert torch.equal(a[name].codebook, b[name].codebook) and torch.equal(a[name].indices, b[name].indices)


def test_indices_are_uint16_beyond_256_clusters_and_quantize_is_idempotent():
    w = torch.randn(40, 40)
    w[w.abs() < 0.3] = 0
    layer = quantize_tensor(w, 10)
    assert layer.indices.dtype == torch.uint16 and 256 < layer.n_clusters <= 1024
    again = quantize_tensor(layer.dense(), 10)
    assert torch.equal(again.dense(), layer.dense())  # <= 2**bits distinct values: lossless
    with pytest.raises(ConfigError, match="non-finite"):
        quantize_tensor(torch.tensor([1.0, float("nan")]), 2)


def test_codebook_gradient_is_the_sum_of_weight_gradients_per_cluster():
    torch.manual_seed(0)
    model = prune_(TinyConvNet(), 0.5)
    reference = copy.deepcopy(model)
    result = share_weights(reference, CompressionConfig(conv_bits=3, fc_bits=3))  # plain, shared values
    handle = attach_weight_sharing(model, result)
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(model(x), reference(x))
    model(x).square().mean().backward()
    reference(x).square().mean().backward()
    for name, shared in handle.shared.items():
        layer = result[name]
        module = reference.get_submodule(name.rpartition(".")[0])
        dense_grad = module.weight.grad.reshape(-1)[layer.positions()]
        expected = torch.zeros(layer.n_clusters).index_add_(0, layer.indices.long(), dense_grad)
        torch.testing.assert_close(shared.codebook.grad, expected, rtol=1e-5, atol=1e-7)


def test_only_codebooks_train_and_zeros_stay_zero_through_fine_tuning():
    torch.manual_seed(1)
    model = prune_(TinyMLP((12, 10, 4)), 0.7)
    zeros = {n: p == 0 for n, p in model.named_parameters() if p.dim() > 1}
    handle = attach_weight_sharing(model, CompressionConfig(fc_bits=2))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"0.bias", "2.bias", "0.parametrizations.weight.0.codebook", "2.parametrizations.weight.0.codebook"}
    before = {n: cb.detach().clone() for n, cb in zip(handle.shared, handle.codebooks())}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(32, 12), torch.randint(0, 4, (32,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for name, shared in handle.shared.items():
        assert not torch.equal(shared.codebook.detach(), before[name])  # centroids moved
    for name, mask in zeros.items():
        module = model.get_submodule(name.rpartition(".")[0])
        assert torch.equal(module.weight == 0, mask)
    tuned = handle.result()
    final = strip_weight_sharing(model)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for name, layer in final.layers.items():
        module = model.get_submodule(name.rpartition(".")[0])
        assert torch.equal(module.weight.detach(), layer.dense())
        assert torch.equal(layer.codebook, tuned[name].codebook)
        assert torch.equal(module.weight == 0, zeros[name])


def test_attach_refuses_twice_and_share_weights_refuses_parametrized_weights():
    model = prune_(TinyMLP(), 0.5)
    attach_weight_sharing(model)
    with pytest.raises(StructureError, match="already has weight sharing"):
        attach_weight_sharing(model)
    with pytest.raises(StructureError, match="parametrized"):
        share_weights(model)
    clone = copy.deepcopy(model)  # parametrized models still deep-copy
    assert torch.equal(clone(torch.ones(1, 20)), model(torch.ones(1, 20)))


def test_quantize_model_is_a_deprecated_alias_of_share_weights():
    model, alias = prune_(TinyMLP(), 0.5), prune_(TinyMLP(), 0.5)
    alias.load_state_dict(model.state_dict())
    expected = share_weights(model, CompressionConfig(fc_bits=3))
    with pytest.deprecated_call(match="share_weights"):
        result = quantize_model(alias, CompressionConfig(fc_bits=3))
    assert set(result.layers) == set(expected.layers)
    assert all(torch.equal(result[n].dense(), expected[n].dense()) for n in expected.layers)
    assert all(torch.equal(a, b) for a, b in zip(alias.state_dict().values(), model.state_dict().values()))


def test_compression_spec_is_the_deprecated_name_of_compression_config() -> None:
    import prunekit
    from prunekit import compression
    from prunekit.compression import spec as spec_module

    for module in (prunekit, compression, spec_module):
        with pytest.warns(DeprecationWarning, match="CompressionConfig"):
            assert module.CompressionSpec is CompressionConfig

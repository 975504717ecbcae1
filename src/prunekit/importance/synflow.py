"""The gradient SynFlow scores with: ``∂R/∂w`` of the synaptic flow ``R = 1ᵀ(∏ₗ|Wₗ|)1`` (Tanaka et al. 2020).

``R`` is the sum of the outputs of a copy of the model whose parameters are replaced by their
absolute values, in eval mode (BatchNorm uses its running statistics), on one all-ones input, in
float64 (products of many layers overflow float32). No data is used: only the input's shape.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import ConfigError
from prunekit.masks import effective_weight


def synflow_gradients(model: nn.Module, names: Sequence[str], input_shape: Sequence[int]) -> dict[str, Tensor]:
    """``∂R/∂w`` (float64) for each named *effective* (masked) weight; ``model`` is left untouched.

    ``input_shape`` is one example's shape, without the batch dimension (e.g. ``(1, 28, 28)``).
    """
    if not input_shape or any(int(d) < 1 for d in input_shape):
        raise ConfigError(f"synflow needs one example's input shape without the batch dimension, e.g. (1, 28, 28); got {tuple(input_shape)}")
    probe = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for param in probe.parameters():
            param.abs_()
    device = next(probe.parameters()).device
    ones = torch.ones((1, *map(int, input_shape)), dtype=torch.float64, device=device)
    with parametrize.cached():
        weights = [effective_weight(probe, n) for n in names]
        flow = probe(ones).sum()
        grads = torch.autograd.grad(flow, weights, allow_unused=True)
    return {n: torch.zeros_like(w) if g is None else g.detach() for n, w, g in zip(names, weights, grads)}

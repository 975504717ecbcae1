"""Helpers for models whose layer sizes depend on the input shape."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.errors import ConfigError


def flat_features(features: nn.Module, input_shape: tuple[int, int, int], model_name: str) -> int:
    """Number of features ``features`` produces for one input of ``input_shape``."""
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise ConfigError(
            f"{model_name} cannot take inputs of shape {tuple(input_shape)} (C, H, W): {exc}. "
            "Use a larger input or another model."
        ) from None
    if out.numel() == 0:
        raise ConfigError(f"{model_name}: input shape {tuple(input_shape)} is too small (no features left)")
    return out[0].numel()

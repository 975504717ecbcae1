"""Masks: one type, ``MaskSet``, attached as parametrizations; strip, save, load, interop."""

from prunekit.masks.maskset import MaskSet, WeightMask, detach_masks, strip
from prunekit.masks.targets import PRUNABLE_LAYERS, effective_weight, logical_parameter_names, prunable_parameters, raw_parameter
from prunekit.masks.torch_prune_interop import from_torch_prune, to_torch_prune

__all__ = [
    "PRUNABLE_LAYERS", "MaskSet", "WeightMask", "detach_masks", "effective_weight", "from_torch_prune",
    "logical_parameter_names", "prunable_parameters", "raw_parameter", "strip", "to_torch_prune",
]

"""Analysis: per-layer sensitivity to pruning and allocations derived from it."""

from prunekit.analysis.sensitivity import SensitivityResult, allocate_by_sensitivity, layer_sensitivity

__all__ = ["SensitivityResult", "allocate_by_sensitivity", "layer_sensitivity"]

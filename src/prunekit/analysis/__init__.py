"""Analysis: sensitivity to pruning (per layer, per channel group) and per-group ratio search under a budget."""

from prunekit.analysis.group_sensitivity import GroupMeasurement, StructuredSensitivity, merge_sensitivity_shards, structured_sensitivity
from prunekit.analysis.search import SEARCH_STRATEGIES, SearchConfig, SearchResult, search_ratios, searched_config
from prunekit.analysis.sensitivity import SensitivityResult, allocate_by_sensitivity, layer_sensitivity

__all__ = [
    "SEARCH_STRATEGIES", "GroupMeasurement", "SearchConfig", "SearchResult", "SensitivityResult", "StructuredSensitivity",
    "allocate_by_sensitivity", "layer_sensitivity", "merge_sensitivity_shards", "search_ratios", "searched_config", "structured_sensitivity",
]

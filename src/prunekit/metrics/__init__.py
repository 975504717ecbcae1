"""Evaluation beyond accuracy: size, MACs, size on disk, latency, agreement, per-class accuracy."""

from prunekit.metrics.accuracy import Evaluation, agreement, evaluate, per_class_accuracy
from prunekit.metrics.batches import FirstExamples, model_device
from prunekit.metrics.corruptions import CORRUPTIONS, DEFAULT_CORRUPTIONS, corruption_accuracy, corruption_summary, expand_corruptions, families
from prunekit.metrics.latency import Latency, compare_latency, measure_latency
from prunekit.metrics.macs import WEIGHT_LAYERS, LayerMacs, MacsReport, count_macs
from prunekit.metrics.pie import pie_examples, pie_indices
from prunekit.metrics.prune_potential import prune_potential
from prunekit.metrics.size import DiskSize, SizeReport, count_parameters, effective_parameters, size_on_disk

__all__ = [
    "CORRUPTIONS", "DEFAULT_CORRUPTIONS", "WEIGHT_LAYERS", "DiskSize", "Evaluation", "FirstExamples", "LayerMacs", "Latency", "MacsReport", "SizeReport", "agreement",
    "compare_latency", "corruption_accuracy", "corruption_summary", "count_macs", "count_parameters", "effective_parameters", "evaluate", "expand_corruptions", "families", "measure_latency",
    "model_device", "per_class_accuracy", "pie_examples", "pie_indices", "prune_potential", "size_on_disk",
]

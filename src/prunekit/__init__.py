"""prunekit: prune computer-vision networks in PyTorch, and measure what it really gains.

The most used entry points are re-exported here; every subpackage has its own API too::

    import prunekit as pk
    model = pk.create_model("resnet20")
    data = pk.get_loaders("cifar10")
    masks = pk.prune_unstructured(model, pk.UnstructuredConfig(sparsity=0.9, scope="global"))
    pk.fit(model, data.train, pk.TrainConfig(epochs=5), val=data.val)
"""

from __future__ import annotations

from prunekit._deprecation import renamed
from prunekit._version import __version__

from prunekit.compression import CompressionConfig, compress_model, decompress_file, load_compressed_into, quantize_model, share_weights
from prunekit.deployment import deploy, export_onnx, measured_speedup, quantize_int8
from prunekit import dynamic  # pk.dynamic.add_gates, skip_path, gate_stats: input-dependent channel gates
from prunekit.errors import ConfigError, DataError, PrunekitError
from prunekit.experiment.recipe import Recipe, load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.masks import MaskSet, from_torch_prune, prunable_parameters, strip, to_torch_prune
from prunekit.metrics import compare_latency, count_macs, count_parameters, evaluate, measure_latency, size_on_disk
from prunekit.pruners import DepthConfig, find_blocks, prune_depth
from prunekit.pruners import AtInitConfig, prune_at_init, random_masks_like
from prunekit.pruners import (
    NMPruner, Objective, Plan, Pruner, StructuredConfig, StructuredPruner, UnstructuredConfig, UnstructuredPruner, nm_prune, prune_nm,
    prune_structured, prune_unstructured,
)
from prunekit.schedules import build_schedule
from prunekit.importance import Calibration, collect_calibration
from prunekit.integrations import RecipeManager
from prunekit.training import (
    SparsityLearningConfig, StopCondition, StructuredFinetuneResult, StructuredStepResult, TrainConfig, fit, prune_finetune_structured,
)
from prunekit.zoo import create_model, get_loaders, image_folder_loaders, list_datasets, list_models, load_weights

__all__ = [
    "CompressionConfig", "ConfigError", "DataError", "MaskSet", "NMPruner", "Objective", "Plan", "Pruner", "PrunekitError", "Recipe",
    "Calibration", "SparsityLearningConfig", "StopCondition", "StructuredConfig", "StructuredFinetuneResult", "StructuredPruner", "StructuredStepResult",
    "TrainConfig", "collect_calibration", "prune_finetune_structured", "UnstructuredConfig", "UnstructuredPruner", "prune_nm", "prune_structured",
    "build_schedule", "compare_latency", "compress_model", "count_macs", "count_parameters", "create_model",
    "decompress_file", "deploy", "evaluate", "export_onnx", "fit", "from_torch_prune", "get_loaders", "list_datasets",
    "list_models", "load_compressed_into", "load_recipe", "measure_latency", "nm_prune", "prunable_parameters",
    "prune_unstructured", "quantize_int8", "quantize_model", "run_recipe", "share_weights", "size_on_disk", "strip", "to_torch_prune",
    "DepthConfig", "find_blocks", "prune_depth", "measured_speedup", "load_weights", "image_folder_loaders", "RecipeManager",
    "dynamic", "AtInitConfig", "prune_at_init", "random_masks_like",
]


__getattr__ = renamed(__name__, {"CompressionSpec": ("CompressionConfig", lambda: CompressionConfig)})

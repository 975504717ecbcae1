"""Deployment: sparse CPU inference, 2:4 semi-structured (CUDA), ONNX export/validation/timing, int8,
and latency on a runtime (torch, torch.compile, onnxruntime): side-by-side speed-ups, channel staircases, per-layer tables.

The package itself is callable: ``prunekit.deploy(model, example_inputs)`` is
:func:`prunekit.deployment.sparse.deploy`, while ``prunekit.deployment.export_onnx`` etc. stay reachable.
onnx/onnxruntime are imported only when an ONNX function runs (``pip install 'prunekit[onnx]'``).
"""

from __future__ import annotations

from prunekit.deployment.int8 import Int8Export, quantize_int8
from prunekit.deployment.latency_tables import LayerTable, MachineKey, Staircase, measure_staircase, measure_tables
from prunekit.deployment.runtimes import RUNTIMES, SpeedupCheck, default_runtime, measured_speedup, time_side_by_side
from prunekit.deployment.onnx_export import OnnxExport, OnnxRunner, evaluate_onnx, export_onnx, time_onnx
from prunekit.deployment.semi_structured import CPU_MESSAGE, SemiStructuredResult, to_semi_structured
from prunekit.deployment.sparse import DeployConfig, DeployReport, LayerDecision, deploy
from prunekit.deployment.sparse_modules import SparseConv1x1, SparseLinear

__all__ = [
    "CPU_MESSAGE", "DeployConfig", "DeployReport", "Int8Export", "LayerDecision", "LayerTable", "MachineKey", "OnnxExport", "OnnxRunner",
    "RUNTIMES", "SpeedupCheck", "Staircase", "default_runtime", "measure_staircase", "measure_tables", "measured_speedup", "time_side_by_side",
    "SemiStructuredResult", "SparseConv1x1", "SparseLinear", "deploy", "evaluate_onnx", "export_onnx",
    "quantize_int8", "time_onnx", "to_semi_structured",
]


"""Deployment: sparse CPU inference, 2:4 semi-structured (CUDA), ONNX export/validation/timing, int8.

The package itself is callable: ``prunekit.deploy(model, example_inputs)`` is
:func:`prunekit.deploy.sparse.deploy`, while ``prunekit.deploy.export_onnx`` etc. stay reachable.
onnx/onnxruntime are imported only when an ONNX function runs (``pip install 'prunekit[onnx]'``).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from prunekit.deploy.int8 import Int8Export, quantize_int8
from prunekit.deploy.onnx_export import OnnxExport, OnnxRunner, evaluate_onnx, export_onnx, time_onnx
from prunekit.deploy.semi_structured import CPU_MESSAGE, SemiStructuredResult, to_semi_structured
from prunekit.deploy.sparse import DeployConfig, DeployReport, LayerDecision, deploy
from prunekit.deploy.sparse_modules import SparseConv1x1, SparseLinear

__all__ = [
    "CPU_MESSAGE", "DeployConfig", "DeployReport", "Int8Export", "LayerDecision", "OnnxExport", "OnnxRunner",
    "SemiStructuredResult", "SparseConv1x1", "SparseLinear", "deploy", "evaluate_onnx", "export_onnx",
    "quantize_int8", "time_onnx", "to_semi_structured",
]


class _CallableModule(types.ModuleType):
    """Makes ``prunekit.deploy(...)`` call :func:`deploy` without shadowing the package."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return deploy(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

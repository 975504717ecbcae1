"""ONNX export of any pruned model, validated in onnxruntime, and onnxruntime timing/evaluation.

Export runs on a copy of the model with every parametrization made permanent (masks, weight
sharing, …), so unstructured-masked, N:M, weight-shared and structurally pruned (plain, smaller)
models all export as ordinary dense graphs. ONNX has no sparse matmul that onnxruntime's CPU
provider accelerates: zeros stay zeros in dense initializers. Needs ``pip install 'prunekit[onnx]'``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit._io import write_bytes
from prunekit._parametrize import plain_copy
from prunekit.deployment.sparse_modules import SparseConv1x1, SparseLinear
from prunekit.errors import ConfigError, ExportError
from prunekit.metrics import Evaluation, Latency, evaluate, measure_latency
from prunekit.metrics._inputs import Inputs, as_args

logger = logging.getLogger(__name__)


def require_onnx() -> tuple[Any, Any]:
    """Import and return ``(onnx, onnxruntime)``, or raise :class:`ConfigError` saying how to install them."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as exc:
        raise ConfigError(
            f"ONNX export needs onnx, onnxruntime and onnxscript ({exc}); install them with: pip install 'prunekit[onnx]'"
        ) from exc
    return onnx, onnxruntime


@dataclass
class OnnxExport:
    """An exported, validated ONNX file: errors are onnxruntime vs torch on the example inputs."""

    path: Path
    opset: int
    size_bytes: int
    max_abs_error: float
    max_rel_error: float
    export_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OnnxRunner:
    """A callable onnxruntime session (CPU provider): ``runner(*tensors) -> list of numpy outputs``."""

    def __init__(self, model: str | os.PathLike[str] | bytes, threads: int | None = None) -> None:
        _, ort = require_onnx()
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: Any) -> list[Any]:
        if len(inputs) != len(self.input_names):
            raise ConfigError(f"the ONNX model takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        feed = {name: x.detach().cpu().numpy() if isinstance(x, Tensor) else x for name, x in zip(self.input_names, inputs)}
        return self.session.run(None, feed)


def _exportable_copy(model: nn.Module) -> nn.Module:
    """:func:`plain_copy` of ``model``, refusing the CSR/BSR layers ONNX cannot express."""
    if any(isinstance(module, (SparseLinear, SparseConv1x1)) for module in model.modules()):
        raise ExportError(
            "the model holds CSR/BSR layers from prunekit.deploy(); export the model you passed to deploy() instead"
        )
    return plain_copy(model)


def export_onnx(
    model: nn.Module,
    example_inputs: Inputs,
    path: str | os.PathLike[str],
    dynamic_batch: bool = True,
    opset: int | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> OnnxExport:
    """Export ``model`` with the dynamo exporter, check it in onnxruntime, then write ``path`` atomically.

    ``dynamic_batch`` makes dimension 0 of every input symbolic. Validation runs the exported
    bytes in onnxruntime on ``example_inputs`` and raises :class:`ExportError` with the numbers
    if ``max |ort - torch| > atol + rtol * max |torch|``; nothing is written then.
    """
    require_onnx()
    work = _exportable_copy(model)
    args = as_args(example_inputs)
    dynamic = tuple({0: torch.export.Dim("batch")} for _ in args) if dynamic_batch else None
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # torch.export internals
        program = torch.onnx.export(work, args, None, dynamo=True, dynamic_shapes=dynamic, opset_version=opset, verbose=False)
    proto = program.model_proto
    data = proto.SerializeToString()
    export_s = time.perf_counter() - start
    max_abs, max_rel = _validate(work, args, data, rtol, atol)
    write_bytes(path, data)
    opset_used = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    logger.info("exported %s (opset %d, %d bytes, max abs error %.2e)", path, opset_used, len(data), max_abs)
    return OnnxExport(Path(path), opset_used, len(data), max_abs, max_rel, export_s)


def _validate(model: nn.Module, args: tuple[Any, ...], data: bytes, rtol: float, atol: float) -> tuple[float, float]:
    with torch.no_grad():
        expected = model(*args)
    expected = [expected] if isinstance(expected, Tensor) else list(expected)
    got = OnnxRunner(data)(*args)
    if len(got) != len(expected):
        raise ExportError(f"onnxruntime returned {len(got)} outputs, torch {len(expected)}")
    max_abs = max_rel = 0.0
    for ref, out in zip(expected, got):
        diff = float((torch.from_numpy(out) - ref).abs().max())
        scale = float(ref.abs().max())
        max_abs, max_rel = max(max_abs, diff), max(max_rel, diff / scale if scale else diff)
        if diff > atol + rtol * scale:
            raise ExportError(
                f"onnxruntime output differs from torch: max abs error {diff:.3g} > atol {atol} + rtol {rtol} × "
                f"max |output| {scale:.3g}; the file was not written"
            )
    return max_abs, max_rel


def time_onnx(
    path: str | os.PathLike[str], inputs: Inputs, warmup: int = 5, repeats: int = 30, threads: int | None = None
) -> Latency:
    """Median onnxruntime latency of ``path`` on ``inputs`` after ``warmup`` runs.

    For a side-by-side comparison with torch, pass ``OnnxRunner(path)`` and the model to
    :func:`prunekit.metrics.compare_latency`.
    """
    return measure_latency(OnnxRunner(path, threads), inputs, warmup=warmup, repeats=repeats)


class _RunnerModule(nn.Module):
    """Adapter so :func:`prunekit.metrics.evaluate` can drive an onnxruntime session."""

    def __init__(self, runner: OnnxRunner) -> None:
        super().__init__()
        self.runner = runner

    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.runner(x)[0])


def evaluate_onnx(
    path: str | os.PathLike[str],
    batches: Iterable[tuple[Tensor, Tensor]],
    num_classes: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    description: str = "onnx accuracy",
) -> Evaluation:
    """Accuracy, loss and per-class accuracy of an ONNX classifier over ``(x, y)`` batches (like ``evaluate``)."""
    return evaluate(_RunnerModule(OnnxRunner(path, threads)), batches, num_classes=num_classes, progress=progress, description=description)

"""Post-training int8 quantization of an exported ONNX model with ``onnxruntime.quantization``.

``static`` (default): QDQ format, int8 weights (per output channel) and int8 activations whose
ranges are calibrated (MinMax) on a few batches; ``quant_pre_process`` (shape inference and graph
optimisation) runs first when it succeeds. ``dynamic``: int8 weights only, activation ranges
computed at run time; no calibration data, suits MLPs (MatMul/Gemm-heavy models).
Evaluate the result with :func:`prunekit.deployment.onnx_export.evaluate_onnx`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from prunekit._io import write_bytes
from prunekit.deployment.onnx_export import OnnxRunner, require_onnx
from prunekit.errors import ConfigError
from prunekit.progress import make_progress

logger = logging.getLogger(__name__)


@dataclass
class Int8Export:
    """A quantized ONNX file and the sizes on disk before and after."""

    path: Path
    source: Path
    mode: str
    float_bytes: int
    int8_bytes: int
    preprocessed: bool
    calibration_batches: int

    @property
    def ratio(self) -> float:
        """float size / int8 size."""
        return self.float_bytes / self.int8_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def _calibration_feeds(batches: Iterable[Any], input_names: list[str], max_batches: int) -> list[dict[str, Any]]:
    """Input dicts for calibration; ``(x, y)`` pairs contribute ``x`` only."""
    feeds = []
    for batch in batches:
        if len(feeds) >= max_batches:
            break
        inputs = batch[: len(input_names)] if isinstance(batch, (tuple, list)) else (batch,)
        feeds.append({name: (x.detach().cpu().numpy() if isinstance(x, Tensor) else x) for name, x in zip(input_names, inputs)})
    return feeds


def _reader(feeds: list[dict[str, Any]], on_batch: Callable[[], None]) -> Any:
    """A ``CalibrationDataReader`` over prepared input dicts (calling ``on_batch`` for each one handed out)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._iter: Iterator[dict[str, Any]] = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            feed = next(self._iter, None)
            if feed is not None:
                on_batch()
            return feed

        def rewind(self) -> None:
            self._iter = iter(feeds)

    return _Reader()


def _drop_initializer_shapes(path: Path, out: Path) -> Path:
    """Copy of the model without ``value_info`` entries for initializers.

    The dynamo exporter records weight shapes there; dynamic quantization transposes ``Gemm``
    weights into ``MatMul`` ones and then fails shape inference on the stale entries.
    """
    import onnx

    model = onnx.load(str(path))
    names = {init.name for init in model.graph.initializer}
    kept = [vi for vi in model.graph.value_info if vi.name not in names]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    onnx.save(model, str(out))
    return out


def quantize_int8(
    onnx_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    calibration: Iterable[Any] | None = None,
    mode: Literal["static", "dynamic"] = "static",
    per_channel: bool = True,
    preprocess: bool = True,
    max_batches: int = 8,
    progress: bool = False,
) -> Int8Export:
    """Quantize ``onnx_path`` to int8 and write ``output_path`` atomically.

    ``calibration`` (static mode only, required there) yields input tensors or ``(x, y)`` batches;
    the first ``max_batches`` are used. ``progress`` shows a bar over the calibration batches.
    """
    require_onnx()
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_dynamic, quantize_static

    source = Path(onnx_path)
    if mode not in ("static", "dynamic"):
        raise ConfigError(f"int8 mode must be 'static' or 'dynamic', got {mode!r}")
    feeds: list[dict[str, Any]] = []
    if mode == "static":
        feeds = _calibration_feeds(calibration or (), OnnxRunner(source).input_names, max_batches)
        if not feeds:
            raise ConfigError("static int8 quantization needs calibration batches (calibration=...); or use mode='dynamic'")
    with tempfile.TemporaryDirectory(prefix="prunekit-int8-") as tmp:
        model_in, preprocessed = source, False
        if preprocess:
            try:
                quant_pre_process(str(source), str(Path(tmp) / "pre.onnx"), skip_symbolic_shape=True)
                model_in, preprocessed = Path(tmp) / "pre.onnx", True
            except Exception as exc:  # its shape inference and optimizer raise many types
                logger.warning("quant_pre_process failed on %s (%s); quantizing the model as exported", source, exc)
        model_in = _drop_initializer_shapes(model_in, Path(tmp) / "clean.onnx")
        quantized = Path(tmp) / "int8.onnx"
        if mode == "static":
            with make_progress(progress) as bar:
                task = bar.add_task("int8 calibration", total=len(feeds), status="")
                quantize_static(
                    str(model_in), str(quantized), _reader(feeds, lambda: bar.advance(task)), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                )
        else:
            quantize_dynamic(str(model_in), str(quantized), per_channel=per_channel, weight_type=QuantType.QInt8)
        data = quantized.read_bytes()
    write_bytes(output_path, data)
    result = Int8Export(Path(output_path), source, mode, source.stat().st_size, len(data), preprocessed, len(feeds))
    logger.info("int8 (%s) %s: %d -> %d bytes (%.2fx)", mode, output_path, result.float_bytes, result.int8_bytes, result.ratio)
    return result

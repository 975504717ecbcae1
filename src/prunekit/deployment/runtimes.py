"""The runtimes a model is timed on: torch eager, ``torch.compile`` and onnxruntime (CPU).

A :class:`Runtime` turns a model and its inputs into a zero-argument callable that runs one
forward on that runtime at a given thread count, and names its version (latency tables are keyed
by it). :func:`time_side_by_side` times several models on one runtime interleaved, so a noisy
machine hits them alike; :func:`measured_speedup` is the dense/pruned ratio every latency-aware
result reports.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import io
import platform
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from prunekit._registry import Registry
from prunekit._parametrize import plain_copy
from prunekit.deployment.layer_probe import LayerConfig, probe_input, probe_module, probe_onnx
from prunekit.errors import ConfigError
from prunekit.metrics import Latency, compare_latency
from prunekit.metrics._inputs import batch_size

Call = Callable[[], Any]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads in torch, restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Runtime:
    """One runtime: ``prepare(model, inputs, threads)`` gives a callable running one forward of a
    snapshot of the model as it is now (later changes to the model do not reach it);
    ``layer(config, c_in, c_out, batch, threads)`` one running a lone layer (for latency tables)."""

    prepare: Callable[[nn.Module, tuple[Any, ...], int], Call]
    layer: Callable[[LayerConfig, int, int, int, int], Call]
    version: Callable[[], str]
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here (with the fix), or None

    def check(self, name: str) -> None:
        reason = self.missing()
        if reason is not None:
            raise ConfigError(f"runtime {name!r} is not available: {reason}")


def _eager(model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Call:
    model = plain_copy(model).eval()  # a snapshot, as an export is: pruning the model later does not change what is timed

    def call() -> Any:
        with torch_threads(threads), torch.inference_mode():
            return model(*inputs)

    return call


def _eager_layer(config: LayerConfig, c_in: int, c_out: int, batch: int, threads: int) -> Call:
    return _eager(probe_module(config, c_in, c_out), (probe_input(config, c_in, c_out, batch),), threads)


def _compiled(model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Call:
    compiled = torch.compile(plain_copy(model).eval())

    def call() -> Any:
        with torch_threads(threads), torch.inference_mode():
            return compiled(*inputs)

    return call


def onnx_bytes(model: nn.Module, inputs: tuple[Any, ...]) -> bytes:
    """``model`` (masks made permanent) as ONNX bytes of fixed input shapes, for timing.

    Uses torch's TorchScript-based exporter, about 4× faster than the dynamo exporter that
    :func:`prunekit.deployment.export_onnx` uses (a latency-aware search exports every candidate
    it measures); the graphs onnxruntime runs after its fusions are the same for conv nets. Falls
    back to the dynamo exporter where the older one fails.
    """
    work = plain_copy(model).eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporters print progress lines
        warnings.simplefilter("ignore")
        try:
            buffer = io.BytesIO()
            torch.onnx.export(work, inputs, buffer, dynamo=False, opset_version=17)
            return buffer.getvalue()
        except Exception:  # noqa: BLE001 - any failure of the legacy exporter: use the maintained one
            program = torch.onnx.export(work, inputs, None, dynamo=True, verbose=False)
            return program.model_proto.SerializeToString()


def ort_session(data: bytes, threads: int) -> Any:
    """An onnxruntime CPU session of ``data`` with ``threads`` intra-op threads (one inter-op)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def ort_call(session: Any, inputs: tuple[Any, ...]) -> Call:
    feed = {i.name: x.detach().cpu().numpy() for i, x in zip(session.get_inputs(), inputs)}
    return lambda: session.run(None, feed)


def _onnxruntime(model: nn.Module, inputs: tuple[Any, ...], threads: int) -> Call:
    return ort_call(ort_session(onnx_bytes(model, inputs), threads), inputs)


def _ort_layer(config: LayerConfig, c_in: int, c_out: int, batch: int, threads: int) -> Call:
    session = ort_session(probe_onnx(config, c_in, c_out, batch), threads)
    return ort_call(session, (probe_input(config, c_in, c_out, batch),))


def _missing_ort() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None:
        return "onnxruntime/onnxscript are not installed; pip install 'prunekit[onnx]', or pass runtime='torch'"
    return None


def _ort_version() -> str:
    """From the package metadata where it can (importing onnxruntime costs ~50 ms on a cold prune call)."""
    try:
        return f"onnxruntime {importlib.metadata.version('onnxruntime')}"
    except importlib.metadata.PackageNotFoundError:  # another distribution (onnxruntime-gpu, ...) provides the module
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"


#: name → runtime latency can be measured and targeted on.
RUNTIMES: Registry[Runtime] = Registry("runtime")
RUNTIMES.add("torch", Runtime(_eager, _eager_layer, lambda: f"torch {torch.__version__}"), description="PyTorch eager mode on the CPU")
RUNTIMES.add("torch_compile", Runtime(_compiled, _eager_layer, lambda: f"torch.compile {torch.__version__}"),
             description="torch.compile (inductor) on the CPU; per-layer tables are measured eagerly (compiling each probe takes seconds)")
RUNTIMES.add("onnxruntime", Runtime(_onnxruntime, _ort_layer, _ort_version, _missing_ort),
             description="onnxruntime, CPU execution provider, graph optimisations on (needs prunekit[onnx])")


def default_runtime() -> str:
    """``"onnxruntime"`` when it is installed (the usual CPU deployment target), else ``"torch"``."""
    return "onnxruntime" if _missing_ort() is None else "torch"


def get_runtime(name: str | None) -> tuple[str, Runtime]:
    """The runtime called ``name`` (``None``: :func:`default_runtime`), checked to run here."""
    name = name or default_runtime()
    runtime = RUNTIMES.get(name)
    runtime.check(name)
    return name, runtime


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class SpeedupCheck:
    """Dense and pruned timed side by side on one runtime: medians, spread and the ratio."""

    runtime: str
    batch_size: int
    threads: int
    dense_ms: float
    pruned_ms: float
    spread: float  # the larger relative p10–p90 width of the two
    repeats: int

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.pruned_ms

    @property
    def reliable(self) -> bool:
        """False when the timing spread is too wide for the ratio to mean much (over 25%)."""
        return self.spread <= 0.25

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": self.speedup, "reliable": self.reliable}

    def describe(self) -> str:
        note = "" if self.reliable else f" (timing spread {self.spread:.0%}: the machine was too noisy to trust this figure)"
        return (f"{self.speedup:.2f}× on {self.runtime} (batch {self.batch_size}, {self.threads} thread(s): "
                f"{self.dense_ms:.3g} ms dense, {self.pruned_ms:.3g} ms pruned){note}")


def prepare_on(runtime: str | None, model: nn.Module, inputs: tuple[Any, ...], threads: int = 1) -> Call:
    """A callable running one forward of ``model`` on ``runtime`` (exported/compiled now, once)."""
    _, rt = get_runtime(runtime)
    return rt.prepare(model, inputs, threads)


def time_side_by_side(models: Mapping[str, nn.Module | Call], inputs: tuple[Any, ...], runtime: str | None = None, threads: int = 1,
                      repeats: int = 20, min_time_s: float = 1.0) -> dict[str, Latency]:
    """Median latency of each model (or callable from :func:`prepare_on`) on ``runtime``, interleaved round-robin after warm-up."""
    calls = {name: prepare_on(runtime, m, inputs, threads) if isinstance(m, nn.Module) else m for name, m in models.items()}
    return compare_latency(calls, (), warmup=2, repeats=repeats, min_time_s=min_time_s)


def measured_speedup(dense: nn.Module | Call, pruned: nn.Module | Call, inputs: tuple[Any, ...], runtime: str | None = None, threads: int = 1,
                     repeats: int = 20, min_time_s: float = 1.0) -> SpeedupCheck:
    """Time ``dense`` and ``pruned`` side by side on ``runtime``; see :class:`SpeedupCheck`."""
    name, _ = get_runtime(runtime)
    t = time_side_by_side({"dense": dense, "pruned": pruned}, inputs, name, threads, repeats, min_time_s)
    spread = max((x.p90_ms - x.p10_ms) / x.median_ms for x in t.values())
    return SpeedupCheck(name, batch_size(inputs) if inputs else 1, threads, t["dense"].median_ms, t["pruned"].median_ms, spread, t["dense"].repeats)

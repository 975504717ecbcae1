"""Sparse CPU inference: run sparse layers as CSR/BSR matmuls only where that is measured to be faster.

What is measured, per eligible layer (``nn.Linear``; pointwise ``nn.Conv2d`` with 1×1 kernel,
stride 1, no padding, groups 1), on this machine and its current thread count: the layer's own
input, recorded with a forward hook while ``example_inputs`` run through the model, is fed to the
dense layer and to each sparse candidate (CSR; BSR with 8/16/32 blocks when the nonzeros are
block-clustered enough to be worth trying), interleaved round-robin within a small time budget.
A layer goes sparse only when the fastest candidate's median beats the dense median by
``min_speedup``. Everything else stays dense. The model passed in is never modified.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from prunekit._settings import Settings
from prunekit._parametrize import plain_copy
from prunekit.deployment.sparse_modules import Layout, SparseConv1x1, SparseLinear
from prunekit.metrics import compare_latency
from prunekit.metrics._inputs import Inputs, as_args

logger = logging.getLogger(__name__)

#: BSR block sizes tried when a weight's nonzeros fill at least ``BSR_MIN_FILL`` of its nonzero blocks.
BSR_BLOCKSIZES = (8, 16, 32)
BSR_MIN_FILL = 0.5


class DeployConfig(Settings):
    """Settings of :func:`deploy` (also the recipe's ``deploy`` section)."""


    force: Literal["dense", "sparse"] | None = Field(
        None, description="skip measuring: 'sparse' converts every eligible layer (CSR), 'dense' none"
    )
    min_sparsity: float = Field(0.5, ge=0, le=1, description="layers sparser than this are candidates")
    min_speedup: float = Field(1.1, gt=0, description="sparse must be this many times faster than dense to be chosen")
    budget_s: float = Field(0.2, gt=0, description="timing budget per layer, in seconds")
    layouts: tuple[Layout, ...] = Field(("csr", "bsr"), min_length=1, description="sparse formats to try")


@dataclass
class LayerDecision:
    """Why one layer runs dense or sparse (times are medians of the layer alone, in milliseconds)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    sparsity: float
    chosen: Literal["dense", "sparse"]
    reason: str
    layout: str | None = None
    dense_ms: float | None = None
    sparse_ms: float | None = None

    @property
    def speedup(self) -> float | None:
        """dense / sparse time of the best sparse candidate, when measured."""
        return self.dense_ms / self.sparse_ms if self.dense_ms and self.sparse_ms else None


@dataclass
class DeployReport:
    """Per-layer decisions and the largest output difference of the converted model on ``example_inputs``."""

    layers: list[LayerDecision] = field(default_factory=list)
    max_abs_error: float = 0.0

    @property
    def converted(self) -> list[str]:
        """Names of the layers now running sparse."""
        return [d.name for d in self.layers if d.chosen == "sparse"]

    def to_dict(self) -> dict[str, Any]:
        layers = [{**asdict(d), "speedup": d.speedup} for d in self.layers]
        return {"layers": layers, "converted": self.converted, "max_abs_error": self.max_abs_error}


def deploy(
    model: nn.Module,
    example_inputs: Inputs,
    config: DeployConfig | None = None,
    **settings: Any,
) -> tuple[nn.Module, DeployReport]:
    """A copy of ``model`` whose sparse layers run CSR/BSR kernels where measured faster, and the report.

    ``model`` may carry masks or be plain; masks and other parametrizations are made permanent on
    the copy. ``settings`` are :class:`DeployConfig` fields (``force``, ``min_sparsity``,
    ``min_speedup``, ``budget_s``, ``layouts``) and override ``config``. The returned model is for
    inference on CPU.
    """
    base = config.model_dump() if config is not None else {}
    cfg = DeployConfig.model_validate({**base, **settings})
    work = plain_copy(model)
    args = as_args(example_inputs)
    inputs, reference = _record_inputs(work, args)
    report = DeployReport()
    for name, module in _eligible(work):
        decision, replacement = _decide(name, module, inputs.get(name), cfg)
        report.layers.append(decision)
        if replacement is not None:
            _replace(work, module, replacement)
        logger.info("%s: %s (%s)", name, decision.chosen, decision.reason)
    if report.converted:
        with torch.no_grad():
            pairs = zip(_tensors(work(*args)), _tensors(reference))
            report.max_abs_error = max((float((a - b).abs().max()) for a, b in pairs), default=0.0)
    return work, report


def _tensors(output: Any) -> list[Tensor]:
    """The tensors of a model output (a tensor, or a tuple/list/dict of them)."""
    if isinstance(output, Tensor):
        return [output]
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else []
    return [t for t in items if isinstance(t, Tensor)]


def _kind(module: nn.Module) -> str | None:
    """``"Linear"``/``"Conv2d 1x1"`` for layers this module can convert, else ``None``."""
    if type(module) is nn.Linear:
        return "Linear"
    if (
        type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.stride == (1, 1)
        and module.groups == 1 and module.padding in ((0, 0), "valid")
    ):
        return "Conv2d 1x1"
    return None


def _eligible(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if _kind(module) is not None]


def _record_inputs(model: nn.Module, args: tuple[Any, ...]) -> tuple[dict[str, Tensor], Any]:
    """The first input tensor each eligible layer receives when ``model(*args)`` runs, and the output."""
    recorded: dict[str, Tensor] = {}

    def hook(name: str):
        def record(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
            recorded.setdefault(name, inputs[0].detach().clone())

        return record

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in _eligible(model)]
    try:
        with torch.no_grad():
            output = model(*args)
    finally:
        for handle in handles:
            handle.remove()
    return recorded, output


def _sparse(module: nn.Module, layout: Layout, blocksize: int | None = None) -> nn.Module:
    if isinstance(module, nn.Linear):
        return SparseLinear.from_linear(module, layout, blocksize)
    return SparseConv1x1.from_conv(module, layout, blocksize)  # type: ignore[arg-type]


def _candidates(module: nn.Module, layouts: tuple[Layout, ...]) -> dict[str, nn.Module]:
    """Sparse versions worth timing: CSR, and BSR sizes whose blocks are at least half full."""
    weight = module.weight.detach().flatten(1)
    out: dict[str, nn.Module] = {}
    if "csr" in layouts:
        out["csr"] = _sparse(module, "csr")
    if "bsr" in layouts:
        nnz = int((weight != 0).sum())
        for size in BSR_BLOCKSIZES:
            if weight.shape[0] % size or weight.shape[1] % size:
                continue
            blocks = (weight != 0).reshape(weight.shape[0] // size, size, -1, size).any(3).any(1)
            if nnz >= BSR_MIN_FILL * int(blocks.sum()) * size * size:
                out[f"bsr{size}"] = _sparse(module, "bsr", size)
    return out


def _decide(name: str, module: nn.Module, x: Tensor | None, cfg: DeployConfig) -> tuple[LayerDecision, nn.Module | None]:
    weight = module.weight.detach()
    sparsity = float((weight == 0).float().mean())
    decision = LayerDecision(name, _kind(module) or "", tuple(weight.shape), sparsity, "dense", "")
    if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.float64):
        decision.reason = f"CPU float32/float64 only (weight is {weight.dtype} on {weight.device})"
    elif cfg.force == "dense":
        decision.reason = "forced dense"
    elif sparsity < cfg.min_sparsity:
        decision.reason = f"sparsity {sparsity:.2f} below min_sparsity {cfg.min_sparsity}"
    elif cfg.force == "sparse":
        decision.chosen, decision.layout, decision.reason = "sparse", "csr", "forced sparse"
        return decision, _sparse(module, "csr")
    elif x is None:
        decision.reason = "not called by example_inputs (cannot measure)"
    else:
        return _measure(decision, module, x, cfg)
    return decision, None


def _measure(decision: LayerDecision, module: nn.Module, x: Tensor, cfg: DeployConfig) -> tuple[LayerDecision, nn.Module | None]:
    """Time dense against each sparse candidate, interleaved, within ``cfg.budget_s``."""
    candidates = _candidates(module, cfg.layouts)
    if not candidates:
        decision.reason = "no sparse layout applies"
        return decision, None
    targets = {"dense": module, **candidates}
    start = time.perf_counter()
    with torch.inference_mode():
        for target in targets.values():
            target(x)
    round_s = time.perf_counter() - start
    repeats = int(min(200, max(5, cfg.budget_s / max(round_s, 1e-6))))
    timings = compare_latency(targets, x, warmup=1, repeats=repeats)
    best = min(candidates, key=lambda k: timings[k].median_ms)
    decision.layout, decision.dense_ms, decision.sparse_ms = best, timings["dense"].median_ms, timings[best].median_ms
    ratio = decision.dense_ms / decision.sparse_ms
    if ratio >= cfg.min_speedup:
        decision.chosen, decision.reason = "sparse", f"{best} measured {ratio:.2f}x faster"
        return decision, candidates[best]
    decision.reason = f"{best} measured {ratio:.2f}x (< min_speedup {cfg.min_speedup})"
    return decision, None


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``old`` is registered in ``model`` (every alias)."""
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if module is old:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, new)

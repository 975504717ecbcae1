"""Depth pruning: remove whole residual blocks, least important first, in place.

>>> result = prune_depth(model, x, blocks=4)             # the 4 least important blocks go
>>> result.removed, result.macs_before - result.macs_after

The blocks are those :func:`~prunekit.pruners.depth_blocks.find_blocks` reports as removable
(``out = post(x + branch(x))`` with an identity shortcut). A removed block is replaced by a module
computing ``post(x)`` (``nn.Identity`` or its own activation), so the model keeps its classes and
every remaining layer keeps its state_dict key; the result equals the original model with the
block's branches zeroed. Importance (higher = keep) comes from :data:`DEPTH_CRITERIA`:
``output_change`` (default; relative change of the model's output on ``example_inputs`` when the
block alone is removed, so pass a batch of real data), ``bn_scale`` and ``l2`` (data-free, from the
layer that ends each branch) and ``random`` (a seeded baseline). Blocks are scored once, on the
unpruned model. Give one target: ``blocks`` (a count), ``ratio`` (of the removable blocks) or
``macs_reduction`` (2.0 = half the MACs; blocks go in importance order until it is reached).
"""

from __future__ import annotations

import fnmatch
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from prunekit._registry import Registry
from prunekit._settings import MAX_COUNT, Seed, Settings
from prunekit.errors import ConfigError, StructureError
from prunekit.metrics import count_macs, count_parameters
from prunekit.metrics._inputs import eval_mode
from prunekit.pruners.depth_blocks import ResidualBlock, find_blocks
from prunekit.pruners.result import CostChange
from prunekit.structured.surgery import replace_module

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass
class DepthContext:
    """What a depth criterion may look at: the (unpruned) model, the example inputs, a seed."""

    model: nn.Module
    inputs: tuple[Any, ...]
    seed: int = 0
    _reference: list[Tensor] | None = field(default=None, repr=False)

    def outputs(self) -> list[Tensor]:
        """The model's output tensors on the inputs (eval mode, no gradients), flattened."""
        with eval_mode(self.model):
            return _flatten(self.model(*self.inputs))

    def reference(self) -> list[Tensor]:
        """:meth:`outputs` of the model as it was when first asked (cached)."""
        if self._reference is None:
            self._reference = self.outputs()
        return self._reference

    def branch_ends(self, block: ResidualBlock, criterion: str) -> list[tuple[str, nn.Module | None, Tensor]]:
        """``(name, module or None for a parameter, weight)`` of the layer ending each of ``block``'s branches."""
        out = []
        for end in block.branch_ends:
            if not end:
                raise StructureError(f"{criterion}: cannot tell which layer ends a residual branch of block {block.name!r}; "
                                     f"use importance='output_change', or leave the block out with ignored=[{block.name!r}]")
            try:
                module: nn.Module | None = self.model.get_submodule(end)
                weight = getattr(module, "weight", None)
            except AttributeError:
                module, weight = None, self.model.get_parameter(end)
            if not isinstance(weight, Tensor):
                raise StructureError(f"{criterion}: {end!r}, which ends a branch of block {block.name!r}, has no weight; "
                                     f"use importance='output_change', or ignored=[{block.name!r}]")
            out.append((end, module, weight.detach()))
        return out


#: A depth criterion: ``(block, context) -> importance`` (higher = keep).
DepthCriterion = Callable[[ResidualBlock, DepthContext], float]

#: name → depth criterion.
DEPTH_CRITERIA: Registry[DepthCriterion] = Registry("depth criterion")


def mean_abs(weight: Tensor) -> float:
    """Mean absolute value (of a normalization layer's or layer scale's per-channel scale)."""
    return float(weight.abs().mean()) if weight.numel() else 0.0


def rms(weight: Tensor) -> float:
    """Root mean square (‖w‖₂ / √n): an L2 norm comparable across layers of different sizes."""
    return float(weight.double().pow(2).mean().sqrt()) if weight.numel() else 0.0


def relative_change(reference: Sequence[Tensor], changed: Sequence[Tensor]) -> float:
    """‖changed − reference‖₂ / ‖reference‖₂ over all output tensors together."""
    num = sum(float((c.double() - r.double()).pow(2).sum()) for r, c in zip(reference, changed, strict=True))
    den = sum(float(r.double().pow(2).sum()) for r in reference)
    return math.sqrt(num) / max(math.sqrt(den), 1e-30)


@DEPTH_CRITERIA.register("bn_scale", description="sum over branches of mean |γ| of the norm layer (or layer scale) ending the branch; data-free")
def bn_scale(block: ResidualBlock, ctx: DepthContext) -> float:
    total = 0.0
    for end, module, weight in ctx.branch_ends(block, "bn_scale"):
        if (module is not None and not isinstance(module, _NORMS)) or weight.dim() != 1:
            raise StructureError(f"bn_scale: the branch of block {block.name!r} ends in {end!r} ({type(module).__name__}), not a "
                                 f"normalization layer or layer scale; use importance='l2' or 'output_change'")
        total += mean_abs(weight)
    return total


@DEPTH_CRITERIA.register("l2", description="sum over branches of the RMS of the weight of the layer ending the branch; data-free")
def l2(block: ResidualBlock, ctx: DepthContext) -> float:
    return sum(rms(weight) for _, _, weight in ctx.branch_ends(block, "l2"))


@DEPTH_CRITERIA.register("output_change", description="relative change of the model output on the example inputs when the block alone is removed")
def output_change(block: ResidualBlock, ctx: DepthContext) -> float:
    reference = ctx.reference()
    original = replace_module(ctx.model, block.name, block.replacement(ctx.model))
    try:
        return relative_change(reference, ctx.outputs())
    finally:
        replace_module(ctx.model, block.name, original)


@DEPTH_CRITERIA.register("random", description="seeded uniform scores (baseline)")
def random_importance(block: ResidualBlock, ctx: DepthContext) -> float:
    return random.Random(f"{ctx.seed}:{block.name}").random()


class DepthConfig(Settings):
    """Settings of depth pruning (also the ``prune`` section of a ``depth`` recipe).

    One target: ``blocks`` (how many go), ``ratio`` (fraction of the removable blocks, rounded to
    the nearest count) or ``macs_reduction`` (2.0 = half the MACs). ``ignored`` holds fnmatch
    patterns of blocks that stay (e.g. ``["layer1.*"]``).
    """

    blocks: int | None = Field(None, ge=0, le=MAX_COUNT)
    ratio: float | None = Field(None, ge=0.0, le=1.0)
    macs_reduction: float | None = Field(None, ge=1.0, le=1e6)
    importance: str = "output_change"
    ignored: tuple[str, ...] = ()
    seed: Seed = 0

    @field_validator("importance")
    @classmethod
    def _known_importance(cls, value: str) -> str:
        return DEPTH_CRITERIA.check(value)

    @model_validator(mode="after")
    def _one_target(self) -> DepthConfig:
        targets = [n for n in ("blocks", "ratio", "macs_reduction") if getattr(self, n) is not None]
        if len(targets) != 1:
            raise ValueError(f"give exactly one target of blocks, ratio, macs_reduction (got {targets or 'none'})")
        return self


@dataclass
class DepthResult(CostChange):
    """What :func:`prune_depth` did: the blocks removed and what they cost, with every candidate's importance."""

    model: nn.Module
    removed: list[str]
    importance: dict[str, float]
    block_macs: dict[str, int]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    criterion: str
    not_removable: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        """Markdown table of the candidate blocks: importance, MACs, removed or kept."""
        rows = [f"| block | {self.criterion} | MACs | removed |", "|---|---:|---:|:---:|"]
        rows += [f"| {n} | {s:.4g} | {self.block_macs[n]:,} | {'yes' if n in self.removed else ''} |" for n, s in self.importance.items()]
        return "\n".join(rows)


def prune_depth(model: nn.Module, example_inputs: Any, config: DepthConfig | None = None, *, blocks: int | None = None,
                ratio: float | None = None, macs_reduction: float | None = None, importance: str | DepthCriterion | None = None,
                ignored: Sequence[str] | None = None, seed: int | None = None) -> DepthResult:
    """Remove ``model``'s least important residual blocks in place; see the module docstring.

    Settings are a :class:`DepthConfig` or its fields as keywords; ``importance`` may also be a
    callable ``(block, DepthContext) -> float``.
    """
    custom = importance if callable(importance) else None
    settings = {k: v for k, v in dict(blocks=blocks, ratio=ratio, macs_reduction=macs_reduction, importance=None if custom else importance,
                                       ignored=None if ignored is None else tuple(ignored), seed=seed).items() if v is not None}
    if config is not None and settings:
        raise ConfigError(f"prune_depth: pass either a DepthConfig or keyword settings, not both (got a config and {sorted(settings)})")
    try:
        cfg = config or DepthConfig(**settings)
    except ValueError as exc:
        raise ConfigError(f"prune_depth: {exc}") from None
    criterion = custom or DEPTH_CRITERIA.get(cfg.importance)
    label = getattr(custom, "__name__", "custom") if custom else cfg.importance
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    _check_patterns(model, cfg.ignored)
    found = find_blocks(model, inputs)
    candidates = [b for b in found if b.removable and not any(fnmatch.fnmatchcase(b.name, p) for p in cfg.ignored)]
    ctx = DepthContext(model, inputs, cfg.seed)
    scores = {b.name: float(criterion(b, ctx)) for b in candidates}
    macs_before, params_before = count_macs(model, inputs).dense, count_parameters(model).params
    chosen = _choose(cfg, model, candidates, scores, macs_before, found)
    shapes = [t.shape for t in ctx.reference()]
    for block in chosen:
        replace_module(model, block.name, block.replacement(model))
    _check_runs(ctx, shapes)
    return DepthResult(
        model=model, removed=[b.name for b in chosen], importance=scores, block_macs={b.name: b.macs for b in candidates},
        macs_before=macs_before, macs_after=count_macs(model, inputs).dense, params_before=params_before,
        params_after=count_parameters(model).params, criterion=label,
        not_removable={b.name: b.reason for b in found if not b.removable},
    )


def _choose(cfg: DepthConfig, model: nn.Module, candidates: list[ResidualBlock], scores: dict[str, float], macs: int,
            found: list[ResidualBlock]) -> list[ResidualBlock]:
    """The blocks to remove: the ``k`` lowest scores, or the lowest ones until the MACs target is met."""
    order = sorted(candidates, key=lambda b: scores[b.name])  # stable: ties go in model order
    n = len(order)
    if cfg.macs_reduction is not None:
        removed = 0
        for k, block in enumerate(order):
            if macs / max(1, macs - removed) >= cfg.macs_reduction:
                return order[:k]
            removed += block.macs
        if macs / max(1, macs - removed) >= cfg.macs_reduction:
            return order
        raise ConfigError(f"macs_reduction={cfg.macs_reduction:g} is out of reach by depth pruning {type(model).__name__}: removing all "
                          f"{n} removable residual blocks{_details(cfg, found, n)} gives {macs / max(1, macs - removed):.3g}x; ask for "
                          f"at most that, or combine with width pruning (prune_structured)")
    k = cfg.blocks if cfg.blocks is not None else int(math.floor((cfg.ratio or 0.0) * n + 0.5))
    if k > n:
        raise ConfigError(f"blocks={k}, but {type(model).__name__} has only {n} removable residual block(s){_details(cfg, found, n)}; "
                          f"ask for at most {n}")
    return order[:k]


def _details(cfg: DepthConfig, found: list[ResidualBlock], n: int) -> str:
    """Why there are not more candidates: non-removable blocks (with one reason) and ignored ones."""
    parts = []
    stuck = [b for b in found if not b.removable]
    if stuck:
        parts.append(f"{len(stuck)} more not removable, e.g. {stuck[0].name!r}: {stuck[0].reason}")
    skipped = sum(b.removable for b in found) - n
    if skipped:
        parts.append(f"{skipped} left out by ignored={list(cfg.ignored)}")
    return f" ({'; '.join(parts)})" if parts else ""


def _check_patterns(model: nn.Module, patterns: Sequence[str]) -> None:
    names = [n for n, _ in model.named_modules() if n]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        raise ConfigError(f"ignored: pattern(s) {unmatched} match no module of {type(model).__name__}; module names look like {names[:5]}")


def _check_runs(ctx: DepthContext, shapes: list[torch.Size]) -> None:
    try:
        got = [t.shape for t in ctx.outputs()]
    except Exception as exc:
        raise StructureError(f"the depth-pruned model no longer runs ({type(exc).__name__}: {exc}); please report this model") from exc
    if got != shapes:
        raise StructureError(f"the depth-pruned model's outputs changed shape: {shapes} -> {got}; please report this model")


def _flatten(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out.detach()]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten(o)]
    return []


__all__ = ["DEPTH_CRITERIA", "DepthConfig", "DepthContext", "DepthCriterion", "DepthResult", "ResidualBlock", "find_blocks", "mean_abs",
           "prune_depth", "relative_change", "rms"]

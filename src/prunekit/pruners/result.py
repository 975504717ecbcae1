"""What a structured pruning step reports: per-layer channel counts, MACs and params before/after."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from prunekit.deployment.runtimes import SpeedupCheck
from prunekit.layer_kinds import output_channels


@dataclass
class LayerChannels:
    """Output channels (or features) of one conv/linear layer before and after pruning."""

    name: str
    kind: str
    before: int
    after: int


class CostChange:
    """MACs/params before and after a pruning step, and their ratios (for result dataclasses with those four fields)."""

    macs_before: int
    macs_after: int
    params_before: int
    params_after: int

    @property
    def macs_reduction(self) -> float:
        return self.macs_before / max(1, self.macs_after)

    @property
    def params_reduction(self) -> float:
        return self.params_before / max(1, self.params_after)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values (without the model), with both reductions."""
        out = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in vars(self).items() if k != "model"}
        out.update(macs_reduction=self.macs_reduction, params_reduction=self.params_reduction)
        return out


@dataclass
class PruneResult(CostChange):
    """What one pruning step did."""

    model: nn.Module
    layers: list[LayerChannels]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    groups_pruned: int
    units_removed: int
    warnings: list[str] = field(default_factory=list)
    speedup: SpeedupCheck | None = None  # dense vs pruned timed side by side (StructuredConfig.measure_speedup)
    attention: dict[str, str] = field(default_factory=dict)  # {attention block: "heads" | "head_dims"} this step pruned by
    grouped_conv: dict[str, str] = field(default_factory=dict)  # {grouped conv: "channels" | "groups"} this step pruned by

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["layers"] = [asdict(layer) for layer in self.layers]
        return out

    def table(self) -> str:
        """Markdown table of per-layer channel counts."""
        rows = ["| layer | type | before | after |", "|---|---|---:|---:|"]
        rows += [f"| {x.name} | {x.kind} | {x.before} | {x.after} |" for x in self.layers]
        return "\n".join(rows)


def layer_channels(model: nn.Module) -> dict[str, tuple[str, int]]:
    """``{name: (type, output channels)}`` of the layers in :data:`prunekit.layer_kinds.LAYER_TABLE` (conv, transposed conv, linear)."""
    out = {}
    for name, m in model.named_modules():
        channels = output_channels(m)
        if channels is not None:
            out[name] = (type(m).__name__, channels)
    return out


__all__ = ["CostChange", "LayerChannels", "PruneResult", "layer_channels"]

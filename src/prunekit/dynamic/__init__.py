"""Input-dependent (dynamic) channel pruning: FBS-style gates on channel groups, a skip path that does not
compute skipped channels, gate rates and exact effective MACs per input, and the budget loss for training.

>>> gated = add_gates(model, torch.randn(1, 3, 32, 32), density=0.5)
>>> fit(gated, train, config, callbacks=[GateBudgetLoss(gated, 1e-4)])
>>> fast = skip_path(gated)          # inference, batch 1: only active channels are computed
>>> gate_stats(gated, test_batches).mean_macs
"""

from prunekit.dynamic.budget import GateBudgetLoss
from prunekit.dynamic.gates import ChannelGate, GatedModel, add_gates
from prunekit.dynamic.sites import GateSite, find_sites, why_not_gateable
from prunekit.dynamic.skip import SkipPathModel, skip_path
from prunekit.dynamic.stats import DynamicStats, GateRate, effective_macs, gate_stats

__all__ = ["ChannelGate", "DynamicStats", "GateBudgetLoss", "GateRate", "GateSite", "GatedModel", "SkipPathModel", "add_gates",
           "effective_macs", "find_sites", "gate_stats", "skip_path", "why_not_gateable"]

"""Importance criteria: tensors in, scores out."""

from prunekit.importance.calibration import ActivationStats, SquaredGradients, collect_activation_stats
from prunekit.importance.group import GROUP_CRITERIA, GroupCriterion, ScoringContext, make_criterion

__all__ = ["GROUP_CRITERIA", "ActivationStats", "GroupCriterion", "ScoringContext", "SquaredGradients", "collect_activation_stats", "make_criterion"]

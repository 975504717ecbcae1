"""Importance criteria: tensors in, scores out (higher = keep); they never see ratios."""

from prunekit.importance.calibration import ActivationStats, SquaredGradients, collect_activation_stats
from prunekit.importance.group import GROUP_CRITERIA, GroupCriterion, ScoringContext, make_criterion
from prunekit.importance.unstructured import UNSTRUCTURED_CRITERIA, Criterion, lamp, magnitude, random_scores, snip, taylor

__all__ = [
    "GROUP_CRITERIA", "UNSTRUCTURED_CRITERIA", "ActivationStats", "Criterion", "GroupCriterion", "ScoringContext",
    "SquaredGradients", "collect_activation_stats", "lamp", "magnitude", "make_criterion", "random_scores", "snip", "taylor",
]

"""Importance criteria: tensors in, scores out (higher = keep); they never see ratios."""

from prunekit.importance.calibration import (
    CALIBRATION_NEEDS, ActivationStats, Calibration, SquaredGradients, collect_activation_stats, collect_calibration, collect_gradients,
)
from prunekit.importance.group import GROUP_CRITERIA, GroupCriterion, NothingToScore, ScoringContext, make_criterion
from prunekit.importance.grasp import hessian_gradient_products
from prunekit.importance.synflow import synflow_gradients
from prunekit.importance.unstructured import UNSTRUCTURED_CRITERIA, Criterion, grasp, lamp, magnitude, random_scores, snip, synflow, taylor

__all__ = [
    "CALIBRATION_NEEDS", "GROUP_CRITERIA", "UNSTRUCTURED_CRITERIA", "ActivationStats", "Calibration", "Criterion",
    "GroupCriterion", "NothingToScore", "ScoringContext", "SquaredGradients", "collect_activation_stats", "collect_calibration", "collect_gradients", "grasp", "hessian_gradient_products", "lamp",
    "magnitude", "make_criterion", "random_scores", "snip", "synflow", "synflow_gradients", "taylor",
]

"""Importance criteria: tensors in, scores out (higher = keep)."""

from prunekit.importance.unstructured import UNSTRUCTURED_CRITERIA, Criterion, lamp, magnitude, random_scores, snip, taylor

__all__ = ["UNSTRUCTURED_CRITERIA", "Criterion", "lamp", "magnitude", "random_scores", "snip", "taylor"]

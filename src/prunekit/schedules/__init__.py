"""Sparsity schedules: pure ``sparsity_at(step)`` / ``should_prune(step)`` objects with a registry."""

from prunekit.schedules.base import SCHEDULES, Schedule, build_schedule
from prunekit.schedules.constant import Constant, OneShot
from prunekit.schedules.fractions import target_fractions
from prunekit.schedules.iterative import Iterative, cumulative_sparsity
from prunekit.schedules.polynomial import Cubic, PolynomialDecay

__all__ = ["SCHEDULES", "Constant", "Cubic", "Iterative", "OneShot", "PolynomialDecay", "Schedule", "build_schedule", "cumulative_sparsity", "target_fractions"]

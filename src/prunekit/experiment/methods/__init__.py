"""Pruning methods a recipe can name (``prune.method``): each turns the dense model into a pruned one."""

from collections.abc import Callable

from prunekit._registry import Registry
from prunekit.experiment.context import MethodResult, RunContext

METHODS: Registry[Callable[[RunContext], MethodResult]] = Registry("pruning method")

from prunekit.experiment.methods import dst, gradual, lottery, nm, structured, unstructured  # noqa: E402,F401  (registration)

__all__ = ["METHODS"]

"""Tiny recipes for fast end-to-end tests (digits, a few epochs)."""

from __future__ import annotations

from typing import Any


def tiny_recipe(**prune: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "model": {"name": "lenet_300_100"},
        "data": {"name": "digits", "batch_size": 128},
        "train": {"epochs": 3, "optimizer": {"name": "sgd", "lr": 0.05}},
        "prune": {
            "method": "unstructured", "criterion": "magnitude", "scope": "global", "sparsity": 0.8,
            "schedule": {"name": "iterative", "rate": 0.6, "final_sparsity": 0.8},
            "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}}, "baselines": ["random"], **prune,
        },
        "evaluate": {"latency_repeats": 2, "latency_batch_size": 8},
    }

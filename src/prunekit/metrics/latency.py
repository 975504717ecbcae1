"""Latency: median wall time after warm-up, measured side by side for fair ratios.

This machine (and most) is shared and noisy, so every comparison runs its candidates
interleaved, round-robin, in one process, and reports medians and ratios to a reference.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from prunekit.metrics._inputs import Inputs, as_args
from prunekit.progress import make_progress


@dataclass
class Latency:
    """Wall-time statistics of one callable, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    def to_dict(self) -> dict:
        return asdict(self)


def _stats(samples: list[float]) -> Latency:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return Latency(statistics.median(ordered) * 1e3, pick(0.1) * 1e3, pick(0.9) * 1e3, len(ordered))


def _as_callable(target: nn.Module | Callable[..., Any], example_inputs: Inputs) -> Callable[[], Any]:
    args = as_args(example_inputs)
    if isinstance(target, nn.Module):
        target.eval()

    def call() -> Any:
        with torch.inference_mode():
            return target(*args)

    return call


def measure_latency(
    target: nn.Module | Callable[..., Any],
    example_inputs: Inputs,
    warmup: int = 5,
    repeats: int = 30,
) -> Latency:
    """Median latency of ``target(*example_inputs)`` after ``warmup`` untimed calls."""
    return compare_latency({"target": target}, example_inputs, warmup=warmup, repeats=repeats)["target"]


def compare_latency(
    targets: Mapping[str, nn.Module | Callable[..., Any]],
    example_inputs: Inputs,
    warmup: int = 5,
    repeats: int = 30,
    min_time_s: float = 0.0,
    progress: bool = False,
    description: str = "timing",
) -> dict[str, Latency]:
    """Time several models/callables on the same inputs, interleaved round-robin.

    Each round calls every target once, in an order rotated every round, so drifts in machine
    load hit all of them alike. Runs at least ``repeats`` rounds and until ``min_time_s`` has passed.
    ``progress`` shows a bar over the rounds (updated between rounds, outside the timed calls).
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    calls = {name: _as_callable(t, example_inputs) for name, t in targets.items()}
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    start, rounds = time.perf_counter(), 0
    with make_progress(progress) as bar:
        task = bar.add_task(description, total=repeats, status="")
        while rounds < repeats or time.perf_counter() - start < min_time_s:
            order = names[rounds % len(names):] + names[: rounds % len(names)]
            for name in order:
                t0 = time.perf_counter()
                calls[name]()
                samples[name].append(time.perf_counter() - t0)
            rounds += 1
            bar.advance(task)
    return {name: _stats(values) for name, values in samples.items()}

"""Vectorised 1-D k-means (Lloyd) on sorted data with prefix sums.

In one dimension every k-means cluster is a contiguous run of the sorted values, bounded by the
midpoints between neighbouring centroids. So after one sort, each Lloyd iteration is a
``searchsorted`` of ``k - 1`` midpoints and ``k`` differences of a prefix-sum array: ``O(k log n)``
instead of ``O(n k)``. A million weights take well under a second.

Pure core: numpy arrays in, numpy arrays out.
"""

from __future__ import annotations

import zlib
from typing import Literal

import numpy as np

from prunekit.errors import ConfigError

InitMethod = Literal["linear", "density", "random"]
INIT_METHODS: tuple[str, ...] = ("linear", "density", "random")
_MAX_RESEED_ROUNDS = 8


def layer_seed(seed: int, name: str) -> np.random.Generator:
    """A generator seeded from ``seed`` and a layer name, so layers differ but runs repeat."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def init_centroids(sorted_values: np.ndarray, k: int, method: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Initial centroids (sorted, distinct, float64) for sorted 1-D data.

    - ``linear``: ``k`` points evenly spaced over ``[min, max]`` (Deep Compression's best choice:
      it keeps a few centroids on the rare large-magnitude weights).
    - ``density``: the ``(i + 0.5) / k`` quantiles, i.e. evenly spaced on the CDF's y-axis.
    - ``random``: ``k`` distinct observed values drawn with ``rng`` (Forgy).

    Fewer than ``k`` centroids come back when the data cannot give ``k`` distinct ones.
    """
    n = sorted_values.size
    if n == 0 or k <= 0:
        return np.empty(0, dtype=np.float64)
    lo, hi = float(sorted_values[0]), float(sorted_values[-1])
    if method == "linear":
        c = np.array([lo]) if k == 1 else np.linspace(lo, hi, k)
    elif method == "density":
        q = (np.arange(k, dtype=np.float64) + 0.5) / k
        c = sorted_values[np.minimum((q * n).astype(np.int64), n - 1)]
    elif method == "random":
        distinct = _distinct_sorted(sorted_values)
        gen = rng if rng is not None else np.random.default_rng(0)
        c = gen.choice(distinct, size=min(k, distinct.size), replace=False)
    else:
        raise ConfigError(f"unknown k-means init {method!r}; allowed values: {', '.join(INIT_METHODS)}")
    return np.unique(np.asarray(c, dtype=np.float64))


def kmeans_1d(
    values: np.ndarray,
    k: int,
    *,
    init: str = "linear",
    rng: np.random.Generator | None = None,
    max_iter: int = 300,
    reseed_empty: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster 1-D ``values`` into at most ``k`` groups.

    Returns ``(centroids, labels)``: ``centroids`` is sorted float64 with no empty cluster,
    ``labels[i]`` (int64) is the cluster of ``values[i]``. When the data have at most ``k`` distinct
    values the centroids are exactly those values (lossless). Ties at a midpoint go to the lower
    cluster. Deterministic for a given ``rng`` state.

    Lloyd's algorithm can leave clusters empty (e.g. ``linear`` init on pruned weights puts
    centroids in the empty band around zero). With ``reseed_empty`` each empty cluster is
    re-seeded by splitting the cluster with the largest squared error at its mean, and Lloyd
    resumes, so up to ``k`` codes are used; otherwise empty clusters are dropped.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)
    if not np.isfinite(x).all():
        raise ConfigError("k-means got non-finite values (NaN or inf); fix the weights before quantizing")
    if k < 1:
        raise ConfigError(f"k-means needs k >= 1, got {k}")
    s = np.sort(x)
    distinct = _distinct_sorted(s)
    if distinct.size <= k:
        return distinct, np.searchsorted(distinct, x).astype(np.int64)

    prefix = np.concatenate(([0.0], np.cumsum(s)))
    c = init_centroids(s, k, init, rng)
    for round_ in range(_MAX_RESEED_ROUNDS + 1):
        c, splits = _lloyd(c, s, prefix, max(1, max_iter))
        counts = np.diff(np.concatenate(([0], splits, [s.size])))
        n_empty = int((counts == 0).sum()) + (k - c.size)
        if not reseed_empty or n_empty == 0 or round_ == _MAX_RESEED_ROUNDS:
            break
        live = counts > 0
        reseeded = _split_worst(c[live], _edges(splits, s.size)[:, live], s, prefix, n_empty)
        if reseeded.size <= int(live.sum()):
            break  # nothing left to split (every cluster holds a single distinct value)
        c = reseeded
    # Final assignment with the final centroids; code values are the exact member means (summed per
    # cluster, not from prefix differences, and clamped into the cluster's range so they stay ordered).
    mids = (c[:-1] + c[1:]) * 0.5
    edges = np.concatenate(([0], np.searchsorted(s, mids, side="right"), [s.size]))
    counts = np.diff(edges)
    live = counts > 0
    starts, ends = edges[:-1][live], edges[1:][live]
    means = np.add.reduceat(s, starts) / counts[live]
    centroids = np.clip(means, s[starts], s[ends - 1])
    labels = np.searchsorted(mids, x, side="left")  # same rule as the splits: x <= mid goes left
    if not live.all():
        labels = (np.cumsum(live) - 1)[labels]
    return centroids, labels.astype(np.int64)


def _lloyd(c: np.ndarray, s: np.ndarray, prefix: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations until the partition stops changing; returns (centroids, splits)."""
    splits = None
    for _ in range(max_iter):
        new_splits = np.searchsorted(s, (c[:-1] + c[1:]) * 0.5, side="right")
        c = _update(c, new_splits, prefix, s.size)
        if splits is not None and np.array_equal(new_splits, splits):
            return c, new_splits
        splits = new_splits
    return c, np.searchsorted(s, (c[:-1] + c[1:]) * 0.5, side="right")


def _edges(splits: np.ndarray, n: int) -> np.ndarray:
    """``[[start...], [end...]]`` of each cluster in the sorted data."""
    edges = np.concatenate(([0], splits, [n]))
    return np.stack([edges[:-1], edges[1:]])


def _split_worst(c: np.ndarray, bounds: np.ndarray, s: np.ndarray, prefix: np.ndarray, n_new: int) -> np.ndarray:
    """Split the (up to) ``n_new`` non-empty clusters of largest squared error in two at their mean."""
    start, end = bounds
    count = end - start
    mean = (prefix[end] - prefix[start]) / count
    member = np.repeat(np.arange(c.size), count)
    sse = np.bincount(member, weights=np.square(s - mean[member]), minlength=c.size)
    worst = np.argsort(-sse, kind="stable")[:n_new]
    keep = np.ones(c.size, dtype=bool)
    halves = []
    for i in worst[sse[worst] > 0].tolist():
        a, b = int(start[i]), int(end[i])
        cut = a + int(np.searchsorted(s[a:b], mean[i], side="right"))
        if a < cut < b:
            keep[i] = False
            halves.append((prefix[cut] - prefix[a]) / (cut - a))
            halves.append((prefix[b] - prefix[cut]) / (b - cut))
    return np.unique(np.concatenate([c[keep], np.asarray(halves, dtype=np.float64)]))


def _update(c: np.ndarray, splits: np.ndarray, prefix: np.ndarray, n: int) -> np.ndarray:
    edges = np.concatenate(([0], splits, [n]))
    counts = np.diff(edges)
    sums = prefix[edges[1:]] - prefix[edges[:-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    # Means of contiguous sorted runs are ordered; accumulate guards against prefix-sum rounding.
    return np.maximum.accumulate(np.where(counts > 0, means, c))


def _distinct_sorted(s: np.ndarray) -> np.ndarray:
    if s.size == 0:
        return s
    return s[np.concatenate(([True], s[1:] != s[:-1]))]

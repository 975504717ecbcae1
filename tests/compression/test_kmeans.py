"""1-D k-means: initialisation, convergence, determinism, empty clusters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.compression.kmeans import init_centroids, kmeans_1d
from prunekit.errors import ConfigError


def test_linear_init_is_evenly_spaced_between_min_and_max():
    s = np.sort(np.random.default_rng(0).normal(size=1000))
    c = init_centroids(s, 5, "linear")
    np.testing.assert_allclose(c, np.linspace(s[0], s[-1], 5))


def test_density_init_follows_the_cdf():
    s = np.sort(np.random.default_rng(0).exponential(size=10_000))
    c = init_centroids(s, 4, "density")
    cdf_at_c = np.searchsorted(s, c, side="right") / s.size
    np.testing.assert_allclose(cdf_at_c, [0.125, 0.375, 0.625, 0.875], atol=1e-3)
    # density puts centroids where the data are: more of them below the mean than linear does
    assert (c < s.mean()).sum() > (init_centroids(s, 4, "linear") < s.mean()).sum()


def test_random_init_is_seeded_and_draws_observed_values():
    s = np.sort(np.random.default_rng(0).normal(size=500))
    a = init_centroids(s, 8, "random", np.random.default_rng(3))
    b = init_centroids(s, 8, "random", np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert np.isin(a, s).all() and a.size == 8
    with pytest.raises(ConfigError, match="unknown k-means init"):
        init_centroids(s, 8, "kmeans++")


@pytest.mark.parametrize("init", ["linear", "density"])
def test_recovers_well_separated_clusters(init):
    rng = np.random.default_rng(1)
    centres = np.array([-3.0, -1.0, 0.5, 2.0])
    x = np.concatenate([c + 0.01 * rng.standard_normal(2000) for c in centres])
    c, labels = kmeans_1d(x, 4, init=init, rng=np.random.default_rng(0))
    np.testing.assert_allclose(c, centres, atol=0.005)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(4), 2000))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=300), st.integers(1, 6), st.sampled_from(["linear", "density", "random"]))
def test_partition_properties(values, bits, init):
    x = np.array(values)
    k = 1 << bits
    c, labels = kmeans_1d(x, k, init=init, rng=np.random.default_rng(0))
    assert 1 <= c.size <= k and (np.diff(c) > 0).all()
    assert np.bincount(labels, minlength=c.size).min() > 0  # no empty cluster survives
    # 1-D clusters are contiguous: sorting by value sorts the labels
    order = np.argsort(x, kind="stable")
    assert (np.diff(labels[order]) >= 0).all()
    if np.unique(x).size <= k:
        np.testing.assert_array_equal(c[labels], x)  # lossless when few distinct values


def test_random_init_reaches_a_lloyd_fixed_point():
    # Forgy init can land in a local optimum (two seeds in one cluster); what it must reach is a
    # partition whose centroids are its means and whose members are nearest to their centroid.
    rng = np.random.default_rng(1)
    x = np.concatenate([c + 0.01 * rng.standard_normal(500) for c in (-3.0, -1.0, 0.5, 2.0)])
    for seed in range(5):
        c, labels = kmeans_1d(x, 4, init="random", rng=np.random.default_rng(seed))
        np.testing.assert_allclose(c, np.bincount(labels, weights=x) / np.bincount(labels), atol=1e-12)
        assert (np.abs(x[:, None] - c[None, :]).argmin(axis=1) == labels).all()


def test_converged_centroids_are_cluster_means_and_nearest():
    x = np.random.default_rng(2).laplace(size=20_000)
    c, labels = kmeans_1d(x, 16)
    means = np.bincount(labels, weights=x) / np.bincount(labels)
    np.testing.assert_allclose(c, means, rtol=1e-9, atol=1e-12)
    nearest = np.abs(x[:, None] - c[None, :]).argmin(axis=1)
    assert (nearest == labels).mean() > 0.999  # exact ties at midpoints aside


def test_empty_clusters_from_linear_init_are_reseeded():
    rng = np.random.default_rng(0)
    w = rng.normal(size=50_000)
    w = w[np.abs(w) > 1.0]  # pruned: nothing near zero, so linear init leaves centroids idle
    reseeded, _ = kmeans_1d(w, 64, reseed_empty=True)
    dropped, _ = kmeans_1d(w, 64, reseed_empty=False)
    assert reseeded.size == 64 and dropped.size < 64
    err = lambda c: np.min(np.abs(w[:, None] - c[None, :]), axis=1).var()  # noqa: E731
    assert err(reseeded) < err(dropped)


def test_deterministic_and_rejects_non_finite():
    x = np.random.default_rng(4).normal(size=5000)
    a = kmeans_1d(x, 32, init="random", rng=np.random.default_rng(9))
    b = kmeans_1d(x, 32, init="random", rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ConfigError, match="non-finite"):
        kmeans_1d(np.array([1.0, np.nan]), 2)
    c, labels = kmeans_1d(np.array([]), 4)
    assert c.size == 0 and labels.size == 0

"""Prune potential on synthetic sweeps: the largest ratio within δ of dense, per distribution."""

import pytest

from prunekit.metrics import prune_potential

DENSE = {"test": 0.98, "fog": 0.80}
SWEEP = [
    (0.5, {"test": 0.981, "fog": 0.797}),
    (0.8, {"test": 0.977, "fog": 0.790}),  # fog leaves the 0.5-point band here ...
    (0.9, {"test": 0.9751, "fog": 0.796}),  # ... and comes back: non-monotone
    (0.95, {"test": 0.960, "fog": 0.70}),
]


def test_largest_ratio_within_half_a_point_per_distribution() -> None:
    # test: 0.9751 ≥ 0.98 − 0.005 at 0.9, 0.960 not at 0.95; fog: 0.796 ≥ 0.795 at 0.9 although 0.8 fell out
    assert prune_potential(SWEEP, DENSE) == {"test": 0.9, "fog": 0.9}


def test_the_band_edge_counts_and_delta_is_settable() -> None:
    assert prune_potential([(2.0, {"test": 0.975})], {"test": 0.98}) == {"test": 2.0}  # exactly dense − δ
    assert prune_potential(SWEEP, DENSE, delta=0.001) == {"test": 0.5, "fog": None}
    assert prune_potential(SWEEP, DENSE, delta=0.2) == {"test": 0.95, "fog": 0.95}


def test_no_qualifying_ratio_is_none_and_order_does_not_matter() -> None:
    assert prune_potential([(0.5, {"test": 0.5})], {"test": 0.9}) == {"test": None}
    assert prune_potential(list(reversed(SWEEP)), DENSE) == prune_potential(SWEEP, DENSE)
    assert prune_potential([], DENSE) == {"test": None, "fog": None}


def test_missing_distributions_and_negative_delta_are_refused() -> None:
    with pytest.raises(ValueError, match=r"sweep point at ratio 0.5 has no accuracy for 'fog' \(it has \['test'\]\)"):
        prune_potential([(0.5, {"test": 0.98})], DENSE)
    with pytest.raises(ValueError, match="delta must be >= 0, got -0.1"):
        prune_potential(SWEEP, DENSE, delta=-0.1)

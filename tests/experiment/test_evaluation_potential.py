"""The run summary's prune potential on test, from the curve of each method."""

from prunekit.experiment.evaluation import curve_prune_potential


def test_curve_prune_potential_per_method() -> None:
    curve = [{"method": "magnitude", "fraction_remaining": 0.5, "accuracy": 0.979},
             {"method": "magnitude", "fraction_remaining": 0.1, "accuracy": 0.975},  # exactly dense − 0.5 points: counts
             {"method": "random", "fraction_remaining": 0.5, "accuracy": 0.90}]
    assert curve_prune_potential(curve, 0.98) == {"delta": 0.005, "methods": {"magnitude": 0.9, "random": None}}
    assert curve_prune_potential(curve, 0.98, delta=0.001) == {"delta": 0.001, "methods": {"magnitude": 0.5, "random": None}}
    assert curve_prune_potential([], 0.98) == {"delta": 0.005, "methods": {}}

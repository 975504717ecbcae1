import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.errors import ConfigError
from prunekit.pruners.allocation import DENSITY_DISTRIBUTIONS, erk_densities, kept_counts, layer_sparsities, prune_count


def test_prune_count_rounds_half_up():
    assert [prune_count(10, s) for s in (0.0, 0.25, 0.26, 0.5, 0.999)] == [0, 3, 3, 5, 10]
    assert prune_count(5, 0.5) == 3


def test_layer_sparsities_first_match_wins_and_typos_fail():
    names = ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert layer_sparsities(names, 0.2, {"fc3.*": 0.1, "fc*": 0.5}) == {"fc1.weight": 0.5, "fc2.weight": 0.5, "fc3.weight": 0.1}
    with pytest.raises(ConfigError, match="conv"):
        layer_sparsities(names, 0.2, {"conv*": 0.1})


@settings(max_examples=50, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=5),
    density=st.floats(0.01, 1.0),
    name=st.sampled_from(DENSITY_DISTRIBUTIONS.names()),
)
def test_contract_densities_and_counts_are_exact(shapes, density, name):
    shapes = {f"l{i}": s for i, s in enumerate(shapes)}
    numels = {n: math.prod(s) for n, s in shapes.items()}
    densities = DENSITY_DISTRIBUTIONS.get(name)(shapes, density)
    assert all(0 < d <= 1 + 1e-9 for d in densities.values())
    assert sum(densities[n] * numels[n] for n in shapes) == pytest.approx(density * sum(numels.values()))
    total = round(density * sum(numels.values()))
    counts = kept_counts(numels, densities, total)
    assert sum(counts.values()) == total
    assert all(0 <= counts[n] <= numels[n] and abs(counts[n] - densities[n] * numels[n]) < 2 for n in shapes)


def test_erk_gives_small_layers_higher_density_and_caps_at_one():
    shapes = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}
    d = erk_densities(shapes, 0.1)
    assert d["fc1"] < d["fc2"] < d["fc3"]
    # density ∝ (n_in + n_out) / (n_in · n_out) for the layers that are not capped
    assert d["fc1"] / d["fc2"] == pytest.approx(((300 + 784) / (300 * 784)) / ((100 + 300) / (100 * 300)))
    capped = erk_densities({"big": (1000, 1000), "tiny": (2, 2)}, 0.5)
    assert capped["tiny"] == 1.0


def test_kept_counts_rejects_impossible_totals():
    with pytest.raises(ConfigError):
        kept_counts({"a": 3}, {"a": 1.0}, 4)

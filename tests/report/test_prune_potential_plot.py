"""The accuracy-vs-ratio figure: one line per distribution, its dense level, a star at its potential."""

import pytest
from matplotlib import pyplot as plt

from prunekit.metrics import prune_potential
from prunekit.report import plots

DENSE = {"test": 0.98, "fog": 0.80}
SWEEP = [(0.9, {"test": 0.975, "fog": 0.70}), (0.5, {"test": 0.981, "fog": 0.797})]


def test_accuracy_vs_ratio_lines_dense_levels_and_potential_stars() -> None:
    potential = prune_potential(SWEEP, DENSE)
    assert potential == {"test": 0.9, "fog": 0.5}
    fig = plots.accuracy_vs_ratio(SWEEP, DENSE, potential, xlabel="fraction pruned")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["test", "fog"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("fraction pruned", "accuracy (%)")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["test"].get_xdata()) == [0.5, 0.9]  # sorted by ratio
    assert list(lines["fog"].get_ydata()) == pytest.approx([79.7, 70.0])
    stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
    assert sorted((list(s.get_xdata()), list(s.get_ydata())) for s in stars) == [([0.5], [pytest.approx(79.7)]), ([0.9], [97.5])]
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":")
    assert levels == pytest.approx([80.0, 98.0])
    plt.close(fig)


def test_no_star_where_nothing_qualifies() -> None:
    fig = plots.accuracy_vs_ratio(SWEEP, DENSE, {"test": None, "fog": None})
    assert not [line for line in fig.axes[0].get_lines() if line.get_marker() == "*"]
    assert fig.axes[0].get_title() == "Accuracy vs prune ratio per distribution (★ prune potential)"
    plt.close(fig)

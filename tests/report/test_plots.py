"""report.plots: figures from small data, written as valid PNG files of the promised size.

Oracles: the PNG signature and IHDR chunk (width, height = figure inches × 110 dpi, as
``save_png`` promises), the bytes on disk equal to the bytes returned, and what the axes hold.
"""

import struct

import matplotlib
import pytest
from matplotlib import pyplot as plt

from prunekit.report import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def save(fig, tmp_path, name: str) -> bytes:
    path = tmp_path / name
    data = plots.save_png(fig, str(path))
    assert path.read_bytes() == data
    assert data.endswith(b"IEND\xaeB`\x82")  # the closing chunk: a complete file
    assert len(data) > 1000
    return data


def test_backend_is_agg() -> None:
    assert matplotlib.get_backend().lower() == "agg"


CURVE = [
    {"method": "magnitude", "round": 1, "fraction_remaining": 0.5, "accuracy": 0.97},
    {"method": "magnitude", "round": 2, "fraction_remaining": 0.25, "accuracy": 0.96},
    {"method": "magnitude", "round": 3, "fraction_remaining": 0.125, "accuracy": 0.93},
    {"method": "random", "round": 1, "fraction_remaining": 0.5, "accuracy": 0.95, "accuracy_std": 0.01},
    {"method": "random", "round": 2, "fraction_remaining": 0.25, "accuracy": 0.90, "accuracy_std": 0.02},
]


def test_accuracy_vs_remaining(tmp_path) -> None:
    fig = plots.accuracy_vs_remaining(CURVE, dense_accuracy=0.98)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    assert ax.get_title() == "Accuracy vs weights remaining"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("weights remaining (%)", "test accuracy (%)")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dense", "magnitude", "random"]
    series = {c.get_label(): c for c in ax.containers}  # one errorbar container per method
    assert list(series) == ["magnitude", "random"]
    assert list(series["magnitude"].lines[0].get_xdata()) == [50.0, 25.0, 12.5]  # largest fraction first
    assert list(series["magnitude"].lines[0].get_ydata()) == pytest.approx([97.0, 96.0, 93.0])
    assert series["magnitude"].has_yerr is False and series["random"].has_yerr is True  # bars only where a std is given
    dense = [line for line in ax.get_lines() if line.get_label() == "dense"]
    assert list(dense[0].get_ydata()) == [98.0, 98.0]
    # few points: ticks sit at the data, labelled in plain numbers
    assert sorted(ax.get_xticks()) == [12.5, 25.0, 50.0]
    assert ax.xaxis.get_major_formatter()(12.5, 0) == "12.5"
    assert png_size(save(fig, tmp_path, "curve.png")) == (round(6.4 * 110), round(4.2 * 110))


def test_accuracy_vs_remaining_draws_the_spread_as_a_band() -> None:
    fig = plots.accuracy_vs_remaining(CURVE, spread="band")
    ax = fig.axes[0]
    assert not ax.containers  # no error bars
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["random"].get_ydata()) == pytest.approx([95.0, 90.0])
    (band,) = ax.collections  # only "random" has a std
    assert band.get_facecolor()[0][:3] == pytest.approx(matplotlib.colors.to_rgb(lines["random"].get_color()))
    ys = band.get_paths()[0].vertices[:, 1]
    assert (min(ys), max(ys)) == pytest.approx((88.0, 96.0))
    plt.close(fig)


def test_accuracy_vs_remaining_without_dense_line_and_with_a_title() -> None:
    fig = plots.accuracy_vs_remaining(CURVE[:1], title="mine")
    ax = fig.axes[0]
    assert ax.get_title() == "mine"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["magnitude"]
    plt.close(fig)


def test_layer_bars_width_grows_with_the_layer_count(tmp_path) -> None:
    names = [f"layer{i}" for i in range(20)]
    fig = plots.layer_bars(names, {"before": list(range(20)), "after": [v / 2 for v in range(20)]}, "output channels", "Channels")
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 20
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert ax.get_title() == "Channels" and ax.get_ylabel() == "output channels"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["before", "after"]
    assert [p.get_height() for p in ax.patches[:3]] == [0, 1, 2]
    assert png_size(save(fig, tmp_path, "bars.png")) == (round((0.35 * 20 + 2) * 110), round(4.2 * 110))
    one = plots.layer_bars(["a", "b"], {"kept fraction": [0.5, 0.25]}, "fraction", "Kept")
    assert one.axes[0].get_legend() is None  # one series: no legend
    assert png_size(save(one, tmp_path, "one.png")) == (round(6.4 * 110), round(4.2 * 110))  # at least 6.4 inches wide


def test_training_curves(tmp_path) -> None:
    records = [
        {"kind": "epoch", "phase": "dense", "epoch": 0, "train_loss": 1.0, "val_accuracy": 0.8},
        {"kind": "epoch", "phase": "dense", "epoch": 1, "train_loss": 0.5, "val_accuracy": 0.9},
        {"kind": "epoch", "phase": "finetune", "method": "magnitude", "epoch": 0, "train_loss": 0.7},
    ]
    fig = plots.training_curves(records)
    loss, acc = fig.axes
    by_label = {line.get_label(): line for line in loss.get_lines()}
    assert list(by_label) == ["dense", "finetune magnitude"]
    assert list(by_label["dense"].get_xdata()) == [0, 1] and list(by_label["finetune magnitude"].get_xdata()) == [2]
    assert list(by_label["dense"].get_ydata()) == [1.0, 0.5]
    acc_lines = {line.get_label(): line for line in acc.get_lines()}
    assert list(acc_lines["dense"].get_ydata()) == pytest.approx([80.0, 90.0])
    assert list(acc_lines["finetune magnitude"].get_ydata()) == []  # no validation in that phase
    assert png_size(save(fig, tmp_path, "train.png")) == (10 * 110, round(3.8 * 110))


def test_sensitivity_curves(tmp_path) -> None:
    fig = plots.sensitivity_curves([0.5, 0.9], {"fc1.weight": [0.97, 0.9], "fc2.weight": [0.96, 0.5]}, baseline=0.98)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"fc1.weight", "fc2.weight", "unpruned"}
    assert list(lines["fc2.weight"].get_xdata()) == [50.0, 90.0]
    assert list(lines["fc2.weight"].get_ydata()) == pytest.approx([96.0, 50.0])
    assert png_size(save(fig, tmp_path, "sens.png")) == (round(6.4 * 110), round(4.2 * 110))


def test_save_png_closes_the_figure_and_creates_folders(tmp_path) -> None:
    before = set(plt.get_fignums())
    fig = plots.layer_bars(["a"], {"x": [1.0]}, "y", "t")
    data = plots.save_png(fig, str(tmp_path / "deep" / "er" / "x.png"))
    assert set(plt.get_fignums()) == before
    assert (tmp_path / "deep" / "er" / "x.png").read_bytes() == data
    assert [p.name for p in (tmp_path / "deep" / "er").iterdir()] == ["x.png"]  # no temporary file left

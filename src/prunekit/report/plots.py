"""Matplotlib figures for reports (Agg backend; figures are returned, never shown)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402


def _plain_log_ticks(ax, xs: Sequence[float], max_ticks: int = 8) -> None:
    """Label a log x axis in plain numbers: at the data points when they are few, else at decades."""
    ticks = sorted(set(xs))
    if 0 < len(ticks) <= max_ticks:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def accuracy_vs_remaining(curve: Sequence[Mapping[str, Any]], dense_accuracy: float | None = None, title: str = "", *,
                          spread: Literal["bars", "band"] = "bars") -> Figure:
    """Test accuracy against the fraction of weights remaining (log x), one line per method.

    ``curve`` rows need ``method``, ``fraction_remaining`` and ``accuracy`` (optionally ``accuracy_std``,
    drawn as error bars or, with ``spread="band"``, as a shaded band of ± one std).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    by_method: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in curve:
        by_method[row["method"]].append(row)
    for method, rows in by_method.items():
        rows = sorted(rows, key=lambda r: -r["fraction_remaining"])
        xs = [100 * r["fraction_remaining"] for r in rows]
        ys = [100 * r["accuracy"] for r in rows]
        errs = [100 * r.get("accuracy_std", 0.0) for r in rows]
        if spread == "band":
            (line,) = ax.plot(xs, ys, marker="o", ms=4, label=method)
            if any(errs):
                ax.fill_between(xs, [y - e for y, e in zip(ys, errs)], [y + e for y, e in zip(ys, errs)], color=line.get_color(), alpha=0.2, lw=0)
        else:
            ax.errorbar(xs, ys, yerr=errs if any(errs) else None, marker="o", ms=4, capsize=3, label=method)
    if dense_accuracy is not None:
        ax.axhline(100 * dense_accuracy, color="black", ls="--", lw=1, label="dense")
    ax.set_xscale("log")
    _plain_log_ticks(ax, [100 * r["fraction_remaining"] for r in curve])
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "Accuracy vs weights remaining")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def layer_bars(names: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str, title: str) -> Figure:
    """Grouped bars per layer (e.g. kept fraction, or channels before/after)."""
    fig, ax = plt.subplots(figsize=(max(6.4, 0.35 * len(names) + 2), 4.2))
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(names))], values, width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def training_curves(records: Sequence[Mapping[str, Any]]) -> Figure:
    """Loss and accuracy per epoch for every training phase, laid end to end."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = 0
    phases: dict[str, list[tuple[int, Mapping[str, Any]]]] = defaultdict(list)
    for rec in records:
        label = " ".join(str(rec[k]) for k in ("phase", "method") if rec.get(k) is not None) or "train"
        phases[label].append((x, rec))
        x += 1
    for phase, rows in phases.items():
        xs = [i for i, _ in rows]
        ax_loss.plot(xs, [r["train_loss"] for _, r in rows], ".-", label=phase)
        acc_rows = [(i, r) for i, r in rows if "val_accuracy" in r]
        ax_acc.plot([i for i, _ in acc_rows], [100 * r["val_accuracy"] for _, r in acc_rows], ".-", label=phase)
    ax_loss.set_xlabel("epoch (all phases, in order)")
    ax_loss.set_ylabel("training loss")
    ax_acc.set_xlabel("epoch (all phases, in order)")
    ax_acc.set_ylabel("validation accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sensitivity_curves(sparsities: Sequence[float], accuracy: Mapping[str, Sequence[float]], baseline: float, *,
                       xlabel: str = "sparsity of the layer (%)", title: str = "Per-layer sensitivity (one layer pruned at a time)") -> Figure:
    """Accuracy with one layer (or channel group) pruned, against its sparsity (one line per layer)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for layer, values in accuracy.items():
        ax.plot([100 * s for s in sparsities], [100 * v for v in values], marker="o", ms=3, label=layer)
    ax.axhline(100 * baseline, color="black", ls="--", lw=1, label="unpruned")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def allocations(layers: Sequence[str], kept: Mapping[str, Sequence[float]]) -> Figure:
    """Fraction of each layer's output channels kept, one line per variant (e.g. searched vs uniform vs global)."""
    fig, ax = plt.subplots(figsize=(max(6.4, 0.18 * len(layers)), 3.8))
    for name, fractions in kept.items():
        ax.plot(range(len(layers)), fractions, marker="o", ms=3, label=name)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=90, fontsize=5)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("output channels kept (fraction)")
    ax.set_title("Per-layer allocation of each variant")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def layer_staircases(layers: Mapping[str, Mapping[str, Any]], kept: Mapping[str, int], step: int, runtime: str) -> Figure:
    """Each layer's latency against its output channels (a panel per layer), its pruned width and the runtime's step marked."""
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.4), squeeze=False)
    for ax, (name, data) in zip(axes[0], layers.items()):
        counts = data["counts"]
        ax.plot(counts, data["ms"], marker="o", ms=3)
        for c in counts:
            if step > 1 and c % step == 0:
                ax.axvline(c, color="grey", lw=0.5, alpha=0.5)
        if name in kept:
            ax.axvline(kept[name], color="tab:red", lw=1.2, label=f"pruned: {kept[name]}")
            ax.legend(fontsize=7)
        ax.set_title(f"{name} ({data['inputs']} in)", fontsize=9)
        ax.set_xlabel("output channels")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(f"latency on {runtime} (ms, median)")
    fig.tight_layout()
    return fig


def channel_staircase(staircase: Mapping[str, Any]) -> Figure:
    """Latency of a 3×3 conv against its output and input channel counts, the measured step marked."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    counts = staircase["counts"]
    ax.plot(counts, staircase["out_ms"], marker="o", ms=3, label="output channels (input at the widest)")
    ax.plot(counts, staircase["in_ms"], marker="s", ms=3, label="input channels (output at the widest)")
    for c in counts:
        if c % staircase["step"] == 0:
            ax.axvline(c, color="grey", lw=0.5, alpha=0.5)
    ax.set_xlabel("channels")
    ax.set_ylabel("latency (ms, median)")
    ax.set_title(f"Channel staircase of {staircase['runtime']} (batch {staircase.get('batch_size')}): step {staircase['step']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path: str) -> bytes:
    """Write ``fig`` as PNG (atomically) and return the bytes (for embedding in HTML)."""
    import io

    from prunekit._io import write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data = buffer.getvalue()
    write_bytes(path, data)
    return data


def accuracy_vs_ratio(sweep: Sequence[tuple[float, Mapping[str, float]]], dense: Mapping[str, float],
                      potential: Mapping[str, float | None] | None = None, xlabel: str = "prune ratio", title: str = "") -> Figure:
    """Accuracy against the prune ratio, one line per distribution (test, each corruption...), with its
    dense accuracy as a dotted line of the same colour and its prune potential (if given) as a marker."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    points = sorted(sweep, key=lambda p: p[0])
    for name, reference in dense.items():
        (line,) = ax.plot([p[0] for p in points], [100 * p[1][name] for p in points], marker="o", ms=4, label=name)
        ax.axhline(100 * reference, color=line.get_color(), ls=":", lw=1)
        at = (potential or {}).get(name)
        if at is not None:
            ax.plot([at], [100 * dict(points)[at][name]], marker="*", ms=12, color=line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy vs prune ratio per distribution (★ prune potential)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_vs_cost(points: Sequence[Mapping[str, Any]], *axes: tuple[str, str], title: str = "") -> Figure:
    """One panel per ``(key, label)`` in ``axes``: accuracy (``points[i]["accuracy"]``) against that cost, a labelled marker per ``method``."""
    fig, panels = plt.subplots(1, len(axes), figsize=(5.2 * len(axes), 4.0), squeeze=False)
    for ax, (key, label) in zip(panels[0], axes):
        for p in points:
            if p.get("accuracy") is None:
                continue
            ax.plot([p[key]], [100 * p["accuracy"]], marker="o", ms=6, ls="", label=p["method"])
            ax.annotate(p["method"], (p[key], 100 * p["accuracy"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def macs_histogram(counts: Sequence[int], edges: Sequence[float], dense: float | None = None, title: str = "") -> Figure:
    """Histogram of effective MACs per input (``counts`` over bin ``edges``, as ``numpy.histogram`` gives), with the dense count as a line."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    scale = 1e6
    widths = [(b - a) / scale for a, b in zip(edges[:-1], edges[1:])]
    ax.bar([a / scale for a in edges[:-1]], counts, width=[w if w > 0 else 0.01 for w in widths], align="edge", edgecolor="black", lw=0.3)
    if dense is not None:
        ax.axvline(dense / scale, color="grey", ls=":", label="dense")
        ax.legend(fontsize=8)
    ax.set_xlabel("effective MACs per input (M)")
    ax.set_ylabel("inputs")
    ax.set_title(title or "MACs per input")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig

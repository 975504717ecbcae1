"""Build ``report.md`` and a self-contained ``report.html`` (plots embedded) from a run's records."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

from prunekit._io import read_jsonl, write_text
from prunekit.report import plots
from prunekit.report.tables import Table

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:.9em}code{background:#f3f3f3;padding:1px 4px}
"""


def summary_tables(summary: dict[str, Any]) -> list[Table]:
    """Tables for a run summary: headline, curve, per-layer, per-class."""
    dense, pruned = summary["dense"], summary["pruned"]
    pct = lambda v: None if v is None else round(100 * v, 2)  # noqa: E731
    rows = []
    for key, label in (
        ("accuracy", "test accuracy (%)"),
        ("params", "parameters"),
        ("nonzero_params", "nonzero parameters"),
        ("macs", "MACs / example"),
        ("effective_macs", "effective MACs / example"),
        ("disk_bytes", "size on disk (safetensors)"),
        ("disk_compressed_bytes", "size on disk (xz-compressed)"),
        ("latency_ms", "latency (ms, median)"),
    ):
        if key in dense or key in pruned:
            convert = pct if key == "accuracy" else (lambda v: v)
            rows.append([label, convert(dense.get(key)), convert(pruned.get(key))])
    headline = [
        ["compression ratio (params / nonzero params)", summary.get("compression_ratio")],
        ["theoretical speed-up (dense / effective MACs)", summary.get("theoretical_speedup")],
    ]
    if "measured_speedup" in summary:
        where = summary.get("latency_runtime", "torch") + (f", batch {summary['latency_batch_size']}" if "latency_batch_size" in summary else "")
        headline.append([f"measured speed-up (latency ratio; {where})", summary["measured_speedup"]])
    if "agreement" in pruned:
        headline.append(["agreement with dense predictions (%)", pct(pruned["agreement"])])
    tables = [
        Table("Dense vs pruned", ["metric", "dense", "pruned"], rows, note=summary.get("counting_note", "")),
        Table("Headline", ["measure", "value"], headline),
    ]
    if summary.get("curve"):
        tables.append(
            Table(
                "Accuracy vs weights remaining",
                ["method", "round", "weights remaining (%)", "test accuracy (%)"],
                [[r["method"], r.get("round"), pct(r["fraction_remaining"]), pct(r["accuracy"])] for r in summary["curve"]],
            )
        )
    layers = summary.get("layers") or []
    potential = summary.get("prune_potential")
    if potential and potential.get("methods"):
        tables.append(_prune_potential_table(potential))
    if layers:
        keys = [k for k in layers[0] if k != "name"]
        tables.append(Table("Per layer", ["layer", *keys], [[row["name"], *[row[k] for k in keys]] for row in layers]))
    dynamic = summary.get("dynamic")
    if dynamic:
        latency = dynamic.get("latency_b1_ms", {})
        tables.append(Table(
            "Dynamic gates (effective MACs per test input)",
            ["measure", "value"],
            [["gate density", dynamic["density"]], ["inputs counted", dynamic["inputs"]], ["dense MACs (unpruned model)", dynamic["dense_macs_of_unpruned"]],
             ["mean MACs per input", round(dynamic["mean_macs"])], ["min / max MACs per input", f"{dynamic['min_macs']} / {dynamic['max_macs']}"],
             ["MACs reduction vs unpruned dense", round(dynamic["dense_macs_of_unpruned"] / dynamic["mean_macs"], 3)],
             ["batch-1 latency, dense (ms)", latency.get("dense")], ["batch-1 latency, skip path (ms)", latency.get("skip path")]],
            note="per-group gate rates are in the per-layer table; the skip path computes only each input's active channels",
        ))
    compression = summary.get("compression")
    if compression:
        ratios = compression["total"]["ratios"]
        tables.append(Table(
            "Deep Compression (weight sharing + Huffman)",
            ["measure", "value"],
            [["file", compression["path"].rsplit("/", 1)[-1]],
             ["file bytes (header, checksums, codebooks, indices, biases included)", compression["file_bytes"]],
             ["dense float32 bytes", compression["dense_float32_bytes"]],
             ["ratio vs dense float32", compression["ratio_vs_dense_float32"]],
             ["stage ratio: pruning", ratios.get("pruned")], ["stage ratio: + quantization", ratios.get("quantized")],
             ["stage ratio: + Huffman", ratios.get("huffman")],
             ["test accuracy after quantization (%)", pct(compression["accuracy_quantized"])],
             ["test accuracy of the decompressed file (%)", pct(compression["accuracy_decompressed"])],
             ["decompressed weights bit-identical", compression["bit_identical"]]],
        ))
        tables.append(Table(
            "Deep Compression bytes per layer (after Huffman)",
            ["layer", "density", "weight bits", "index bits", "weights B", "positions B", "codebook B", "code tables B", "stored B"],
            [[a["name"], a["density"], a["bits"], a["index_bits"], a["weight_bits_huffman"] // 8, a["position_bits_huffman"] // 8,
              a["codebook_bytes"], a["code_table_bytes"], a["stored_bytes"]] for a in compression["layers"]],
            note="stored B is what the layer's sections take in the file; header and checksums are counted in the file total only.",
        ))
    export = summary.get("export")
    if export:
        rows = [["ONNX", export["onnx"]["bytes"], pct(export["onnx"]["accuracy"]), export["latency_ms"].get("onnxruntime")]]
        if "int8" in export:
            rows.append(["ONNX int8", export["int8"]["bytes"], pct(export["int8"]["accuracy"]), export["latency_ms"].get("onnxruntime int8")])
        rows.append(["torch eager", None, pct(pruned.get("accuracy")), export["latency_ms"].get("torch eager")])
        tables.append(Table(f"Export (latency at batch {export['latency_batch_size']}, median ms)", ["format", "bytes", "test accuracy (%)", "latency ms"], rows))
    deployed = summary.get("deploy")
    if deployed:
        tables.append(Table(
            f"Sparse CPU inference (prunekit.deploy, batch {deployed['batch_size']}): {deployed['speedup']:.2f}× vs dense kernels",
            ["layer", "sparsity", "dense ms", "sparse ms", "chosen", "reason"],
            [[d["name"], d["sparsity"], d.get("dense_ms"), d.get("sparse_ms"), d["chosen"], d.get("reason", "")] for d in deployed["layers"]],
            note=f"max |deployed − dense| output difference: {deployed['max_abs_error']:.2e}",
        ))
    if "corruption_accuracy" in dense:
        tables.append(Table(
            f"Accuracy under input corruptions (severity {summary.get('corruption_severity')})",
            ["corruption", "dense (%)", "pruned (%)", "change (points)"],
            [[name, pct(acc), pct(pruned["corruption_accuracy"][name]), round(100 * (pruned["corruption_accuracy"][name] - acc), 2)]
             for name, acc in dense["corruption_accuracy"].items()] + _corruption_mean_rows(summary.get("corruption_summary")),
            note="mean rows: mean accuracy over the corruptions (of a family); relative drop = (dense − pruned) / dense"
            if summary.get("corruption_summary") else "",
        ))
    pie = summary.get("pie")
    if pie is not None:
        tables.append(_pie_table(pie, (summary.get("per_class") or {}).get("classes", [])))
    per_class = summary.get("per_class")
    if per_class:
        tables.append(
            Table(
                "Per-class accuracy",
                ["class", "dense (%)", "pruned (%)", "change (points)"],
                [[c, pct(d), pct(p), round(100 * (p - d), 2)] for c, d, p in zip(per_class["classes"], per_class["dense"], per_class["pruned"])],
            )
        )
    return tables


def make_figures(summary: dict[str, Any], records: list[dict[str, Any]], out_dir: Path) -> dict[str, bytes]:
    """Write the report's PNG plots into ``out_dir``; returns ``{file name: png bytes}``."""
    figures = {}
    if summary.get("curve"):
        fig = plots.accuracy_vs_remaining(summary["curve"], summary["dense"].get("accuracy"))
        figures["accuracy_vs_remaining.png"] = fig
    layers = summary.get("layers") or []
    if layers and "kept_fraction" in layers[0]:
        figures["layer_sparsity.png"] = plots.layer_bars(
            [r["name"] for r in layers], {"kept fraction": [r["kept_fraction"] for r in layers]}, "fraction of weights kept", "Per-layer kept fraction"
        )
    elif layers and "channels_before" in layers[0]:
        figures["layer_channels.png"] = plots.layer_bars(
            [r["name"] for r in layers],
            {"before": [r["channels_before"] for r in layers], "after": [r["channels_after"] for r in layers]},
            "output channels",
            "Per-layer channels before/after",
        )
    elif layers and "gate_rate" in layers[0]:
        figures["gate_rates.png"] = plots.layer_bars(
            [r["name"] for r in layers], {"gate rate": [r["gate_rate"] for r in layers]}, "fraction of channels computed", "Per-group gate rate (mean over inputs)"
        )
    histogram = (summary.get("dynamic") or {}).get("histogram")
    if histogram:
        figures["macs_per_input.png"] = plots.macs_histogram(histogram["counts"], histogram["edges"], summary["dynamic"].get("dense_macs_of_unpruned"))
    if summary.get("staircase", {}).get("counts"):
        figures["channel_staircase.png"] = plots.channel_staircase(summary["staircase"])
    if summary.get("staircase", {}).get("layers"):
        kept = {r["name"]: r["channels_after"] for r in layers if "channels_after" in r}
        figures["layer_staircases.png"] = plots.layer_staircases(summary["staircase"]["layers"], kept, summary["staircase"]["step"],
                                                                 summary["staircase"]["runtime"])
    if summary.get("allocations"):
        figures["allocations.png"] = plots.allocations(summary["allocations"]["layers"], summary["allocations"]["kept_fraction"])
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if epochs:
        figures["training_curves.png"] = plots.training_curves(epochs)
    return {name: plots.save_png(fig, str(out_dir / name)) for name, fig in figures.items()}


def write_report(run_dir: str | os.PathLike[str], summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``run_dir``."""
    run_dir = Path(run_dir)
    records = read_jsonl(run_dir / "metrics.jsonl")
    pngs = make_figures(summary, records, run_dir / "plots")
    tables = summary_tables(summary)
    title = f"prunekit report: {summary['run']['name']}"
    meta = summary["run"]
    intro = [
        f"- run: `{meta['id']}` — model `{meta['model']}` on `{meta['dataset']}`, method `{meta['method']}`",
        *[f"- {note}" for note in summary.get("notes", [])],
    ]
    md = [f"# {title}", "", *intro, ""]
    md += [t.to_markdown() for t in tables]
    md += [f"![{name}](plots/{name})\n" for name in pngs]
    thumbnails = _pie_thumbnails(run_dir, summary)
    if thumbnails is not None:
        md.append(f"![PIE examples]({summary['pie']['thumbnails']})\n")
    md_path = run_dir / "report.md"
    write_text(md_path, "\n".join(md))
    body = [f"<h1>{html.escape(title)}</h1>", "<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in intro) + "</ul>"]
    body += [t.to_html() for t in tables]
    body += [f"<h3>{html.escape(name)}</h3><img alt='{name}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>" for name, data in pngs.items()]
    if thumbnails is not None:
        body.append(f"<h3>PIE examples (dense / pruned labels)</h3><img class='pie' alt='PIE examples' "
                    f"src='data:image/png;base64,{base64.b64encode(thumbnails).decode()}'>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    html_path = run_dir / "report.html"
    write_text(html_path, page)
    return md_path, html_path


def _pie_table(pie: dict[str, Any], classes: list[str]) -> Table:
    """The shown PIE examples: index, label, dense and pruned predictions (class names when known)."""
    name = lambda c: classes[c] if c < len(classes) else c  # noqa: E731
    rows = [[e["index"], name(e["label"]), name(e["dense"]), ", ".join(str(name(p)) for p in e["pruned"])] for e in pie["shown"]]
    more = f"; the first {len(rows)} are listed" if pie["count"] > len(rows) else ""
    return Table(f"PIE examples: {pie['count']} test examples wrong after pruning, right before",
                 ["test index", "label", "dense", "pruned"], rows,
                 note=f"Hooker et al. 2019 (pruning identified exemplars); all of them in {pie['file']}{more}"
                 + (f"; across {pie['seeds']} pruned seeds, those wrong in most" if pie.get("seeds", 1) > 1 else ""))


def _pie_thumbnails(run_dir: Path, summary: dict[str, Any]) -> bytes | None:
    """The PNG of the PIE thumbnails a run wrote (``None`` when it has none)."""
    path = (summary.get("pie") or {}).get("thumbnails")
    return (run_dir / path).read_bytes() if path and (run_dir / path).is_file() else None


def _corruption_mean_rows(corruption_summary: dict[str, Any] | None) -> list[list[Any]]:
    """``mean`` and ``mean: <family>`` rows for the corruption table, with the relative drop in %."""
    if not corruption_summary:
        return []
    means = [("mean", corruption_summary["mean"])] + [(f"mean: {f}", m) for f, m in corruption_summary["families"].items()]
    return [[f"{label} (relative drop {100 * m['relative_drop']:.1f}%)", round(100 * m["dense"], 2), round(100 * m["pruned"], 2),
             round(100 * (m["pruned"] - m["dense"]), 2)] for label, m in means]



def _prune_potential_table(potential: dict[str, Any]) -> Table:
    """Per method of the curve: the largest fraction pruned within ``potential["delta"]`` of dense on test."""
    rows = [[method, None if pruned is None else round(100 * pruned, 2), None if pruned is None else round(1 / max(1e-12, 1 - pruned), 2)]
            for method, pruned in potential["methods"].items()]
    return Table(f"Prune potential on test (within {100 * potential['delta']:g} points of dense)",
                 ["method", "largest fraction pruned (%)", "compression (×)"], rows,
                 note="Liebenwein et al. 2021: the largest swept ratio whose accuracy stays within the band; empty: none does")

"""Deep Compression (Han et al. 2016, Tables 2-3): LeNet-300-100 and LeNet-5 on MNIST.

    python benchmarks/deep_compression.py [--rows paper harder] [--nets LeNet-300-100 LeNet-5]

Paper rows, at the paper's own operating points: ``deep_compression_lenet300_paper`` (8% of the
weights kept: fc1 8%, fc2 9%, fc3 26%; 6-bit shared weights) and ``deep_compression_lenet5_paper``
(conv1 66%, conv2 12%, fc1 8%, fc2 19%; conv 8-bit, fc 5-bit); 5-bit relative indices, Huffman
coding, compact index coding (empty rows/columns flagged, long gaps as escapes instead of filler
entries), float16 centroids and biases, centroid fine-tuning. Where a Han 2015 recipe prunes
identically (``han_lenet300``), its run is the pruned model and only the compress step runs on it,
as in the paper (Han 2015 pruning, then quantization and Huffman coding). Harder rows: the recipes
``deep_compression_lenet300`` (~4.5% kept, 5-bit) and ``deep_compression_lenet5`` (fc1 5%, conv2
10%), paper's format (filler entries, float32 codebooks and biases). All recipes hold out 5,000
training images for validation; test error is reported once. Sizes are of the real ``.pkdc`` file
(header, checksums, codebooks, Huffman tables, indices and biases included) against the float32
dense model. Targets: >= 40x at error <= 1.60% (LeNet-300-100), >= 39x at <= 0.80% (LeNet-5).
Cached steps are redone when their code changed (``common.run_recipe_checked``). Rows not run by
this invocation are carried over from the previous results and say so.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from common import RESULTS, code_status, data_root, reuse_stale_default, run_recipe_checked, setup_logging, step_parts, write_results
from code_version import code_record

from prunekit._io import write_json
from prunekit.experiment.compress_step import compress_step
from prunekit.experiment.recipe import Recipe, load_recipe
from prunekit.experiment.runner import open_run
from prunekit.report.tables import Table

# The paper's totals (Tables 2-3); stage ratios: pruning (P), + quantization (P+Q), + Huffman (P+Q+H).
PAPER = {
    "LeNet-300-100": {"dense_error": 1.64, "error": 1.58, "dense_kb": 1070, "kb": 27, "ratio": 40, "stages": {"P": 12, "P+Q": 32, "P+Q+H": 40}, "target_error": 1.60, "target_ratio": 40},
    "LeNet-5": {"dense_error": 0.80, "error": 0.74, "dense_kb": 1720, "kb": 44, "ratio": 39, "stages": {"P": 12, "P+Q": 33, "P+Q+H": 39}, "target_error": 0.80, "target_ratio": 39},
}
#: (network, operating point, recipe, Han 2015 recipe whose run is its pruned model or None).
ROWS = (
    ("LeNet-300-100", "paper", "deep_compression_lenet300_paper", "han_lenet300"),
    ("LeNet-5", "paper", "deep_compression_lenet5_paper", None),
    ("LeNet-300-100", "harder", "deep_compression_lenet300", None),
    ("LeNet-5", "harder", "deep_compression_lenet5", None),
)


def compressed_on(recipe: Recipe, pruned_by: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(summary, compression)``: ``recipe``'s compress section applied to the run of ``pruned_by``,
    which must have the same settings in every other section."""
    base = load_recipe(pruned_by, [f"data.root={data_root()}"])
    a, b = base.identity(), recipe.identity()
    differ = sorted(k for k in set(a) | set(b) if k not in ("name", "compress") and a.get(k) != b.get(k))
    if differ:
        raise SystemExit(f"{recipe.name} no longer prunes like {pruned_by} (sections {', '.join(differ)} differ): run it on its own")
    run = run_recipe_checked(base)
    ctx, pruned = open_run(run, progress=False)
    step, sidecar = f"compress-{recipe.name}", run.parent / f"{run.name}.code.json"
    recorded = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    parts = step_parts("compress", str(base.prune.method))
    code = code_record(parts)
    status = "new"
    if ctx.run.done(step):
        status = code_status(recorded.get(step), code, ctx.run.step_file(step).stat().st_mtime, parts,
                             what=f"step {step!r} of run {run.name}", reuse_stale=reuse_stale_default())
    if status == "stale":
        ctx.run.checkpoint(f"{step}-finetune").unlink(missing_ok=True)
        ctx.run.redo([step])
    comp = compress_step(ctx, pruned.model, recipe.compress, name=recipe.name)
    record = recorded[step] if status == "stale-reused" else code
    write_json(sidecar, {**json.loads(sidecar.read_text()), step: record})
    return json.loads((run / "summary.json").read_text()), comp


def measure(recipe_name: str, pruned_by: str | None) -> dict[str, Any]:
    """Run one row; returns its payload entry."""
    recipe = load_recipe(recipe_name, [f"data.root={data_root()}"])
    if pruned_by is None:
        summary = json.loads((run_recipe_checked(recipe) / "summary.json").read_text())
        comp = summary["compression"]
    else:
        summary, comp = compressed_on(recipe, pruned_by)
    return {"recipe": recipe_name, "pruned_by": pruned_by, "dense_error": 100 * (1 - summary["dense"]["accuracy"]),
            "error": 100 * (1 - comp["accuracy_decompressed"]), "ratio": comp["ratio_vs_dense_float32"], "compression": comp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", choices=("paper", "harder"), default=["paper", "harder"], help="operating points to run")
    parser.add_argument("--nets", nargs="+", choices=tuple(PAPER), default=list(PAPER), help="networks to run")
    args = parser.parse_args()
    setup_logging()
    previous = json.loads((RESULTS / "deep_compression.json").read_text()) if (RESULTS / "deep_compression.json").exists() else {}
    payload: dict[str, Any] = {}
    for net, point, recipe, pruned_by in ROWS:
        key = f"{net} ({point})"
        if point in args.rows and net in args.nets:
            payload[key] = {**measure(recipe, pruned_by), "rerun": True}
        elif key in previous and previous[key].get("rerun"):
            payload[key] = {**previous[key], "rerun": False}
    # results of the format before these rows (harder points, no validation split, paper's index format)
    earlier = previous.get("earlier") or {k: previous[k] for k in PAPER if k in previous}
    extra = [Table("Earlier results, not rerun (harder points; trained without a validation split; paper's index format; code of 2026-11-21)",
                   ["network", "err % (decompressed file)", "file bytes", "ratio"],
                   [[k, round(v["error"], 2), v["file_bytes"], f"{v['ratio']:.1f}×"] for k, v in earlier.items()])] if earlier else []
    if earlier:
        payload["earlier"] = earlier
    write_results("deep_compression", payload, tables({k: v for k, v in payload.items() if k != "earlier"}) + extra, preamble=__doc__.split("\n\n", 1)[1],
                  command=f"python benchmarks/deep_compression.py --rows {' '.join(args.rows)} --nets {' '.join(args.nets)}")
    print((RESULTS / "deep_compression.md").read_text())


def tables(payload: dict[str, Any]) -> list[Table]:
    """Error and size, per-stage bytes against the paper's, and where each layer's bytes go."""
    rows, stage_rows, layer_rows, where_rows = [], [], [], []
    for key, r in payload.items():
        net = key.split(" (")[0]
        paper, comp = PAPER[net], r["compression"]
        met = r["error"] <= paper["target_error"] and r["ratio"] >= paper["target_ratio"]
        r["meets_target"] = met
        label = key + ("" if r["rerun"] else " — not rerun, carried over")
        rows.append([label, r["recipe"], paper["dense_error"], round(r["dense_error"], 2), paper["error"], round(r["error"], 2),
                     f"{paper['dense_kb']} → {paper['kb']} KB", f"{comp['dense_float32_bytes'] / 1000:.0f} → {comp['file_bytes'] / 1000:.1f} KB",
                     f"{paper['ratio']}×", f"{r['ratio']:.1f}×", "yes" if met else "NO"])
        dense, stages = comp["dense_float32_bytes"], comp["total"]["bytes"]
        stage_rows.append([label, *(f"{paper['dense_kb'] / paper['stages'][s]:.0f} KB ({paper['stages'][s]}×)" for s in ("P", "P+Q", "P+Q+H")),
                           *(f"{stages[s] / 1000:.1f} KB ({dense / stages[s]:.1f}×)" for s in ("pruned", "quantized", "huffman")),
                           f"{comp['file_bytes'] / 1000:.1f} KB ({r['ratio']:.1f}×)"])
        for a in comp["layers"]:
            layer_rows.append([label, a["name"], f"{100 * a['density']:.1f}%", a["bits"], a["index_bits"], a["nnz"], a["n_fillers"],
                               round(a["weight_bits_huffman"] / 8), round(a["position_bits_huffman"] / 8), a["codebook_bytes"],
                               a["code_table_bytes"], a.get("support_bytes", 0), a["stored_bytes"],
                               round((a["weight_bits_huffman"] + a["position_bits_huffman"]) / max(1, a["nnz"]), 2)])
        layers = sum(a["stored_bytes"] for a in comp["layers"])
        where_rows.append([label, layers, comp["extras"]["stored_bytes"], comp["file_overhead_bytes"], comp["file_bytes"]])
    return [
        Table("Error and size", ["row", "recipe", "paper dense err %", "ours dense err %", "paper err %", "ours err % (decompressed file)",
                                 "paper size", "ours size", "paper ratio", "ours ratio", "target met"], rows),
        Table("Bytes per stage against the paper's (dense float32 / stage size; biases included)",
              ["row", "paper P", "paper P+Q", "paper P+Q+H", "ours P", "ours P+Q", "ours P+Q+H", "ours file"], stage_rows,
              note="P: sparse float32 weights + relative indices at the paper's index bits, filler entries included; P+Q: fixed-width "
                   "shared-weight indices + the codebook; P+Q+H: the stored streams (Huffman; compact index coding where the row "
                   "says so), codebooks, code tables and support flags. 'file' is the real .pkdc. The paper's stage sizes are its "
                   "dense size over its ratios."),
        Table("Where each layer's bytes go (ours, bytes)", ["row", "layer", "density", "weight bits", "index bits", "nonzeros",
                                                           "filler / escape entries", "weights", "indices", "codebook", "code tables",
                                                           "support flags", "stored", "bits / nonzero (weights + indices)"], layer_rows),
        Table("Where the file's bytes go (bytes)", ["row", "layers", "biases", "prefix, header, checksums", "file"], where_rows),
    ]


if __name__ == "__main__":
    main()

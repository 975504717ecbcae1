"""Deep Compression (Han et al. 2016, Tables 2-3): LeNet-300-100 and LeNet-5 on MNIST.

    python benchmarks/deep_compression.py

LeNet-300-100: the shipped recipe ``deep_compression_lenet300`` (iterative magnitude pruning to
~4.5% of the weights, 5-bit weight sharing with centroid fine-tuning, 5-bit relative indices,
Huffman coding). LeNet-5: the shipped recipe ``deep_compression_lenet5`` (conv1 66%, conv2 10%,
fc1 5%, fc2 19% of the weights kept; conv 8-bit and fc 5-bit shared weights, 5-bit indices,
2 epochs of centroid fine-tuning). Both start from the dense models of the Han 2015 recipes. Sizes are of the real ``.pkdc`` file (header, checksums,
codebooks, Huffman tables, indices and float32 biases included) against the float32 dense model.
Targets: >= 40x at error <= 1.60% (LeNet-300-100), >= 39x at <= 0.80% (LeNet-5); stretch >= 50x.
"""

from __future__ import annotations

import json

from common import RESULTS, WORK, data_root, setup_logging, write_results

from prunekit.experiment.recipe import load_recipe
from prunekit.experiment.runner import run_recipe
from prunekit.report.tables import Table

# The paper's totals (Tables 2-3); stage ratios: pruning (P), + quantization (P+Q), + Huffman (P+Q+H).
PAPER = {
    "LeNet-300-100": {"dense_error": 1.64, "error": 1.58, "dense_kb": 1070, "kb": 27, "ratio": 40, "stages": {"P": 12, "P+Q": 32, "P+Q+H": 40}, "target_error": 1.60, "target_ratio": 40},
    "LeNet-5": {"dense_error": 0.80, "error": 0.74, "dense_kb": 1720, "kb": 44, "ratio": 39, "stages": {"P": 12, "P+Q": 33, "P+Q+H": 39}, "target_error": 0.80, "target_ratio": 39},
}


def main() -> None:
    setup_logging()
    root = f"data.root={data_root()}"
    ours = {}
    for net, recipe in (("LeNet-300-100", "deep_compression_lenet300"), ("LeNet-5", "deep_compression_lenet5")):
        summary = json.loads((run_recipe(load_recipe(recipe, [root]), WORK / "runs", progress=False) / "summary.json").read_text())
        ours[net] = (summary, summary["compression"])
    rows, stage_rows, layer_rows, payload = [], [], [], {}
    for net, (summary, comp) in ours.items():
        paper = PAPER[net]
        error = 100 * (1 - comp["accuracy_decompressed"])
        ratio = comp["ratio_vs_dense_float32"]
        met = error <= paper["target_error"] and ratio >= paper["target_ratio"]
        payload[net] = {"paper": paper, "error": error, "dense_error": 100 * (1 - summary["dense"]["accuracy"]), "ratio": ratio,
                        "file_bytes": comp["file_bytes"], "dense_float32_bytes": comp["dense_float32_bytes"], "stages": comp["total"]["ratios"],
                        "weights_only_stages": comp["weights_only"]["ratios"], "meets_target": met, "stretch_50x": ratio >= 50 and met}
        rows.append([net, paper["dense_error"], round(100 * (1 - summary["dense"]["accuracy"]), 2), paper["error"], round(error, 2),
                     f"{paper['dense_kb']} → {paper['kb']} KB", f"{comp['dense_float32_bytes'] / 1000:.0f} → {comp['file_bytes'] / 1000:.1f} KB",
                     f"{paper['ratio']}×", f"{ratio:.1f}×", "yes" if met else "NO"])
        st = comp["total"]["ratios"]
        stage_rows.append([net, *(f"{paper['stages'][k]}×" for k in ("P", "P+Q", "P+Q+H")), *(f"{st[k]:.1f}×" for k in ("pruned", "quantized", "huffman")), f"{ratio:.1f}×"])
        for a in comp["layers"]:
            layer_rows.append([net, a["name"], f"{100 * a['density']:.1f}%", a["bits"], round(a["weight_bits_huffman"] / max(1, a["n_entries"]), 2),
                               a["index_bits"], round(a["position_bits_huffman"] / max(1, a["n_entries"]), 2), a["n_fillers"], a["stored_bytes"]])
    tables = [
        Table("Error and size", ["network", "paper dense err %", "ours dense err %", "paper err %", "ours err % (decompressed file)", "paper size", "ours size", "paper ratio", "ours ratio", "target met"], rows),
        Table("Per-stage compression (dense float32 / stage size; biases included)", ["network", "paper P", "paper P+Q", "paper P+Q+H", "ours P", "ours P+Q", "ours P+Q+H", "ours file"], stage_rows,
              note="Stage sizes follow the paper's accounting (P: sparse float32 weights + relative indices; Q: shared-weight bits; H: Huffman); 'file' is the real .pkdc, header and checksums included."),
        Table("Per layer (ours)", ["network", "layer", "density", "weight bits", "Huffman bits / entry", "index bits", "Huffman index bits / entry", "filler entries", "stored bytes"], layer_rows),
    ]
    write_results("deep_compression", payload, tables, preamble=__doc__.split("\n\n", 1)[1])
    print((RESULTS / "deep_compression.md").read_text())


if __name__ == "__main__":
    main()

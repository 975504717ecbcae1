"""report.build: summary tables and the report written into a minimal fake run directory.

A run directory, as far as the report builder reads it, is ``metrics.jsonl`` (epoch records, as
``JsonlLogger`` appends them) plus the ``summary`` dict that ``evaluate_step`` returns; the
builder writes ``report.md``, ``report.html`` and ``plots/*.png`` beside them. Expected text is
written out by hand from the numbers below (accuracy shown in % rounded to 2 places, numbers as
``fmt`` promises: thousands separators, 4 significant digits).
"""

import base64
import copy
import json
import re
from pathlib import Path

import pytest

from prunekit.report import summary_tables, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RUN = {"name": "mnist-demo", "id": "mnist-demo-abc123", "model": "lenet_300_100", "dataset": "mnist", "method": "magnitude"}


def minimal_summary() -> dict:
    return {
        "run": dict(RUN),
        "dense": {"accuracy": 0.98, "params": 266610, "nonzero_params": 266610, "macs": 266200, "effective_macs": 266200},
        "pruned": {"accuracy": 0.975, "params": 266610, "nonzero_params": 26661, "macs": 266200, "effective_macs": 26620,
                   "agreement": 0.99},
        "compression_ratio": 10.0,
        "theoretical_speedup": 10.0,
        "notes": ["data: real"],
    }


DENSE_VS_PRUNED = (
    "### Dense vs pruned\n\n"
    "| metric | dense | pruned |\n"
    "|---|---|---|\n"
    "| test accuracy (%) | 98 | 97.5 |\n"
    "| parameters | 266,610 | 266,610 |\n"
    "| nonzero parameters | 266,610 | 26,661 |\n"
    "| MACs / example | 266,200 | 266,200 |\n"
    "| effective MACs / example | 266,200 | 26,620 |\n"
)
HEADLINE = (
    "### Headline\n\n"
    "| measure | value |\n"
    "|---|---|\n"
    "| compression ratio (params / nonzero params) | 10 |\n"
    "| theoretical speed-up (dense / effective MACs) | 10 |\n"
    "| agreement with dense predictions (%) | 99 |\n"
)


def full_summary() -> dict:
    summary = minimal_summary()
    summary["dense"].update(latency_ms=2.0, corruption_accuracy={"gaussian_noise": 0.9, "blur": 0.8})
    summary["pruned"].update(latency_ms=1.6, corruption_accuracy={"gaussian_noise": 0.85, "blur": 0.81})
    summary.update(
        measured_speedup=1.25,
        corruption_severity=3,
        counting_note="MACs per example",
        prune_potential={"delta": 0.005, "methods": {"magnitude": 0.9}},
        curve=[
            {"method": "magnitude", "round": 1, "fraction_remaining": 0.5, "accuracy": 0.979},
            {"method": "magnitude", "round": 2, "fraction_remaining": 0.1, "accuracy": 0.975},
        ],
        layers=[{"name": "fc1.weight", "params": 235200, "kept_fraction": 0.08},
                {"name": "fc2.weight", "params": 30000, "kept_fraction": 0.15}],
        per_class={"classes": ["zero", "one"], "dense": [0.99, 0.97], "pruned": [0.98, 0.97]},
    )
    return summary


EPOCHS = [
    {"kind": "epoch", "phase": "dense", "epoch": 0, "step": 10, "train_loss": 0.9, "val_accuracy": 0.9},
    {"kind": "epoch", "phase": "dense", "epoch": 1, "step": 20, "train_loss": 0.4, "val_accuracy": 0.95},
    {"kind": "epoch", "phase": "finetune", "method": "magnitude", "round": 1, "epoch": 0, "step": 5, "train_loss": 0.3},
]


def fake_run(tmp_path: Path, records=()) -> Path:
    run = tmp_path / "mnist-demo-abc123"
    run.mkdir()
    if records:
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def is_png(data: bytes) -> bool:
    return data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")


# --- tables -----------------------------------------------------------------------------------


def test_minimal_summary_gives_the_two_headline_tables() -> None:
    tables = summary_tables(minimal_summary())
    assert [t.to_markdown() for t in tables] == [DENSE_VS_PRUNED, HEADLINE]


def test_optional_sections_appear_with_hand_computed_rows() -> None:
    md = {t.title: t.to_markdown() for t in summary_tables(full_summary())}
    assert list(md) == ["Dense vs pruned", "Headline", "Accuracy vs weights remaining", "Prune potential on test (within 0.5 points of dense)", "Per layer",
                        "Accuracy under input corruptions (severity 3)", "Per-class accuracy"]
    assert md["Dense vs pruned"].endswith("| latency (ms, median) | 2 | 1.6 |\n\nMACs per example\n")
    assert "| measured speed-up (latency ratio; torch) | 1.25 |\n" in md["Headline"]
    assert md["Accuracy vs weights remaining"].endswith(
        "| method | round | weights remaining (%) | test accuracy (%) |\n|---|---|---|---|\n"
        "| magnitude | 1 | 50 | 97.9 |\n| magnitude | 2 | 10 | 97.5 |\n"
    )
    assert md["Prune potential on test (within 0.5 points of dense)"].endswith(
        "| method | largest fraction pruned (%) | compression (×) |\n|---|---|---|\n| magnitude | 90 | 10 |\n\n"
        "Liebenwein et al. 2021: the largest swept ratio whose accuracy stays within the band; empty: none does\n")
    assert md["Per layer"].endswith(
        "| layer | params | kept_fraction |\n|---|---|---|\n| fc1.weight | 235,200 | 0.08 |\n| fc2.weight | 30,000 | 0.15 |\n"
    )
    # change in points: 100 · (pruned − dense), to 2 places
    assert md["Accuracy under input corruptions (severity 3)"].endswith(
        "| corruption | dense (%) | pruned (%) | change (points) |\n|---|---|---|---|\n"
        "| gaussian_noise | 90 | 85 | -5 |\n| blur | 80 | 81 | 1 |\n"
    )
    with_means = full_summary()
    with_means["corruption_summary"] = {"mean": {"dense": 0.85, "pruned": 0.83, "relative_drop": 0.02 / 0.85},
                                        "families": {"noise": {"dense": 0.9, "pruned": 0.85, "relative_drop": 0.05 / 0.9}}}
    table = next(t for t in summary_tables(with_means) if t.title.startswith("Accuracy under input corruptions"))
    assert table.to_markdown().endswith(
        "| mean (relative drop 2.4%) | 85 | 83 | -2 |\n| mean: noise (relative drop 5.6%) | 90 | 85 | -5 |\n\n"
        "mean rows: mean accuracy over the corruptions (of a family); relative drop = (dense − pruned) / dense\n")
    assert md["Per-class accuracy"].endswith(
        "| class | dense (%) | pruned (%) | change (points) |\n|---|---|---|---|\n"
        "| zero | 99 | 98 | -1 |\n| one | 97 | 97 | 0 |\n"
    )


def test_export_and_deploy_tables() -> None:
    summary = minimal_summary()
    summary["export"] = {"onnx": {"bytes": 1066000, "accuracy": 0.975}, "int8": {"bytes": 270000, "accuracy": 0.97},
                         "latency_ms": {"onnxruntime": 0.5, "onnxruntime int8": 0.25, "torch eager": 1.0}, "latency_batch_size": 64}
    summary["deploy"] = {"batch_size": 64, "speedup": 1.8, "max_abs_error": 1.5e-6,
                         "layers": [{"name": "fc1", "sparsity": 0.9, "dense_ms": 0.4, "sparse_ms": 0.2, "chosen": "sparse", "reason": "csr 2x"},
                                    {"name": "fc3", "sparsity": 0.5, "chosen": "dense"}]}
    md = {t.title: t.to_markdown() for t in summary_tables(summary)}
    assert md["Export (latency at batch 64, median ms)"].endswith(
        "| format | bytes | test accuracy (%) | latency ms |\n|---|---|---|---|\n"
        "| ONNX | 1,066,000 | 97.5 | 0.5 |\n| ONNX int8 | 270,000 | 97 | 0.25 |\n| torch eager | – | 97.5 | 1 |\n"
    )
    assert md["Sparse CPU inference (prunekit.deploy, batch 64): 1.80× vs dense kernels"].endswith(
        "| layer | sparsity | dense ms | sparse ms | chosen | reason |\n|---|---|---|---|---|---|\n"
        "| fc1 | 0.9 | 0.4 | 0.2 | sparse | csr 2x |\n| fc3 | 0.5 | – | – | dense |  |\n"
        "\nmax |deployed − dense| output difference: 1.50e-06\n"
    )


def test_compression_tables() -> None:
    summary = minimal_summary()
    summary["compression"] = {
        "path": "/somewhere/run/compressed.pkdc", "file_bytes": 27000, "dense_float32_bytes": 1066440, "ratio_vs_dense_float32": 39.5,
        "total": {"ratios": {"pruned": 10.0, "quantized": 30.0, "huffman": 39.5}},
        "accuracy_quantized": 0.974, "accuracy_decompressed": 0.974, "bit_identical": True,
        "layers": [{"name": "fc1.weight", "density": 0.08, "bits": 5, "index_bits": 4, "weight_bits_huffman": 800,
                    "position_bits_huffman": 655, "codebook_bytes": 128, "code_table_bytes": 40, "stored_bytes": 350}],
    }
    md = {t.title: t.to_markdown() for t in summary_tables(summary)}
    assert md["Deep Compression (weight sharing + Huffman)"].endswith(
        "| file | compressed.pkdc |\n"  # the file name only, not where the run lives
        "| file bytes (header, checksums, codebooks, indices, biases included) | 27,000 |\n"
        "| dense float32 bytes | 1,066,440 |\n| ratio vs dense float32 | 39.5 |\n"
        "| stage ratio: pruning | 10 |\n| stage ratio: + quantization | 30 |\n| stage ratio: + Huffman | 39.5 |\n"
        "| test accuracy after quantization (%) | 97.4 |\n| test accuracy of the decompressed file (%) | 97.4 |\n"
        "| decompressed weights bit-identical | yes |\n"
    )
    # bits to bytes by floor division: 800 // 8 = 100, 655 // 8 = 81
    assert "| fc1.weight | 0.08 | 5 | 4 | 100 | 81 | 128 | 40 | 350 |\n" in md["Deep Compression bytes per layer (after Huffman)"]


# --- the report written into a run directory ------------------------------------------------


def test_minimal_report_exact_markdown_and_no_plots(tmp_path) -> None:
    run = fake_run(tmp_path)
    md_path, html_path = write_report(run, minimal_summary())
    assert (md_path, html_path) == (run / "report.md", run / "report.html")
    assert md_path.read_text() == (
        "# prunekit report: mnist-demo\n\n"
        "- run: `mnist-demo-abc123` — model `lenet_300_100` on `mnist`, method `magnitude`\n"
        "- data: real\n\n" + DENSE_VS_PRUNED + "\n" + HEADLINE
    )
    assert not (run / "plots").exists() or not any((run / "plots").iterdir())
    page = html_path.read_text()
    assert page.startswith("<!doctype html><html><head><meta charset='utf-8'><title>prunekit report: mnist-demo</title>")
    assert page.endswith("</body></html>\n")
    assert "<h1>prunekit report: mnist-demo</h1>" in page
    assert "<li>data: real</li>" in page
    assert "<h3>Dense vs pruned</h3>" in page and "<h3>Headline</h3>" in page
    assert "<tr><td>nonzero parameters</td><td>266,610</td><td>26,661</td></tr>" in page
    assert "<img" not in page


def test_full_report_has_every_section_and_figure(tmp_path) -> None:
    run = fake_run(tmp_path, EPOCHS)
    md_path, html_path = write_report(run, full_summary())
    md, page = md_path.read_text(), html_path.read_text()
    titles = ["Dense vs pruned", "Headline", "Accuracy vs weights remaining", "Prune potential on test (within 0.5 points of dense)", "Per layer",
              "Accuracy under input corruptions (severity 3)", "Per-class accuracy"]
    assert re.findall(r"^### (.*)$", md, flags=re.M) == titles
    assert re.findall(r"<h3>([^<]*)</h3><table>", page) == titles
    figures = ["accuracy_vs_remaining.png", "layer_sparsity.png", "training_curves.png"]
    assert re.findall(r"^!\[(.*)\]\(plots/(.*)\)$", md, flags=re.M) == [(f, f) for f in figures]
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(figures)
    embedded = dict(re.findall(r"<h3>([^<]*)</h3><img alt='[^']*' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", page))
    assert list(embedded) == figures
    for name in figures:
        data = (run / "plots" / name).read_bytes()
        assert is_png(data)
        assert base64.b64decode(embedded[name]) == data  # the page is self-contained: same bytes inline


def test_structured_layers_plot_channels(tmp_path) -> None:
    summary = minimal_summary()
    summary["layers"] = [{"name": "conv1", "channels_before": 16, "channels_after": 8},
                         {"name": "conv2", "channels_before": 32, "channels_after": 20}]
    run = fake_run(tmp_path)
    md_path, _ = write_report(run, summary)
    assert [p.name for p in (run / "plots").iterdir()] == ["layer_channels.png"]
    md = md_path.read_text()
    assert "| layer | channels_before | channels_after |\n|---|---|---|\n| conv1 | 16 | 8 |\n| conv2 | 32 | 20 |\n" in md
    assert md.endswith("![layer_channels.png](plots/layer_channels.png)\n")


def test_records_other_than_epochs_and_damaged_lines_do_not_make_training_curves(tmp_path) -> None:
    run = fake_run(tmp_path, [{"kind": "prune", "round": 1, "sparsity": 0.5}])
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "epoch", "train_lo')  # a line cut short by a killed writer
    write_report(run, minimal_summary())
    assert not (run / "plots" / "training_curves.png").exists()


def test_hostile_names_are_escaped_in_html_and_cannot_split_markdown_rows(tmp_path) -> None:
    summary = minimal_summary()
    summary["run"]["name"] = "<script>alert(1)</script>"
    summary["run"]["model"] = "pkg.mod:make&<b>"
    summary["notes"] = ["data: a & b <i>"]
    summary["layers"] = [{"name": "blocks|0.<conv>&", "params": 10, "kept_fraction": 0.5}]
    run = fake_run(tmp_path)
    md_path, html_path = write_report(run, summary)
    page = html_path.read_text()
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page and "<conv>" not in page
    assert "<title>prunekit report: &lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert "<h1>prunekit report: &lt;script&gt;alert(1)&lt;/script&gt;</h1>" in page
    assert "model `pkg.mod:make&amp;&lt;b&gt;`" in page
    assert "<li>data: a &amp; b &lt;i&gt;</li>" in page
    assert "<tr><td>blocks|0.&lt;conv&gt;&amp;</td><td>10</td><td>0.5</td></tr>" in page
    md = md_path.read_text()
    assert "| blocks\\|0.<conv>& | 10 | 0.5 |\n" in md


def test_rebuilding_overwrites_the_report(tmp_path) -> None:
    run = fake_run(tmp_path, EPOCHS)
    write_report(run, full_summary())
    changed = copy.deepcopy(full_summary())
    changed["run"]["name"] = "renamed"
    md_path, html_path = write_report(run, changed)
    assert md_path.read_text().startswith("# prunekit report: renamed\n")
    assert "<title>prunekit report: renamed</title>" in html_path.read_text()
    assert not [p for p in run.rglob("*.tmp")]


@pytest.mark.parametrize("missing", ["run", "dense", "pruned"])
def test_a_summary_without_a_required_part_fails_with_key_error(tmp_path, missing) -> None:
    """The CLI's ``report`` command turns these errors into 'run summary is damaged'."""
    summary = minimal_summary()
    del summary[missing]
    with pytest.raises(KeyError):
        write_report(fake_run(tmp_path), summary)

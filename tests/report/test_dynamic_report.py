"""The report's dynamic-gates section: the MACs-per-input table, the gate-rate bars and the MACs histogram."""

from __future__ import annotations

from prunekit.report import summary_tables, write_report

from tests.report.test_build import minimal_summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def dynamic_summary() -> dict:
    summary = minimal_summary()
    summary["run"]["method"] = "dynamic"
    summary["layers"] = [{"name": "layer1.0.conv1", "channels": 16, "gate_rate": 0.5, "gate_rate_min": 0.4375, "gate_rate_max": 0.5},
                         {"name": "layer2.0.conv1", "channels": 32, "gate_rate": 0.25, "gate_rate_min": 0.25, "gate_rate_max": 0.25}]
    summary["dynamic"] = {"density": 0.5, "inputs": 4, "dense_macs_of_unpruned": 4000, "mean_macs": 2000.0, "min_macs": 1800, "max_macs": 2200,
                          "histogram": {"counts": [1, 2, 1], "edges": [1800.0, 1933.3, 2066.7, 2200.0]},
                          "latency_b1_ms": {"dense": 3.0, "skip path": 2.5}}
    return summary


def test_dynamic_table_lists_macs_per_input_and_skip_path_latency() -> None:
    table = next(t for t in summary_tables(dynamic_summary()) if t.title.startswith("Dynamic gates"))
    assert [row[0] for row in table.rows] == ["gate density", "inputs counted", "dense MACs (unpruned model)", "mean MACs per input",
                                              "min / max MACs per input", "MACs reduction vs unpruned dense", "batch-1 latency, dense (ms)",
                                              "batch-1 latency, skip path (ms)"]
    assert [row[1] for row in table.rows] == [0.5, 4, 4000, 2000, "1800 / 2200", 2.0, 3.0, 2.5]


def test_dynamic_report_draws_gate_rates_and_the_macs_histogram(tmp_path) -> None:
    (tmp_path / "metrics.jsonl").write_text("")
    md, html = write_report(tmp_path, dynamic_summary())
    for name in ("gate_rates.png", "macs_per_input.png"):
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG_SIGNATURE)
        assert f"![{name}](plots/{name})" in md.read_text()
    assert "Dynamic gates (effective MACs per test input)" in html.read_text()

"""A run's summary: the dense-vs-pruned table printed after a run, and updates by later commands."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table as RichTable

from prunekit.cli.common import console
from prunekit.cli.errors import user_errors


def print_summary(run_dir: Path) -> None:
    """Print a finished run's dense-vs-pruned table, ratios and report path."""
    from prunekit.experiment.rundir import RunDir

    with user_errors(str(run_dir)):
        summary = RunDir(run_dir).summary()
    dense, pruned = summary["dense"], summary["pruned"]
    table = RichTable(title=f"{summary['run']['name']}: dense vs pruned")
    for col in ("", "dense", "pruned"):
        table.add_column(col, justify="right")
    rows = [(_accuracy_label(summary), f"{100 * dense['accuracy']:.2f}%", f"{100 * pruned['accuracy']:.2f}%"),
            ("nonzero params", f"{dense['nonzero_params']:,}", f"{pruned['nonzero_params']:,}"),
            ("effective MACs", f"{dense['effective_macs']:,}", f"{pruned['effective_macs']:,}"),
            ("size on disk (xz)", f"{dense['disk_compressed_bytes']:,} B", f"{pruned['disk_compressed_bytes']:,} B")]
    if "compression" in summary:
        rows.append(("Deep Compression file", "", f"{summary['compression']['file_bytes']:,} B"))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"compression ratio {summary['compression_ratio']:.1f}×, theoretical speed-up {summary['theoretical_speedup']:.1f}×, "
                  f"agreement with dense {100 * pruned['agreement']:.1f}%")
    if "measured_speedup" in summary:
        console.print(f"measured speed-up {summary['measured_speedup']:.2f}× on {summary.get('latency_runtime', 'torch')} "
                      f"(batch {summary['latency_batch_size']}: {dense['latency_ms']:.2f} ms → {pruned['latency_ms']:.2f} ms)",
                      markup=False, highlight=False)
    console.print(f"report: {run_dir / 'report.html'}  (also report.md)")


def _accuracy_label(summary: dict) -> str:
    """``test accuracy``, or ``test accuracy (N of M examples)`` for an evaluation on part of the test set."""
    used, total = (summary.get("evaluation") or {}).get("examples"), (summary.get("evaluation") or {}).get("total_examples")
    return f"test accuracy ({used:,} of {total:,} examples)" if used and total and used < total else "test accuracy"


def update_summary(run_dir: Path, key: str, value: dict) -> None:
    """Set ``summary[key]`` of a run that has a summary.json and rebuild its report."""
    from prunekit._io import write_json
    from prunekit.experiment.rundir import RunDir
    from prunekit.report import write_report

    summary_file = run_dir / "summary.json"
    if summary_file.exists():
        with user_errors(str(run_dir)):
            summary = RunDir(run_dir).summary()
        summary[key] = value
        write_json(summary_file, summary)
        write_report(run_dir, summary)

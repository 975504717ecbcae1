"""The ``analyze`` command: per-layer (magnitude) or per-group (structured) sensitivity scans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from prunekit.cli.common import OutOption, QuietOption, SetOption, configure_logging, console
from prunekit.cli.errors import user_errors


def analyze(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file or shipped recipe name (its model, data and dense training are used)")],
    set_: SetOption = None,
    out: OutOption = Path("runs"),
    sparsities: Annotated[str, typer.Option(help="comma-separated sparsities to try per layer")] = "0.5,0.7,0.8,0.9,0.95,0.98",
    max_drop: Annotated[float, typer.Option(help="accuracy budget per layer for the suggested overrides (0.01 = 1 point)")] = 0.01,
    structured: Annotated[bool, typer.Option("--structured", help="prune each channel group alone instead (structured; validation split only)")] = False,
    ratios: Annotated[str, typer.Option(help="with --structured: comma-separated ratios of each group's channels to remove")] = "0.25,0.5,0.75",
    quiet: QuietOption = False,
) -> None:
    """Per-layer sensitivity: prune each layer alone at several sparsities (magnitude) and measure
    validation accuracy; writes sensitivity.json/png into the run directory and suggests overrides.
    With --structured: prune each channel group alone at --ratios (the recipe's structured settings
    decide which channels) and write structured_sensitivity.json/png; the measurements are kept in
    structured_sensitivity.jsonl, so an interrupted scan resumes, and under torchrun the processes
    share the work (train the dense model first: prunekit analyze once without torchrun)."""
    if structured:
        _analyze_structured(recipe, set_ or [], out, ratios, quiet)
        return
    from prunekit._io import write_json
    from prunekit.analysis import allocate_by_sensitivity, layer_sensitivity
    from prunekit.errors import ConfigError
    from prunekit.experiment.recipe import load_recipe
    from prunekit.experiment.runner import prepare_run
    from prunekit.report.plots import save_png, sensitivity_curves

    configure_logging(quiet)
    with user_errors(str(recipe)):
        try:
            levels = [float(v) for v in sparsities.split(",")]
        except ValueError:
            raise ConfigError(f"--sparsities must be comma-separated numbers, got {sparsities!r}") from None
        if any(not 0 <= v < 1 for v in levels):
            raise ConfigError(f"--sparsities must lie in [0, 1), got {levels}")
        ctx = prepare_run(load_recipe(recipe, set_ or []), out, progress=not quiet)
        batches = ctx.data.val if ctx.data.val is not None else ctx.data.test
        result = layer_sensitivity(ctx.dense_model(), batches, levels, progress=not quiet)
    allocation = allocate_by_sensitivity(result, max_drop)
    write_json(ctx.run.path / "sensitivity.json", {**result.to_dict(), "max_drop": max_drop, "suggested_overrides": allocation})
    save_png(sensitivity_curves(result.sparsities, result.accuracy, result.baseline), str(ctx.run.path / "sensitivity.png"))
    table = RichTable(title=f"accuracy with one layer pruned (unpruned: {100 * result.baseline:.2f}%)")
    table.add_column("layer")
    for level in result.sparsities:
        table.add_column(f"{100 * level:g}%", justify="right")
    for layer, values in result.accuracy.items():
        table.add_row(layer, *(f"{100 * v:.2f}" for v in values))
    console.print(table)
    console.print(f"suggested prune.overrides (largest sparsity within {100 * max_drop:g} points per layer):")
    console.print(json.dumps(allocation))
    console.print(f"wrote {ctx.run.path / 'sensitivity.json'} and sensitivity.png")


def _analyze_structured(recipe: Path, set_: list[str], out: Path, ratios: str, quiet: bool) -> None:
    """``prunekit analyze --structured``: the per-group sensitivity scan of the recipe's dense model."""
    from prunekit._io import write_json
    from prunekit._settings import settings_of
    from prunekit.analysis import structured_sensitivity
    from prunekit.analysis.group_space import resolve_shard
    from prunekit.errors import ConfigError
    from prunekit.experiment.recipe import load_recipe
    from prunekit.experiment.runner import prepare_run
    from prunekit.pruners.structured_config import StructuredConfig
    from prunekit.report.plots import save_png

    configure_logging(quiet)
    with user_errors(str(recipe)):
        try:
            levels = [float(v) for v in ratios.split(",")]
        except ValueError:
            raise ConfigError(f"--ratios must be comma-separated numbers, got {ratios!r}") from None
        if any(not 0 < v < 1 for v in levels):
            raise ConfigError(f"--ratios must lie in (0, 1), got {levels}")
        parsed = load_recipe(recipe, set_)
        prune = parsed.prune
        config = settings_of(prune, StructuredConfig) if prune.method == "structured" else StructuredConfig(ratio=0.0)
        ctx = prepare_run(parsed, out, progress=not quiet)
        if ctx.data.val is None:
            raise ConfigError("structured sensitivity measures on the validation split, and this recipe has none: set data.val_fraction > 0 "
                              "(e.g. --set data.val_fraction=0.1); the test split is never used to choose ratios")
        result = structured_sensitivity(ctx.dense_model(), ctx.example_input(), ctx.data.val, levels, config,
                                        cache=ctx.run.path / "structured_sensitivity.jsonl", device=ctx.device, progress=not quiet)
    if resolve_shard().rank != 0:
        return
    write_json(ctx.run.path / "structured_sensitivity.json", result.to_dict())
    save_png(result.plot(), str(ctx.run.path / "structured_sensitivity.png"))
    assert result.baseline is not None
    table = RichTable(title=f"validation accuracy with one channel group pruned (unpruned: {100 * result.baseline.accuracy:.2f}%), MACs saved")
    table.add_column("group")
    table.add_column("channels", justify="right")
    for level in result.ratios:
        table.add_column(f"{100 * level:g}% removed", justify="right")
    for index, name in result.groups.items():
        rows = [result.row(index, level) for level in result.ratios]
        table.add_row(name, str(rows[0].size), *(f"{100 * r.accuracy:.2f} (-{100 * (1 - r.macs / result.baseline.macs):.1f}%)" for r in rows))
    console.print(table)
    console.print(f"wrote {ctx.run.path / 'structured_sensitivity.json'} and structured_sensitivity.png ({result.seconds:.1f} s of measurements)")

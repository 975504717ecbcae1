"""The ``prunekit`` command: run recipes, the demo, reports, listings."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table as RichTable

from prunekit.cli.errors import user_errors

if TYPE_CHECKING:
    from prunekit.experiment.recipe import Recipe

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Prune computer-vision networks and measure what it really gains.")
#: Everything printed is plain text, never rich markup: paths and messages may hold brackets (``[/bold]``, ``prunekit[onnx]``).
console = Console(markup=False)

OutOption = Annotated[Path, typer.Option("--out", "-o", help="parent folder of run directories")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override a setting: KEY=VALUE (dotted key, YAML value); repeatable")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]
TrustOption = Annotated[bool, typer.Option("--trust-code", help="let the run's recipe import its model factory (package.module:function): only for run directories you trust")]


def _print_version(value: bool) -> None:
    if value:
        import torch

        from prunekit._version import __version__

        console.print(f"prunekit {__version__}, torch {torch.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the prunekit and torch versions and exit")] = False,
) -> None:
    """Prune computer-vision networks and measure what it really gains."""


def _configure_logging(quiet: bool) -> None:
    """Warnings from everything; step-level progress messages from the experiment runner."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False, show_time=False, markup=False)], force=True)
    logging.getLogger("prunekit.experiment").setLevel(logging.WARNING if quiet else logging.INFO)


def _print_summary(run_dir: Path) -> None:
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


ForceOption = Annotated[bool, typer.Option("--force", help="redo every step (other runs and the dense cache's other models stay)")]
FromStepOption = Annotated[Optional[str], typer.Option("--from-step", metavar="STEP",
                           help="redo STEP and the steps after it: dense, prune, evaluate, compress, export, deploy, report")]


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file, or the name of a shipped recipe (prunekit list recipes)")],
    set_: SetOption = None,
    out: OutOption = Path("runs"),
    quiet: QuietOption = False,
    force: ForceOption = False,
    from_step: FromStepOption = None,
) -> None:
    """Run a recipe (re-running skips finished steps and resumes interrupted training; a changed
    checkpoint, data, model code or prunekit version starts a new run directory). Under
    `torchrun --nproc_per_node=N -m prunekit run` the N processes train together (rank 0 writes)."""
    from prunekit.experiment.recipe import load_recipe

    _run_recipe(lambda: load_recipe(recipe, set_ or []), str(recipe), out, quiet, force, from_step)


def _run_recipe(load: Callable[[], Recipe], source: str, out: Path, quiet: bool, force: bool, from_step: str | None) -> None:
    """Load a recipe, run it (every process of a torchrun launch takes part) and print its summary (rank 0)."""
    from prunekit.experiment.runner import run_recipe
    from prunekit.training import distributed

    _configure_logging(quiet or distributed.resolve_shard().rank != 0)  # rank 1.. log warnings only
    with user_errors(source):
        parsed = load()
        distributed.init_from_env(parsed.device)
        run_dir = run_recipe(parsed, out, progress=not quiet, force=force, from_step=from_step)
    main = distributed.is_main_process()
    distributed.shutdown()
    if main:
        _print_summary(run_dir)


@app.command()
def prune(
    model: Annotated[str, typer.Argument(help="zoo name, timm/<name>, path/to/file.py:function or package.module:function")],
    data: Annotated[str, typer.Option("--data", "-d", help="imagefolder:PATH, arrays:FILE.npz, a registered dataset (prunekit list datasets) or package.module:function")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="trained weights (.safetensors, .pt/.pth state dict, Lightning .ckpt); without it the dense model is trained first")] = None,
    macs_reduction: Annotated[Optional[float], typer.Option(help="structured: remove channels until MACs shrink by this factor (default 2)")] = None,
    latency_reduction: Annotated[Optional[float], typer.Option(help="structured: remove channels until the model runs this many times faster on --runtime")] = None,
    ratio: Annotated[Optional[float], typer.Option(help="structured: remove this fraction of every layer's channels")] = None,
    sparsity: Annotated[Optional[float], typer.Option(help="unstructured instead: zero this fraction of weights (global magnitude)")] = None,
    finetune_epochs: Annotated[float, typer.Option(help="fine-tuning epochs after pruning")] = 2.0,
    epochs: Annotated[float, typer.Option(help="dense training epochs (only without --checkpoint)")] = 10.0,
    batch_size: Annotated[Optional[int], typer.Option(help="training and evaluation batch size")] = None,
    runtime: Annotated[Optional[str], typer.Option(help="runtime that latency targets and the report's timing use: torch, torch_compile, onnxruntime")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or mps")] = "cpu",
    name: Annotated[Optional[str], typer.Option(help="run name (default: from the model and data)")] = None,
    save_recipe: Annotated[Optional[Path], typer.Option(help="also write the equivalent recipe YAML here (to rerun or edit it)")] = None,
    set_: SetOption = None,
    out: OutOption = Path("runs"),
    quiet: QuietOption = False,
    force: ForceOption = False,
    from_step: FromStepOption = None,
) -> None:
    """Prune your model on your data in one command, without writing a recipe: fine-tune, evaluate
    (accuracy, MACs, measured speed-up) and report; writes the same run directory a recipe would
    (torchrun works as for `run`)."""
    from prunekit.experiment.quick import quick_recipe
    from prunekit.experiment.recipe import load_recipe
    from prunekit.training import distributed

    def load() -> Recipe:
        raw = quick_recipe(model, data, checkpoint=None if checkpoint is None else str(checkpoint), macs_reduction=macs_reduction,
                           latency_reduction=latency_reduction, ratio=ratio, sparsity=sparsity, finetune_epochs=finetune_epochs,
                           epochs=epochs, batch_size=batch_size, runtime=runtime, device=device, name=name)
        parsed = load_recipe(raw, set_ or [])
        first = distributed.resolve_shard().rank == 0  # under torchrun, one process writes and warns
        if save_recipe is not None and first:
            import yaml

            from prunekit._io import write_text

            write_text(save_recipe, yaml.safe_dump(parsed.identity(), sort_keys=False))
            console.print(f"wrote the recipe to {save_recipe} (prunekit run {save_recipe} repeats this run)", markup=False, highlight=False)
        if checkpoint is None and first:
            logging.getLogger(__name__).warning("no --checkpoint: the dense model is trained first (%g epochs)", parsed.train.epochs)
        return parsed

    _run_recipe(load, model, out, quiet, force, from_step)


@app.command()
def check(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file, or the name of a shipped recipe")],
    set_: SetOption = None,
    out: OutOption = Path("runs"),
) -> None:
    """Validate a recipe without running it or writing anything: names, ranges, devices, files,
    layer patterns against the model (built on the meta device), checkpoint shapes."""
    from prunekit.experiment.check import check_recipe
    from prunekit.experiment.recipe import load_recipe
    from prunekit.experiment.runner import run_dir_for

    _configure_logging(quiet=True)
    with user_errors(str(recipe)):
        parsed = load_recipe(recipe, set_ or [])
        model = check_recipe(parsed, out)
    params = sum(p.numel() for p in model.parameters())
    console.print(f"recipe OK: {parsed.name} ({parsed.prune.method} pruning of {parsed.model.name}, {params:,} parameters, "
                  f"on {parsed.data.name}); run directory: {run_dir_for(parsed, out).path}", markup=False, highlight=False)


@app.command()
def demo(out: OutOption = Path("runs"), quiet: QuietOption = False) -> None:
    """Train, prune, fine-tune, compress and report on the embedded digits data (offline, < 3 min)."""
    from prunekit.experiment.recipe import load_recipe
    from prunekit.experiment.runner import run_recipe

    _configure_logging(quiet)
    source = resources.files("prunekit") / "recipes" / "demo.yaml"
    with user_errors("demo recipe"), resources.as_file(source) as path:
        run_dir = run_recipe(load_recipe(path), out, progress=not quiet)
    _print_summary(run_dir)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory (holds summary.json)")]) -> None:
    """Rebuild report.md and report.html of a finished run."""
    from prunekit.errors import DamagedFileError
    from prunekit.experiment.rundir import RunDir
    from prunekit.report import write_report

    with user_errors(str(run_dir)):
        run = RunDir(run_dir).open()
        summary = run.summary()
        try:
            md, html = write_report(run_dir, summary)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a summary.json written by hand
            raise DamagedFileError(f"run summary {run_dir / 'summary.json'} is damaged (malformed: {exc!r}); {run.redo_hint}") from None
    console.print(f"wrote {md} and {html}")


RunDirArgument = Annotated[Path, typer.Argument(help="a finished run directory")]


@app.command()
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

    _configure_logging(quiet)
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
    from prunekit.analysis import structured_sensitivity
    from prunekit.analysis.group_space import resolve_shard
    from prunekit.errors import ConfigError
    from prunekit.experiment.recipe import load_recipe
    from prunekit.experiment.runner import prepare_run
    from prunekit._settings import settings_of
    from prunekit.pruners.structured_config import StructuredConfig
    from prunekit.report.plots import save_png

    _configure_logging(quiet)
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


def _update_summary(run_dir: Path, key: str, value: dict) -> None:
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


@app.command()
def compress(
    run_dir: RunDirArgument,
    set_: SetOption = None,
    trust_code: TrustOption = False,
    quiet: QuietOption = False,
) -> None:
    """Deep-Compress a run's pruned model into RUN_DIR/compressed.pkdc (settings: the recipe's
    ``compress`` section, changed with --set, e.g. --set fc_bits=4 --set finetune.epochs=2)."""
    from prunekit.experiment.compress_step import compress_step
    from prunekit.experiment.overrides import apply_overrides
    from prunekit.experiment.recipe import CompressSection
    from prunekit.experiment.runner import open_run

    _configure_logging(quiet)
    with user_errors(str(run_dir)):
        ctx, pruned = open_run(run_dir, progress=not quiet, allow_code=trust_code)
        base = ctx.recipe.compress.model_dump() if ctx.recipe.compress else {}
        section = CompressSection.model_validate(apply_overrides(base, set_ or []))
        ctx.run.redo(["compress"])
        result = compress_step(ctx, pruned.model, section)
    _update_summary(run_dir, "compression", result)
    console.print(f"wrote {run_dir / 'compressed.pkdc'}: {result['file_bytes']:,} bytes, {result['ratio_vs_dense_float32']:.1f}× smaller than "
                  f"dense float32; test accuracy {100 * result['accuracy_decompressed']:.2f}% (decompressed, bit-identical)")


@app.command()
def decompress(
    file: Annotated[Path, typer.Argument(help="a .pkdc file written by prunekit compress")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write the weights as a safetensors state dict")] = None,
) -> None:
    """Verify a compressed file (checksums, format version) and optionally write its weights."""
    from prunekit._io import save_safetensors
    from prunekit.compression import decompress_file

    with user_errors(str(file)):
        state, header = decompress_file(file)
        if out is not None:
            save_safetensors(out, state)
    total = sum(t.numel() for t in state.values())
    console.print(f"{file}: format version OK, checksums OK, {len(state)} tensors, {total:,} values"
                  + (f"; weights written to {out}" if out else ""))


@app.command()
def export(
    run_dir: RunDirArgument,
    format: Annotated[str, typer.Option("--format", help="export format (onnx)")] = "onnx",
    int8: Annotated[bool, typer.Option("--int8", help="also quantize to int8 with onnxruntime (static, calibrated)")] = False,
    accuracy: Annotated[Optional[bool], typer.Option("--accuracy/--no-accuracy", help="check the exported models' test accuracy (default: the recipe's export.accuracy, else yes)")] = None,
    trust_code: TrustOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export a run's pruned model to ONNX (validated in onnxruntime, timed), optionally int8."""
    from prunekit.errors import ConfigError
    from prunekit.experiment.export_step import export_step
    from prunekit.experiment.recipe import ExportSection
    from prunekit.experiment.runner import open_run

    _configure_logging(quiet)
    with user_errors(str(run_dir)):
        if format != "onnx":
            raise ConfigError(f"unknown export format {format!r}; allowed values: onnx")
        ctx, pruned = open_run(run_dir, progress=not quiet, allow_code=trust_code)
        section = (ctx.recipe.export or ExportSection()).model_copy(update={"int8": int8, **({} if accuracy is None else {"accuracy": accuracy})})
        ctx.run.redo(["export"])
        result = export_step(ctx, pruned.model, section)
    _update_summary(run_dir, "export", result)
    for name in ("onnx", "int8"):
        if name in result:
            accuracy = result[name]["accuracy"]
            checked = "accuracy not checked (export.accuracy: false)" if accuracy is None else f"test accuracy {100 * accuracy:.2f}%"
            console.print(f"{run_dir / result[name]['path']}: {result[name]['bytes']:,} bytes, {checked}")
    console.print("latency (ms, median, batch %d): %s" % (result["latency_batch_size"], ", ".join(f"{k} {v:.2f}" for k, v in result["latency_ms"].items())))


@app.command("list")
def list_(what: Annotated[str, typer.Argument(help="models | datasets | criteria | schedules | methods | corruptions | recipes | all")] = "all") -> None:
    """List registered models, datasets, criteria, schedules, pruning methods, corruptions and shipped recipes."""
    from prunekit.experiment.method_sections import METHODS
    from prunekit.experiment.recipe import shipped_recipes
    from prunekit.importance import GROUP_CRITERIA, UNSTRUCTURED_CRITERIA
    from prunekit.metrics import CORRUPTIONS
    from prunekit.schedules import SCHEDULES
    from prunekit.zoo import MODELS
    from prunekit.zoo.data import DATASETS

    tables = {
        "models": [(n, MODELS.meta(n)["description"]) for n in MODELS.names()],
        "datasets": [(n, DATASETS.meta(n).get("description", "")) for n in DATASETS.names()] + USER_DATA_KINDS,
        "criteria": [(n, "unstructured: " + UNSTRUCTURED_CRITERIA.meta(n).get("description", "")) for n in UNSTRUCTURED_CRITERIA.names()]
        + [(n, "structured (group): " + GROUP_CRITERIA.meta(n).get("description", "")) for n in GROUP_CRITERIA.names()],
        "schedules": [(n, "") for n in SCHEDULES.names()],
        "methods": [(n, METHODS.meta(n)["description"]) for n in METHODS.names()],
        "corruptions": [(n, f"{CORRUPTIONS.meta(n).get('family', 'other')}: " + (CORRUPTIONS.get(n).__doc__ or "").strip().splitlines()[0])
                        for n in CORRUPTIONS.names()],
        "recipes": [(name, _first_comment(path)) for name, path in sorted(shipped_recipes().items())],
    }
    with user_errors("list"):
        if what != "all" and what not in tables:
            from prunekit.errors import ConfigError

            from prunekit._registry import did_you_mean

            raise ConfigError(f"unknown listing {what!r}; allowed values: {', '.join(tables)}, all{did_you_mean(what, [*tables, 'all'])}")
    for name, rows in tables.items():
        if what in ("all", name):
            table = RichTable(title=name, show_header=False)
            table.add_column("name", style="bold")
            table.add_column("description")
            for row in rows:
                table.add_row(*row)
            console.print(table)


#: What ``prunekit list datasets`` shows besides the registered datasets: your own data.
USER_DATA_KINDS = [
    ("imagefolder", "your images: data.path holds <class>/*.jpg|png (or train/, val/, test/ of them); --data imagefolder:PATH"),
    ("arrays", "your arrays: data.path is a .npz file (or a folder of .npy) with x_train, y_train, x_test, y_test; --data arrays:PATH"),
    ("package.module:function", "your dataset factory, returning (train, val, test) pairs of (images, labels)"),
]


def _first_comment(path: Path) -> str:
    """The first sentence of a recipe's leading comment block."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(lines)
    return re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0] if text else ""


def main() -> None:
    """Entry point of the ``prunekit`` console script."""
    app()

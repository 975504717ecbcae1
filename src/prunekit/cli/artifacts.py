"""Commands on a run's outputs: ``report``, ``compress``, ``decompress``, ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from prunekit.cli.common import QuietOption, RunDirArgument, SetOption, TrustOption, configure_logging, console
from prunekit.cli.errors import user_errors
from prunekit.cli.summary import update_summary


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

    configure_logging(quiet)
    with user_errors(str(run_dir)):
        ctx, pruned = open_run(run_dir, progress=not quiet, allow_code=trust_code)
        base = ctx.recipe.compress.model_dump() if ctx.recipe.compress else {}
        section = CompressSection.model_validate(apply_overrides(base, set_ or []))
        ctx.run.redo(["compress"])
        result = compress_step(ctx, pruned.model, section)
    update_summary(run_dir, "compression", result)
    console.print(f"wrote {run_dir / 'compressed.pkdc'}: {result['file_bytes']:,} bytes, {result['ratio_vs_dense_float32']:.1f}× smaller than "
                  f"dense float32; test accuracy {100 * result['accuracy_decompressed']:.2f}% (decompressed, bit-identical)")


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

    configure_logging(quiet)
    with user_errors(str(run_dir)):
        if format != "onnx":
            raise ConfigError(f"unknown export format {format!r}; allowed values: onnx")
        ctx, pruned = open_run(run_dir, progress=not quiet, allow_code=trust_code)
        section = (ctx.recipe.export or ExportSection()).model_copy(update={"int8": int8, **({} if accuracy is None else {"accuracy": accuracy})})
        ctx.run.redo(["export"])
        result = export_step(ctx, pruned.model, section)
    update_summary(run_dir, "export", result)
    for name in ("onnx", "int8"):
        if name in result:
            accuracy = result[name]["accuracy"]
            checked = "accuracy not checked (export.accuracy: false)" if accuracy is None else f"test accuracy {100 * accuracy:.2f}%"
            console.print(f"{run_dir / result[name]['path']}: {result[name]['bytes']:,} bytes, {checked}")
    console.print("latency (ms, median, batch %d): %s" % (result["latency_batch_size"], ", ".join(f"{k} {v:.2f}" for k, v in result["latency_ms"].items())))

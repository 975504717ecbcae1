"""Commands that run or check a recipe: ``run``, ``prune`` (a recipe from options), ``check``, ``demo``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from prunekit.cli.common import ForceOption, FromStepOption, OutOption, QuietOption, SetOption, configure_logging, console
from prunekit.cli.errors import user_errors
from prunekit.cli.summary import print_summary

if TYPE_CHECKING:
    from prunekit.experiment.recipe import Recipe


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

    configure_logging(quiet or distributed.resolve_shard().rank != 0)  # rank 1.. log warnings only
    with user_errors(source):
        parsed = load()
        distributed.init_from_env(parsed.device)
        run_dir = run_recipe(parsed, out, progress=not quiet, force=force, from_step=from_step)
    main = distributed.is_main_process()
    distributed.shutdown()
    if main:
        print_summary(run_dir)


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

    configure_logging(quiet=True)
    with user_errors(str(recipe)):
        parsed = load_recipe(recipe, set_ or [])
        model = check_recipe(parsed, out)
    params = sum(p.numel() for p in model.parameters())
    console.print(f"recipe OK: {parsed.name} ({parsed.prune.method} pruning of {parsed.model.name}, {params:,} parameters, "
                  f"on {parsed.data.name}); run directory: {run_dir_for(parsed, out).path}", markup=False, highlight=False)


def demo(out: OutOption = Path("runs"), quiet: QuietOption = False) -> None:
    """Train, prune, fine-tune, compress and report on the embedded digits data (offline, < 3 min)."""
    from prunekit.experiment.recipe import load_recipe
    from prunekit.experiment.runner import run_recipe

    configure_logging(quiet)
    source = resources.files("prunekit") / "recipes" / "demo.yaml"
    with user_errors("demo recipe"), resources.as_file(source) as path:
        run_dir = run_recipe(load_recipe(path), out, progress=not quiet)
    print_summary(run_dir)

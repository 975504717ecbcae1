"""Run a recipe: dense → prune (method) → evaluate → compress → export → deploy → report, skipping finished steps.

Each step records its result in ``steps/<step>.json`` only after its outputs are written, so a
run killed at any point (even with SIGKILL) resumes where it stopped when started again;
training inside a step resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from torch import nn

from prunekit._io import check_links, write_json
from prunekit.errors import CheckpointError, DamagedFileError
from prunekit.experiment.artifacts import load_model, save_model
from prunekit.experiment.check import check_recipe
from prunekit.experiment.compress_step import compress_step
from prunekit.experiment.context import MethodResult, RunContext
from prunekit.experiment.deploy_step import deploy_step
from prunekit.experiment.env import environment
from prunekit.experiment.evaluation import compare, curve_prune_potential, evaluation_note
from prunekit.experiment.export_step import export_step
from prunekit.experiment.pie_step import write_pie
from prunekit.experiment.inputs import VERSION_KEY, input_fingerprints, record_inputs
from prunekit.experiment.method_sections import METHODS
from prunekit.experiment.recipe import Recipe
from prunekit.experiment.rundir import RunDir, settings_hash, steps_to_redo
from prunekit.masks import MaskSet
from prunekit.report import write_report
from prunekit.training import distributed, fit
from prunekit.zoo import get_loaders
from prunekit.zoo.checkpoints import load_weights

log = logging.getLogger(__name__)


def run_dir_for(recipe: Recipe, out_dir: str | os.PathLike[str] = "runs", inputs: dict[str, str] | None = None) -> RunDir:
    """``<out_dir>/<name>-<hash>`` of the non-default settings (see :meth:`Recipe.identity`) and the
    fingerprints of the files and code the recipe names (``inputs``, else :func:`input_fingerprints`)."""
    inputs = input_fingerprints(recipe) if inputs is None else inputs
    return RunDir(Path(out_dir) / f"{recipe.name}-{settings_hash({**recipe.identity(), 'inputs': inputs})}")


def _loaders(recipe: Recipe, progress: bool):
    d = recipe.data
    registered = {"root": d.root, "download": d.download} if d.kind == "registered" else {}
    return get_loaders(d.name, batch_size=d.batch_size, val_fraction=d.val_fraction, seed=recipe.seed, augment=d.augment,
                       subset=d.subset, num_workers=d.num_workers, progress=progress, **registered, **d.user_options())


def prepare_run(recipe: Recipe, out_dir: str | os.PathLike[str] = "runs", progress: bool = True, *,
                redo: Collection[str] = ()) -> RunContext:
    """Check the recipe (nothing is written if it fails), load the data, create (or reopen) the run
    directory and make sure the dense model exists. The steps in ``redo`` run again from their start.

    Under torchrun (:mod:`prunekit.training.distributed`) every rank runs the steps that train,
    rank 0 alone writes the run directory and shows progress, and the others wait for it at a
    barrier wherever they would read what it wrote."""
    check_recipe(recipe, out_dir)
    main = distributed.is_main_process()
    progress = progress and main
    data = _loaders(recipe, progress) if main else None  # rank 0 downloads first
    distributed.barrier()
    data = data or _loaders(recipe, progress)
    inputs = input_fingerprints(recipe)
    run = run_dir_for(recipe, out_dir, inputs)
    if main:
        run.initialise(recipe.resolved(), environment())
        record_inputs(run, recipe, inputs)
        run.redo(redo)
    distributed.barrier()
    ctx = RunContext(recipe, run, data, progress, inputs)
    log.info("run directory: %s", run.path)
    dense_step(ctx, fresh="dense" in redo)
    return ctx


def run_recipe(recipe: Recipe, out_dir: str | os.PathLike[str] = "runs", progress: bool = True, *,
               force: bool = False, from_step: str | None = None) -> Path:
    """Run (or resume) ``recipe`` under ``out_dir``; returns the run directory.

    Finished steps are skipped unless ``force`` (redo every step) or ``from_step`` (redo that step
    and the ones after it, in :data:`~prunekit.experiment.rundir.STEPS` order)."""
    ctx = prepare_run(recipe, out_dir, progress, redo=steps_to_redo(force, from_step))
    run = ctx.run
    pruned = prune_step(ctx)
    main = distributed.is_main_process()
    summary = evaluate_step(ctx, pruned) if main else {}
    if recipe.compress is not None:
        summary["compression"] = compress_step(ctx, pruned.model, recipe.compress)
    if not main:  # under torchrun rank 0 alone evaluates, exports, deploys and reports
        return run.path
    if recipe.export is not None:
        summary["export"] = export_step(ctx, pruned.model, recipe.export)
    if recipe.deploy is not None:
        summary["deploy"] = deploy_step(ctx, pruned.model, recipe.deploy)
    write_json(run.path / "summary.json", summary)
    write_report(run.path, summary)
    return run.path


def open_run(run_dir: str | os.PathLike[str], progress: bool = True, *, allow_code: bool = False) -> tuple[RunContext, MethodResult]:
    """The context and pruned result of a finished run directory (for ``compress``/``export`` later).

    A run directory may come from someone else: unless ``allow_code``, a recipe whose model is
    user code (``package.module:factory``) is refused instead of imported."""
    from prunekit.experiment.recipe import load_recipe

    run = RunDir(run_dir)
    if not (run.done("dense") and run.done("prune")):
        raise CheckpointError(f"{run.path} is not a finished run directory (no steps/dense.json and steps/prune.json)")
    run.open()
    recipe = load_recipe(run.path / "recipe.yaml", allow_code=allow_code)
    ctx = RunContext(recipe, run, _loaders(recipe, progress), progress)
    return ctx, _finished_pruned(ctx)


def dense_key(recipe: Recipe, inputs: dict[str, str] | None = None) -> str:
    """Hash of everything the dense model depends on (runs that share it share one training): the
    settings and input fingerprints (``inputs``, else :func:`input_fingerprints`) of the seed, device,
    model, data and train sections, and the prunekit version."""
    settings = recipe.identity()
    inputs = input_fingerprints(recipe) if inputs is None else inputs
    sections = ("seed", "device", "model", "data", "train")
    return settings_hash({**{k: settings.get(k) for k in sections},
                          "inputs": {k: v for k, v in inputs.items() if k == VERSION_KEY or k.partition(".")[0] in sections}})


def dense_step(ctx: RunContext, *, fresh: bool = False) -> None:
    """Train the dense model (or load ``model.checkpoint``) and save it as ``checkpoints/dense``.

    Trained dense models are also kept in ``<out>/dense-cache/``: another run with the same model,
    data, training settings and seed reuses it instead of training again (unless ``fresh``: the
    model is trained again and replaces the cached one).
    A damaged ``checkpoints/dense.*`` or ``steps/dense.json`` is reported and the step redone.
    """
    run = ctx.run
    target = run.path / "checkpoints" / "dense"
    if run.reuse("dense", lambda _: load_model(target)) is not None:
        log.info("dense model: already trained (%s)", target.with_suffix(".safetensors"))
        return
    start = time.perf_counter()
    model = _dense_model(ctx, fresh)
    accuracy = ctx.test(model).accuracy
    if distributed.is_main_process():
        save_model(target, model, ctx.description)
    run.mark_done("dense", {"test_accuracy": accuracy, "seconds": time.perf_counter() - start})
    distributed.barrier()  # the other ranks read checkpoints/dense after this


def _dense_model(ctx: RunContext, fresh: bool = False) -> nn.Module:
    """The recipe's ``model.checkpoint``, else the dense cache's model (unless ``fresh``), else a newly trained (and cached) one."""
    run, recipe = ctx.run, ctx.recipe
    if recipe.model.checkpoint:
        log.info("dense model: loading %s", recipe.model.checkpoint)
        model = ctx.new_model()
        try:
            model.load_state_dict(load_weights(recipe.model.checkpoint, model))
        except CheckpointError as exc:
            raise CheckpointError(f"model.checkpoint: {exc}") from None
        return model
    cache = run.path.parent / "dense-cache" / f"{_cache_label(recipe.model.name)}-{dense_key(recipe, ctx.inputs)}"
    check_links(cache.parent, within=run.path.parent, what="the output folder")
    cached = None if fresh else _cached_dense(cache / "dense")
    if cached is not None:
        log.info("dense model: reusing %s (same model, data, training and seed)", cache)
        return cached.to(ctx.device)
    log.info("dense model: training")
    model = ctx.new_model()
    fit(model, ctx.data.train, recipe.train, val=ctx.data.val, callbacks=[ctx.logger("dense")],
        checkpoint=run.checkpoint("dense-train"), device=ctx.device, progress=ctx.progress, description="dense training")
    if distributed.is_main_process():
        save_model(cache / "dense", model, ctx.description)
    return model


def _cache_label(model_name: str) -> str:
    """A short file-name part for ``model_name``: ``timm_resnet18``, ``pkg.models_build``, ``net_build`` for ``/abs/net.py:build``."""
    source, sep, function = model_name.rpartition(":")
    if sep and source.endswith(".py"):
        model_name = f"{Path(source).stem}:{function}"
    return model_name.replace("/", "_").replace(":", "_")[:100]


def _cached_dense(path: Path) -> nn.Module | None:
    """The dense model kept at ``path`` (``.json`` + ``.safetensors``); ``None`` if absent or damaged (a warning)."""
    if not path.with_suffix(".json").exists():
        return None
    try:
        model, _ = load_model(path)
    except CheckpointError as exc:
        log.warning("%s; training the dense model again", exc)
        return None
    return model


def prune_step(ctx: RunContext) -> MethodResult:
    """Run the recipe's pruning method once; afterwards reload its saved result.

    A damaged ``checkpoints/pruned.*`` or ``steps/prune.json`` is reported and the method run again
    (it resumes from its own round files)."""
    run = ctx.run
    reused = run.reuse("prune", lambda saved: _pruned_result(ctx, saved))
    if reused is not None:
        log.info("pruning: already done; loaded %s", run.path / "checkpoints" / "pruned")
        return reused
    log.info("pruning: method %s", ctx.recipe.prune.method)
    start = time.perf_counter()
    result = METHODS.get(ctx.recipe.prune.method).run(ctx)
    description = ctx.description
    if result.architecture is not None:
        description["architecture"] = result.architecture
    if distributed.is_main_process():
        save_model(run.path / "checkpoints" / "pruned", result.model, description)
    run.mark_done("prune", {"curve": result.curve, "layers": result.layers, "extra": result.extra, "seconds": time.perf_counter() - start})
    distributed.barrier()
    return result


def _write_pie(ctx: RunContext, pie: dict[str, Any]) -> dict[str, Any]:
    """``pie.json`` and the PIE thumbnails in the run directory, de-normalised with the test set's mean/std
    (rank 0 only under torchrun: its step record is the one kept)."""
    if not distributed.is_main_process():
        return {}
    test_set = getattr(ctx.data.test, "dataset", None)
    return write_pie(ctx.run.path, pie, ctx.test_batches(), ctx.data.class_names, getattr(test_set, "mean", None), getattr(test_set, "std", None))


def _pruned_result(ctx: RunContext, saved: dict[str, Any]) -> MethodResult:
    """The saved pruned model (masks attached) and the report rows recorded in ``steps/prune.json``."""
    missing = sorted({"curve", "layers", "extra"} - saved.keys())
    if missing:
        raise DamagedFileError(f"step record {ctx.run.step_file('prune')} is damaged (no {', '.join(missing)})")
    model, description = load_model(ctx.run.path / "checkpoints" / "pruned", attach_masks=True)
    return MethodResult(model=model.to(ctx.device), curve=saved["curve"], layers=saved["layers"], extra=saved["extra"],
                        architecture=description.get("architecture"))


def _finished_pruned(ctx: RunContext) -> MethodResult:
    """The pruned result of a finished run (dense model checked too); a damaged file is an error saying how to redo it."""
    try:
        ctx.dense_model()
        return _pruned_result(ctx, ctx.run.result("prune"))
    except CheckpointError as exc:
        raise type(exc)(f"{exc}; {ctx.run.redo_hint}") from None


def evaluate_step(ctx: RunContext, pruned: MethodResult) -> dict[str, Any]:
    """Dense vs pruned on the test set, with size/MACs/disk/latency: the body of ``summary.json``."""
    run, recipe = ctx.run, ctx.recipe
    result = run.reuse("evaluate", dict)
    if result is None:
        ev = recipe.evaluate
        measured = compare(ctx.dense_model(), pruned.model, ctx.test_batches(), ctx.example_input(), ctx.data.num_classes,
                           latency_batch_size=ev.latency_batch_size if ev.latency else None, latency_repeats=ev.latency_repeats,
                           corruptions=ev.corruptions, corruption_severity=ev.corruption_severity,
                           latency_runtime=ev.latency_runtime or getattr(recipe.prune, "runtime", None) or "torch",
                           progress=ctx.progress)
        measured["pie"] = _write_pie(ctx, measured.pop("pie_examples"))
        run.mark_done("evaluate", measured)
        result = run.result("evaluate")  # as JSON, like a reused result
    result["per_class"]["classes"] = list(ctx.data.class_names)
    notes = [f"data: {ctx.data.source}"]
    partial = evaluation_note(result.get("evaluation", {}))
    if partial:
        notes.append(partial)
    if len(MaskSet.from_model(pruned.model)):
        notes.append("unstructured sparsity keeps dense tensors: the measured speed-up stays ≈1× unless the model is "
                     "deployed with sparse kernels (prunekit.deploy)")
    notes += [str(v) for k, v in pruned.extra.items() if k.endswith("_note")]
    if recipe.prune.method == "structured" and result.get("measured_speedup", 1.0) < 1.0:
        notes.append(f"WARNING: the pruned model is SLOWER than the dense one on {result.get('latency_runtime', 'torch')} "
                     f"(measured speed-up {result['measured_speedup']:.2f}×); prune for the runtime with prune.latency_reduction "
                     f"and prune.runtime / prune.batch_size, or leave prune.round_to at 'auto'")
    return {
        "run": {"name": recipe.name, "id": run.id, "model": recipe.model.name, "dataset": recipe.data.name,
                "method": recipe.prune.method},
        **result,
        "curve": pruned.curve,
        "prune_potential": curve_prune_potential(pruned.curve, result["dense"]["accuracy"]),
        "layers": pruned.layers,
        "notes": notes,
        **{key: pruned.extra[key] for key in ("stop", "staircase", "dynamic", "allocations") if key in pruned.extra},
    }


"""Shared benchmark helpers: data location, cached dense checkpoints, result writing.

Dense models are trained once per settings and code version and cached under ``benchmarks/work/``
(git-ignored; the slow CIFAR ones are also committed under ``benchmarks/checkpoints/``), keyed by a hash of the settings and a fingerprint of the code that trains them
(:mod:`code_version`), so several benchmarks start from the same checkpoint and none silently reuses
one trained by older code. :func:`run_recipe_checked` does the same for recipe run directories.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from code_version import changed_files, code_record, git_proves_unchanged, module_closure  # noqa: E402
from prunekit._io import load_safetensors, save_safetensors, write_json, write_text  # noqa: E402
from prunekit.experiment.env import environment  # noqa: E402
from prunekit.experiment.rundir import RunDir, settings_hash  # noqa: E402
from prunekit.report.tables import Table  # noqa: E402
from prunekit.training import TrainConfig, fit  # noqa: E402
from prunekit.zoo import create_model, get_loaders  # noqa: E402

WORK = ROOT / "work"
#: Committed dense checkpoints (small CIFAR/MNIST models that take hours to train on a CPU), each with its
#: settings record and code fingerprint; used exactly like entries in WORK.
CHECKPOINTS = ROOT / "checkpoints"
RESULTS = ROOT / "results"
log = logging.getLogger("benchmarks")


def data_root() -> Path:
    """``PRUNEKIT_DATA`` if set, else ``../shared/data`` beside the repository, else the user cache."""
    env = os.environ.get("PRUNEKIT_DATA")
    if env:
        return Path(env)
    shared = ROOT.parent.parent / "shared" / "data"
    return shared if shared.is_dir() else Path.home() / ".cache" / "prunekit" / "data"


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


#: Modules (under prunekit) a dense checkpoint depends on, with everything they import (:func:`code_version.module_closure`).
DENSE_CODE = ("training.loop", "zoo.models", "zoo.data")
#: Modules each step of a recipe run depends on (a step also depends on every step before it);
#: ``{method}`` is the recipe's pruning method.
RUN_STEP_CODE = {
    "dense": DENSE_CODE,
    "prune": ("experiment.methods.{method}",),
    "evaluate": ("experiment.evaluation",),
    "compress": ("experiment.compress_step",),
}


def reuse_stale_default() -> bool:
    """``PRUNEKIT_REUSE_STALE=1``: reuse cached steps computed by different code (explicit opt-in)."""
    return os.environ.get("PRUNEKIT_REUSE_STALE", "") == "1"


def dense_checkpoint(model: str, dataset: str, train: TrainConfig, *, batch_size: int = 128, val_fraction: float = 0.1, seed: int = 0,
                     subset: int | None = None, progress: bool = True, reuse_stale: bool | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train (or load the cached) dense ``model`` on ``dataset``; returns the model and its record
    (``record["weights"]``: the safetensors file it was loaded from or saved to).

    The cache is keyed on the settings and the fingerprint of :data:`DENSE_CODE`. An entry from
    before fingerprints (no ``<key>.code.json``) is adopted when git proves that it ran the current
    code; otherwise it is left untouched and a new one is trained, unless ``reuse_stale`` (default:
    ``PRUNEKIT_REUSE_STALE=1``)."""
    settings = {"model": model, "dataset": dataset, "train": _train_key(train), "batch_size": batch_size, "val_fraction": val_fraction, "seed": seed}
    if subset is not None:
        settings["subset"] = subset
    parts = module_closure(DENSE_CODE)
    code = code_record(parts)
    legacy = f"dense-{model}-{dataset}-{settings_hash(settings)}"
    key = f"{legacy}-c{code['fingerprint'][:8]}"
    data = get_loaders(dataset, data_root(), batch_size=batch_size, val_fraction=val_fraction, seed=seed, subset=subset, progress=False)
    torch.manual_seed(seed)
    net = create_model(model, data.num_classes, data.input_shape)
    reuse_stale = reuse_stale_default() if reuse_stale is None else reuse_stale
    candidates = [(WORK, key), (CHECKPOINTS, key), (WORK, legacy)]
    candidates += [(CHECKPOINTS, p.name.removesuffix(".safetensors")) for p in sorted(CHECKPOINTS.glob(f"{legacy}-c*.safetensors"))
                   if p.name != f"{key}.safetensors"]
    for folder, candidate in candidates:
        weights, record_file = folder / f"{candidate}.safetensors", folder / f"{candidate}.json"
        if weights.exists() and record_file.exists():
            record = json.loads(record_file.read_text())
            if candidate == key or _reusable(folder / f"{candidate}.code.json", code, _started(record_file, record), parts,
                                             f"dense checkpoint {candidate}", reuse_stale):
                net.load_state_dict(load_safetensors(weights))
                return net, {**record, "key": candidate, "weights": str(weights)}
    start = time.perf_counter()
    result = fit(net, data.train, train, val=data.val, checkpoint=WORK / f"{key}.train.safetensors", progress=progress, description=f"dense {model}")
    from prunekit.metrics import evaluate

    record = {"key": key, "settings": settings, "history": result.history, "test_accuracy": evaluate(net, data.test).accuracy,
              "train_seconds": time.perf_counter() - start, "code": code}
    save_safetensors(WORK / f"{key}.safetensors", net.state_dict())
    write_json(WORK / f"{key}.code.json", code)
    write_json(WORK / f"{key}.json", record)
    return net, {**record, "weights": str(WORK / f"{key}.safetensors")}


def code_status(recorded: dict[str, Any] | None, code: dict[str, Any], started: float, parts: tuple[str, ...], *, what: str,
                reuse_stale: bool) -> str:
    """Whether a cached entry may be reused: ``"current"`` (its ``recorded`` code equals ``code``),
    ``"adopted"`` (no record, and git proves the code unchanged since ``started``), ``"stale-reused"``
    (different code, but ``reuse_stale``) or ``"stale"``. Every stale verdict is logged, naming why."""
    if recorded is not None:
        if recorded.get("fingerprint") == code["fingerprint"]:
            return "current"
        why = f"computed by different code (changed: {', '.join(changed_files(recorded, code)[:6]) or 'unknown'})"
    else:
        same, detail = git_proves_unchanged(parts, started)
        if same:
            log.info("%s predates code fingerprints; adopted: its code is unchanged since commit %s", what, detail)
            return "adopted"
        why = f"has no code fingerprint and cannot be proved current: {detail}"
    if reuse_stale:
        log.warning("%s is %s; reusing it anyway (reuse_stale / PRUNEKIT_REUSE_STALE=1)", what, why)
        return "stale-reused"
    log.warning("%s is %s; computing it again (set PRUNEKIT_REUSE_STALE=1 to reuse it)", what, why)
    return "stale"


def _reusable(sidecar: Path, code: dict[str, Any], started: float, parts: tuple[str, ...], what: str, reuse_stale: bool) -> bool:
    """:func:`code_status` of a cache entry whose code record is the file ``sidecar`` (written on adoption)."""
    recorded = json.loads(sidecar.read_text()) if sidecar.exists() else None
    status = code_status(recorded, code, started, parts, what=what, reuse_stale=reuse_stale)
    if status == "adopted":
        write_json(sidecar, code)
    return status != "stale"


def _started(record_file: Path, record: dict[str, Any]) -> float:
    """When a legacy entry's training started: its record's time less the training time it records."""
    return record_file.stat().st_mtime - float(record.get("train_seconds") or 0.0)


def step_parts(step: str, method: str) -> tuple[str, ...]:
    """Source files of ``step`` of a recipe run: its modules' and every earlier step's, imports included."""
    steps = list(RUN_STEP_CODE)
    base = step.partition("-")[0]  # "compress-<name>" steps are compressions too
    upto = steps[: steps.index(base) + 1] if base in steps else steps
    return module_closure(m.format(method=method) for s in upto for m in RUN_STEP_CODE[s])


def run_recipe_checked(recipe: Any, out_dir: Path | None = None, *, reuse_stale: bool | None = None, progress: bool = False) -> Path:
    """``run_recipe`` under ``out_dir`` (default ``work/runs``), first redoing from the earliest done
    step whose code changed since it ran (:func:`code_status`; steps of runs from before
    fingerprints are adopted when git proves their code current). Records each step's code in
    ``<out_dir>/<run id>.code.json``; returns the run directory."""
    from prunekit.experiment.runner import dense_key, run_dir_for, run_recipe

    out_dir = out_dir or WORK / "runs"
    reuse_stale = reuse_stale_default() if reuse_stale is None else reuse_stale
    run = run_dir_for(recipe, out_dir)
    sidecar = out_dir / f"{run.id}.code.json"
    recorded = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    method = str(getattr(recipe.prune, "method", "unstructured"))
    redo, keep = stale_steps(run, recorded, method, reuse_stale)
    dense_parts = module_closure(DENSE_CODE)
    dense = code_record(dense_parts)
    caches = sorted((out_dir / "dense-cache").glob(f"*-{dense_key(recipe)}"))
    if not run.done("dense") and caches:  # the runner would reuse a dense model another run trained
        cache_record = caches[0].with_name(caches[0].name + ".code.json")
        started = min((f.stat().st_mtime for f in caches[0].rglob("*") if f.is_file()), default=time.time())
        if not _reusable(cache_record, dense, started, dense_parts, f"cached dense model {caches[0].name}", reuse_stale):
            redo = "dense"
    path = run_recipe(recipe, out_dir, progress=progress, from_step=redo)
    steps = {s: recorded[s] if s in keep else code_record(step_parts(s, method)) for s in RUN_STEP_CODE if run.done(s)}
    write_json(sidecar, steps)
    if "dense" not in keep:
        for cache in sorted((out_dir / "dense-cache").glob(f"*-{dense_key(recipe)}")):
            write_json(cache.with_name(cache.name + ".code.json"), dense)
    return path


def stale_steps(run: RunDir, recorded: dict[str, Any], method: str, reuse_stale: bool) -> tuple[str | None, set[str]]:
    """``(earliest done step of run to redo, or None; steps reused although stale)``."""
    files = [p for p in run.path.rglob("*") if p.is_file()]
    started = min((p.stat().st_mtime for p in files), default=time.time())
    kept: set[str] = set()
    for step in RUN_STEP_CODE:
        if not run.done(step):
            continue
        parts = step_parts(step, method)
        status = code_status(recorded.get(step), code_record(parts), started, parts, what=f"step {step!r} of run {run.id}",
                             reuse_stale=reuse_stale)
        if status == "stale":
            return step, kept
        if status == "stale-reused":
            kept.add(step)
    return None, kept


#: TrainConfig fields added after dense checkpoints were first cached: left out of the key at their defaults.
_LATER_TRAIN_FIELDS = ("precision", "channels_last", "compile", "grad_accumulation", "augment")


def _train_key(train: TrainConfig) -> dict[str, Any]:
    """``train``'s settings as cached checkpoints are keyed (keys of existing caches stay valid)."""
    dump = train.model_dump(mode="json")
    return {k: v for k, v in dump.items() if not (k in _LATER_TRAIN_FIELDS and v == TrainConfig.model_fields[k].default)}


def write_results(name: str, payload: dict[str, Any], tables: list[Table], preamble: str = "", command: str | None = None) -> None:
    """Write ``results/<name>.json`` (payload + environment) and ``results/<name>.md`` (tables).

    ``command`` is what produced them (default ``python benchmarks/<name>.py``).
    """
    command = command or f"python benchmarks/{name}.py"
    payload = {**payload, "environment": environment(), "generated": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(RESULTS / f"{name}.json", payload)
    body = [f"# Benchmark: {name}", "", preamble.strip(), ""] if preamble else [f"# Benchmark: {name}", ""]
    body += [t.to_markdown() for t in tables]
    body.append(f"_Generated {payload['generated']} by `{command}`; environment in `{name}.json`._\n")
    write_text(RESULTS / f"{name}.md", "\n".join(body))

"""Recipes: YAML files validated by pydantic; the same objects drive the Python API.

A recipe names a model, a dataset, dense training, a pruning ``method`` with its settings, and
optional compression/export. Unknown keys, wrong types, out-of-range values and unknown names
fail with the field path and the allowed values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from prunekit.compression import CompressionSpec
from prunekit.deployment.sparse import DeployConfig
from prunekit._settings import MAX_BATCH, MAX_COUNT, Seed, Settings
from prunekit.errors import ConfigError, PrunekitError, shorten
from prunekit.experiment.overrides import apply_overrides
from prunekit.experiment.recipe_base import ALLOW_CODE, DataSpec, EvaluateSpec, ModelSpec
from prunekit.experiment.recipe_file import parse_yaml, read_recipe_text
from prunekit.pruners.structured import StructuredConfig
from prunekit.pruners.unstructured import UnstructuredConfig
from prunekit.schedules import SCHEDULES, build_schedule
from prunekit.training.config import TrainConfig
from prunekit.training.dst import DSTConfig
from prunekit.training.lottery import LotteryConfig
from prunekit.training.sparsity import SparsityLearningConfig as SparsityLearning


def _check_baselines(values: tuple[str, ...], check_criterion: Callable[[str], Any], kind: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Validate ``criterion[:<kind>]`` baseline strings (e.g. ``random:global``)."""
    for value in values:
        criterion, _, second = value.partition(":")
        check_criterion(criterion)
        if second not in ("", *allowed):
            raise ValueError(f"baseline {value!r}: unknown {kind} {second!r}; allowed values: {', '.join(allowed)}")
    return values


def _variants(main: tuple[str, str], baselines: Sequence[str]) -> list[tuple[str, str]]:
    """``main`` first, then each baseline as ``(criterion, its own second part or main's)``, duplicates dropped."""
    pairs = [main]
    for value in baselines:
        criterion, _, second = value.partition(":")
        pairs.append((criterion, second or main[1]))
    return list(dict.fromkeys(pairs))


def _check_schedule(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    if spec is None:
        return spec
    if not isinstance(spec.get("name"), str):
        raise ValueError(f"schedule name must be text, one of: {', '.join(SCHEDULES.names())} (got {shorten(spec.get('name'))})")
    try:
        build_schedule(spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid {spec['name']} schedule: {problems}") from None
    except PrunekitError as exc:
        raise ValueError(str(exc)) from None
    return spec


class UnstructuredMethod(UnstructuredConfig):
    """Prune → fine-tune: one round (one-shot, the default) or the rounds of ``schedule``.

    ``schedule`` is a schedule in its dict form, e.g. ``{name: iterative, rate: 0.5,
    final_sparsity: 0.9}``; each of its pruning steps is one prune + fine-tune round.
    ``baselines`` are other criteria run through the same rounds and fine-tuning budget, as
    ``criterion`` (same scope) or ``criterion:scope`` (e.g. ``magnitude:layer``).
    """

    method: Literal["unstructured"] = "unstructured"
    schedule: dict[str, Any] | None = None
    finetune: TrainConfig = TrainConfig(epochs=2)
    baselines: tuple[str, ...] = ("random",)

    _schedule = field_validator("schedule")(_check_schedule)

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return _check_baselines(values, cls._known_criterion, "scope", ("layer", "global"))

    def variants(self) -> list[tuple[str, str]]:
        """``(criterion, scope)`` of the main method first, then of each baseline (duplicates dropped)."""
        return _variants((self.criterion, self.scope), self.baselines)


class GradualMethod(UnstructuredConfig):
    """Pruning during training: masks follow ``schedule`` (e.g. polynomial decay or cubic) every
    ``frequency`` steps while training with ``train`` (starting from the dense model)."""

    method: Literal["gradual"] = "gradual"
    schedule: dict[str, Any] = Field(
        default_factory=lambda: {"name": "polynomial_decay", "initial_sparsity": 0.0, "final_sparsity": 0.5, "end_step": 1000, "frequency": 100}
    )
    train: TrainConfig = TrainConfig(epochs=5)

    _schedule = field_validator("schedule")(_check_schedule)


class LotteryMethod(LotteryConfig):
    """Lottery tickets: iterative magnitude pruning with reset (or rewind) to the initial weights.
    Each round trains with the recipe's top-level ``train`` (there is no ``prune.train``)."""

    method: Literal["lottery"] = "lottery"
    train: None = Field(None, exclude=True)  # type: ignore[assignment]

    @field_validator("train", mode="before")
    @classmethod
    def _no_train(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("lottery rounds train with the top-level 'train' section; move the settings there")
        return None


class NMMethod(Settings):
    """N:M sparsity (e.g. 2:4): keep the ``n`` largest of every ``m`` consecutive input-channel weights,
    optionally after a function-preserving channel-permutation search, then fine-tune with fixed masks.
    ``baselines``: ``nm_plain`` / ``nm_permuted`` (the other permutation setting) and ``unstructured``
    (layer-wise magnitude at the same sparsity, 1 − n/m), under the same fine-tuning budget."""

    method: Literal["nm"] = "nm"
    n: int = Field(2, ge=1, le=1024)
    m: int = Field(4, ge=2, le=1024)
    permute: bool = True
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    finetune: TrainConfig = TrainConfig(epochs=2)
    baselines: tuple[Literal["nm_plain", "nm_permuted", "unstructured"], ...] = ("unstructured",)

    @model_validator(mode="after")
    def _n_below_m(self) -> NMMethod:
        if self.n >= self.m:
            raise ValueError(f"n must be smaller than m (got {self.n}:{self.m}); e.g. 2:4, 1:4, 4:8")
        return self


class StructuredMethod(StructuredConfig):
    """Structured pruning that removes channels, neurons and heads for real: one-shot or ``steps``
    prune → fine-tune steps toward one target (channel ratio, per-layer ratios, or a MACs/params
    budget), optionally after a sparsity-learning phase. Gradient criteria (``taylor``, ``hessian``)
    and activation criteria (``activation``, ``apoz``) use ``calibration_batches`` training batches.
    ``baselines`` are ``criterion`` or ``criterion:allocation`` (e.g. ``random:uniform``), pruned to
    the same target with the same fine-tuning (without sparsity learning)."""

    method: Literal["structured"] = "structured"
    finetune: TrainConfig = TrainConfig(epochs=2)
    sparsity_learning: SparsityLearning | None = None
    calibration_batches: int = Field(8, ge=1, le=MAX_COUNT)
    baselines: tuple[str, ...] = ()

    @field_validator("importance")
    @classmethod
    def _known_importance(cls, value: str) -> str:
        from prunekit.importance import GROUP_CRITERIA

        return GROUP_CRITERIA.check(value)

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return _check_baselines(values, cls._known_importance, "allocation", ("uniform", "global"))

    def variants(self) -> list[tuple[str, str]]:
        """``(criterion, allocation)`` of the main method, then of each baseline (duplicates dropped)."""
        return _variants((self.importance, self.resolved_allocation), self.baselines)


class DSTMethod(DSTConfig):
    """Dynamic sparse training from scratch at constant sparsity: RigL (drop smallest magnitudes, grow
    largest gradients) or SET (grow at random), ERK or uniform layer densities, with ``train``."""

    method: Literal["dst"] = "dst"
    algorithm: Literal["rigl", "set"] = "rigl"
    train: TrainConfig = TrainConfig(epochs=10)


PRUNE_METHODS = (UnstructuredMethod, GradualMethod, LotteryMethod, NMMethod, StructuredMethod, DSTMethod)
PruneMethod = Annotated[
    UnstructuredMethod | GradualMethod | LotteryMethod | NMMethod | StructuredMethod | DSTMethod, Field(discriminator="method")
]


def method_names() -> list[str]:
    """The allowed values of ``prune.method``."""
    return [cls.model_fields["method"].default for cls in PRUNE_METHODS]


class CompressSection(CompressionSpec):
    """Deep Compression of the pruned model: k-means weight sharing (bits per layer kind), optional
    centroid fine-tuning (``finetune``), relative indices and Huffman coding into ``compressed.pkdc``."""

    finetune: TrainConfig | None = None


class ExportSection(Settings):
    """Export of the pruned model to ONNX (validated in onnxruntime), optionally int8-quantized."""

    int8: bool = False
    int8_mode: Literal["static", "dynamic"] = "static"
    calibration_batches: int = Field(8, ge=1, le=MAX_COUNT)
    latency_batch_size: int = Field(64, ge=1, le=MAX_BATCH)


class DeploySection(DeployConfig):
    """Sparse CPU inference of the pruned model (``prunekit.deploy``): layers go CSR/BSR only where
    they are measured faster on this machine, at ``batch_size``."""

    batch_size: int = Field(64, ge=1, le=MAX_BATCH)


#: Longest recipe name (the run directory adds 11 characters; file names are limited to 255).
MAX_NAME = 100


def check_device(value: str) -> str:
    """``value`` if it names a device of this machine: ``cpu``, ``cuda``/``cuda:N`` or ``mps``."""
    import torch

    kind, sep, index = value.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (sep and not index.isdigit()) or (sep and kind != "cuda"):
        raise ValueError(f"unknown device {shorten(value)}; allowed values: cpu, cuda, cuda:N, mps")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {value!r}: this machine has no CUDA GPU (torch.cuda.is_available() is False); use cpu")
        if sep and int(index) >= count:
            raise ValueError(f"device {value!r}: this machine has {count} CUDA GPU(s), cuda:0 … cuda:{count - 1}")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps': Apple's MPS backend is not available on this machine; use cpu")
    return value


class Recipe(Settings):
    """A whole experiment (``prunekit run RECIPE.yaml``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME, description="used in the run directory's name")
    seed: Seed = 0
    device: str = Field("cpu", description="cpu, cuda, cuda:N or mps (must be available)")
    model: ModelSpec
    data: DataSpec
    train: TrainConfig = Field(TrainConfig(), description="dense training (and each lottery round)")
    prune: PruneMethod
    compress: CompressSection | None = None
    export: ExportSection | None = None
    deploy: DeploySection | None = None
    evaluate: EvaluateSpec = EvaluateSpec()

    @field_validator("device")
    @classmethod
    def _available_device(cls, value: str) -> str:
        return check_device(value)

    def resolved(self) -> dict[str, Any]:
        """Every setting, defaults included, as plain JSON-able data."""
        return self.model_dump(mode="json")

    def identity(self) -> dict[str, Any]:
        """The settings that differ from the defaults, plus the pruning method: what names a run.

        Two recipes with the same resolved settings have the same identity; a new prunekit version
        that adds settings with defaults keeps existing run directories valid (as in open_lth)."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data.setdefault("prune", {})["method"] = self.prune.method
        return data


def shipped_recipes() -> dict[str, Path]:
    """Recipes that ship with prunekit (``prunekit list recipes``), by name without ``.yaml``."""
    from importlib import resources

    folder = resources.files("prunekit") / "recipes"
    return {p.name.removesuffix(".yaml"): Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def resolve_recipe_path(source: str | os.PathLike[str]) -> Path:
    """A recipe file path, or the name of a shipped recipe (e.g. ``han_lenet300``)."""
    path = Path(source)
    try:
        if path.exists():
            return path
    except OSError as exc:  # e.g. a name too long for the file system
        raise ConfigError(f"cannot read recipe {shorten(str(path))}: {exc.strerror or exc}") from None
    shipped = shipped_recipes()
    if str(source) in shipped:
        return shipped[str(source)]
    raise ConfigError(f"recipe file not found: {shorten(str(path))}; shipped recipes: {', '.join(sorted(shipped))}")


def load_recipe(source: str | os.PathLike[str] | dict[str, Any], overrides: Sequence[str] = (), *, allow_code: bool = True) -> Recipe:
    """Read a YAML recipe (or a dict), apply ``--set`` overrides, validate.

    Reading is bounded (see :mod:`prunekit.experiment.recipe_file`) and validation is strict: a
    number must be a number (``true`` is not 1), a list a list. ``allow_code=False`` refuses a
    ``model.name`` that names user code instead of importing it (for run directories from
    elsewhere). Raises :class:`ConfigError` for unreadable files and pydantic's ``ValidationError``
    (with field paths) for invalid settings.
    """
    if isinstance(source, dict):
        raw = source
    else:
        path = resolve_recipe_path(source)
        raw = parse_yaml(read_recipe_text(path), str(path))
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of settings, not {type(raw).__name__}")
    return validate_recipe(apply_overrides(raw, overrides), allow_code=allow_code)


def validate_recipe(raw: dict[str, Any], *, allow_code: bool = True) -> Recipe:
    """A :class:`Recipe` from plain data, validated strictly (as JSON types: no bool-for-int coercion)."""
    try:
        text = json.dumps(raw, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a recipe holds only text, numbers, booleans, null, lists and mappings ({exc})") from None
    return Recipe.model_validate_json(text, strict=True, context={ALLOW_CODE: allow_code})

"""Recipes: YAML files validated by pydantic; the same objects drive the Python API.

A recipe names a model, a dataset, dense training, a pruning ``method`` with its settings, and
optional compression/export. Unknown keys, wrong types, out-of-range values and unknown names
fail with the field path and the allowed values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from prunekit.compression import CompressionConfig
from prunekit.deployment.sparse import DeployConfig
from prunekit._deprecation import renamed
from prunekit._registry import did_you_mean
from prunekit._settings import MAX_BATCH, MAX_COUNT, Seed, Settings
from prunekit.errors import ConfigError, shorten
from prunekit.experiment.method_sections import METHODS
from prunekit.experiment.overrides import apply_overrides
from prunekit.experiment.recipe_base import ALLOW_CODE, CODE_FOLDERS, DataSection, EvaluateSection, ModelSection
from prunekit.experiment.recipe_file import parse_yaml, read_recipe_text
from prunekit.experiment.recipe_paths import resolve_paths
from prunekit.training.config import TrainConfig


#: The ``prune`` section: one of the registered methods' sections, chosen by its ``method`` field.
PruneSection = Annotated[Union[tuple(method.section for _, method in METHODS.items())], Field(discriminator="method")]  # type: ignore[misc]


def method_names() -> list[str]:
    """The allowed values of ``prune.method``, in registration order."""
    return [name for name, _ in METHODS.items()]


class CompressSection(CompressionConfig):
    """Deep Compression of the pruned model: k-means weight sharing (bits per layer kind), optional
    centroid fine-tuning (``finetune``), relative indices and Huffman coding into ``compressed.pkdc``."""

    finetune: TrainConfig | None = None


class ExportSection(Settings):
    """Export of the pruned model to ONNX (validated in onnxruntime), optionally int8-quantized."""

    int8: bool = False
    int8_mode: Literal["static", "dynamic"] = "static"
    calibration_batches: int = Field(8, ge=1, le=MAX_COUNT)
    latency_batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    accuracy: bool = Field(True, description="check the ONNX (and int8) models' test accuracy on the evaluation's test examples "
                           "(evaluate.subset / evaluate.max_batches); false to skip it")


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
    model: ModelSection
    data: DataSection
    train: TrainConfig = Field(TrainConfig(), description="dense training (and each lottery round)")
    prune: PruneSection
    compress: CompressSection | None = None
    export: ExportSection | None = None
    deploy: DeploySection | None = None
    evaluate: EvaluateSection = EvaluateSection()

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
    raise ConfigError(f"recipe file not found: {shorten(str(path))}; shipped recipes: {', '.join(sorted(shipped))}"
                      f"{did_you_mean(path.name.removesuffix('.yaml'), shipped)}")


def load_recipe(source: str | os.PathLike[str] | dict[str, Any], overrides: Sequence[str] = (), *, allow_code: bool = True) -> Recipe:
    """Read a YAML recipe (or a dict), apply ``--set`` overrides, validate.

    Reading is bounded (see :mod:`prunekit.experiment.recipe_file`) and validation is strict: a
    number must be a number (``true`` is not 1), a list a list. ``allow_code=False`` refuses a
    ``model.name`` that names user code instead of importing it (for run directories from
    elsewhere). Raises :class:`ConfigError` for unreadable files and pydantic's ``ValidationError``
    (with field paths) for invalid settings.

    Relative paths in the file are relative to its folder, those of ``overrides`` (and of a dict)
    to the working directory; all are made absolute (see :mod:`prunekit.experiment.recipe_paths`).
    A ``package.module:factory`` model is imported from the recipe's folder, the working directory or
    the import path.
    """
    folders: tuple[Path, ...] = ()
    if isinstance(source, dict):
        raw = source
    else:
        path = resolve_recipe_path(source)
        raw = parse_yaml(read_recipe_text(path), str(path))
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of settings, not {type(raw).__name__}")
        folders = (path.parent.absolute(),)
        raw = resolve_paths(raw, folders[0])
    raw = resolve_paths(apply_overrides(raw, overrides), Path.cwd())
    return validate_recipe(raw, allow_code=allow_code, code_folders=folders)


def validate_recipe(raw: dict[str, Any], *, allow_code: bool = True, code_folders: Sequence[str | os.PathLike[str]] = ()) -> Recipe:
    """A :class:`Recipe` from plain data, validated strictly (as JSON types: no bool-for-int coercion).

    A ``package.module:factory`` model is imported from ``code_folders``, the working directory or the import path."""
    try:
        text = json.dumps(raw, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a recipe holds only text, numbers, booleans, null, lists and mappings ({exc})") from None
    return Recipe.model_validate_json(text, strict=True, context={ALLOW_CODE: allow_code, CODE_FOLDERS: tuple(code_folders)})


def _section(name: str) -> object:
    from prunekit.experiment import method_sections

    return getattr(method_sections, name)


def _sparsity_learning() -> object:
    from prunekit.training.sparsity import SparsityLearningConfig

    return SparsityLearningConfig


_SECTIONS = ("Unstructured", "Gradual", "Lottery", "NM", "Structured", "DST")
__getattr__ = renamed(__name__, {
    **{f"{kind}Method": (f"prunekit.experiment.method_sections.{kind}Section", lambda kind=kind: _section(f"{kind}Section")) for kind in _SECTIONS},
    "PruneMethod": ("PruneSection", lambda: PruneSection),
    "ModelSpec": ("prunekit.experiment.recipe_base.ModelSection", lambda: ModelSection),
    "DataSpec": ("prunekit.experiment.recipe_base.DataSection", lambda: DataSection),
    "EvaluateSpec": ("prunekit.experiment.recipe_base.EvaluateSection", lambda: EvaluateSection),
    "SparsityLearning": ("prunekit.training.SparsityLearningConfig", _sparsity_learning),
})

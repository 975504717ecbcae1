"""Recipe sections that do not depend on the pruning method: model, data, evaluation, export."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from prunekit._settings import MAX_BATCH, MAX_COUNT, Settings

#: The validation-context key that allows a recipe to name user code (``package.module:factory``).
ALLOW_CODE = "allow_code"
#: The validation-context key holding the folders a factory module is imported from first (the recipe's folder).
CODE_FOLDERS = "code_folders"


class ModelSection(Settings):
    """Which model to prune: a zoo name (``prunekit list models``), ``timm/<name>``, or your own
    ``package.module:factory`` / ``path/to/file.py:factory`` (called with ``num_classes``,
    ``input_shape`` and ``kwargs``; the module is imported from the recipe's folder, the working
    directory or the import path)."""

    name: str = Field(max_length=4096)
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra constructor arguments")
    checkpoint: str | None = Field(None, min_length=1, max_length=4096,
                                   description="dense weights to start from instead of training: .safetensors, or .pt/.pth/.bin/.ckpt "
                                   "(tensors only; relative to the recipe's folder)")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str, info: ValidationInfo) -> str:
        from prunekit.zoo import MODELS

        if ":" in name:
            from prunekit.zoo.models.registry import check_factory_path, import_factory

            check_factory_path(name)
            if not (info.context or {}).get(ALLOW_CODE, True):
                raise ValueError(f"{name!r} is user code; it is imported only when you allow it (--trust-code), "
                                 "since a run directory's recipe.yaml may come from someone else")
            import_factory(name, (info.context or {}).get(CODE_FOLDERS, ()))
        elif not name.startswith("timm/") and name not in MODELS:
            raise ValueError(MODELS.unknown_message(name, also="timm/<name>, package.module:factory or path/to/file.py:factory"))
        return name


class DataSection(Settings):
    """Which dataset and how to batch it (``prunekit list datasets``)."""

    name: str
    root: str | None = Field(None, min_length=1, max_length=4096, description="data directory (default: $PRUNEKIT_DATA, then the user cache; "
                                "relative to the recipe's folder)")
    batch_size: int = Field(128, ge=1, le=MAX_BATCH)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    subset: int | None = Field(None, ge=1, le=2**31, description="use only this many training examples (quick runs)")
    augment: bool | None = Field(None, description="default: the dataset's own (crop+flip for CIFAR-10)")
    download: bool = True

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from prunekit.zoo.data import DATASETS

        return DATASETS.check(name)


class EvaluateSection(Settings):
    """What the evaluation step measures besides accuracy, size and MACs."""

    latency: bool = True
    latency_batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    latency_repeats: int = Field(20, ge=1, le=MAX_COUNT)
    latency_runtime: str | None = Field(None, description="runtime dense and pruned are timed on (torch, torch_compile, onnxruntime); "
                                        "default: the prune section's runtime if it names one, else torch")
    corruptions: tuple[str, ...] = Field(("gaussian_noise", "blur", "contrast"), description="accuracy under these input corruptions; () to skip")
    corruption_severity: int = Field(3, ge=1, le=5)

    @field_validator("latency_runtime")
    @classmethod
    def _known_runtime(cls, name: str | None) -> str | None:
        from prunekit.deployment.runtimes import RUNTIMES

        return None if name is None else RUNTIMES.check(name)

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from prunekit.metrics import CORRUPTIONS

        return tuple(CORRUPTIONS.check(n) for n in names)
    subset: int | None = Field(None, ge=1, le=2**31, description="evaluate on the first N test examples only (quick runs; "
                               "the summary says N of M); also used by the compress, export and deploy accuracy checks")
    max_batches: int | None = Field(None, ge=1, le=MAX_COUNT, description="evaluate on at most this many test batches (as subset)")

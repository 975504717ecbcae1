"""Recipe sections that do not depend on the pruning method: model, data, evaluation, export."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from prunekit._settings import MAX_BATCH, MAX_COUNT, Settings

#: The validation-context key that allows a recipe to name user code (``package.module:factory``).
ALLOW_CODE = "allow_code"
#: The validation-context key holding the folders a factory module is imported from first (the recipe's folder).
CODE_FOLDERS = "code_folders"


def import_user_code(name: str, info: ValidationInfo, what: str) -> None:
    """Import the factory ``name`` (``package.module:function``) if the validation context allows user code."""
    from prunekit.zoo.models.registry import check_factory_path, import_factory

    check_factory_path(name, what)
    if not (info.context or {}).get(ALLOW_CODE, True):
        raise ValueError(f"{name!r} is user code; it is imported only when you allow it (--trust-code), "
                         "since a run directory's recipe.yaml may come from someone else")
    import_factory(name, (info.context or {}).get(CODE_FOLDERS, ()), what=what)


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
            import_user_code(name, info, "model factory")
        elif not name.startswith("timm/") and name not in MODELS:
            raise ValueError(MODELS.unknown_message(name, also="timm/<name>, package.module:factory or path/to/file.py:factory"))
        return name


#: Which kinds of data each data setting applies to ("registered": a dataset of ``prunekit list datasets``).
_DATA_FIELD_KINDS: dict[str, tuple[str, ...]] = {
    "root": ("registered",), "download": ("registered",), "path": ("imagefolder", "arrays"),
    "image_size": ("imagefolder",), "channels": ("imagefolder",), "num_workers": ("imagefolder",), "cache_mb": ("imagefolder",),
    "mean": ("imagefolder", "arrays", "factory"), "std": ("imagefolder", "arrays", "factory"),
    "test_fraction": ("imagefolder", "arrays", "factory"), "crop_scale": ("imagefolder", "arrays", "factory"),
    "layout": ("arrays", "factory"), "kwargs": ("factory",),
}
#: Data settings passed on to the user-data loaders (``num_workers`` goes separately).
_USER_OPTIONS = ("path", "image_size", "channels", "cache_mb", "mean", "std", "test_fraction", "crop_scale", "layout", "kwargs")

PositiveSide = Annotated[int, Field(ge=1, le=8192)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class DataSection(Settings):
    """Which dataset and how to batch it: a registered dataset (``prunekit list datasets``),
    ``imagefolder`` or ``arrays`` (your files at ``path``), or ``package.module:function`` (a
    dataset factory of yours returning (train, val, test) pairs of images and labels)."""

    name: str = Field(max_length=4096)
    root: str | None = Field(None, min_length=1, max_length=4096, description="data directory (default: $PRUNEKIT_DATA, then the user cache; "
                                "relative to the recipe's folder)")
    batch_size: int = Field(128, ge=1, le=MAX_BATCH)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    subset: int | None = Field(None, ge=1, le=2**31, description="use only this many training examples (quick runs)")
    augment: bool | None = Field(None, description="default: the dataset's own (crop+flip for CIFAR-10, random resized crop+flip "
                                 "for imagefolder, none for arrays and factories)")
    download: bool = True
    path: str | None = Field(None, min_length=1, max_length=4096, description="imagefolder: the folder of class folders (or of train/, "
                             "val/, test/); arrays: the .npz file or folder of .npy files (relative to the recipe's folder)")
    image_size: PositiveSide | tuple[PositiveSide, PositiveSide] | None = Field(
        None, description="imagefolder: side, or [height, width], images are resized and centre-cropped to "
        "(default: 32 if the images fit in 32×32, 64 if in 64×64, else 224)")
    channels: Literal[1, 3] | None = Field(None, description="imagefolder: 3 (RGB, default) or 1 (grayscale)")
    mean: tuple[float, ...] | None = Field(None, min_length=1, max_length=4, description="per-channel mean in 0-1 pixel units "
                                           "(default: computed from the training split)")
    std: tuple[float, ...] | None = Field(None, min_length=1, max_length=4, description="per-channel std (default: computed from the training split)")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="share of each class held out for testing when the data has "
                                        "no test split (default 0.2)")
    crop_scale: tuple[Fraction, Fraction] | None = Field(None, description="area range of the random resized crop (default [0.08, 1] for images of 128+ pixels a side, [0.35, 1] for smaller ones)")
    num_workers: int | None = Field(None, ge=0, le=256, description="imagefolder: decoding processes (default min(4, CPUs); 0: none)")
    cache_mb: float | None = Field(None, ge=0, le=2**30, description="imagefolder: decoded images up to this size (MiB) are kept in "
                                   "memory and cached on disk; larger data is decoded batch by batch (default 2048)")
    layout: Literal["nchw", "nhwc"] | None = Field(None, description="arrays/factory: image axis order when it cannot be told "
                                                   "from the shape")
    kwargs: dict[str, Any] | None = Field(None, description="factory: keyword arguments of the dataset factory")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str, info: ValidationInfo) -> str:
        from prunekit.zoo.data import DATASETS
        from prunekit.zoo.data.user import FILE_KINDS, user_data_kind

        kind, _, rest = name.partition(":")
        if kind in FILE_KINDS and rest:
            raise ValueError(f"write name: {kind} and path: {rest} (not {kind}:PATH in data.name)")
        if user_data_kind(name) == "factory":
            import_user_code(name, info, "dataset factory")
        elif user_data_kind(name) is None:
            DATASETS.check(name)
        return name

    @property
    def kind(self) -> str:
        """``registered``, ``imagefolder``, ``arrays`` or ``factory``."""
        from prunekit.zoo.data.user import user_data_kind

        return user_data_kind(self.name) or "registered"

    @model_validator(mode="after")
    def _settings_apply(self) -> DataSection:
        kind = self.kind
        for field, kinds in _DATA_FIELD_KINDS.items():
            given = getattr(self, field) is not None if field != "download" else "download" in self.model_fields_set
            if given and kind not in kinds:
                what = f"the registered dataset {self.name!r}" if kind == "registered" else f"{kind} data"
                applies = ", ".join("registered datasets" if k == "registered" else k for k in kinds)
                raise ValueError(f"{field} applies to {applies} only, not to {what}")
        if kind in ("imagefolder", "arrays") and self.path is None:
            raise ValueError(f"name {kind!r} needs path: the {'folder' if kind == 'imagefolder' else '.npz file or folder of .npy files'} to read")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither (then they are computed from the training split)")
        return self

    def user_options(self) -> dict[str, Any]:
        """The settings of user data that are set, as keyword arguments of the user-data loaders."""
        return {key: getattr(self, key) for key in _USER_OPTIONS if getattr(self, key) is not None}


class EvaluateSection(Settings):
    """What the evaluation step measures besides accuracy, size and MACs."""

    latency: bool = True
    latency_batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    latency_repeats: int = Field(20, ge=1, le=MAX_COUNT)
    latency_runtime: str | None = Field(None, description="runtime dense and pruned are timed on (torch, torch_compile, onnxruntime); "
                                        "default: the prune section's runtime if it names one, else torch")
    corruptions: tuple[str, ...] = Field(("gaussian_noise", "blur", "contrast"), description="accuracy under these input corruptions: "
                                         "names, families (noise, blurring, weather, digital) or all; () to skip")
    corruption_severity: int = Field(3, ge=1, le=5)
    subset: int | None = Field(None, ge=1, le=2**31, description="evaluate on the first N test examples only (quick runs; "
                               "the summary says N of M); also used by the compress, export and deploy accuracy checks")
    max_batches: int | None = Field(None, ge=1, le=MAX_COUNT, description="evaluate on at most this many test batches (as subset)")

    @field_validator("latency_runtime")
    @classmethod
    def _known_runtime(cls, name: str | None) -> str | None:
        from prunekit.deployment.runtimes import RUNTIMES

        return None if name is None else RUNTIMES.check(name)

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from prunekit.metrics import expand_corruptions

        return expand_corruptions(names)

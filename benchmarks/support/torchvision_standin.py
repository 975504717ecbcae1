"""A minimal, clearly labelled stand-in for torchvision, for machines where torchvision is broken.

timm imports ``torchvision`` at import time but its model code needs only ``FrozenBatchNorm2d``
(``torchvision.ops.misc``) and ``InterpolationMode`` (``torchvision.transforms.functional``).
:func:`install` puts fake modules providing just those into ``sys.modules`` before timm is imported.
``timm.data`` also names transform and dataset classes at import time (it subclasses a few), so
any other name in ``torchvision.transforms``/``torchvision.datasets`` resolves to a placeholder
class that raises when instantiated (torchmetrics, which Lightning imports, names some of
``torchvision.models``, ``torchvision.ops`` and ``torchvision.transforms`` at import time). This is test/benchmark support only: ``src/prunekit`` never
imports it; data transforms, datasets and ``torchvision.models`` do not work with it.
"""

from __future__ import annotations

import enum
import sys
import types

import torch
from torch import nn

STANDIN_MARKER = "__prunekit_torchvision_standin__"


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (all buffers), as in torchvision."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)


class InterpolationMode(enum.Enum):
    """The interpolation names timm refers to."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


class _Unavailable:
    """Placeholder for a torchvision class the stand-in does not provide."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"torchvision stand-in: {type(self).__name__} is not available (torchvision is broken here)")


class _StandinModule(types.ModuleType):
    """A fake package; unknown class names resolve to :class:`_Unavailable` subclasses."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = type(name, (_Unavailable,), {"__module__": self.__name__})
        setattr(self, name, placeholder)
        return placeholder


def _module(name: str, **attrs: object) -> types.ModuleType:
    module = _StandinModule(name)
    module.__dict__.update(attrs)
    module.__path__ = []  # type: ignore[attr-defined]  # importable as a package
    setattr(module, STANDIN_MARKER, True)
    return module


def install() -> bool:
    """Install the stand-in unless a working torchvision is importable; return True if installed."""
    existing = sys.modules.get("torchvision")
    if existing is not None:
        return bool(getattr(existing, STANDIN_MARKER, False))
    try:
        import torchvision  # noqa: F401

        return False
    except Exception:  # broken install: drop half-imported modules and use the stand-in
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    functional = _module("torchvision.transforms.functional", InterpolationMode=InterpolationMode)
    transforms = _module("torchvision.transforms", functional=functional, InterpolationMode=InterpolationMode)
    misc = _module("torchvision.ops.misc", FrozenBatchNorm2d=FrozenBatchNorm2d)
    ops = _module("torchvision.ops", misc=misc)
    datasets = _module("torchvision.datasets")
    models = _module("torchvision.models")
    root = _module("torchvision", ops=ops, transforms=transforms, datasets=datasets, models=models, __version__="0.0.0+prunekit-standin")
    sys.modules.update({
        "torchvision": root,
        "torchvision.ops": ops,
        "torchvision.ops.misc": misc,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
        "torchvision.datasets": datasets,
        "torchvision.models": models,
    })
    return True

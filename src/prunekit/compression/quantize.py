"""Weight sharing: per-layer 1-D k-means over the nonzero weights (Deep Compression, Sec. 3).

Zeros stay exactly zero and are not a cluster. Each layer becomes a :class:`QuantizedLayer`:
a float32 codebook of at most ``2**bits`` values, one codebook index per nonzero (in flattened
order), and the sparsity mask.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.compression.kmeans import kmeans_1d, layer_seed
from prunekit.compression.spec import MAX_BITS, CompressionConfig, LayerKind, iter_targets
from prunekit.errors import ConfigError, StructureError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class QuantizedLayer:
    """One weight after weight sharing.

    ``indices[j]`` is the codebook index of the ``j``-th nonzero of ``mask`` in row-major order.
    ``dtype`` is the weight's own dtype: :meth:`dense` gathers in float32 and casts to it.
    """

    name: str
    kind: LayerKind
    shape: tuple[int, ...]
    dtype: torch.dtype
    bits: int
    codebook: Tensor  # float32, (n_clusters,)
    indices: Tensor  # uint8 (n_clusters <= 256) or uint16, (nnz,)
    mask: Tensor  # bool, shape

    @property
    def nnz(self) -> int:
        return int(self.indices.numel())

    @property
    def numel(self) -> int:
        return int(self.mask.numel())

    @property
    def n_clusters(self) -> int:
        return int(self.codebook.numel())

    def positions(self) -> Tensor:
        """Flat (row-major) positions of the nonzeros, int64."""
        return torch.nonzero(self.mask.reshape(-1), as_tuple=True)[0]

    def dense(self) -> Tensor:
        """The shared-weight tensor: ``codebook[index]`` at nonzeros, exact ``0`` elsewhere (CPU)."""
        out = torch.zeros(self.numel, dtype=torch.float32)
        out[self.positions()] = self.codebook[self.indices.long()]
        return out.to(self.dtype).reshape(self.shape)

    def with_codebook(self, codebook: Tensor) -> QuantizedLayer:
        """A copy with a new codebook (e.g. after centroid fine-tuning)."""
        cb = codebook.detach().to("cpu", torch.float32).reshape(-1).clone()
        if cb.numel() != self.n_clusters:
            raise ValueError(f"{self.name}: codebook of {cb.numel()} values, expected {self.n_clusters}")
        return QuantizedLayer(self.name, self.kind, self.shape, self.dtype, self.bits, cb, self.indices, self.mask)


@dataclass
class QuantizationResult:
    """Per-layer weight-sharing records, keyed by parameter name, plus the spec that made them."""

    layers: dict[str, QuantizedLayer]
    spec: CompressionConfig = field(default_factory=CompressionConfig)

    def __getitem__(self, name: str) -> QuantizedLayer:
        return self.layers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def state_dict(self) -> dict[str, Tensor]:
        """``{name: shared-weight tensor}`` for every quantized layer."""
        return {name: layer.dense() for name, layer in self.layers.items()}

    def apply_(self, model: nn.Module) -> nn.Module:
        """Write the shared-weight values into ``model``'s (plain) weights, in place."""
        for name, layer in self.layers.items():
            module, pname = resolve_parameter(model, name)
            _write_plain(module, pname, layer.dense(), name)
        return model


def quantize_tensor(
    weight: Tensor,
    bits: int,
    *,
    name: str = "weight",
    kind: LayerKind = "fc",
    init: str = "linear",
    seed: int = 0,
    max_iter: int = 300,
    reseed_empty: bool = True,
) -> QuantizedLayer:
    """k-means weight sharing of one tensor's nonzeros into at most ``2**bits`` clusters."""
    w = weight.detach().to("cpu")
    flat = w.reshape(-1)
    mask = flat != 0
    values = flat[mask].to(torch.float64).numpy()
    if not np.isfinite(values).all():
        raise ConfigError(f"{name} has non-finite values (NaN/inf); fix the weights before quantizing")
    if not 1 <= bits <= MAX_BITS:
        raise ConfigError(f"{name}: bits must lie in [1, {MAX_BITS}], got {bits}")
    centroids, labels = kmeans_1d(
        values, 1 << bits, init=init, rng=layer_seed(seed, name), max_iter=max_iter, reseed_empty=reseed_empty
    )
    index_dtype = torch.uint8 if centroids.size <= 256 else torch.uint16
    indices = torch.from_numpy(labels.astype(np.int64)).to(index_dtype)
    codebook = torch.from_numpy(centroids.astype(np.float32))
    return QuantizedLayer(name, kind, tuple(w.shape), w.dtype, int(bits), codebook, indices, mask.reshape(w.shape))


def share_weights(model: nn.Module, spec: CompressionConfig | Mapping | None = None, *, apply: bool = True) -> QuantizationResult:
    """Weight-share (k-means) every conv/linear weight the spec selects.

    With ``apply`` (default) each weight is replaced in place by its shared values; the model must
    then hold plain weights (strip parametrizations such as masks first). With ``apply=False`` the
    model is untouched. For centroid fine-tuning use :func:`attach_weight_sharing` instead.
    """
    spec = CompressionConfig.parse(spec)  # type: ignore[arg-type]
    layers: dict[str, QuantizedLayer] = {}
    for name, module, kind in iter_targets(model, spec):
        layer = quantize_tensor(
            module.weight,
            spec.bits_for(name, kind),
            name=name,
            kind=kind,
            init=spec.init,
            seed=spec.seed,
            max_iter=spec.max_iter,
            reseed_empty=spec.reseed_empty,
        )
        layers[name] = as_stored(layer, spec.codebook_dtype)
        log.debug("%s: %d nonzeros -> %d clusters (%d bits)", name, layer.nnz, layer.n_clusters, layer.bits)
    result = QuantizationResult(layers, spec)
    if apply:
        result.apply_(model)
    return result


def as_stored(layer: QuantizedLayer, codebook_dtype: str) -> QuantizedLayer:
    """``layer`` with its centroids rounded to ``codebook_dtype`` (the file's precision), so that the
    shared weights equal what a file holds; unchanged for float32."""
    if codebook_dtype == "float32":
        return layer
    rounded = layer.codebook.to(torch.float16)
    if not bool(torch.isfinite(rounded).all()) or bool((rounded[layer.codebook != 0] == 0).any()):
        raise ConfigError(f"{layer.name}: a centroid does not fit float16 (overflow or underflow to zero); use codebook_dtype: float32")
    return layer.with_codebook(rounded.float())


def quantize_model(model: nn.Module, spec: CompressionConfig | Mapping | None = None, *, apply: bool = True) -> QuantizationResult:
    """Deprecated name of :func:`share_weights` (k-means weight sharing, not int8 quantization)."""
    warnings.warn(
        "quantize_model is deprecated and will be removed in the next release; use share_weights "
        "(k-means weight sharing; int8 quantization is prunekit.deployment.quantize_int8)",
        DeprecationWarning,
        stacklevel=2,
    )
    return share_weights(model, spec, apply=apply)


def resolve_parameter(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """``(owning module, attribute name)`` for a fully-qualified parameter name."""
    mod_name, _, pname = name.rpartition(".")
    try:
        module = model.get_submodule(mod_name) if mod_name else model
    except AttributeError as exc:
        raise StructureError(f"model has no module {mod_name!r} (for parameter {name!r})") from exc
    if getattr(module, pname, None) is None:
        raise StructureError(f"module {mod_name or '(root)'!r} has no tensor {pname!r}")
    return module, pname


def _write_plain(module: nn.Module, pname: str, value: Tensor, name: str) -> None:
    if parametrize.is_parametrized(module, pname):
        raise StructureError(
            f"{name} is parametrized (a mask or weight sharing is attached); strip it first, or use "
            "attach_weight_sharing to fine-tune shared weights"
        )
    target = getattr(module, pname)
    if tuple(target.shape) != tuple(value.shape):
        raise StructureError(f"{name}: model has shape {tuple(target.shape)}, record has {tuple(value.shape)}")
    with torch.no_grad():
        target.copy_(value.to(target.device, target.dtype))

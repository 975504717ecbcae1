"""Multiply-accumulate counts, dense and effective (nonzero weights only).

What is counted: multiply-accumulates of convolutions and matrix multiplications, as PyTorch's
own ``torch.utils.flop_counter.FlopCounterMode`` sees them (FLOPs / 2), which includes attention
matmuls. Normalisation, activations, pooling and element-wise adds are not counted.
*Effective* MACs scale every ``Conv*d``/``ConvTranspose*d``/``Linear`` layer's MACs (the layers of
:data:`prunekit.layer_kinds.MACS_LAYERS`) by the fraction of its weights that are nonzero (what an
ideal sparse kernel would execute); other matmuls stay dense. Counts are per example (the batch
dimension is divided out).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch._C import DispatchKey
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from prunekit.layer_kinds import WEIGHT_LAYERS, LayerRecord, kind_of  # WEIGHT_LAYERS: re-exported public name
from prunekit.metrics._inputs import Inputs, as_args, batch_size, eval_mode


@dataclass
class LayerMacs:
    """MACs of one conv/linear layer, per example."""

    name: str
    kind: str
    dense: int
    effective: int


@dataclass
class MacsReport:
    """Whole-model MAC counts per example, with the per-layer breakdown."""

    dense: int
    effective: int
    layers: list[LayerMacs] = field(default_factory=list)

    @property
    def other(self) -> int:
        """MACs outside conv/linear layers (e.g. attention matmuls), counted dense."""
        return self.dense - sum(layer.dense for layer in self.layers)

    @property
    def theoretical_speedup(self) -> float:
        """dense / effective MACs."""
        return self.dense / self.effective if self.effective else float("inf")

    def to_dict(self) -> dict:
        return {"dense": self.dense, "effective": self.effective, "other": self.other, "layers": [asdict(x) for x in self.layers]}


class _Unsupported(RuntimeError):
    """An operator :class:`_TotalFlops` leaves to FlopCounterMode."""


#: Metadata queries FlopCounterMode declines (returns NotImplemented for), so the mode does too.
_METADATA_OPS = {torch.ops.aten.sym_is_contiguous.default, torch.ops.aten.is_contiguous.default, torch.ops.aten.is_contiguous.memory_format,
                 torch.ops.aten.is_strides_like_format.default, torch.ops.aten.is_non_overlapping_and_dense.default, torch.ops.aten.size.default,
                 torch.ops.aten.sym_size.default, torch.ops.aten.stride.default, torch.ops.aten.sym_stride.default, torch.ops.aten.storage_offset.default,
                 torch.ops.aten.sym_storage_offset.default, torch.ops.aten.numel.default, torch.ops.aten.sym_numel.default, torch.ops.aten.dim.default,
                 torch.ops.prim.layout.default}


class _TotalFlops(TorchDispatchMode):
    """The total of ``torch.utils.flop_counter.FlopCounterMode`` (its "Global" count) without its per-module
    tracking: the same operators decomposed the same way and counted by the same formulas, at about
    half the overhead per operator. A higher-order operator sets ``unsupported`` (count with FlopCounterMode then)."""

    supports_higher_order_operators = True  # they reach __torch_dispatch__, which hands them over

    def __init__(self, tolerant: bool = False) -> None:
        super().__init__()
        self.total = 0
        self.tolerant = tolerant  # a higher-order operator runs uncounted (sets ``unsupported``) instead of raising
        self.unsupported = False
        self._decomposable: dict[Any, bool] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _METADATA_OPS:
            return NotImplemented
        if isinstance(func, torch._ops.HigherOrderOperator):
            self.unsupported = True
            if self.tolerant:
                return func(*args, **kwargs)
            raise _Unsupported(str(func))
        if func is not torch.ops.prim.device.default and self._can_decompose(func):
            with self:  # as FlopCounterMode: count what the operator decomposes into
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out

    def _can_decompose(self, func: Any) -> bool:
        """Whether ``func.decompose`` runs a kernel (else it returns NotImplemented)."""
        known = self._decomposable.get(func)
        if known is None:
            key = DispatchKey.CompositeImplicitAutograd
            known = self._decomposable[func] = key in func.py_kernels or torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), key)
        return known


def count_macs(model: nn.Module, example_inputs: Inputs) -> MacsReport:
    """Count MACs per example of ``model(*example_inputs)``; see the module docstring for what counts."""
    return counted_forward(model, example_inputs)[0]


def counted_forward(model: nn.Module, example_inputs: Inputs, *, effective: bool = True) -> tuple[MacsReport, Any]:
    """:func:`count_macs` and the output of the forward it counted (eval mode, no gradients): one forward for both.

    ``effective=False`` skips counting nonzero weights (a pass over every weight): the report's
    effective counts are then its dense counts; dense counts are the same either way.
    """
    records: _Records = []
    handles = _layer_hooks(model, records)

    def run(counter: Any) -> Any:
        records.clear()
        with eval_mode(model), torch.no_grad(), counter:
            return model(*as_args(example_inputs))

    # FlopCounterMode tracks modules with autograd hooks and fails ("Expected gradient function to be
    # set") when a parameter is passed to a submodule under no_grad (e.g. timm's PiT/CaiT class
    # tokens); parameters that do not require gradients avoid it, so switch them off meanwhile.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        lean = _TotalFlops()
        try:
            output = run(lean)
        except _Unsupported:
            pass
        if lean.unsupported:  # a higher-order operator: count with FlopCounterMode itself
            counter = FlopCounterMode(display=False)
            output = run(counter)
            flops = counter.get_total_flops()
        else:
            flops = lean.total
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for handle in handles:
            handle.remove()
    return _report(records, flops, batch_size(example_inputs), effective), output


class ForwardCounter:
    """Dense MACs of a forward of ``model`` that the caller runs itself inside ``with counter:`` (each
    entry starts over), counted exactly as :func:`counted_forward` counts them, for callers whose own
    pass executes the model's operators for real (the structured tracer). :meth:`dense` is None after
    a higher-order operator (left uncounted here; :func:`counted_forward` counts those) and after a layer
    called on something other than tensors that ``resolve`` does not map to the concrete tensor (a symbolic
    tracer's proxies: :func:`prunekit.structured.trace.concrete_value` resolves the structured tracer's)."""

    def __init__(self, model: nn.Module, example_inputs: Inputs, resolve: Callable[[Any], Any] | None = None) -> None:
        self._model = model
        self._resolve = resolve
        self._n = batch_size(example_inputs)
        self._records: _Records = []
        self._handles: list[Any] = []
        self._mode: _TotalFlops | None = None

    def __enter__(self) -> ForwardCounter:
        self._records.clear()
        self._handles = _layer_hooks(self._model, self._records, self._resolve)
        self._mode = _TotalFlops(tolerant=True)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._mode is not None
        try:
            self._mode.__exit__(*exc)
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def dense(self) -> int | None:
        """Dense MACs per example of the last forward run inside the counter (None: not countable here)."""
        if self._mode is None or self._mode.unsupported or any(r[3] is None for r in self._records):
            return None
        return _report(self._records, self._mode.total, self._n, effective=False).dense


_Records = list[tuple[str, nn.Module, LayerRecord, int | None]]  # positions None: the layer ran on proxies


def _layer_hooks(model: nn.Module, records: _Records, resolve: Callable[[Any], Any] | None = None) -> list[Any]:
    """Forward hooks appending ``(name, module, kind, positions)`` for every MACs layer call to ``records``
    (``resolve``: the concrete tensor of a non-tensor activation, a tracer's proxy, or None)."""

    def hook(name: str, kind: LayerRecord):
        def record(module: nn.Module, inputs: tuple, kwargs: dict, output: Tensor) -> None:
            act = output if kind.macs_over == "output" else (inputs[0] if inputs else kwargs["input"])
            if not isinstance(act, Tensor):  # a symbolic tracer's proxy: never touched (that would record into its graph)
                act = resolve(act) if resolve is not None else None
                if not isinstance(act, Tensor):
                    records.append((name, module, kind, None))
                    return
            records.append((name, module, kind, act.numel() // max(1, act.shape[kind.channel_dim])))

        return record

    handles = []
    for n, m in model.named_modules():
        kind = kind_of(m)
        if kind is not None and kind.macs_over is not None:
            handles.append(m.register_forward_hook(hook(n, kind), with_kwargs=True))
    return handles


def _report(records: _Records, flops: int, n: int, effective: bool) -> MacsReport:
    """The report of one counted forward: per-layer MACs from the hook ``records``, the rest from ``flops``."""
    layers: dict[str, LayerMacs] = {}
    for name, module, kind, positions in records:
        assert positions is not None, "a layer ran on proxies"  # only a ForwardCounter watches tracers, and checks first
        weight = getattr(module, kind.weight)
        dense = positions * weight.numel() // n
        nonzero = positions * int(torch.count_nonzero(weight)) // n if effective else dense
        if name in layers:  # a module called more than once accumulates
            layers[name].dense += dense
            layers[name].effective += nonzero
        else:
            layers[name] = LayerMacs(name, type(module).__name__, dense, nonzero)
    total = flops // 2 // n
    layer_dense = sum(x.dense for x in layers.values())
    other = max(0, total - layer_dense)
    total_dense = layer_dense + other
    total_effective = sum(x.effective for x in layers.values()) + other
    return MacsReport(total_dense, total_effective, list(layers.values()))

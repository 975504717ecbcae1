"""One conv or linear layer, alone, at chosen channel counts: what per-layer latency tables time.

A :class:`LayerConfig` holds everything about a layer except its channel counts (kernel, stride,
input size, grouping); :func:`probe_module` builds it as a torch module and :func:`probe_onnx` as a
one-node ONNX graph (built directly with ``onnx.helper``: exporting thousands of probes through
the torch exporter would take minutes). Both add a ReLU after the layer, as onnxruntime fuses
one into a preceding conv.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn


@dataclass(frozen=True)
class LayerConfig:
    """A conv/linear layer up to its channel counts.

    ``spatial``: the input's size after the channel axis (conv) or its leading token dims (linear).
    ``in_per_group``/``out_per_group``: 0 for an ordinary layer; for a grouped or depthwise conv the
    channels per group, so that the layer's only free size is its output channels.
    ``groups``: a grouped conv pruned by channel stripes keeps its groups and both channel counts are
    free (rounded up to multiples of ``groups`` when built).
    """

    op: Literal["conv", "linear"]
    spatial: tuple[int, ...]
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    in_per_group: int = 0
    out_per_group: int = 0
    groups: int = 1

    @property
    def grouped(self) -> bool:
        return self.out_per_group > 0

    def in_channels(self, c_in: int, c_out: int) -> int:
        return c_out // self.out_per_group * self.in_per_group if self.grouped else -(-c_in // self.groups) * self.groups

    def out_channels(self, c_out: int) -> int:
        return -(-c_out // self.groups) * self.groups

    def name(self) -> str:
        return ",".join(f"{k}={v}" for k, v in asdict(self).items() if k != "groups" or v != 1)

    @staticmethod
    def of(module: nn.Module, input_shape: tuple[int, ...], stripes: bool = False) -> LayerConfig | None:
        """The config of ``module`` fed ``input_shape`` (batch first), or None if it is not a plain conv/linear.
        ``stripes``: a grouped conv is pruned by channel stripes (its ``groups`` stays)."""
        if isinstance(module, nn.Linear):
            return LayerConfig("linear", tuple(int(s) for s in input_shape[1:-1]))
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.padding_mode == "zeros" and not isinstance(module.padding, str):
            grouped = module.groups > 1 and not stripes
            return LayerConfig("conv", tuple(int(s) for s in input_shape[2:]), tuple(module.kernel_size), tuple(module.stride),
                               tuple(module.padding), tuple(module.dilation),  # type: ignore[arg-type]
                               module.in_channels // module.groups if grouped else 0, module.out_channels // module.groups if grouped else 0,
                               module.groups if stripes else 1)
        return None


def probe_module(config: LayerConfig, c_in: int, c_out: int) -> nn.Module:
    """The layer as a torch module (with a ReLU after it), random weights, eval mode."""
    c_in, c_out = config.in_channels(c_in, c_out), config.out_channels(c_out)
    if config.op == "linear":
        layer: nn.Module = nn.Linear(c_in, c_out)
    else:
        conv = nn.Conv1d if len(config.kernel) == 1 else nn.Conv2d
        groups = c_out // config.out_per_group if config.grouped else config.groups
        layer = conv(c_in, c_out, config.kernel, config.stride, config.padding, config.dilation, groups=groups)
    return nn.Sequential(layer, nn.ReLU()).eval()


def probe_input(config: LayerConfig, c_in: int, c_out: int, batch: int) -> torch.Tensor:
    c_in = config.in_channels(c_in, c_out)
    if config.op == "linear":
        return torch.randn(batch, *config.spatial, c_in)
    return torch.randn(batch, c_in, *config.spatial)


def probe_onnx(config: LayerConfig, c_in: int, c_out: int, batch: int) -> bytes:
    """The layer (with a ReLU after it) as a serialized one-node ONNX model of fixed input shape."""
    from onnx import TensorProto, helper, numpy_helper

    probe = probe_module(config, c_in, c_out)
    module = probe[0]
    weight = module.weight.detach().numpy()
    bias = module.bias.detach().numpy()  # type: ignore[union-attr]
    x = probe_input(config, c_in, c_out, batch)
    inits = [numpy_helper.from_array(bias, "b")]
    if config.op == "linear":
        inits.append(numpy_helper.from_array(weight.T.copy(), "w"))
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"])]
    else:
        inits.append(numpy_helper.from_array(weight, "w"))
        attrs: dict[str, Any] = dict(kernel_shape=list(config.kernel), strides=list(config.stride), dilations=list(config.dilation),
                                     pads=list(config.padding) * 2, group=int(module.groups))  # type: ignore[attr-defined]
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["a"], **attrs)]
    nodes.append(helper.make_node("Relu", ["a"], ["y"]))
    with torch.no_grad():
        out_shape = list(probe(x).shape)
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    return model.SerializeToString()


def probe_macs(config: LayerConfig, c_in: int, c_out: int) -> float:
    """MACs per example of the probe layer (for sanity checks and reports)."""
    c_in, c_out = config.in_channels(c_in, c_out), config.out_channels(c_out)
    if config.op == "linear":
        return float(math.prod(config.spatial) * c_in * c_out)
    out = [(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, st, p, d in zip(config.spatial, config.kernel, config.stride, config.padding, config.dilation)]
    per_group_in = config.in_per_group if config.grouped else c_in // config.groups
    return float(math.prod(out) * c_out * per_group_in * math.prod(config.kernel))

"""Random architectures for the property test, built from small blocks of every supported construct."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import event
from hypothesis import strategies as st
from torch import nn

from .constructs import RotaryAttention, SplitAttention


class TimmAttention(nn.Module):
    """timm-style attention: fused qkv, reshape to heads, num_heads/head_dim/attn_dim attributes."""

    def __init__(self, dim: int, num_heads: int, fused: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dim = self.num_heads * self.head_dim
        self.scale = self.head_dim**-0.5
        self.fused = fused
        self.qkv = nn.Linear(dim, self.attn_dim * 3)
        self.proj = nn.Linear(self.attn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            x = attn @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, self.attn_dim))


class StdConv2d(nn.Conv2d):
    """timm-style weight-standardised convolution: each filter is normalised over its fan-in in forward."""

    def __init__(self, c_in: int, c_out: int, k: int, bias: bool = True, eps: float = 1e-6) -> None:
        super().__init__(c_in, c_out, k, padding=k // 2, bias=bias)
        self.eps = eps

    def standardised(self, gain: torch.Tensor | None = None) -> torch.Tensor:
        return F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, weight=gain, training=True,
                            momentum=0.0, eps=self.eps).reshape_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardised(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class ScaledStdConv2d(StdConv2d):
    """timm ``ScaledStdConv2d``-style: standardised filters times a learnt per-filter gain and a fixed scale."""

    def __init__(self, c_in: int, c_out: int, k: int, bias: bool = True, eps: float = 1e-6, gamma: float = 1.0) -> None:
        super().__init__(c_in, c_out, k, bias, eps)
        self.gain = nn.Parameter(torch.rand(c_out, 1, 1, 1) + 0.5)
        self.scale = gamma * self.weight[0].numel() ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.standardised((self.gain * self.scale).view(-1))
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BiTStdConv2d(StdConv2d):
    """BiT-style weight standardisation written by hand: ``(w - mean) / sqrt(var + eps)`` over each filter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, m = torch.var_mean(self.weight, dim=[1, 2, 3], keepdim=True, unbiased=False)
        w = (self.weight - m) / torch.sqrt(v + self.eps)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


STD_CONVS = {"std": StdConv2d, "scaled": ScaledStdConv2d, "bit": BiTStdConv2d}


class Block(nn.Module):
    """One generated block; ``kind`` selects the construct, ``opts`` its variant."""

    def __init__(self, kind: str, c_in: int, opts: dict[str, Any]) -> None:
        super().__init__()
        self.kind, self.opts = kind, opts
        self.c_out = c_in
        if kind == "conv":
            c_out, groups = opts["c_out"], opts["groups"]
            self.conv = nn.Conv2d(c_in, c_out, opts["k"], padding=opts["k"] // 2, groups=groups, bias=opts["bias"])
            self.norm = {"bn": nn.BatchNorm2d(c_out), "gn": nn.GroupNorm(opts["gn"], c_out), "none": nn.Identity()}[opts["norm"]]
            self.act = {"relu": nn.ReLU(), "prelu": nn.PReLU(c_out), "prelu1": nn.PReLU(), "gelu": nn.GELU(), "none": nn.Identity()}[opts["act"]]
            self.c_out = c_out
        elif kind == "residual":
            hidden = opts["hidden"]
            self.a = nn.Conv2d(c_in, hidden, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(hidden)
            self.b = nn.Conv2d(hidden, c_in, 1)
        elif kind == "concat":
            self.a = nn.Conv2d(c_in, opts["ca"], 1)
            self.b = nn.Conv2d(c_in, opts["cb"], 3, padding=1)
            self.c_out = opts["ca"] + opts["cb"]
        elif kind == "split":
            half = c_in // 2
            self.a = nn.Conv2d(half, half, 3, padding=1, groups=half if opts["dw"] else 1)
            self.b = nn.Conv2d(c_in - half, c_in - half, 1)
        elif kind == "csp":  # CSP/FocalNet-style: split sizes computed from attributes (self.c // 2, self.sizes)
            self.c, self.sizes = c_in, [opts["first"], c_in - opts["first"]]
            first = opts["first"] if opts["by"] == "sections" else c_in // 2
            self.a = nn.Conv2d(first, first, 3, padding=1)
            self.b = nn.Conv2d(c_in - first, c_in - first, 1)
        elif kind == "se":
            self.r = nn.Conv2d(c_in, opts["hidden"], 1)
            self.e = nn.Conv2d(opts["hidden"], c_in, 1)
        elif kind == "stdconv":
            self.conv = STD_CONVS[opts["style"]](c_in, opts["c_out"], opts["k"], bias=opts["bias"])
            self.c_out = opts["c_out"]
        elif kind == "grouped":  # ResNeXt-style: 1x1 to groups x per_in, grouped 3x3 to groups x per_out
            g, width = opts["groups"], opts["groups"] * opts["per_in"]
            self.a = nn.Conv2d(c_in, width, 1)
            self.bn = nn.BatchNorm2d(width) if opts["bn"] else nn.Identity()
            self.g = nn.Conv2d(width, g * opts["per_out"], 3, padding=1, groups=g, bias=opts["bias"])
            self.gn = nn.GroupNorm(g, g * opts["per_out"]) if opts["gn"] else nn.Identity()  # merges stripes: "auto" falls back
            self.c_out = g * opts["per_out"]
        elif kind == "splitattn":  # ResNeSt-style split attention over radix parts
            self.sa = SplitAttention(c_in, opts["radix"], opts["hidden"])
        elif kind == "rotary":  # timm-style attention with rotary q/k (constant sin/cos buffers)
            self.attn = RotaryAttention(c_in, opts["heads"], opts["tokens"], opts["scale"], opts["interleaved"])
        elif kind == "nhwc":
            self.fc = nn.Linear(c_in, opts["c_out"])
            self.c_out = opts["c_out"]
        elif kind == "tokens":
            heads = opts["heads"]
            dim = c_in
            self.norm1 = nn.LayerNorm(dim)
            self.attn = TimmAttention(dim, heads, opts["fused"]) if not opts["mha"] else nn.MultiheadAttention(dim, heads, batch_first=True)
            self.gamma = nn.Parameter(torch.rand(dim) + 0.5)
            self.fc1 = nn.Linear(dim, opts["hidden"])
            self.fc2 = nn.Linear(opts["hidden"], dim)
            self.cls = nn.Parameter(torch.randn(1, 1, dim)) if opts["cls"] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind, o = self.kind, self.opts
        if kind == "conv":
            return self.act(self.norm(self.conv(x)))
        if kind == "residual":
            y = self.b(torch.relu(self.bn(self.a(x))))
            return {"add": x + y, "sub": x - y, "mul": x * y}[o["op"]]
        if kind == "concat":
            return torch.cat([self.a(x), self.b(x)], dim=1)
        if kind == "split":
            half = x.shape[1] // 2
            a, b = (x.chunk(2, dim=1) if o["chunk"] else x.split([half, x.shape[1] - half], dim=1))
            return torch.cat([self.a(a), self.b(b)], dim=1) if o["cat"] else torch.cat([self.b(b), self.a(a)], dim=1)
        if kind == "csp":
            if o["by"] == "half":
                a, b = x.split(self.c // 2, dim=1)
            elif o["by"] == "sections":
                a, b = torch.split(x, self.sizes, 1)
            else:
                a, b = x[:, : self.c // 2], x[:, self.c // 2 :]
            return torch.cat([self.a(a), self.b(b)], dim=1)
        if kind == "se":
            s = x.mean((2, 3), keepdim=True)
            return x * torch.sigmoid(self.e(torch.relu(self.r(s))))
        if kind == "stdconv":
            return torch.relu(self.conv(x))
        if kind == "grouped":
            y = torch.relu(self.bn(self.a(x)))
            y = F.conv2d(y, self.g.weight, self.g.bias, 1, 1, 1, self.g.groups) if o["functional"] else self.g(y)
            return self.gn(y)
        if kind == "splitattn":
            return self.sa(x)
        if kind == "rotary":
            B, C, H, W = x.shape
            t = x.flatten(2).transpose(1, 2)
            return (t + self.attn(t)).transpose(1, 2).reshape(B, C, H, W)
        if kind == "nhwc":
            return self.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if kind == "tokens":
            B, C, H, W = x.shape
            t = x.flatten(2).transpose(1, 2)
            if self.cls is not None:
                t = torch.cat([self.cls.expand(B, -1, -1), t], dim=1)
            h = self.norm1(t)
            a = self.attn(h, h, h)[0] if isinstance(self.attn, nn.MultiheadAttention) else self.attn(h)
            t = t + self.gamma * a
            t = t + self.fc2(F.gelu(self.fc1(t)))
            if self.cls is not None:
                t = t[:, 1:]
            return t.transpose(1, 2).reshape(B, C, H, W)
        raise AssertionError(kind)


class Generated(nn.Module):
    """stem conv → blocks → head."""

    def __init__(self, c0: int, blocks: list[tuple[str, dict[str, Any]]], head: str, size: int, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c0, 3, padding=1)
        layers, c = [], c0
        for kind, opts in blocks:
            block = Block(kind, c, {**opts, "tokens": size * size} if kind == "rotary" else opts)
            layers.append(block)
            c = block.c_out
        self.blocks = nn.Sequential(*layers)
        self.head_kind = head
        self.head = nn.Linear(c if head == "pool" else c * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        if self.head_kind == "pool":
            x = F.adaptive_avg_pool2d(x, 1)
        return self.head(torch.flatten(x, 1))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def block_specs(draw: Any, c_in: int) -> tuple[str, dict[str, Any], int]:
    # "grouped" twice: its stripe variants (per-group in and out >= 2) are a fraction of its draws
    kinds = ["conv", "residual", "concat", "se", "nhwc", "tokens", "stdconv", "csp", "grouped", "grouped"] + (["split"] if c_in % 2 == 0 and c_in >= 4 else [])
    radixes = [r for r in (2, 3) if c_in % r == 0]
    rotary_heads = [d for d in _divisors(c_in) if d <= 4 and (c_in // d) % 2 == 0]
    kinds += (["splitattn"] if radixes else []) + (["rotary"] if rotary_heads else [])
    kind = draw(st.sampled_from(kinds))
    opts: dict[str, Any] = {}
    c_out = c_in
    if kind == "conv":
        mode = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
        if mode == "depthwise":
            c_out, groups = c_in, c_in
        elif mode == "grouped":
            groups = draw(st.sampled_from([d for d in _divisors(c_in) if d > 1] or [1]))
            c_out = groups * draw(st.integers(1, 3))
        else:
            groups, c_out = 1, draw(st.integers(4, 10))
        norm = draw(st.sampled_from(["bn", "gn", "none"]))
        gn = draw(st.sampled_from([d for d in _divisors(c_out) if d > 1] or [1])) if norm == "gn" else 1
        if norm == "gn" and gn == 1:
            norm = "bn"
        opts = dict(c_out=c_out, groups=groups, k=draw(st.sampled_from([1, 3])), bias=draw(st.booleans()), norm=norm, gn=gn,
                    act=draw(st.sampled_from(["relu", "prelu", "prelu1", "gelu", "none"])))
    elif kind == "residual":
        opts = dict(hidden=draw(st.integers(3, 8)), op=draw(st.sampled_from(["add", "sub", "mul"])))
    elif kind == "concat":
        opts = dict(ca=draw(st.integers(2, 6)), cb=draw(st.integers(2, 6)))
        c_out = opts["ca"] + opts["cb"]
    elif kind == "split":
        opts = dict(chunk=draw(st.booleans()), cat=draw(st.booleans()), dw=draw(st.booleans()))
    elif kind == "csp":
        opts = dict(by=draw(st.sampled_from(["sections", "slice"] + (["half"] if c_in % 2 == 0 else []))), first=draw(st.integers(1, c_in - 1)))
    elif kind == "se":
        opts = dict(hidden=draw(st.integers(2, 4)))
    elif kind == "stdconv":
        c_out = draw(st.integers(4, 10))
        opts = dict(c_out=c_out, k=draw(st.sampled_from([1, 3])), bias=draw(st.booleans()), style=draw(st.sampled_from(sorted(STD_CONVS))))
    elif kind == "grouped":
        opts = dict(groups=draw(st.sampled_from([2, 3])), per_in=draw(st.sampled_from([1, 2, 2, 3])), per_out=draw(st.sampled_from([1, 2, 2, 3])),
                    bn=draw(st.booleans()), bias=draw(st.booleans()), gn=draw(st.sampled_from([False, False, True])), functional=draw(st.booleans()))
        c_out = opts["groups"] * opts["per_out"]
        event("grouped conv: " + ("stripes" if opts["per_in"] >= 2 and opts["per_out"] >= 2 else "whole groups"))
    elif kind == "splitattn":
        opts = dict(radix=draw(st.sampled_from(radixes)), hidden=draw(st.integers(2, 4)))
        event(f"split attention, radix {opts['radix']}")
    elif kind == "rotary":
        opts = dict(heads=draw(st.sampled_from(rotary_heads)), scale=draw(st.sampled_from([None, 0.5])), interleaved=draw(st.booleans()))
        event("rotary attention")
    elif kind == "nhwc":
        c_out = draw(st.integers(4, 10))
        opts = dict(c_out=c_out)
    elif kind == "tokens":
        heads = draw(st.sampled_from([d for d in _divisors(c_in) if c_in // d >= 1 and d <= 4]))
        opts = dict(heads=heads, fused=draw(st.booleans()), mha=draw(st.booleans()), hidden=draw(st.integers(4, 12)), cls=draw(st.booleans()))
    return kind, opts, c_out


@st.composite
def architectures(draw: Any) -> tuple[Generated, torch.Tensor]:
    """A random model and an input batch for it."""
    c = draw(st.sampled_from([4, 6, 8]))
    c0 = c
    blocks = []
    for _ in range(draw(st.integers(1, 4))):
        kind, opts, c = draw(block_specs(c))
        blocks.append((kind, opts))
    size = draw(st.sampled_from([3, 4]))
    head = draw(st.sampled_from(["pool", "flatten"]))
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = Generated(c0, blocks, head, size)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
    return model.eval(), torch.randn(2, 3, size, size)

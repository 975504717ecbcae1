"""Small test models of constructs that used to be frozen silently: split attention and rotary attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RSoftMax(nn.Module):
    """Softmax over the radix parts of each channel (ResNeSt's rSoftMax, cardinality 1)."""

    def __init__(self, radix: int) -> None:
        super().__init__()
        self.radix = radix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.size(0)
        return F.softmax(x.view(b, 1, self.radix, -1).transpose(1, 2), dim=1).reshape(b, -1)


class SplitAttention(nn.Module):
    """conv(C → C·radix, groups=radix) → BN → ReLU → split into radix parts → sum → gap → fc1 → fc2 → rSoftMax → weighted sum."""

    def __init__(self, c: int, radix: int = 2, hidden: int = 4) -> None:
        super().__init__()
        self.radix = radix
        self.conv = nn.Conv2d(c, c * radix, 3, padding=1, groups=radix, bias=False)
        self.bn = nn.BatchNorm2d(c * radix)
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, c * radix, 1)
        self.rsoftmax = RSoftMax(radix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        b, rc, h, w = x.shape
        parts = x.reshape(b, self.radix, rc // self.radix, h, w)
        gap = parts.sum(dim=1).mean((2, 3), keepdim=True)
        attn = self.rsoftmax(self.fc2(F.relu(self.fc1(gap)))).view(b, self.radix, rc // self.radix, 1, 1)
        return (parts * attn).sum(dim=1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)


class RotaryAttention(nn.Module):
    """timm-style attention with rotary q/k: constant sin/cos buffers, rotate-half (or interleaved
    pairs, EVA-style ``x[..., ::2]``), sdpa, ``reshape(B, N, C)``."""

    def __init__(self, dim: int, num_heads: int, tokens: int, scale: float | None = None, interleaved: bool = False, computed: bool = False) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.scale, self.computed = num_heads, dim // num_heads, scale, computed
        self.rotate = rotate_interleaved if interleaved else rotate_half
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        angle = torch.arange(tokens).double()[:, None] * torch.arange(1, self.head_dim // 2 + 1).double()[None]
        angle = angle.repeat_interleave(2, -1) if interleaved else torch.cat([angle, angle], -1)
        self.register_buffer("sin", angle.sin().float(), persistent=False)
        self.register_buffer("cos", angle.cos().float(), persistent=False)
        self.register_buffer("angle", angle.float(), persistent=False)  # computed=True: sin/cos built in forward (EVA-style)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        cos, sin = (self.angle.cos(), self.angle.sin()) if self.computed else (self.cos, self.sin)
        q = q * cos + self.rotate(q) * sin
        k = k * cos + self.rotate(k) * sin
        x = F.scaled_dot_product_attention(q, k, v) if self.scale is None else F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class SplitNet(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.sa = SplitAttention(c)
        self.head = nn.Linear(c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.sa(self.stem(x)).mean((2, 3)))


class RotaryNet(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4, tokens: int = 6, scale: float | None = None, interleaved: bool = False,
                 computed: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(5, dim)
        self.attn = RotaryAttention(dim, heads, tokens, scale, interleaved, computed)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(self.embed(x)).mean(1))

"""Plain ``nn.Module`` layers that multiply with a CSR/BSR sparse weight on the left.

``y^T = W_sparse @ x^T``: PyTorch's CPU sparse kernels are fast with the sparse operand on the
left and slow with it on the right. The compressed weight is stored as ordinary dense buffers
(``crow_indices``, ``col_indices``, ``values``) so ``state_dict``, ``deepcopy`` and ``.to()`` work;
the sparse tensor is assembled (no copy) at each call.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor, nn

Layout = Literal["csr", "bsr"]


def compress(weight: Tensor, layout: Layout = "csr", blocksize: int | None = None) -> Tensor:
    """A 2-D dense ``weight`` as a CSR tensor, or BSR with square ``blocksize`` blocks."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        if layout == "csr":
            return weight.detach().to_sparse_csr()
        if layout == "bsr" and blocksize:
            return weight.detach().to_sparse_bsr((blocksize, blocksize))
    raise ValueError(f"layout must be 'csr' or 'bsr' with a blocksize, got {layout!r}, blocksize={blocksize!r}")


class _SparseMatmul(nn.Module):
    """Holds a compressed 2-D weight ``(out, in)`` and an optional bias; computes ``W @ columns``."""

    def __init__(self, weight: Tensor, bias: Tensor | None, layout: Layout = "csr", blocksize: int | None = None) -> None:
        super().__init__()
        sparse = compress(weight, layout, blocksize)
        self.layout = layout
        self.blocksize = blocksize
        self.out_features, self.in_features = (int(s) for s in weight.shape)
        self.register_buffer("crow_indices", sparse.crow_indices())
        self.register_buffer("col_indices", sparse.col_indices())
        self.register_buffer("values", sparse.values())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def sparse_weight(self) -> Tensor:
        """The weight as a sparse CSR/BSR tensor (a view of the buffers)."""
        layout = torch.sparse_csr if self.layout == "csr" else torch.sparse_bsr
        return torch.sparse_compressed_tensor(
            self.crow_indices, self.col_indices, self.values, (self.out_features, self.in_features),
            layout=layout, check_invariants=False,
        )

    def extra_repr(self) -> str:
        block = f", blocksize={self.blocksize}" if self.layout == "bsr" else ""
        nnz = self.values.numel()
        density = nnz / (self.out_features * self.in_features)
        return f"in={self.in_features}, out={self.out_features}, layout={self.layout}{block}, density={density:.3f}"


class SparseLinear(_SparseMatmul):
    """``nn.Linear`` replacement: ``y = (W_sparse @ x^T)^T + b`` for ``x`` of shape ``(..., in)``."""

    @classmethod
    def from_linear(cls, linear: nn.Linear, layout: Layout = "csr", blocksize: int | None = None) -> SparseLinear:
        """Compress a (plain or masked) ``nn.Linear``; its effective weight is used."""
        return cls(linear.weight, linear.bias, layout, blocksize)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        y = (self.sparse_weight() @ x.reshape(-1, self.in_features).t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


class SparseConv1x1(_SparseMatmul):
    """Pointwise ``nn.Conv2d`` (1×1, stride 1, no padding, groups 1) replacement on ``(B, C, H, W)`` inputs."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, layout: Layout = "csr", blocksize: int | None = None) -> SparseConv1x1:
        """Compress a (plain or masked) pointwise ``nn.Conv2d``; its effective weight is used."""
        return cls(conv.weight.flatten(1), conv.bias, layout, blocksize)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        columns = x.transpose(0, 1).reshape(c, b * h * w)
        y = self.sparse_weight() @ columns
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.reshape(self.out_features, b, h, w).transpose(0, 1).contiguous()

"""2:4 semi-structured sparse execution through ``torch.sparse.to_sparse_semi_structured`` (CUDA only).

PyTorch's 2:4 kernels (CUTLASS / cuSPARSELt) run on NVIDIA GPUs with sparse tensor cores. There is
no CPU kernel: on CPU a 2:4-pruned model simply stays dense with zeros, and this module says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit._parametrize import bake_parametrizations
from prunekit.masks.nm import is_valid_nm

logger = logging.getLogger(__name__)

CPU_MESSAGE = "no CPU kernel for 2:4 semi-structured sparsity; the model stays dense-with-zeros"


@dataclass
class SemiStructuredResult:
    """Which ``nn.Linear`` weights now run as 2:4 semi-structured tensors, and why others do not."""

    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    message: str = ""


def to_semi_structured(model: nn.Module) -> SemiStructuredResult:
    """Convert, in place, every 2:4-valid ``nn.Linear`` weight of a CUDA model to a semi-structured tensor.

    Masks (and other parametrizations) are made permanent on converted layers first. On CPU (no
    CUDA, or no Linear weight on a CUDA device) nothing is converted and the result's ``message``
    is :data:`CPU_MESSAGE`, also logged as a warning. Shape/dtype limits of the CUDA kernels are reported per layer in
    ``skipped`` with PyTorch's own reason.
    """
    result = SemiStructuredResult()
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    on_cuda = [name for name, module in linears if module.weight.device.type == "cuda"]
    if not torch.cuda.is_available() or (linears and not on_cuda):
        result.message = CPU_MESSAGE
        result.skipped = {name: "on CPU" for name, _ in linears}
        logger.warning(CPU_MESSAGE)
        return result
    from torch.sparse import to_sparse_semi_structured

    for name, module in linears:
        check = is_valid_nm(module.weight, 2, 4)
        if module.weight.device.type != "cuda" or not check:
            result.skipped[name] = "on CPU" if module.weight.device.type != "cuda" else check.message
            continue
        if parametrize.is_parametrized(module):
            bake_parametrizations(module)
        try:
            sparse = to_sparse_semi_structured(module.weight.detach())
        except (RuntimeError, ValueError) as exc:
            result.skipped[name] = str(exc)
            continue
        module.weight = nn.Parameter(sparse, requires_grad=False)
        result.converted.append(name)
    result.message = f"{len(result.converted)} of {len(linears)} Linear layers run 2:4 semi-structured kernels"
    logger.info(result.message)
    return result

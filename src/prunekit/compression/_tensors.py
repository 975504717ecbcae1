"""The tensors a model would save, as users name them, even while parametrized."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import parametrize


def effective_state(model: nn.Module) -> dict[str, Tensor]:
    """``{name: detached tensor}`` of parameters and persistent buffers, in ``state_dict`` order.

    A parametrized tensor (a mask, weight sharing) appears under its plain name (``fc.weight``)
    with its current computed value, so the result loads into the stripped model.
    """
    out: dict[str, Tensor] = {}
    _collect(model, "", out)
    return out


def _collect(module: nn.Module, prefix: str, out: dict[str, Tensor]) -> None:
    parametrized = parametrize.is_parametrized(module)
    for name, param in module.named_parameters(recurse=False):
        out[prefix + name] = param.detach()
    if parametrized:
        for name in module.parametrizations:  # type: ignore[attr-defined]
            out[prefix + name] = getattr(module, name).detach()
    for name, buf in module.named_buffers(recurse=False):
        if name not in module._non_persistent_buffers_set:
            out[prefix + name] = buf.detach()
    for name, child in module.named_children():
        if parametrized and name == "parametrizations":
            continue
        _collect(child, f"{prefix}{name}.", out)

"""Interop with ``torch.nn.utils.prune`` (``weight_orig`` + ``weight_mask`` forward pre-hooks)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from prunekit.masks.maskset import MaskSet
from prunekit.masks.targets import owner


def from_torch_prune(model: nn.Module, remove: bool = False) -> MaskSet:
    """Masks of a model pruned with ``torch.nn.utils.prune`` (every ``<name>_mask`` buffer).

    With ``remove=True`` the torch pruning is also made permanent (``prune.remove``), leaving plain
    parameters, so the returned masks can be attached with :meth:`MaskSet.attach` instead.
    """
    masks = {}
    for mod_name, module in model.named_modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod) or isinstance(hook, prune.PruningContainer):
                pname = hook._tensor_name
                mask = getattr(module, f"{pname}_mask")
                masks[f"{mod_name}.{pname}" if mod_name else pname] = mask.detach().clone()
                if remove:
                    prune.remove(module, pname)
    return MaskSet(masks)


def to_torch_prune(masks: MaskSet, model: nn.Module) -> nn.Module:
    """Apply ``masks`` with ``prune.custom_from_mask`` (creates ``weight_orig``/``weight_mask``).

    The target parameters must be plain (not carrying prunekit masks); strip or detach first.
    """
    for name, mask in masks.items():
        module, pname = owner(model, name)
        prune.custom_from_mask(module, pname, mask.to(getattr(module, pname).device, torch.float32))
    return model

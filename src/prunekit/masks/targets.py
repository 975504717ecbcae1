"""Which parameters can be pruned: conv/linear weights by default, biases and norms excluded."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.errors import ConfigError
from prunekit.layer_kinds import PRUNABLE_LAYERS, kind_of  # PRUNABLE_LAYERS: re-exported public name


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def prunable_parameters(
    model: nn.Module,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> list[str]:
    """Fully-qualified names of prunable parameters, in module order.

    Default: the ``weight`` of every conv/linear layer. ``include`` (shell wildcards over parameter
    names, e.g. ``"features.*.weight"``) replaces the default selection and may name any parameter;
    ``exclude`` removes names (e.g. ``"fc3.*"``). A pattern that matches nothing is an error, so typos
    do not pass silently.
    """
    names: list[str] = []
    all_names = list(logical_parameter_names(model))
    if include is None:
        for mod_name, module in model.named_modules():
            record = kind_of(module)
            if record is not None and record.prunable and getattr(module, record.weight, None) is not None:
                names.append(f"{mod_name}.{record.weight}" if mod_name else record.weight)
    else:
        for pattern in include:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in all_names):
                raise ConfigError(f"include pattern {pattern!r} matches no parameter; parameters look like {all_names[:4]}")
        names = [n for n in all_names if _matches(n, include)]
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in all_names):
            raise ConfigError(f"exclude pattern {pattern!r} matches no parameter; parameters look like {all_names[:4]}")
    return [n for n in names if not _matches(n, exclude)]


def logical_parameter_names(model: nn.Module) -> list[str]:
    """Parameter names as users see them (``fc1.weight``), even when parametrized."""
    names = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for pname, _ in module.named_parameters(recurse=False):
            names.append(prefix + pname)
        if parametrize.is_parametrized(module):
            names += [prefix + p for p in module.parametrizations]  # type: ignore[attr-defined]
    return [n for n in names if ".parametrizations." not in n]


def split_name(fqn: str) -> tuple[str, str]:
    """``"features.0.weight"`` → ``("features.0", "weight")``."""
    module_name, _, pname = fqn.rpartition(".")
    return module_name, pname


def owner(model: nn.Module, fqn: str) -> tuple[nn.Module, str]:
    """The module holding parameter ``fqn`` and the parameter's local name."""
    module_name, pname = split_name(fqn)
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        raise ConfigError(f"model has no module {module_name!r} (for parameter {fqn!r})") from None
    if not hasattr(module, pname):
        raise ConfigError(f"module {module_name!r} has no parameter {pname!r}")
    return module, pname


def effective_weight(model: nn.Module, fqn: str) -> torch.Tensor:
    """The value parameter ``fqn`` computes with (its mask applied, if any)."""
    module, pname = owner(model, fqn)
    return getattr(module, pname)


def raw_parameter(model: nn.Module, fqn: str) -> nn.Parameter:
    """The trainable tensor behind ``fqn`` (the parametrization's ``original`` when masked)."""
    module, pname = owner(model, fqn)
    if parametrize.is_parametrized(module, pname):
        return module.parametrizations[pname].original  # type: ignore[index]
    return getattr(module, pname)

"""Reading a user's model weights: safetensors or PyTorch files, tensors only, never code.

:func:`load_weights` is the one reader behind ``model.checkpoint``, ``prunekit check`` and timm's
``checkpoint_path``:

* ``.safetensors`` files are read with safetensors;
* ``.pt``/``.pth``/``.bin``/``.ckpt`` (any file that starts as a zip or a pickle) with
  ``torch.load(path, map_location="cpu", weights_only=True)``: a pickle that names code (a whole
  pickled model, a ``__reduce__`` payload) is refused, never executed;
* a checkpoint nesting its weights (Lightning's ``{"state_dict": ...}``, ``{"model": ...}``,
  ``{"model_state_dict": ...}``) is unwrapped, and prefixes added by wrappers (``model.``, DDP's
  ``module.``, ``torch.compile``'s ``_orig_mod.``) are stripped when that makes the names match the model;
* a checkpoint that does not hold exactly the model's tensors, with the same shapes, is a
  :class:`CheckpointError` listing one line per mismatching tensor.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from prunekit.errors import CheckpointError, shorten

#: File suffixes read with ``torch.load(..., weights_only=True)``.
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
#: Keys under which training frameworks nest the weights, tried in this order.
NESTING_KEYS = ("state_dict", "model_state_dict", "model")
#: Prefixes wrappers put before parameter names: Lightning's ``self.model``, DDP, torch.compile.
PREFIXES = ("model.", "module.", "_orig_mod.")
#: Most mismatching tensors listed when a checkpoint does not fit the model.
MAX_LISTED = 20

_RESAVE = ("re-save the weights only, where the model is defined: torch.save(model.state_dict(), 'weights.pt') "
           "or safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')")


def load_weights(path: str | os.PathLike[str], model: nn.Module | None = None, *, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of the checkpoint at ``path``, by parameter/buffer name.

    With ``model``, the names are matched to ``model.state_dict()`` (wrapper prefixes stripped) and
    the checkpoint must fit it exactly, so ``model.load_state_dict(load_weights(path, model))``
    always succeeds. ``device="meta"`` reads shapes only (for checks). Raises
    :class:`CheckpointError` for a missing, unreadable, code-holding or non-fitting file.
    """
    target = Path(path)
    tensors = _unwrap(_read(target, device), target)
    if model is None:
        return tensors
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items() if isinstance(t, torch.Tensor)}
    tensors = match_names(tensors, expected)
    check_fit({key: tuple(t.shape) for key, t in tensors.items()}, expected, f"{target} does not fit model {type(model).__name__}")
    return tensors


def check_fit(shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], headline: str) -> None:
    """:class:`CheckpointError` (``headline``, then one line per mismatching tensor) unless ``shapes`` equals ``expected``."""
    problems = [f"  {key}: missing from the checkpoint (model has shape {list(shape)})" for key, shape in expected.items() if key not in shapes]
    problems += [f"  {key}: not in the model" for key in shapes if key not in expected]
    problems += [f"  {key}: checkpoint shape {list(shapes[key])}, model shape {list(shape)}"
                 for key, shape in expected.items() if key in shapes and tuple(shapes[key]) != tuple(shape)]
    if problems:
        more = f"\n  … and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise CheckpointError(f"{headline} ({len(problems)} tensor(s)):\n" + "\n".join(problems[:MAX_LISTED]) + more)


def match_names(tensors: dict[str, torch.Tensor], expected: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """``tensors`` with the wrapper prefixes (:data:`PREFIXES`, up to three deep, e.g. ``module._orig_mod.``)
    stripped that make the most names match ``expected``; unchanged when stripping gains nothing."""
    def matches(names: Mapping[str, object]) -> int:
        return sum(name in expected for name in names)

    best, level = tensors, [tensors]
    for _ in range(3):
        level = [stripped for names in level for prefix in PREFIXES
                 if any(key.startswith(prefix) for key in names)
                 and len(stripped := {key.removeprefix(prefix): value for key, value in names.items()}) == len(names)]
        best = max([best, *level], key=matches)  # the first of equals: the fewest prefixes stripped
    return best


def _read(path: Path, device: str) -> object:
    """The object stored at ``path``: a dict of tensors (safetensors) or whatever plain data torch.load allows."""
    if not path.is_file():
        raise CheckpointError(f"no such file: {shorten(str(path), 300)}" if not path.exists() else f"{path} is not a file")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    is_torch = magic.startswith(b"PK\x03\x04") or (magic[:1] == b"\x80" and magic[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
    if suffix in TORCH_SUFFIXES or (suffix != ".safetensors" and is_torch):  # a zip (torch.save) or a pickle
        return _torch_load(path, device)
    return _safetensors_load(path, device)


def _safetensors_load(path: Path, device: str) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            if device == "meta":
                return {key: torch.empty(handle.get_slice(key).get_shape(), device="meta") for key in handle.keys()}
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError
        raise CheckpointError(f"{path} is not a readable safetensors file ({shorten(str(exc), 200)}); checkpoints are "
                              f"safetensors or PyTorch files ({', '.join(TORCH_SUFFIXES)})") from None


def _torch_load(path: Path, device: str) -> object:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it names {named.group(1)})" if named else ""
        lightning = (" (a Lightning .ckpt holds what save_hyperparameters() kept: there, "
                     "torch.save(MyLitModule.load_from_checkpoint(path).state_dict(), 'weights.pt') does it)") if path.suffix == ".ckpt" else ""
        raise CheckpointError(f"{path} holds pickled code or objects other than tensors{what}, and prunekit never unpickles code; "
                              f"{_RESAVE}{lightning}") from None
    except Exception as exc:  # truncated zip, not a torch file at all, ...
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {shorten(str(exc), 200)}); "
                              f"{_RESAVE}") from None


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The mapping of names to tensors inside ``obj``: itself, or nested under one of :data:`NESTING_KEYS`."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(value, torch.Tensor) for value in obj.values()):
            return {str(key): value for key, value in obj.items()}
        for key in NESTING_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], path)
        if not obj:
            raise CheckpointError(f"{path} holds no tensors; {_RESAVE}")
        keys = shorten([str(k) for k in obj])
        raise CheckpointError(f"{path} holds a mapping with keys {keys}, not a state dict (names → tensors) nor one nested under "
                              f"{', '.join(repr(k) for k in NESTING_KEYS)}; {_RESAVE}")
    raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict (names → tensors); {_RESAVE}")

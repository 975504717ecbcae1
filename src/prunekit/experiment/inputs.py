"""What a run reads besides its settings: fingerprints of the files and code a recipe names.

The run directory's name and the dense cache's key hash these with the settings, so an
overwritten checkpoint, an edited model factory, changed data or another prunekit version starts a
new run instead of silently reusing old results. Each run directory records them in
``inputs.json``; a new run directory of a recipe whose sibling (same name and settings, same output
folder) was made from other inputs logs which input changed. Registered datasets are not hashed:
their files are MD5-verified when they are loaded.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunekit._io import read_json, write_json
from prunekit._version import __version__
from prunekit.errors import CheckpointError, DataError
from prunekit.experiment.recipe import Recipe
from prunekit.experiment.rundir import RunDir, settings_hash
from prunekit.zoo.models.registry import import_factory

log = logging.getLogger(__name__)

#: Where a run directory records its inputs.
INPUTS_FILE = "inputs.json"

#: The input fingerprints' key for the prunekit version.
VERSION_KEY = "prunekit"

#: Recipe settings naming a file or folder the run reads (``data.root`` is not one: registered
#: datasets are MD5-verified when loaded); the ``model.kwargs`` ones only for ``timm/<name>`` models.
FILE_SETTINGS = ("model.checkpoint", "data.path", "model.kwargs.checkpoint_path", "model.kwargs.pretrained_cfg_overlay.file")

#: Recipe settings that may name user code (``package.module:function`` or ``path/to/file.py:function``).
CODE_SETTINGS = {"model.name": "model factory", "data.name": "dataset factory"}


def input_fingerprints(recipe: Recipe) -> dict[str, str]:
    """``{input: fingerprint}`` for everything ``recipe`` reads besides its settings: ``prunekit``
    (the version); each of :data:`FILE_SETTINGS` that is set (a file's sha256, a folder's listing,
    see :func:`path_fingerprint`); each of :data:`CODE_SETTINGS` naming user code (the sha256 of the
    source file of the module defining the factory, see :func:`factory_fingerprint`)."""
    settings = recipe.resolved()
    inputs = {VERSION_KEY: __version__}
    for key in FILE_SETTINGS:
        path = _setting(settings, key)
        if path and (not key.startswith("model.kwargs.") or recipe.model.name.startswith("timm/")):
            inputs[key] = _readable(path, key)
    for key, what in CODE_SETTINGS.items():
        name = _setting(settings, key)
        if ":" in name:
            inputs[key] = factory_fingerprint(import_factory(name, what=what))
    return inputs


def _setting(settings: dict[str, Any], key: str) -> Any:
    """The value of the dotted ``key`` in resolved settings (None where absent)."""
    node: Any = settings
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _readable(path: str, key: str) -> str:
    """:func:`path_fingerprint` of the recipe setting ``key``; an unreadable path is a
    :class:`CheckpointError` (model settings) or :class:`DataError` (data settings) naming it."""
    try:
        return path_fingerprint(path)
    except OSError as exc:
        error = DataError if key.startswith("data.") else CheckpointError
        raise error(f"{key}: cannot read {exc.filename or path}: {exc.strerror or exc}; check the path in the recipe") from None


def path_fingerprint(path: str | os.PathLike[str]) -> str:
    """:func:`folder_fingerprint` of a folder, :func:`file_digest` of a file."""
    return folder_fingerprint(path) if Path(path).is_dir() else file_digest(path)


def file_digest(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of a file's content, read in chunks; computed once per process for a given
    (path, size, modification time)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _digest(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:  # size and mtime_ns key the cache
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """``listing:<sha256>`` of the files under ``folder`` (relative path, size, modification time in
    ns), without reading them: adding, removing, renaming or rewriting a file changes it. Hidden
    files and folders (names starting with ``.``) are left out, as the data loaders skip them."""
    root = Path(folder)
    h = hashlib.sha256()
    for parent, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(parent) / name
            stat = path.stat()
            h.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return "listing:" + h.hexdigest()


def factory_fingerprint(factory: Callable[..., Any]) -> str:
    """:func:`file_digest` of the source file of the module defining ``factory`` (a function, a class
    or an instance of one); ``no source file`` for code that has none (built-ins)."""
    for target in (factory, type(factory)):
        try:
            return file_digest(inspect.getfile(target))
        except (TypeError, OSError):
            continue
    return "no source file"


def record_inputs(run: RunDir, recipe: Recipe, inputs: dict[str, str]) -> None:
    """Write ``inputs.json`` into a run directory that has none yet (a new run), first logging which
    inputs changed since the latest sibling run of the same recipe name and settings."""
    target = run.path / INPUTS_FILE
    if target.exists():
        return
    record = {"name": recipe.name, "settings": settings_hash(recipe.identity()), "inputs": inputs}
    sibling = _latest_sibling(run, record)
    if sibling is not None:
        old = sibling[1]["inputs"]
        for key in sorted(old.keys() | inputs.keys()):
            if old.get(key) != inputs.get(key):
                log.info("%s changed since %s (%s): starting a new run directory",
                         _label(key), sibling[0], _change(old.get(key), inputs.get(key)))
    write_json(target, record)


def _latest_sibling(run: RunDir, record: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The most recently recorded other run directory beside ``run`` with the same name and settings."""
    found = []
    for other in run.path.parent.glob(f"{glob.escape(record['name'])}-*/{INPUTS_FILE}"):
        if other.parent == run.path:
            continue
        try:
            saved = read_json(other, "run inputs")
        except CheckpointError:
            continue  # a damaged record of another run is that run's business
        if saved.get("name") == record["name"] and saved.get("settings") == record["settings"] and isinstance(saved.get("inputs"), dict):
            found.append((other.stat().st_mtime_ns, other.parent, saved))
    if not found:
        return None
    _, path, saved = max(found, key=lambda item: item[0])
    return path, saved


def _label(key: str) -> str:
    return "the prunekit version" if key == VERSION_KEY else key


def _change(old: str | None, new: str | None) -> str:
    """``sha256 3f2a1b2c… → 9c1e5d77…`` (a kind both share named once), ``0.1.0 → 0.2.0``, ``none → …``."""
    before, after = _short(old), _short(new)
    kind, sep, _ = before.partition(" ")
    if sep and after.startswith(f"{kind} "):
        after = after[len(kind) + 1:]
    return f"{before} → {after}"


def _short(value: str | None) -> str:
    """``sha256 3f2a1b2c…`` for a digest, the value itself otherwise (``none`` when absent)."""
    if value is None:
        return "none"
    kind, sep, digest = value.partition(":")
    return f"{kind} {digest[:8]}…" if sep and kind in ("sha256", "listing") else value

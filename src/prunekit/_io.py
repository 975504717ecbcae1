"""Atomic file writes and safe loading: nothing half-written is ever left behind."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import torch
from safetensors.torch import load_file, save_file

from prunekit.errors import CheckpointError, DamagedFileError

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Permissions of files prunekit writes (temporary files would otherwise be owner-only).
FILE_MODE = 0o644

#: Names of the temporary siblings atomic writes create: ``.<name>.<8 random characters>.tmp``.
TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def _temp_sibling(target: Path) -> tuple[int, str]:
    """Create an empty temporary file beside ``target`` (named as :data:`TEMP_NAME` says)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)


def remove_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files left under ``folder`` by a writer killed mid-write (links are not followed)."""
    removed = []
    for parent, _, files in os.walk(folder):
        for name in files:
            path = Path(parent) / name
            if TEMP_NAME.fullmatch(name) and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def check_links(folder: str | os.PathLike[str], within: str | os.PathLike[str] | None = None, what: str = "the folder") -> None:
    """Refuse any symbolic link under ``folder`` that leads outside ``within`` (default: ``folder``),
    with a :class:`CheckpointError` naming the link, its target and ``what`` the folder is.

    Links are not followed while walking; ``folder`` itself is resolved first, so it may be reached
    through linked parents (and, with the default ``within``, be a link itself).
    """
    folder = Path(folder)
    base = Path(within if within is not None else folder).resolve()
    if not os.path.lexists(folder):
        return
    candidates = [folder] if within is not None else []
    for parent, dirs, files in os.walk(folder):
        candidates += [Path(parent) / name for name in (*dirs, *files)]
    for path in candidates:
        if path.is_symlink():
            _refuse_escaping_link(path, base, what)


def _refuse_escaping_link(link: Path, base: Path, what: str) -> None:
    try:
        target = link.resolve()
    except (OSError, RuntimeError):  # a loop of links
        target = Path(os.readlink(link))
    if not target.is_relative_to(base):
        raise CheckpointError(
            f"{link} is a symbolic link to {target}, outside {what} {base}; prunekit writes only inside it: "
            f"replace the link with a real file or folder"
        )


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` keeps its old content.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports modes 'wb' and 'w', not {mode!r}")
    target = Path(path)
    fd, tmp = _temp_sibling(target)
    os.chmod(tmp, FILE_MODE)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle  # type: ignore[misc]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON record as a line (a single ``write`` of a whole line, then fsync).

    ``path`` itself must not be a symbolic link: appending is the one write that is not a rename.
    """
    line = json.dumps(dict(record), sort_keys=True, default=_json_default) + "\n"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if target.is_symlink():
            raise CheckpointError(f"{target} is a symbolic link; prunekit does not append through links: replace it with a plain file") from None
        raise CheckpointError(f"cannot append to {target}: {exc.strerror}") from None
    with os.fdopen(fd, "ab") as handle:
        if os.fstat(fd).st_size == 0:
            os.fchmod(fd, FILE_MODE)  # as every other file, whatever the umask
        handle.write(line.encode("utf-8"))
        handle.flush()
        os.fsync(fd)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read JSON-object lines, skipping damaged ones (a partial line left by a killed writer,
    garbage, non-UTF-8 bytes) with one warning that counts them."""
    target = Path(path)
    if not target.exists():
        return []
    try:
        lines = target.read_bytes().splitlines()
    except OSError as exc:
        raise CheckpointError(f"cannot read {target}: {exc.strerror}") from None
    records = [rec for rec in map(_json_object, lines) if rec is not None]
    skipped = sum(1 for line in lines if line.strip()) - len(records)
    if skipped:
        log.warning("%s: skipped %d damaged line(s) (not a UTF-8 JSON object)", target, skipped)
    return records


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_json(path: str | os.PathLike[str], what: str = "JSON file", expect: type = dict, fix: str = "") -> Any:
    """Read a JSON value of type ``expect`` from a file prunekit wrote.

    Raises :class:`CheckpointError` if the file is missing and :class:`DamagedFileError` if it is
    unreadable, not UTF-8, not JSON or of another type; the message names ``what``, the file and ``fix``.
    """
    target = Path(path)
    advice = f"; {fix}" if fix else ""
    if not target.exists():
        raise CheckpointError(f"{what} {target} is missing{advice}")
    try:
        value = json.loads(target.read_bytes().decode("utf-8"))
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    except UnicodeDecodeError:
        problem = "is damaged (not UTF-8 text)"
    except json.JSONDecodeError as exc:
        problem = f"is damaged (not valid JSON: {exc})"
    except (ValueError, RecursionError):  # e.g. nested too deeply
        problem = "is damaged (not valid JSON)"
    else:
        if isinstance(value, expect):
            return value
        problem = f"is damaged (a JSON {type(value).__name__}, not {expect.__name__})"
    raise DamagedFileError(f"{what} {target} {problem}{advice}")


def read_record(path: str | os.PathLike[str], record_type: Callable[..., T], what: str) -> T:
    """A record dataclass saved as a JSON object (``asdict``); other fields are :class:`DamagedFileError`."""
    try:
        return record_type(**read_json(path, what))
    except TypeError:
        raise DamagedFileError(f"{what} {Path(path)} is damaged (not the fields of a {what})") from None


def save_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Atomically save tensors with safetensors (contiguous, de-aliased copies)."""
    target = Path(path)
    fd, tmp = _temp_sibling(target)
    os.close(fd)
    try:
        clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        save_file(clean, tmp, metadata=dict(metadata) if metadata else None)
        os.chmod(tmp, FILE_MODE)  # save_file re-creates the file, owner-only
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning format errors into :class:`CheckpointError`."""
    target = Path(path)
    if not target.exists():
        raise CheckpointError(f"no such file: {target}")
    try:
        return load_file(str(target))
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError
        raise _damaged_safetensors(target, exc) from None


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata stored in a safetensors header."""
    from safetensors import safe_open

    target = Path(path)
    if not target.exists():
        raise CheckpointError(f"no such file: {target}")
    try:
        with safe_open(str(target), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # SafetensorError / OSError
        raise _damaged_safetensors(target, exc) from None


def _damaged_safetensors(path: Path, exc: Exception) -> DamagedFileError:
    return DamagedFileError(f"{path} is damaged or not a safetensors file ({exc})")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

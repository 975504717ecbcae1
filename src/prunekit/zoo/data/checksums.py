"""MD5 verification of dataset files, remembered in a small JSON sidecar.

A verified file is recorded in ``<folder>/.prunekit-md5.json`` as ``{name: {size, mtime_ns, md5}}``.
Later loads skip hashing when size and modification time still match the record. Where the folder
is read-only (a shared data directory) nothing is recorded and each load hashes again (about
0.3 s for the 170 MB CIFAR-10 file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from prunekit._io import write_json
from prunekit.errors import ChecksumError

log = logging.getLogger(__name__)

SIDECAR = ".prunekit-md5.json"
_CHUNK = 1 << 20


def md5_file(path: str | os.PathLike[str]) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_error(path: Path, expected: str, actual: str, fix: str | None = None) -> ChecksumError:
    """A :class:`ChecksumError` naming the file, both checksums and how to fix it."""
    fix = fix or (
        "move it aside (rename it) and load again with download=True to fetch a fresh copy, "
        "or replace it with a good copy of the file"
    )
    return ChecksumError(f"{path} is corrupted or incomplete: md5 is {actual}, expected {expected}; {fix}")


def verify_file(path: str | os.PathLike[str], expected_md5: str, fix: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has MD5 ``expected_md5``.

    ``fix`` replaces the default advice in the error message. Skips hashing when the sidecar holds a matching record for the file's current size and mtime.
    """
    target = Path(path)
    stat = target.stat()
    record = _read_sidecar(target.parent).get(target.name)
    if record == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": expected_md5}:
        return
    actual = md5_file(target)
    if actual != expected_md5:
        raise checksum_error(target, expected_md5, actual, fix)
    remember_verified(target, expected_md5)


def remember_verified(path: Path, md5: str) -> None:
    """Record in the sidecar that ``path`` (as it is now) has MD5 ``md5``; best effort."""
    try:
        stat = path.stat()
        records = _read_sidecar(path.parent)
        records[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": md5}
        write_json(path.parent / SIDECAR, records)
    except OSError as exc:  # read-only folder: verification just is not remembered
        log.debug("not recording checksum of %s (%s)", path, exc)


def _read_sidecar(folder: Path) -> dict[str, dict]:
    try:
        records = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}

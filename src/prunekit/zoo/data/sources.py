"""Find, verify and (if allowed) download the files of a dataset.

Rules:

* The first file set (in the spec's order of preference) whose files are all present is used.
  Every file is MD5-verified before use.
* A present file with a wrong MD5 raises :class:`ChecksumError`, except with ``download=True``
  for a downloadable file set: then the bad file is moved aside to ``<name>.corrupt`` (kept, never
  deleted), a warning is logged, and a fresh copy is downloaded.
* With no complete file set: the downloadable one (the first with mirrors) is downloaded when
  ``download=True``; otherwise, or when every mirror fails, a :class:`DataError` says which files
  are needed, where to put them, and where to get them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from prunekit.errors import ChecksumError, DataError
from prunekit.zoo.data.checksums import verify_file
from prunekit.zoo.data.download import download_file
from prunekit.zoo.data.paths import DATA_ENV, resolve_data_root
from prunekit.zoo.data.registry import DatasetSpec, DataFile, FileSet

log = logging.getLogger(__name__)


def prepare_files(
    spec: DatasetSpec,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[FileSet, Path]:
    """Return the file set to read and the folder that holds its verified files.

    ``mirrors`` (base URLs) replace the built-in mirrors of the downloadable file set.
    """
    folder = resolve_data_root(root) / spec.folder
    for fileset in spec.sources:
        if is_complete(fileset, folder):
            for file in fileset.files:
                _verify_or_replace(fileset, file, folder, download=download, mirrors=mirrors, progress=progress)
            _announce(spec, fileset, folder)
            return fileset, folder

    fileset = next((s for s in spec.sources if s.mirrors), None)
    if not download or fileset is None:
        raise missing_files_error(spec, folder, root, "download=False" if not download else "no downloadable copy")
    created = _missing_ancestors(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise missing_files_error(spec, folder, root, f"cannot create {folder} ({exc})", tried_download=True) from exc
    try:
        for file in fileset.files:
            path = folder / file.name
            if path.is_file():
                _verify_or_replace(fileset, file, folder, download=True, mirrors=mirrors, progress=progress)
                continue
            try:
                download_file(fileset.urls(file, mirrors), path, file.md5, progress=progress)
            except DataError as exc:
                raise missing_files_error(spec, folder, root, f"downloading failed\n{exc}", error_type=type(exc), tried_download=True) from exc
    except BaseException:
        _remove_if_empty(created)  # a failed download leaves no trace of folders it made
        raise
    _announce(spec, fileset, folder)
    return fileset, folder


def _missing_ancestors(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_if_empty(folders: Sequence[Path]) -> None:
    for path in folders:
        try:
            path.rmdir()
        except OSError:  # not empty (something was downloaded) or already gone
            return


def is_complete(fileset: FileSet, folder: Path) -> bool:
    """Whether every file of ``fileset`` is present in ``folder`` (presence only, no checksum)."""
    return all((folder / f.name).is_file() for f in fileset.files)


def _verify_or_replace(
    fileset: FileSet, file: DataFile, folder: Path, *, download: bool, mirrors: Sequence[str] | None, progress: bool
) -> None:
    path = folder / file.name
    urls = fileset.urls(file, mirrors) if fileset.mirrors else []
    fix = None if urls else f"replace it with a good copy of {file.name} (md5 {file.md5}); it cannot be downloaded"
    try:
        verify_file(path, file.md5, fix)
        return
    except ChecksumError as exc:
        if not (download and urls):
            raise
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
        except OSError as move_exc:
            raise ChecksumError(f"{exc}; it could not be moved aside for a fresh download ({move_exc})") from None
        log.warning("%s had the wrong md5; moved it to %s and downloading a fresh copy", path, aside)
    try:
        download_file(urls, path, file.md5, progress=progress)
    except DataError as exc:
        raise type(exc)(f"{path} was corrupted (moved aside to {path.name}.corrupt) and no fresh copy could be fetched: {exc}") from exc


def _announce(spec: DatasetSpec, fileset: FileSet, folder: Path) -> None:
    log.debug("dataset %s: using %s in %s", spec.name, fileset.key, folder)
    if fileset.caveat:
        log.warning("dataset %s: %s", spec.name, fileset.caveat)


def missing_files_error(
    spec: DatasetSpec,
    folder: Path,
    root: str | os.PathLike[str] | None,
    reason: str,
    *,
    error_type: type[DataError] = DataError,
    tried_download: bool = False,
) -> DataError:
    """A :class:`DataError` saying which files are needed, where, and where to download them."""
    origin = "the root argument" if root is not None else (f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "the default cache directory")
    options = []
    for fileset in spec.sources:
        files = "\n".join(f"    {f.name}  (md5 {f.md5})" for f in fileset.files)
        urls = "\n".join(f"    {url}" for f in fileset.files for url in fileset.urls(f))
        where = f"\n  download from:\n{urls}" if urls else "\n  (no download: place it by hand)"
        options.append(f"- {fileset.description or fileset.key}:\n{files}{where}")
    either = "one of these file sets" if len(options) > 1 else "these files"
    return error_type(
        f"dataset {spec.name!r} is not available in {folder} ({reason}).\n"
        f"Put {either} in {folder}:\n" + "\n".join(options) + "\n"
        f"The data root {folder.parent} comes from {origin}; to use a directory that already holds "
        f"'{spec.folder}/', pass root=... or set {DATA_ENV}." + ("" if tried_download else " Or load with download=True.")
    )

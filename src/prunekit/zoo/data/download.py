"""Download one file from a list of mirrors with the standard library, verifying its MD5."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlsplit

from prunekit._io import atomic_open
from prunekit.errors import ChecksumError, DataError
from prunekit.progress import progress_bar
from prunekit.zoo.data.checksums import remember_verified

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_USER_AGENT = "prunekit-datasets (python urllib)"
#: Environment variable with the download time-out in seconds (default :data:`DEFAULT_TIMEOUT`).
TIMEOUT_ENV = "PRUNEKIT_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 15.0


def download_timeout() -> float:
    """Seconds that all failing attempts of one file may take together (``$PRUNEKIT_DOWNLOAD_TIMEOUT``)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86_400:
        raise DataError(f"${TIMEOUT_ENV} must be a number of seconds between 0 and 86400, got {text[:40]!r}")
    return value


@dataclass(frozen=True)
class FailedAttempt:
    """One mirror that did not deliver a good copy of a file."""

    url: str
    reason: str
    checksum: bool = False

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class _BadChecksum(Exception):
    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


def download_file(
    urls: Sequence[str],
    dest: Path,
    md5: str,
    *,
    progress: bool = True,
    timeout: float | None = None,
) -> Path:
    """Fetch ``dest`` from the first of ``urls`` that serves a file with MD5 ``md5``.

    Each attempt streams into a temporary file beside ``dest`` and is renamed over ``dest`` only
    once its MD5 matches, so ``dest`` never holds a partial or wrong file. Raises
    :class:`ChecksumError` if any mirror served a wrong file and none served a good one, else
    :class:`DataError`; either message lists every failed URL with its reason.

    ``timeout`` (default: :func:`download_timeout`) bounds the failing attempts together, not
    each mirror: offline, the error comes after ``timeout`` seconds, however many mirrors there
    are. It is also each attempt's socket time-out (no data for that long ends the attempt).
    """
    budget = download_timeout() if timeout is None else timeout
    deadline = time.monotonic() + budget
    failures: list[FailedAttempt] = []
    for url in urls:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failures.append(FailedAttempt(url, f"not tried: the {budget:g} s download time-out was used up (${TIMEOUT_ENV})"))
            continue
        try:
            _fetch(url, dest, md5, progress=progress, timeout=remaining)
        except _BadChecksum as bad:
            failures.append(FailedAttempt(url, f"served a file with md5 {bad.actual}, expected {md5}", checksum=True))
        except (OSError, HTTPException, ValueError) as exc:  # URLError/HTTPError/timeouts are OSErrors
            failures.append(FailedAttempt(url, f"{type(exc).__name__}: {exc}"))
        else:
            remember_verified(dest, md5)
            log.info("downloaded %s to %s (md5 verified)", url, dest)
            return dest
        log.warning("download failed: %s", failures[-1])
    raise download_error(dest, failures)


def download_error(dest: Path, failures: Sequence[FailedAttempt]) -> DataError:
    """The error for a file no mirror delivered: ChecksumError if any served a wrong file."""
    cls = ChecksumError if any(f.checksum for f in failures) else DataError
    tried = "\n".join(f"  {f}" for f in failures) or "  (no mirror configured)"
    return cls(f"could not download {dest.name} into {dest.parent}; tried:\n{tried}")


def _fetch(url: str, dest: Path, md5: str, *, progress: bool, timeout: float) -> None:
    log.info("downloading %s", url)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (schemes are the caller's mirrors)
        length = response.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
        with atomic_open(dest, "wb") as out, progress_bar(progress) as bar:
            task = bar.add_task(dest.name, total=total, status=urlsplit(url).netloc or url)
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.advance(task, len(chunk))
            if digest.hexdigest() != md5:
                raise _BadChecksum(digest.hexdigest())  # atomic_open removes the temporary file
            if hasattr(os, "fchmod"):  # the temporary file is private (0600); data files are not
                os.fchmod(out.fileno(), 0o644)

"""Which code produced a cached benchmark step, and whether the current code is the same.

A cached step (a dense checkpoint, a recipe run's dense/prune/compress step) is valid only for the
source files that produce it. Each is recorded beside the cache as ``{"fingerprint", "files"}``
(a SHA-256 per ``.py`` file under the step's source folders, relative to ``src/prunekit``), so a
mismatch names the files that changed. An entry cached before fingerprints existed is *adopted*
only when git proves that the code was identical: no difference between the commit checked out when
the entry was started and the working tree, for those files, and no untracked file among them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "prunekit"


def code_files(parts: Iterable[str], root: Path = SRC) -> dict[str, str]:
    """``{path relative to root: sha256}`` of every ``.py`` file in ``parts`` (folders or files under ``root``)."""
    out: dict[str, str] = {}
    for part in parts:
        target = root / part
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target] if target.is_file() else []
        if not files:
            raise FileNotFoundError(f"no Python source at {target} (a step's code list names a missing file or folder)")
        for path in files:
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(out.items()))


def fingerprint(files: Mapping[str, str]) -> str:
    """One short hash of a ``code_files`` mapping."""
    return hashlib.sha256(json.dumps(dict(sorted(files.items())), separators=(",", ":")).encode()).hexdigest()[:12]


def code_record(parts: Iterable[str], root: Path = SRC) -> dict[str, object]:
    """What a cache records about its code: ``{"fingerprint", "files"}``."""
    files = code_files(parts, root)
    return {"fingerprint": fingerprint(files), "files": files}


def changed_files(recorded: Mapping[str, object], current: Mapping[str, object]) -> list[str]:
    """Files whose content differs between two code records (added or removed files included)."""
    old, new = recorded.get("files") or {}, current.get("files") or {}
    assert isinstance(old, Mapping) and isinstance(new, Mapping)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def git_proves_unchanged(parts: Iterable[str], started: float, repo: Path = REPO, src: Path = SRC) -> tuple[bool, str]:
    """``(True, commit)`` when the files in ``parts`` are, in the working tree, exactly as in the
    commit checked out at time ``started`` (seconds since the epoch) and none is untracked; else
    ``(False, why)``."""
    paths = [str((src / p).relative_to(repo)) for p in parts]
    try:
        commit = _git(repo, "rev-list", "-1", f"--before={int(started)}", "HEAD").strip()
        if not commit:
            return False, "no commit is older than the entry"
        diff = subprocess.run(["git", "diff", "--quiet", commit, "--", *paths], cwd=repo, capture_output=True)
        untracked = _git(repo, "ls-files", "--others", "--exclude-standard", "--", *paths).split()
    except (OSError, subprocess.CalledProcessError) as exc:
        return False, f"git could not tell ({exc})"
    if diff.returncode != 0:
        return False, f"the code differs from commit {commit[:7]}, checked out when the entry was started"
    if untracked:
        return False, f"untracked source files ({', '.join(untracked[:3])}) may differ from what the entry ran"
    return True, commit[:7]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout

"""Which code produced a cached benchmark step, and whether the current code is the same.

A cached step (a dense checkpoint, a recipe run's dense/prune/compress step) is valid only for the
source files that produce it: the modules it runs and every prunekit module they import
(:func:`module_closure`), not the whole repository. Each is recorded beside the cache as
``{"fingerprint", "files"}`` (a SHA-256 per file, relative to ``src/prunekit``), so a mismatch
names the files that changed. An entry cached before fingerprints existed is *adopted*
only when git proves that the code was identical: no difference between the commit checked out when
the entry was started and the working tree, for those files, and no untracked file among them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "prunekit"


def module_closure(entries: Iterable[str], root: Path = SRC) -> tuple[str, ...]:
    """Source files (relative to ``root``, the ``prunekit`` package) of the modules ``entries``
    (``"training.loop"``) and of every prunekit module they import, directly or not.

    ``from prunekit.pkg import name`` counts the module that defines ``name``: a package's
    ``__init__`` re-exporting it is followed to its source instead of pulling in the whole package.
    Imports inside functions count too (they may run); package ``__init__`` files that only
    re-export do not."""
    seen: set[str] = set()
    todo = [_module_file(e, root) for e in entries]
    while todo:
        rel = todo.pop()
        if rel is None or rel in seen:
            continue
        seen.add(rel)
        todo += _imports_of(rel, root)
    return tuple(sorted(seen))


def _module_file(module: str, root: Path) -> str | None:
    """``a/b.py`` or ``a/b/__init__.py`` for module ``a.b`` of the package (``None`` if neither exists)."""
    base = root.joinpath(*module.split(".")) if module else root
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if module and path.is_file() or not module and path.name == "__init__.py" and path.is_file():
            return path.relative_to(root).as_posix()
    return None


def _imports_of(rel: str, root: Path) -> list[str | None]:
    """Files of the prunekit modules that ``rel`` imports (re-exports followed to their source)."""
    tree = ast.parse((root / rel).read_text(), rel)
    package = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".") if rel != "__init__.py" else ""
    if not rel.endswith("__init__.py"):
        package = package.rpartition(".")[0]
    found: list[str | None] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [_module_file(a.name.removeprefix("prunekit."), root) for a in node.names if a.name.startswith("prunekit.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
                base = ".".join([*parts, *([node.module] if node.module else [])])
            elif node.module and (node.module == "prunekit" or node.module.startswith("prunekit.")):
                base = node.module.removeprefix("prunekit").removeprefix(".")
            else:
                continue
            for alias in node.names:
                found.append(_defining_file(base, alias.name, root))
    return found


def _defining_file(module: str, name: str, root: Path, depth: int = 0) -> str | None:
    """The file that defines ``name`` imported from ``module``: a submodule, the module itself, or
    (for a package ``__init__`` that re-exports it) the module it re-exports from."""
    sub = _module_file(f"{module}.{name}" if module else name, root)
    if sub is not None:
        return sub
    rel = _module_file(module, root)
    if rel is None or not rel.endswith("__init__.py") or depth > 20:
        return rel
    for node in ast.walk(ast.parse((root / rel).read_text(), rel)):
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            if node.level:
                source = ".".join([*([module] if module else []), *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("prunekit"):
                source = node.module.removeprefix("prunekit").removeprefix(".")
            else:
                return rel
            return _defining_file(source, original, root, depth + 1)
    return rel


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

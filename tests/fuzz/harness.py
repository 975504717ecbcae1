"""One mutation through the CLI: a sandbox to run it in, write detection, and the verdict.

Shared by the in-process test (``CliRunner``) and the forking soak. The contract checked: exit 2 or
3, a non-empty message of at most :data:`MAX_MESSAGE_CHARS` that names the field (or line, or
path), no traceback, nothing written anywhere (sandbox snapshot + Python audit events), validation
never reaching the runner's data loading; taking over :data:`SLOW_S` seconds is a warning.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz.recipe_mutations import Mutation, names_where

MAX_MESSAGE_CHARS = 4000
#: "within a second or two": reported, but only a warning (timings are noisy on a loaded 2-core machine)
SLOW_S = 2.0
WARNINGS = frozenset({"slow"})
TIMEOUT_S = 5.0
#: primary categories, most severe first
CATEGORIES = ("hang", "accepted", "traceback", "wrote-files", "other-exit", "no-message", "long-message", "unnamed-field", "slow", "ok")
_RUNNER_FRAMES = ("prunekit/experiment/runner.py", "prunekit/training/", "prunekit/zoo/data/")


@dataclass
class Sandbox:
    """A fresh folder per case: ``input/`` holds the recipe; cwd, HOME, caches and TMPDIR live inside."""

    root: Path
    recipe: Path
    cwd: Path
    out: Path
    env: dict[str, str]


def make_sandbox(mutation: Mutation, parent: str | None = None) -> Sandbox:
    root = Path(tempfile.mkdtemp(prefix="prunekit-fuzz-", dir=parent)).resolve()
    for name in ("input", "cwd", "home", "cache", "tmp"):
        (root / name).mkdir()
    recipe = root / "input" / "recipe.yaml"
    if mutation.path_kind == "dir":
        recipe.mkdir()
    elif mutation.path_kind == "fifo":
        os.mkfifo(recipe)
    else:
        recipe.write_bytes(mutation.data)
    env = {"HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "cache"), "TMPDIR": str(root / "tmp"),
           "COLUMNS": "200", "NO_COLOR": "1"}
    return Sandbox(root, recipe, root / "cwd", root / "out", env)


def snapshot(root: Path) -> set[str]:
    """Every path under ``root``, relative (FIFOs are listed, never opened)."""
    found = set()
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        found.update(os.path.normpath(os.path.join(rel, n)) for n in dirs + files)
    return found


def remove_sandbox(sandbox: Sandbox) -> None:
    shutil.rmtree(sandbox.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# write detection through audit hooks

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {"os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.truncate", "os.symlink", "os.link",
                "shutil.copyfile", "shutil.copytree", "shutil.rmtree", "shutil.move", "tempfile.mkstemp", "tempfile.mkdtemp"}


def write_target(event: str, args: tuple[Any, ...]) -> str | None:
    """The path an audit event writes to, or ``None`` when it is not a write (or targets /dev, /proc)."""
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None))[:3]
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
    elif event in _PATH_EVENTS:
        path, writes = args[0] if args else None, True
    else:
        return None
    if not writes or path is None or isinstance(path, int):
        return None
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
    return None if text.startswith(("/dev/", "/proc/")) else f"{event} {text}"


class WriteAudit:
    """A process-wide audit hook (installed once) that reports writes while a callback is set."""

    _instance: WriteAudit | None = None

    def __init__(self) -> None:
        self.callback: Callable[[str], None] | None = None
        sys.addaudithook(self._hook)

    @classmethod
    def get(cls) -> WriteAudit:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        callback = self.callback
        if callback is not None and (event == "open" or event in _PATH_EVENTS):
            target = write_target(event, args)
            if target is not None:
                callback(target)

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[str]]:
        found: list[str] = []
        self.callback = found.append
        try:
            yield found
        finally:
            self.callback = None


# ---------------------------------------------------------------------------------------------
# the "validation accepted it" probe


class Accepted(BaseException):
    """Raised in-process when the run reaches data loading: validation let the recipe through.

    A ``BaseException`` so that broad ``except Exception`` in the product cannot swallow it."""


class Hang(BaseException):
    """Raised in-process by the alarm when a case runs past its limit."""


def probe_target() -> tuple[Any, str]:
    """``(module, attribute)`` the probe wraps: the runner's data loading, its first side effect."""
    from prunekit.experiment import runner

    for name in ("_loaders", "prepare_run", "run_recipe"):
        if hasattr(runner, name):
            return runner, name
    raise RuntimeError("prunekit.experiment.runner has none of _loaders / prepare_run / run_recipe")


@contextlib.contextmanager
def probe(on_reach: Callable[[], None]) -> Iterator[None]:
    """Call ``on_reach`` when the runner starts loading data (then continue, unless it raises)."""
    module, name = probe_target()
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        on_reach()
        return original(*args, **kwargs)

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


# ---------------------------------------------------------------------------------------------
# the verdict


@dataclass
class Outcome:
    """What one CLI invocation did."""

    exit_code: int | None
    output: str
    elapsed: float
    timed_out: bool = False
    accepted: bool = False
    exception: str | None = None
    writes: list[str] = field(default_factory=list)
    stack: str = ""


def problems(mutation: Mutation, outcome: Outcome, recipe_path: str) -> list[str]:
    """Every broken rule, most severe first (empty: the case is fine)."""
    out = []
    runner_stack = any(f in outcome.stack for f in _RUNNER_FRAMES)
    if outcome.timed_out and not (outcome.accepted or runner_stack):
        out.append("hang")
    if outcome.accepted or outcome.exit_code == 0 or (outcome.timed_out and runner_stack):
        out.append("accepted")
    if outcome.exception or "Traceback (most recent call last)" in outcome.output or "Fatal Python error" in outcome.output:
        out.append("traceback")
    if outcome.writes:
        out.append("wrote-files")
    if outcome.timed_out or outcome.exit_code is None:
        return out  # no exit code or message to judge
    if outcome.exit_code not in (2, 3):
        out.append("other-exit")
    if not outcome.output.strip():
        out.append("no-message")
    elif len(outcome.output) > MAX_MESSAGE_CHARS:
        out.append("long-message")
    if outcome.output.strip() and not names_where(outcome.output, mutation, recipe_path):
        out.append("unnamed-field")
    if outcome.elapsed > SLOW_S:
        out.append("slow")
    return out


def category(found: list[str]) -> str:
    return found[0] if found else "ok"


def errors(found: list[str]) -> list[str]:
    """The problems that fail a case (all but :data:`WARNINGS`)."""
    return [p for p in found if p not in WARNINGS]


def excerpt(text: str, lines: int = 12, width: int = 300) -> list[str]:
    """The first ``lines`` lines, each cut at ``width`` characters."""
    out = []
    for line in text.splitlines()[:lines]:
        out.append(line if len(line) <= width else line[:width] + f"... [+{len(line) - width} chars]")
    return out


# ---------------------------------------------------------------------------------------------
# in-process run (typer's CliRunner)


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*values, "PRUNEKIT_DATA")}
    os.environ.update(values)
    os.environ.pop("PRUNEKIT_DATA", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` after ``seconds`` (main thread only; interrupts blocking syscalls such as a FIFO open)."""

    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_in_process(mutation: Mutation, timeout: float = TIMEOUT_S) -> tuple[Outcome, str]:
    """Invoke ``prunekit run`` in this process; returns the outcome and the recipe path used."""
    from typer.testing import CliRunner

    from prunekit.cli.app import app

    sandbox = make_sandbox(mutation)
    try:
        before = snapshot(sandbox.root)
        args = mutation.cli_args(str(sandbox.recipe), str(sandbox.out))
        reached: list[bool] = []

        def on_reach() -> None:
            reached.append(True)
            raise Accepted("validation accepted the recipe: the runner started loading data")

        exception, exit_code, output, timed_out = None, None, "", False
        bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        start = time.perf_counter()
        with _chdir(sandbox.cwd), _environ(sandbox.env), probe(on_reach), WriteAudit.get().recording() as writes:
            try:
                with _alarm(timeout):
                    result = CliRunner().invoke(app, args, catch_exceptions=True)
                exit_code, output = result.exit_code, result.output
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    exception = f"{type(result.exception).__name__}: {str(result.exception)[:300]}"
            except Accepted:
                pass
            except Hang:
                timed_out = True
        elapsed = time.perf_counter() - start
        sys.dont_write_bytecode = bytecode
        new = sorted(snapshot(sandbox.root) - before)
        root = str(sandbox.root)
        outcome = Outcome(exit_code, output, elapsed, timed_out, bool(reached), exception,
                          [*new, *(w.replace(root, "<sandbox>") for w in writes)])
        return outcome, str(sandbox.recipe)
    finally:
        remove_sandbox(sandbox)

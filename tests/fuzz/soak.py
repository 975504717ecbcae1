"""The fuzzing soak: thousands of mutated recipes through the real ``prunekit`` entry point.

    python -m tests.fuzz.soak --cases 2000                 # from the repository root
    python -m tests.fuzz.soak --seed 0 --only 123 --save /tmp/case123.yaml   # one case, in full

The parent imports prunekit once and forks one child per case (at most ``--workers`` at a time).
The child works in a fresh sandbox (cwd, HOME, XDG_CACHE_HOME and TMPDIR inside it), sends stdout
and stderr to a file, sets ``sys.argv`` and calls ``prunekit.cli.app.main()``. A Python audit hook
ends the child at its first file write (recording what and where), a probe ends it when the run
reaches the runner's data loading (validation accepted the recipe), and faulthandler dumps the
stacks and ends it after ``--timeout`` seconds (a hang); the parent SIGKILLs whatever outlives that.
Each case is judged by :func:`tests.fuzz.harness.problems`; the summary is printed and the failing
cases go to ``--report`` (JSON). Exit status 0 only when every case is ok (taking over 2 s is only a
warning unless ``--fail-slow``).
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import os
import random
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

if __package__ in (None, ""):  # run as a script: python tests/fuzz/soak.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.harness import (
    CATEGORIES,
    TIMEOUT_S,
    Outcome,
    Sandbox,
    WriteAudit,
    WARNINGS,
    category,
    excerpt,
    make_sandbox,
    probe,
    problems,
    remove_sandbox,
    snapshot,
)
from tests.fuzz.recipe_mutations import Generator, Mutation, RandomChooser

WROTE_EXIT = 86
ACCEPTED_EXIT = 85
GRACE_S = 2.0
READ_LIMIT = 1 << 20
OUTPUT_LIMIT = 256 << 20
EXTRA_MEMORY = 8 << 30


@dataclass
class Case:
    index: int
    mutation: Mutation
    sandbox: Sandbox
    before: set[str]
    pid: int = 0
    start: float = 0.0
    killed: bool = False

    def file(self, name: str) -> Path:
        return self.sandbox.root / "meta" / name


def generate(generator: Generator, seed: int, index: int) -> Mutation:
    """Case ``index`` of run ``seed``: the same mutation every time."""
    return generator.draw(RandomChooser(random.Random(f"{seed}-{index}")))


# ---------------------------------------------------------------------------------------------
# the child


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _call_main() -> int:
    from prunekit.cli.app import main

    try:
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    return 0


def _innermost(limit: int = 4) -> str:
    """The innermost frames (without this module's), as ``file:line func`` < ..."""
    frames = [f for f in traceback.extract_stack() if not f.filename.endswith(("soak.py", "harness.py"))]
    return " < ".join(f"{f.filename.rsplit('/', 3)[-1] if '/' in f.filename else f.filename}:{f.lineno} {f.name}" for f in reversed(frames[-limit:]))


def _child(case: Case, timeout: float, memory: int) -> NoReturn:
    code = 1
    try:
        os.setpgid(0, 0)
        out = os.open(case.file("output"), os.O_WRONLY | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(out, 2)
        meta = os.open(case.file("meta"), os.O_WRONLY | os.O_APPEND)
        hang = open(case.file("hang"), "w")  # noqa: SIM115 - faulthandler needs it open until exit
        os.chdir(case.sandbox.cwd)
        os.environ.update(case.sandbox.env)
        os.environ.pop("PRUNEKIT_DATA", None)
        sys.dont_write_bytecode = True
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
        faulthandler.dump_traceback_later(timeout, exit=True, file=hang)

        def on_write(target: str) -> None:
            os.write(meta, f"write {target} | {_innermost()}\n".encode(errors="replace"))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(WROTE_EXIT)

        def on_reach() -> None:
            os.write(meta, b"accepted\n")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(ACCEPTED_EXIT)

        audit = WriteAudit.get()
        with probe(on_reach):
            audit.callback = on_write
            sys.argv = ["prunekit", *case.mutation.cli_args(str(case.sandbox.recipe), str(case.sandbox.out))]
            code = _call_main()
            audit.callback = None
    except BaseException:  # noqa: BLE001 - what the console script would show
        WriteAudit.get().callback = None
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# ---------------------------------------------------------------------------------------------
# the parent


def start(case: Case, timeout: float, memory: int) -> None:
    meta = case.sandbox.root / "meta"
    meta.mkdir()
    for name in ("output", "meta", "hang"):
        case.file(name).touch()
    case.before = snapshot(case.sandbox.root)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(case, timeout, memory)
    with _ignore(ProcessLookupError, PermissionError):
        os.setpgid(pid, pid)
    case.pid, case.start = pid, time.perf_counter()


class _ignore:
    def __init__(self, *kinds: type[BaseException]) -> None:
        self.kinds = kinds

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, self.kinds)


def _read(path: Path, limit: int = READ_LIMIT) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode(errors="replace")


def _read_tail(path: Path, size: int = 4096) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode(errors="replace")


def finish(case: Case, status: int) -> dict[str, Any]:
    """Judge a finished (or killed) child and free its sandbox."""
    elapsed = time.perf_counter() - case.start
    code = os.waitstatus_to_exitcode(status)
    output, hang = _read(case.file("output")), _read(case.file("hang"))
    tail = _read_tail(case.file("output")).splitlines()[-4:]
    size = case.file("output").stat().st_size
    meta = _read(case.file("meta")).splitlines()
    writes = [line.removeprefix("write ") for line in meta if line.startswith("write ")]
    root = str(case.sandbox.root)
    writes = [w.replace(root, "<sandbox>") for w in writes]
    writes += [p for p in sorted(snapshot(case.sandbox.root) - case.before) if not p.startswith("meta")]
    timed_out = case.killed or bool(hang.strip())
    aborted = (code == WROTE_EXIT and any(line.startswith("write ") for line in meta)) or (code == ACCEPTED_EXIT and "accepted" in meta)
    exit_code = None if timed_out or aborted else code
    outcome = Outcome(exit_code, output, elapsed, timed_out, "accepted" in meta, None, writes, hang)
    found = problems(case.mutation, outcome, str(case.sandbox.recipe))
    if size > READ_LIMIT and "long-message" not in found and exit_code is not None:
        found.append("long-message")
    remove_sandbox(case.sandbox)
    m = case.mutation
    return {
        "index": case.index, "kind": m.kind, "base": m.base, "description": m.description, "category": category(found),
        "problems": found, "exit_code": code if not (timed_out or aborted) else None, "signal": -code if code < 0 else None,
        "elapsed_s": round(elapsed, 3), "set_args": [a[:200] for a in m.set_args], "field": m.field, "line": m.line,
        "output_chars": size, "output_head": excerpt(output), "output_tail": excerpt("\n".join(tail), 4),
        "writes": writes[:5], "hang_stack": excerpt(hang, 25),
    }


def run_cases(indices: list[int], seed: int, generator: Generator, timeout: float, workers: int,
              progress: bool = True) -> list[dict[str, Any]]:
    """Fork, watch and judge the cases, ``workers`` at a time."""
    memory = _vm_size() + EXTRA_MEMORY
    pending = collections.deque(indices)
    running: dict[int, Case] = {}
    results: list[dict[str, Any]] = []
    while pending or running:
        while pending and len(running) < workers:
            index = pending.popleft()
            mutation = generate(generator, seed, index)
            case = Case(index, mutation, make_sandbox(mutation), set())
            start(case, timeout, memory)
            running[case.pid] = case
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            _kill_overdue(running.values(), timeout)
            time.sleep(0.002)
            continue
        results.append(finish(running.pop(pid), status))
        if progress and len(results) % 100 == 0:
            bad = sum(r["category"] != "ok" for r in results)
            print(f"  {len(results)}/{len(indices)} cases, {bad} failing", file=sys.stderr, flush=True)
    return sorted(results, key=lambda r: r["index"])


def _kill_overdue(cases: Any, timeout: float) -> None:
    now = time.perf_counter()
    for case in cases:
        if not case.killed and now - case.start > timeout + GRACE_S:
            case.killed = True
            with _ignore(ProcessLookupError, PermissionError):
                os.killpg(case.pid, signal.SIGKILL)
            with _ignore(ProcessLookupError):
                os.kill(case.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# summary and report


def summarize(results: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    counts = {c: 0 for c in CATEGORIES}
    by_kind: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.Counter())
    for r in results:
        counts[r["category"]] += 1
        by_kind[r["kind"]][r["category"]] += 1
    return counts, {k: dict(v) for k, v in sorted(by_kind.items())}


def print_summary(counts: dict[str, int], by_kind: dict[str, dict[str, int]], total: int, seconds: float) -> None:
    print(f"\n{total} cases in {seconds:.0f} s")
    print(f"{'category':<16}{'cases':>7}")
    for name in CATEGORIES:
        print(f"{name:<16}{counts[name]:>7}" + ("  (warning only, unless --fail-slow)" if name in WARNINGS else ""))
    print(f"\n{'mutation kind':<34}{'cases':>6}{'ok':>6}  failures")
    for kind, cats in by_kind.items():
        fails = ", ".join(f"{c} {n}" for c, n in sorted(cats.items(), key=lambda x: -x[1]) if c != "ok")
        print(f"{kind:<34}{sum(cats.values()):>6}{cats.get('ok', 0):>6}  {fails}")


def write_report(path: Path, args: argparse.Namespace, results: list[dict[str, Any]], counts: dict[str, int],
                 by_kind: dict[str, dict[str, int]], seconds: float) -> None:
    failures = [dict(r, reproduce=f"python -m tests.fuzz.soak --seed {args.seed} --only {r['index']}")
                for r in results if r["category"] != "ok"]
    report = {"seed": args.seed, "cases": len(results), "timeout_s": args.timeout, "seconds": round(seconds, 1),
              "counts": counts, "by_kind": by_kind, "failures": failures}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))


def show_one(generator: Generator, args: argparse.Namespace) -> int:
    """``--only N``: run one case and print it in full."""
    mutation = generate(generator, args.seed, args.only)
    if args.save:
        Path(args.save).write_bytes(mutation.data)
    print(f"case {args.only}: [{mutation.kind}] {mutation.base}: {mutation.description}")
    print(f"  set args: {[a[:200] for a in mutation.set_args]}  field: {mutation.field}  line: {mutation.line}")
    print("  recipe head:", *excerpt(mutation.data.decode(errors="replace"), 8, 160), sep="\n    ")
    result = run_cases([args.only], args.seed, generator, args.timeout, 1, progress=False)[0]
    print(json.dumps(result, indent=1))
    return 0 if result["category"] in ("ok", *WARNINGS) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds before a case counts as a hang")
    parser.add_argument("--workers", type=int, default=2, help="children at a time (the CI machine has 2 cores)")
    parser.add_argument("--bomb-levels", type=int, default=9, help="largest alias bomb (9 levels: ~387M leaves)")
    parser.add_argument("--report", type=Path, default=Path("/tmp/recipe_fuzz_report.json"))
    parser.add_argument("--only", type=int, help="run only this case index and print it in full")
    parser.add_argument("--save", help="with --only: write the mutated recipe there")
    parser.add_argument("--fail-slow", action="store_true", help="count cases over 2 s as failures (default: a warning)")
    args = parser.parse_args(argv)

    import prunekit.cli.app  # noqa: F401 - import once; children inherit it
    import prunekit.experiment.recipe  # noqa: F401
    import prunekit.experiment.runner  # noqa: F401

    generator = Generator(max_bomb_levels=args.bomb_levels)
    if args.only is not None:
        return show_one(generator, args)
    began = time.perf_counter()
    results = run_cases(list(range(args.cases)), args.seed, generator, args.timeout, args.workers)
    seconds = time.perf_counter() - began
    counts, by_kind = summarize(results)
    print_summary(counts, by_kind, len(results), seconds)
    write_report(args.report, args, results, counts, by_kind, seconds)
    print(f"\nfailing cases: {args.report}")
    tolerated = counts["ok"] + (0 if args.fail_slow else sum(counts[w] for w in WARNINGS))
    return 0 if tolerated == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

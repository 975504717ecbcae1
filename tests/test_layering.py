"""The import graph reads top-down: rooms import only rooms on lower floors, and no module circle exists.

Read from the source (every ``import``/``from ... import`` of ``prunekit``, including ones inside
functions and ``TYPE_CHECKING`` blocks), so a lazy import cannot hide an upward edge.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import prunekit

ROOT = Path(prunekit.__file__).parent

#: Floor of each room (a subpackage or top-level module); a room imports only rooms on lower floors.
FLOORS: dict[str, int] = {
    "errors": 0, "_version": 0, "_deprecation": 0, "progress": 1, "_registry": 1, "_io": 1, "_cache": 1, "_settings": 1, "_parametrize": 1, "layer_kinds": 1,
    "schedules": 2, "metrics": 2, "zoo": 2, "report": 2, "structured": 2, "masks": 2, "compression": 2,
    "importance": 3, "deployment": 3,
    "pruners": 4,
    "training": 5,
    "analysis": 6,  # its scans share work between torchrun processes through training.distributed
    "dynamic": 6,  # gates on structured groups; its budget loss is a training callback
    "experiment": 7,
    "cli": 8, "integrations": 8,  # integrations reads recipes' prune sections (experiment) and drives training callbacks
    "__init__": 9, "__main__": 9, "keras_style": 9,  # keras_style: deprecated shim of integrations.keras_style
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out["prunekit" + "".join("." + p for p in parts if p != "__init__")] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prunekit"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("prunekit"))
    return {m for m in found if m in MODULES and m != name}


def _room(module: str) -> str:
    if module == "prunekit":
        return "__init__"
    return module.split(".")[1]


def test_every_room_has_a_floor() -> None:
    assert {_room(m) for m in MODULES} <= set(FLOORS)


def test_rooms_import_only_lower_floors() -> None:
    upward = []
    for name in MODULES:
        for target in _imports(name):
            src, dst = _room(name), _room(target)
            if src != dst and FLOORS[dst] >= FLOORS[src]:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def test_no_module_import_circle() -> None:
    graph = {name: _imports(name) for name in MODULES}
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif state[nxt] == 0:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if state[name] == 0:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)

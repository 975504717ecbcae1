"""Invalid-by-construction mutations of the shipped recipes, for the CLI fuzzers.

Every :class:`Mutation` describes a recipe that the ``prunekit`` CLI must reject (exit 2 or 3,
a short message naming the field or the place, no traceback, nothing written): an invalid value
in a typed field, an unknown key or registry name, a missing required key, a hostile YAML file
(alias bomb, deep nesting, duplicate key, YAML-only types, a non-UTF-8 byte), a bad ``--set``
override, or a recipe path that is a directory or a FIFO. "Accepted" is therefore always a bug.

Which values are invalid for a field is read from the recipe's pydantic models (type, ``None``
allowed or not, bounds), so the generator follows the models when they change. A random source is
a :class:`Chooser`: :class:`RandomChooser` (``random.Random``) for the soak, :class:`DrawChooser`
(hypothesis ``st.data()``) for the in-process test.
"""

from __future__ import annotations

import copy
import math
import random
import re
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import yaml

T = TypeVar("T")
Path_ = tuple[str | int, ...]

SLOT = "__prunekit_fuzz_slot__"
DUP = "__prunekit_fuzz_dup__"
#: the digits dataset is embedded in prunekit: every base recipe stays offline
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
DIGITS = {"name": "digits", "batch_size": 64, "val_fraction": 0.1}
#: string fields where any (short, well-formed) text is valid, so an "unknown name" is not invalid
FREE_TEXT = {("name",), ("model", "checkpoint"), ("data", "root")}


@dataclass(frozen=True)
class Mutation:
    """One invalid recipe: file content (or a directory/FIFO path), ``--set`` args, and where the error must point."""

    kind: str
    description: str
    base: str
    data: bytes = b""
    path_kind: Literal["file", "dir", "fifo"] = "file"
    set_args: tuple[str, ...] = ()
    field: str | None = None  # dotted path the message must name ...
    line: int | None = None  # ... or this line of the file ...
    needle: str | None = None  # ... or this literal text
    value: str | None = None  # ... or the field's section together with (the start of) this bad string
    names_path: bool = False  # the message must name the recipe path

    def cli_args(self, recipe: str, out: str) -> list[str]:
        """``run RECIPE --out OUT [--set K=V ...]``."""
        args = ["run", recipe, "--out", out]
        for item in self.set_args:
            args += ["--set", item]
        return args


class Chooser(Protocol):
    """A random source: hypothesis draws or ``random.Random``."""

    def choice(self, options: Sequence[T]) -> T: ...

    def integer(self, lo: int, hi: int) -> int: ...


class RandomChooser:
    """:class:`Chooser` over ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choice(self, options: Sequence[T]) -> T:
        return self.rng.choice(list(options))

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class DrawChooser:
    """:class:`Chooser` over hypothesis' ``st.data()`` (choices shrink toward the first option)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def choice(self, options: Sequence[T]) -> T:
        """Draws an index, so that hypothesis reports small numbers, not million-character values."""
        from hypothesis import strategies as st

        items = list(options)
        return items[self.data.draw(st.integers(0, len(items) - 1))]

    def integer(self, lo: int, hi: int) -> int:
        from hypothesis import strategies as st

        return self.data.draw(st.integers(lo, hi))


# ---------------------------------------------------------------------------------------------
# base recipes


def _synthesized(demo: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Bases for the methods no shipped recipe uses (gradual, dst, depth, dynamic), built from the demo."""
    gradual = copy.deepcopy(demo)
    gradual["name"] = "fuzz-gradual"
    gradual["prune"] = {
        "method": "gradual", "criterion": "magnitude", "sparsity": 0.8,
        "schedule": {"name": "polynomial_decay", "initial_sparsity": 0.0, "final_sparsity": 0.8, "end_step": 200, "frequency": 20},
        "train": {"epochs": 2, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}},
    }
    dst = copy.deepcopy(demo)
    dst["name"] = "fuzz-dst"
    dst["seed"] = 1
    dst["prune"] = {"method": "dst", "algorithm": "set", "sparsity": 0.8, "distribution": "erk", "delta_t": 50,
                    "train": {"epochs": 2, "optimizer": {"name": "adam", "lr": 0.001}}}
    dst["deploy"] = {"batch_size": 64, "min_sparsity": 0.5, "budget_s": 0.1}
    dst["evaluate"] = {"corruptions": ["gaussian_noise", "blur"], "corruption_severity": 2}
    depth = copy.deepcopy(demo)
    depth["name"] = "fuzz-depth"
    depth["model"] = {"name": "resnet20"}
    depth["prune"] = {"method": "depth", "blocks": 2, "importance": "bn_scale", "baselines": ["random"],
                      "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}}}
    dynamic = copy.deepcopy(demo)
    dynamic["name"] = "fuzz-dynamic"
    dynamic["model"] = {"name": "resnet20"}
    dynamic["prune"] = {"method": "dynamic", "density": 0.5, "budget_weight": 1e-4,
                        "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}}}
    return {"fuzz_gradual": gradual, "fuzz_dst": dst, "fuzz_depth": depth, "fuzz_dynamic": dynamic}


def load_bases() -> dict[str, dict[str, Any]]:
    """Each shipped recipe (its data swapped for the embedded ``digits``), plus gradual, dst, depth and dynamic bases."""
    from prunekit.experiment.recipe import shipped_recipes

    bases = {}
    for name, path in sorted(shipped_recipes().items()):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw["data"] = dict(DIGITS)
        bases[name] = raw
    bases.update(_synthesized(bases["demo"]))
    return bases


# ---------------------------------------------------------------------------------------------
# what a field accepts, read from the pydantic models


@dataclass(frozen=True)
class FieldType:
    """The value kinds a field accepts and its numeric bounds."""

    atoms: frozenset[str]
    lower: float | None = None
    upper: float | None = None
    required: bool = False
    model: type | None = None  # set when the field is a section (a pydantic model)

    def accepts(self, *atoms: str) -> bool:
        return "any" in self.atoms or any(a in self.atoms for a in atoms)


def _strip(ann: Any) -> tuple[Any, list[Any]]:
    """``Annotated[X, meta...]`` → ``(X, meta)``, repeatedly."""
    meta: list[Any] = []
    while typing.get_origin(ann) is typing.Annotated:
        ann, *extra = typing.get_args(ann)
        meta += extra
    return ann, meta


def _union_args(ann: Any) -> tuple[Any, ...]:
    ann, _ = _strip(ann)
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return typing.get_args(ann)
    return (ann,)


def _atoms(ann: Any) -> set[str]:
    from pydantic import BaseModel

    out: set[str] = set()
    for arg in _union_args(ann):
        arg, _ = _strip(arg)
        origin = typing.get_origin(arg)
        if arg is Any:
            out.add("any")
        elif arg is type(None):
            out.add("none")
        elif arg is bool:
            out.add("bool")
        elif arg is int:
            out.add("int")
        elif arg is float:
            out.add("float")
        elif arg is str:
            out.add("str")
        elif origin is Literal:
            out |= {"str" if isinstance(v, str) else type(v).__name__ for v in typing.get_args(arg)}
            out.add("literal")
        elif origin in (tuple, list, set, frozenset) or arg in (tuple, list):
            out.add("list")
        elif origin is dict or arg is dict:
            out.add("dict")
        elif isinstance(arg, type) and issubclass(arg, BaseModel):
            out.add("model")
        else:
            out.add("any")
    return out


def _bounds(meta: Sequence[Any]) -> tuple[float | None, float | None]:
    lower = upper = None
    for item in meta:
        for sub in [item, *getattr(item, "metadata", [])]:
            for attr in ("ge", "gt"):
                if getattr(sub, attr, None) is not None and not isinstance(sub, type):
                    lower = getattr(sub, attr)
            for attr in ("le", "lt"):
                if getattr(sub, attr, None) is not None and not isinstance(sub, type):
                    upper = getattr(sub, attr)
    return lower, upper


def _section(ann: Any, node: Any, via: str | int | None) -> type | None:
    """The pydantic class a mapping value is validated with, if any (prune union, schedules included)."""
    from pydantic import BaseModel

    classes = [a for a in (_strip(x)[0] for x in _union_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(classes) == 1:
        return classes[0]
    if classes and isinstance(node, dict):
        for cls in classes:
            method = cls.model_fields.get("method")
            if method is not None and method.default == node.get("method"):
                return cls
    if via == "schedule" and isinstance(node, dict) and isinstance(node.get("name"), str):
        from prunekit.schedules import SCHEDULES

        if node["name"] in SCHEDULES:
            return SCHEDULES.get(node["name"])
    return None


_MEMO: dict[tuple[int, Path_], tuple[Any, FieldType | None]] = {}


def field_type(root: dict[str, Any], path: Path_) -> FieldType | None:
    """What the field at ``path`` of the (valid) recipe ``root`` accepts; ``None`` when unknown.

    Memoised per ``root`` object (kept alive by the memo, so its id is not reused): pass recipes
    that are not mutated afterwards, such as the generator's bases."""
    key = (id(root), path)
    if key not in _MEMO:
        _MEMO[key] = (root, _field_type(root, path))
    return _MEMO[key][1]


def _field_type(root: dict[str, Any], path: Path_) -> FieldType | None:
    from prunekit.experiment.recipe import Recipe

    ann: Any = Recipe
    meta: list[Any] = []
    required = False
    node: Any = root
    via: str | int | None = None
    for part in path:
        cls = _section(ann, node, via)
        if cls is not None:
            info = cls.model_fields.get(str(part))
            if info is None:
                return None
            ann, meta = info.annotation, list(info.metadata)
            required = info.is_required() or (part == "method" and via == "prune") or (part == "name" and via == "schedule")
        else:
            base, extra = _strip(next((a for a in _union_args(ann) if a is not type(None)), ann))
            origin, args = typing.get_origin(base), typing.get_args(base)
            if origin is dict and args:
                ann, meta, required = args[1], [], False
            elif origin is tuple and args:
                ann = args[0] if len(args) == 2 and args[1] is Ellipsis else args[int(part)]
                meta, required = [], False
            else:
                return None
        ann, inner = _strip(ann)
        meta += inner
        via = part
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
    lower, upper = _bounds(meta)
    return FieldType(frozenset(_atoms(ann)), lower, upper, required, _section(ann, node, via))


def _has(node: Any, part: str | int) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and part < len(node)


# ---------------------------------------------------------------------------------------------
# walking and editing a recipe mapping


def leaves(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """``(path, value)`` of every scalar (list elements included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))
    else:
        yield path, node


def mappings(node: Any, path: Path_ = ()) -> Iterator[Path_]:
    """The path of every mapping, the root ``()`` first."""
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from mappings(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from mappings(value, (*path, i))


def get(root: Any, path: Path_) -> Any:
    for part in path:
        root = root[part]
    return root


def with_value(root: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    """A deep copy of ``root`` with ``path`` set to ``value`` (missing sections are created)."""
    out = copy.deepcopy(root)
    node: Any = out
    for part in path[:-1]:
        if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return out


def without(root: dict[str, Any], path: Path_) -> dict[str, Any]:
    out = copy.deepcopy(root)
    del get(out, path[:-1])[path[-1]]
    return out


def dotted(path: Path_) -> str:
    return ".".join(map(str, path))


def dump(raw: dict[str, Any]) -> str:
    """Block-style YAML, one key per line, in the recipe's own key order."""
    return yaml.dump(raw, Dumper=_DUMPER, sort_keys=False, default_flow_style=False, allow_unicode=True, width=2**31 - 1)


def flow(value: Any) -> str:
    """``value`` as one line of YAML (for ``--set``)."""
    text = yaml.dump(value, Dumper=_DUMPER, default_flow_style=True, width=2**31 - 1).strip()
    return text.removesuffix("...").strip()


def with_raw(raw: dict[str, Any], path: Path_, snippet: str | bytes) -> tuple[bytes, int]:
    """The recipe with the value at ``path`` replaced by raw YAML ``snippet``; also its 1-based line."""
    text = dump(with_value(raw, path, SLOT)).encode()
    line = text[: text.index(SLOT.encode())].count(b"\n") + 1
    piece = snippet if isinstance(snippet, bytes) else snippet.encode()
    return text.replace(SLOT.encode(), piece, 1), line


def placed(raw: dict[str, Any], path: Path_, value: Any) -> tuple[bytes, int]:
    """The recipe with ``value`` (one line of YAML) at ``path``; also that line's number."""
    return with_raw(raw, path, flow(value))


def with_key(raw: dict[str, Any], section: Path_, key: str, value: Any) -> tuple[bytes, int]:
    """The recipe with ``key: value`` added to the mapping at ``section``; also the key's line."""
    text = dump(with_value(raw, (*section, SLOT), value))
    line = text[: text.index(SLOT)].count("\n") + 1
    return text.replace(SLOT, flow(key), 1).encode(), line


def short(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, str) else repr(value[:limit]) + (f"+{len(value) - limit} chars" if len(value) > limit else "")
    return text if len(text) <= limit + 20 else text[:limit] + "..."


# ---------------------------------------------------------------------------------------------
# value mutations


@dataclass(frozen=True)
class Bad:
    """An invalid value: a Python value dumped as YAML, or ``raw`` YAML text."""

    label: str
    value: Any = None
    raw: str | None = None


def bad_numbers(ft: FieldType) -> list[Bad]:
    """Values a numeric field must reject."""
    out = [Bad("4400-digit int", raw="9" * 4400), Bad("inf", math.inf), Bad("-inf", -math.inf), Bad("nan", math.nan),
           Bad("1e999", raw="1e999")]
    if not ft.accepts("str"):
        out.append(Bad("string", "banana"))
    if not ft.accepts("list"):
        out.append(Bad("list", [1, 2]))
    if not ft.accepts("dict", "model"):
        out.append(Bad("mapping", {"a": 1}))
    if not ft.accepts("bool"):
        out.append(Bad("bool", True))
    if not ft.accepts("none"):
        out.append(Bad("null", None))
    if ft.lower is not None and ft.lower >= 0:
        out.append(Bad("negative", -1 if "int" in ft.atoms and "float" not in ft.atoms else -0.5))
    if ("int" in ft.atoms and "float" not in ft.atoms) or (ft.upper is not None and ft.upper < 10**31):
        out.append(Bad("huge int", 10**31))
    return out


def bad_strings(ft: FieldType, path: Path_) -> list[Bad]:
    """Values a string (name) field must reject."""
    out = [Bad("million-char string", raw="a" * 1_000_000), Bad("empty string", "")]
    if not ft.accepts("int", "float"):
        out.append(Bad("number", 42))
    if not ft.accepts("list"):
        out.append(Bad("list", ["a", "b"]))
    if not ft.accepts("dict", "model"):
        out.append(Bad("mapping", {"a": 1}))
    if tuple(p for p in path if not isinstance(p, int)) not in FREE_TEXT:
        out.append(Bad("unknown name", f"no_such_{path[-1] if isinstance(path[-1], str) else 'name'}"))
    return out


def typed_leaves(raw: dict[str, Any]) -> list[tuple[Path_, Any, FieldType]]:
    """Leaves whose accepted kinds are known (numbers and strings; bools are left alone)."""
    out = []
    for path, value in leaves(raw):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        ft = field_type(raw, path)
        if ft is not None and "any" not in ft.atoms:
            out.append((path, value, ft))
    return out


def bad_values(raw: dict[str, Any], path: Path_, value: Any, ft: FieldType) -> list[Bad]:
    return bad_strings(ft, path) if isinstance(value, str) else bad_numbers(ft)


def _quoted(bad: Bad) -> str | None:
    """How a message would quote a bad string value (its start), for :func:`names_where`."""
    text = bad.raw if bad.raw is not None and bad.raw.isalpha() else bad.value
    return (text[:20] or "''") if isinstance(text, str) else None


def _value_mutation(kind: str, base: str, raw: dict[str, Any], path: Path_, bad: Bad) -> Mutation:
    desc = f"{dotted(path)} <- {bad.label} ({short(bad.raw if bad.raw is not None else bad.value)})"
    name = _quoted(bad)
    if bad.raw is not None:
        data, line = with_raw(raw, path, bad.raw)
        return Mutation(kind, desc, base, data=data, field=dotted(path), line=line, value=name)
    data, line = placed(raw, path, bad.value)
    return Mutation(kind, desc, base, data=data, field=dotted(path), line=line, value=name)


def mutate_value(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation | None:
    """A numeric or string leaf replaced by a value its field must reject."""
    path, value, ft = ch.choice(typed_leaves(raw))
    bad = ch.choice(bad_values(raw, path, value, ft))
    kind = ("number" if not isinstance(value, str) else "string") + ": " + bad.label
    return _value_mutation(kind, base, raw, path, bad)


# ---------------------------------------------------------------------------------------------
# structural and special-field mutations


def _section_paths(raw: dict[str, Any]) -> list[tuple[Path_, type]]:
    """Mappings validated by a pydantic model (unknown keys are errors there)."""
    from prunekit.experiment.recipe import Recipe

    out: list[tuple[Path_, type]] = [((), Recipe)]
    for path in mappings(raw):
        if path:
            ft = field_type(raw, path)
            if ft is not None and ft.model is not None:
                out.append((path, ft.model))
    return out


def mutate_unknown_key(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    """A key that the section's model does not have."""
    path, cls = ch.choice(_section_paths(raw))
    known = list(get(raw, path)) or ["x"]
    key = ch.choice(["fuzz_unknown_key", known[0] + "x", known[-1].upper(), "Name", "__class__"])
    if key in getattr(cls, "model_fields", {}):
        key = "fuzz_unknown_key"
    data, line = with_key(raw, path, key, 1)
    return Mutation("unknown key", f"{dotted((*path, key))}: unknown key added", base, data=data, field=dotted((*path, key)), line=line)


def mutate_delete_required(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation | None:
    """A required key removed."""
    required = []
    for path in mappings(raw):
        for key in get(raw, path):
            ft = field_type(raw, (*path, key))
            if ft is not None and ft.required:
                required.append((*path, key))
    if not required:
        return None
    path = ch.choice(required)
    return Mutation("required key deleted", f"{dotted(path)}: required key deleted", base, data=dump(without(raw, path)).encode(), field=dotted(path))


def mutate_device(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    device = ch.choice(["banana", "tpu", "", "cuda:99"])
    data, line = placed(raw, ("device",), device)
    return Mutation("device", f"device <- {device!r}", base, data=data, field="device", line=line)


def mutate_name(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    size = ch.choice([300, 256, 1000])
    data, line = placed(raw, ("name",), "a" * size)
    return Mutation("name too long", f"name <- {size}-character name", base, data=data, field="name", line=line)


def mutate_model(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    """A model factory path that is not a model (``os:getcwd``), a relative import, or an unknown kwarg."""
    what = ch.choice(["os:getcwd", "..x:f", ".x:f", "os.path:sep", "kwargs"])
    if what == "kwargs":
        data, line = placed(raw, ("model", "kwargs"), {"no_such_kwarg": 1})
        return Mutation("model: unknown kwarg", "model.kwargs <- {no_such_kwarg: 1}", base, data=data, field="model.kwargs", line=line)
    data, line = placed(raw, ("model", "name"), what)
    return Mutation("model: bad factory", f"model.name <- {what!r}", base, data=data, field="model.name", line=line)


def _registry_slots(raw: dict[str, Any]) -> list[Path_]:
    slots: list[Path_] = [("model", "name"), ("data", "name"), ("prune", "method"), ("evaluate", "corruptions")]
    prune = raw.get("prune", {})
    for key in ("criterion", "importance", "distribution", "scope", "allocation", "algorithm"):
        if key in prune:
            slots.append(("prune", key))
    if isinstance(prune.get("schedule"), dict):
        slots.append(("prune", "schedule", "name"))
    for key in ("baselines", "controls"):
        if prune.get(key):
            slots.append(("prune", key, len(prune[key]) - 1))
    for section in ("train", "finetune"):
        node = raw.get(section) if section == "train" else prune.get(section)
        if isinstance(node, dict):
            prefix = (section,) if section == "train" else ("prune", section)
            slots += [(*prefix, "optimizer", "name"), (*prefix, "lr_schedule", "name")]
    return slots


def mutate_registry(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    """An unknown name where a registry (or literal) name belongs."""
    path = ch.choice(_registry_slots(raw))
    name = ch.choice(["no_such_thing", "timm", "Magnitude_", "l2:uniform:extra"])
    if path == ("evaluate", "corruptions"):
        (data, line), path = placed(raw, path, ["gaussian_noise", name]), (*path, 1)
    else:
        data, line = placed(raw, path, name)
    return Mutation("unknown registry name", f"{dotted(path)} <- {name!r}", base, data=data, field=dotted(path), line=line, value=name)


# ---------------------------------------------------------------------------------------------
# hostile YAML


def alias_bomb(levels: int, width: int = 9) -> str:
    """``[&a0 [1,...], &a1 [*a0,...], ...]``: ``width**levels`` leaves from a few hundred bytes."""
    parts = ["&a0 [" + ", ".join(["1"] * width) + "]"]
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def _numeric_leaves(raw: dict[str, Any]) -> list[Path_]:
    return [p for p, v, ft in typed_leaves(raw) if not isinstance(v, str)]


def mutate_alias_bomb(ch: Chooser, base: str, raw: dict[str, Any], max_levels: int = 9) -> Mutation:
    levels = ch.integer(min(7, max_levels), max_levels)
    if ch.choice(["number", "kwargs"]) == "kwargs":
        path: Path_ = ("model", "kwargs", "lol")
        data, line = with_raw(with_value(raw, ("model", "kwargs"), {"lol": 0}), path, alias_bomb(levels))
        return Mutation("yaml: alias bomb", f"model.kwargs.lol <- {levels}-level alias bomb", base, data=data, field="model.kwargs", line=line)
    path = ch.choice(_numeric_leaves(raw))
    data, line = with_raw(raw, path, alias_bomb(levels))
    return Mutation("yaml: alias bomb", f"{dotted(path)} <- {levels}-level alias bomb", base, data=data, field=dotted(path), line=line)


def mutate_deep_nesting(ch: Chooser, base: str, raw: dict[str, Any], max_depth: int = 6000) -> Mutation:
    depth = ch.integer(3001, max(3001, max_depth))
    style = ch.choice(["list", "mapping"])
    snippet = "[" * depth + "1" + "]" * depth if style == "list" else "{a: " * depth + "1" + "}" * depth
    path = ch.choice([p for p, _, _ in typed_leaves(raw)] + [("model", "kwargs", "deep")])
    data, line = with_raw(raw, path, snippet)
    where = "model.kwargs" if path[:2] == ("model", "kwargs") else dotted(path)
    return Mutation("yaml: deep nesting", f"{dotted(path)} <- {style} nested {depth} deep", base, data=data, field=where, line=line)


def mutate_non_utf8(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    strings = [(p, v) for p, v, _ in typed_leaves(raw) if isinstance(v, str)]
    path, value = ch.choice(strings)
    byte = ch.choice([b"\xff", b"\xe9", b"\xc3\x28", b"\x80"])
    data, line = with_raw(raw, path, value.encode() + byte)
    return Mutation("yaml: non-UTF-8 byte", f"{dotted(path)}: byte {byte!r} after {value!r}", base, data=data, field=dotted(path), line=line)


def mutate_duplicate_key(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    path = ch.choice([p for p in mappings(raw) if get(raw, p)])
    key = ch.choice(list(get(raw, path)))
    value = get(raw, (*path, key))
    text = dump(with_value(raw, (*path, DUP), value))
    line = text[: text.index(DUP)].count("\n") + 1
    data = text.replace(DUP, yaml.safe_dump(key).strip().removesuffix("...").strip(), 1).encode()
    return Mutation("yaml: duplicate key", f"{dotted((*path, key))}: key repeated (same value)", base, data=data, field=dotted((*path, key)), line=line)


def mutate_yaml_type(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    """``!!binary``, ``!!set``, a date, ``!!timestamp``, ``!!omap``: YAML-only types."""
    snippet = ch.choice(["!!binary ZGVtbw==", "!!set {random, lamp}", "2024-01-01", "2001-12-14t21:59:43.10-05:00", "!!omap [{a: 1}]"])
    path = ch.choice([p for p, _, _ in typed_leaves(raw)] + [("model", "kwargs", "when")])
    data, line = with_raw(raw, path, snippet)
    where = "model.kwargs" if path[:2] == ("model", "kwargs") else dotted(path)
    return Mutation("yaml: YAML-only type", f"{dotted(path)} <- {snippet}", base, data=data, field=where, line=line)


# ---------------------------------------------------------------------------------------------
# --set overrides and odd paths


def _settable(path: Path_) -> bool:
    return all(isinstance(p, str) and p and "." not in p and "=" not in p for p in path)


def mutate_set_value(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    """A value mutation delivered by ``--set KEY=VALUE`` on the valid base file."""
    candidates = [(p, v, ft) for p, v, ft in typed_leaves(raw) if _settable(p)]
    path, value, ft = ch.choice(candidates)
    bads = [b for b in bad_values(raw, path, value, ft) if len(flow(b.value) if b.raw is None else b.raw) < 10_000]
    bad = ch.choice(bads)
    text = bad.raw if bad.raw is not None else flow(bad.value)
    item = f"{dotted(path)}={text}"
    return Mutation(f"--set: {bad.label}", f"--set {short(item, 60)}", base, data=dump(raw).encode(), set_args=(item,),
                    field=dotted(path), needle=dotted(path), value=_quoted(bad))


def mutate_set_special(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    """Empty key segments, a list as schedule name, a relative factory path."""
    options = ["train..epochs=1", ".seed=1", "prune.=1", "model..name=lenet5", "model.name=..x:f", "data.name=[digits]"]
    if isinstance(raw.get("prune", {}).get("schedule"), dict):
        options.append("prune.schedule.name=[1]")
    item = ch.choice(options)
    key = item.partition("=")[0]
    where = key if ".." not in key and not key.startswith(".") and not key.endswith(".") else None
    return Mutation("--set: bad key or value", f"--set {item}", base, data=dump(raw).encode(), set_args=(item,), field=where, needle=key)


def mutate_path(ch: Chooser, base: str, raw: dict[str, Any]) -> Mutation:
    kind = ch.choice(["dir", "fifo"])
    return Mutation(f"path: {kind}", f"recipe path is a {'directory' if kind == 'dir' else 'FIFO'}", base, path_kind=kind, names_path=True)


MUTATORS = {
    "value": mutate_value,
    "unknown_key": mutate_unknown_key,
    "delete_required": mutate_delete_required,
    "device": mutate_device,
    "name": mutate_name,
    "model": mutate_model,
    "registry": mutate_registry,
    "alias_bomb": mutate_alias_bomb,
    "deep_nesting": mutate_deep_nesting,
    "non_utf8": mutate_non_utf8,
    "duplicate_key": mutate_duplicate_key,
    "yaml_type": mutate_yaml_type,
    "set_value": mutate_set_value,
    "set_special": mutate_set_special,
    "path": mutate_path,
}
#: relative frequency of each mutator (values get the largest share: they have the most variants)
WEIGHTS = {"value": 6, "unknown_key": 2, "delete_required": 2, "registry": 2, "set_value": 3, "yaml_type": 2}


@dataclass
class Generator:
    """Draws mutations of the base recipes; ``max_bomb_levels`` caps alias bombs (9: ~387M leaves),
    ``max_depth`` the nesting depth (from 3001)."""

    bases: dict[str, dict[str, Any]] = field(default_factory=load_bases)
    max_bomb_levels: int = 9
    max_depth: int = 6000

    def draw(self, ch: Chooser) -> Mutation:
        mutators = [name for name in MUTATORS for _ in range(WEIGHTS.get(name, 1))]
        while True:
            base = ch.choice(sorted(self.bases))
            name = ch.choice(mutators)
            result = self.make(name, ch, base)
            if result is not None:
                return result

    def make(self, mutator: str, ch: Chooser, base: str) -> Mutation | None:
        raw = self.bases[base]
        if mutator == "alias_bomb":
            return mutate_alias_bomb(ch, base, raw, self.max_bomb_levels)
        if mutator == "deep_nesting":
            return mutate_deep_nesting(ch, base, raw, self.max_depth)
        return MUTATORS[mutator](ch, base, raw)


# ---------------------------------------------------------------------------------------------
# does the message say where?

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _normalise(message: str) -> str:
    message = _ANSI.sub("", message)
    return re.sub(r"\[(\d+)\]", r".\1", message)


def _find(message: str, dotted_path: str, start: int = 0) -> int:
    """End offset of ``dotted_path`` as a whole token in ``message`` (from ``start``), or -1."""
    match = re.compile(r"(?<![\w.])" + re.escape(dotted_path) + r"(?!\w)").search(message, start)
    return match.end() if match else -1


def names_field(message: str, path: str) -> bool:
    """``path`` (e.g. ``prune.schedule.rate``) appears whole (a list item's index may be left out), or as a
    section path followed later by the rest (``prune.schedule: ... rate: ...``)."""
    message = _normalise(message)
    if _find(message, path) >= 0:
        return True
    parts = path.split(".")
    while len(parts) > 1 and parts[-1].isdigit():  # a list field named without the item's index
        parts.pop()
        if _find(message, ".".join(parts)) >= 0:
            return True
    parts = path.split(".")
    for k in range(1, len(parts)):
        head, tail = ".".join(parts[:k]), ".".join(parts[k:])
        if parts[k].isdigit():
            continue
        end = _find(message, head)
        while end >= 0:
            if _find(message, tail, end) >= 0:
                return True
            end = _find(message, head, end)
    return False


def names_where(message: str, mutation: Mutation, recipe_path: str) -> bool:
    """Whether the message names the field, the line, the override or the path the mutation targets."""
    if mutation.names_path:
        return recipe_path in message or recipe_path.rsplit("/", 1)[-1] in message
    checks = []
    if mutation.field:
        checks.append(names_field(message, mutation.field))
        section = mutation.field.rsplit(".", 1)[0] if "." in mutation.field else ""
        if mutation.value and section and not section.rsplit(".", 1)[-1].isdigit():
            checks.append(mutation.value in message and names_field(message, section))
    if mutation.line is not None:
        checks.append(re.search(rf"\bline\s*:?\s*{mutation.line}\b", _normalise(message)) is not None)
    if mutation.needle:
        checks.append(mutation.needle in message)
    return any(checks) if checks else True

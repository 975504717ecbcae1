"""Reading recipe text safely: bounded size, depth and alias expansion; plain values only.

A recipe is small, human-written YAML. Whatever a file holds, reading it takes well under a
second and little memory, or fails with a :class:`ConfigError` that says where (line, column, or
the dotted setting) and never echoes more than a short excerpt of a value:

* the file must be a regular file (not a directory or a FIFO, which would block) of at most
  :data:`MAX_BYTES`, in UTF-8;
* nesting is at most :data:`MAX_DEPTH` levels and the document, with every alias expanded, at
  most :data:`MAX_NODES` values (an "alias bomb" is refused before anything expands it);
* keys are text and appear once per mapping (YAML would silently keep the last duplicate);
* values are text, numbers, booleans, null, lists and mappings: ``!!binary``, ``!!set``,
  ``!!omap``/``!!pairs`` and unquoted dates are refused (quote a value meant as text);
* integers have at most :data:`MAX_INT_DIGITS` digits and magnitude at most 2**53.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from prunekit.errors import ConfigError

MAX_BYTES = 256 << 10
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_INT_DIGITS = 30
MAX_INT = 2**53

_REFUSED_TAGS = {
    "tag:yaml.org,2002:binary": ("binary data (!!binary)", "write text"),
    "tag:yaml.org,2002:timestamp": ("a date or time", "quote it if it is meant as text"),
    "tag:yaml.org,2002:set": ("a set (!!set)", "use a list"),
    "tag:yaml.org,2002:omap": ("an ordered map (!!omap)", "use a plain mapping"),
    "tag:yaml.org,2002:pairs": ("a list of pairs (!!pairs)", "use a plain mapping"),
}


def read_recipe_text(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of a recipe file, checked to be a regular file of bounded size."""
    target = Path(path)
    try:
        info = os.stat(target)
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {target}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"recipe {target} is a directory; give the path of a .yaml file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"recipe {target} is not a regular file (a FIFO, socket or device); give the path of a .yaml file")
    if info.st_size > MAX_BYTES:
        raise ConfigError(f"recipe {target} is {info.st_size:,} bytes; recipes are limited to {MAX_BYTES:,} bytes{_longest_line(target)}")
    try:
        with open(target, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {target}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"recipe {target} is larger than {MAX_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"recipe {target} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}; save it as UTF-8") from None


def _longest_line(path: Path, scan: int = 8 << 20) -> str:
    """``"; line N alone holds M bytes"`` when one line of the first ``scan`` bytes is most of the size."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read(scan).split(b"\n")
    except OSError:
        return ""
    number, longest = max(enumerate(lines, 1), key=lambda item: len(item[1]))
    return f"; line {number} alone holds {len(longest):,} bytes" if len(longest) > MAX_BYTES // 2 else ""


def parse_yaml(text: str, source: str) -> Any:
    """The plain value (mappings, lists, text, numbers, booleans, null) of one YAML document."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader already refuses control characters
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node)
        value = loader.construct_document(node)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nesting is too deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    _check_plain(value, source, ())
    return value


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with a depth limit, duplicate-key errors, bounded ints and no exotic types."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
                if key in seen:
                    raise ConfigError(f"duplicate key {key[:80]!r} at line {key_node.start_mark.line + 1} "
                                      f"(first at line {seen[key]}); YAML would silently keep only the last one")
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isdigit() for c in node.value)
        if digits > MAX_INT_DIGITS:
            raise ConfigError(f"an integer of {digits} digits at line {node.start_mark.line + 1}; numbers in recipes have at most {MAX_INT_DIGITS}")
        return super().construct_yaml_int(node)

    def construct_refused(self, node: yaml.Node) -> Any:
        what, fix = _REFUSED_TAGS[node.tag]
        raise ConfigError(f"line {node.start_mark.line + 1}: {what} is not a recipe value; {fix}")


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
# YAML 1.2 floats without a dot (1e-3, 5E+4), which PyYAML's YAML 1.1 rules read as text.
_BoundedLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789"))
for _tag in _REFUSED_TAGS:
    _BoundedLoader.add_constructor(_tag, _BoundedLoader.construct_refused)


def _check_expanded_size(root: yaml.Node) -> None:
    """Refuse documents whose alias-expanded size exceeds :data:`MAX_NODES` (computed without expanding)."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack: list[yaml.Node] = [root]
    while stack:  # post-order over the node graph; aliases make it a DAG, each node visited once
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        total = 1 + sum(sizes[id(child)] for child in _children(node))
        if total > MAX_NODES:
            raise ConfigError(f"the document expands to more than {MAX_NODES:,} values "
                              f"(aliases at line {node.start_mark.line + 1} repeat too much); write the values out")
        sizes[id(node)] = total


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_plain(value: Any, source: str, path: tuple[str, ...]) -> None:
    """Keys are text; ints are bounded; nothing but plain YAML values (named by dotted path)."""
    where = ".".join(path) or "(top level)"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{source}: {where}: key {str(key)[:40]!r} is a {type(key).__name__}; keys must be text (quote it)")
            _check_plain(item, source, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_plain(item, source, (*path, str(index)))
    elif isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return
    elif isinstance(value, int):
        if abs(value) > MAX_INT:
            raise ConfigError(f"{source}: {where}: {value:.3e} is too large (at most 2**53 in magnitude)")
    else:
        raise ConfigError(f"{source}: {where}: a {type(value).__name__} is not a recipe value")

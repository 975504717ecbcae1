"""Hostile packed files: rewrite a header's JSON but keep every checksum valid.

Only the header checks can then reject the file. :func:`outcome` classifies one load: rejected
(``CheckpointError``), accepted (loaded, every tensor has its declared shape) or an escape (any
other exception, a wrong shape, or a load slower than :data:`TIME_LIMIT_S`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import struct
import time
import zlib
from typing import Any

from prunekit.compression import decode_compressed
from prunekit.compression import packed
from prunekit.errors import CheckpointError

#: A hang, not a slow machine: generous, because a loaded CI core runs the 140M-element edits at ~3 s.
TIME_LIMIT_S = 10.0
SOURCE = "x.pkdc"
Path = tuple[Any, ...]  # keys and list indices from the header root

#: Integers that break naive readers: huge, negative, word-size edges.
HOSTILE_INTS = (0, 1, -1, 2, 7, 8, 31, 32, 33, 57, 58, 64, 255, 256, 65536, 65537, 2**31, 2**32, 2**32 + 1, 2**63, 2**64, 2**70, 10**12, 10**15, -(2**63), 10**300)


def split_file(data: bytes) -> tuple[dict[str, Any], bytes, int]:
    """``(header with its section table, data area, format version)`` of a file image."""
    version = struct.unpack_from("<H", data, 4)[0]
    head_len = struct.unpack_from("<I", data, 8)[0]
    raw = data[packed.PREFIX_SIZE : packed.PREFIX_SIZE + head_len]
    header = json.loads(zlib.decompress(raw) if version >= 2 else raw)
    return header, data[packed.PREFIX_SIZE + head_len : -packed.TRAILER_SIZE], version


def repack(header: Any, area: bytes, version: int = 2, *, stored_head: bytes | None = None) -> bytes:
    """A file image of ``header`` (written as given, section table included) then ``area``, with a
    valid prefix CRC32 and SHA-256; ``stored_head`` replaces the header bytes as stored (compressed
    in version 2)."""
    head = stored_head
    if head is None:
        head = json.dumps(header, separators=(",", ":")).encode("utf-8")
        head = zlib.compress(head, 9) if version >= 2 else head
    file_len = packed.PREFIX_SIZE + len(head) + len(area) + packed.TRAILER_SIZE
    prefix = struct.pack("<4sHHIQ", packed.MAGIC, version, 0, len(head), file_len)
    body = prefix + struct.pack("<I", zlib.crc32(prefix)) + head + area
    return body + hashlib.sha256(body).digest()


def int_paths(node: Any, path: Path = ()) -> list[Path]:
    """Paths of every integer (not bool) in a JSON value."""
    if type(node) is int:
        return [path]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return [p for key, child in items for p in int_paths(child, (*path, key))]


def all_paths(node: Any, path: Path = ()) -> list[Path]:
    """Paths of every value in a JSON value, containers included (the root excluded)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return [p for key, child in items for p in ((*path, key), *all_paths(child, (*path, key)))]


def replaced(header: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A deep copy of ``header`` with the value at ``path`` set to ``value``."""
    out, parent = _copy_to_parent(header, path)
    parent[path[-1]] = value
    return out


def removed(header: dict[str, Any], path: Path) -> dict[str, Any]:
    """A deep copy of ``header`` without the value at ``path``."""
    out, parent = _copy_to_parent(header, path)
    del parent[path[-1]]
    return out


def mutate(header: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One random hostile edit of a deep copy of ``header``: a value replaced, removed or added."""
    path = rng.choice(all_paths(header))
    out, parent = _copy_to_parent(header, path)
    key, old = path[-1], parent[path[-1]]
    action = rng.randrange(4)
    if action == 0:
        del parent[key]
    elif action == 1 and isinstance(old, (dict, list)):
        _grow(old, rng)
    elif action == 2 and type(old) is int:
        parent[key] = old + rng.choice((-1, 1, 8, -8, 1 << rng.randrange(80)))
    else:
        parent[key] = hostile_value(rng)
    return out


def _copy_to_parent(header: dict[str, Any], path: Path) -> tuple[dict[str, Any], Any]:
    """A deep copy of ``header`` and, inside it, the container holding the value at ``path``."""
    out = copy.deepcopy(header)
    parent: Any = out
    for key in path[:-1]:
        parent = parent[key]
    return out, parent


def hostile_value(rng: random.Random) -> Any:
    """A value of a random JSON type, often a hostile integer."""
    return rng.choice(
        (
            rng.choice(HOSTILE_INTS),
            -rng.choice(HOSTILE_INTS),
            rng.getrandbits(rng.randrange(1, 200)),
            True,
            False,
            None,
            "8",
            "",
            "float32",
            1.5,
            1e300,
            [],
            [rng.choice(HOSTILE_INTS)] * rng.randrange(1, 4),
            {},
            {"a": [[[{"b": None}]]]},
        )
    )


def _grow(node: dict[str, Any] | list[Any], rng: random.Random) -> None:
    if isinstance(node, dict):
        node[f"garbage{rng.randrange(10)}"] = hostile_value(rng)
    elif node:
        node.append(copy.deepcopy(rng.choice(node)))
    else:
        node.append(hostile_value(rng))


def outcome(data: bytes, header: dict[str, Any]) -> str:
    """``"rejected"``, ``"accepted"`` or ``"escape: <why>"`` for loading ``data`` (whose header is ``header``)."""
    start = time.perf_counter()
    try:
        content = decode_compressed(data, source=SOURCE)
    except CheckpointError as exc:
        result = "rejected" if str(exc).startswith(SOURCE) else f"escape: message does not name the file: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other exception is what this counts
        result = f"escape: {type(exc).__name__}: {exc}"
    else:
        result = "accepted" if _shapes_match(content, header) else "escape: loaded tensors differ from the declared shapes"
    elapsed = time.perf_counter() - start
    return result if elapsed < TIME_LIMIT_S or result.startswith("escape") else f"escape: took {elapsed:.1f} s"


def _shapes_match(content: Any, header: dict[str, Any]) -> bool:
    layers, extras = content.quantization.layers, content.extras
    declared = {e["name"]: tuple(e["shape"]) for e in [*header["layers"], *header["extras"]]}
    got = {name: tuple(layer.mask.shape) for name, layer in layers.items()} | {n: tuple(t.shape) for n, t in extras.items()}
    return got == declared and all(layer.shape == declared[name] for name, layer in layers.items())

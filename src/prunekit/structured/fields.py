"""Element ids: which positions of which tensors must be removed together.

Every prunable position (a channel of a weight, a channel of an activation) carries an integer id.
Operations *couple* ids (union); at the end, connected ids form one removable unit. Id ``0``
(:data:`BLOCK`) is the fixed world: input channels, output logits, spatial positions, anything
coupled to it can never be removed.

A tensor's labelling is a list of :class:`Field` objects, each covering one or more axes with an id
array of those axes' sizes; axes not covered by any field are fixed (implicitly :data:`BLOCK`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BLOCK = 0


@dataclass
class Field:
    """Ids of the positions along ``axes`` (sorted) of a tensor; ``ids.shape`` = sizes of those axes."""

    axes: tuple[int, ...]
    ids: np.ndarray

    def moved(self, axes: tuple[int, ...]) -> Field:
        """The same ids placed on other axes (``axes[i]`` replaces ``self.axes[i]``), kept sorted."""
        order = np.argsort(axes)
        return Field(tuple(int(axes[i]) for i in order), np.transpose(self.ids, order) if len(axes) > 1 else self.ids)


@dataclass
class TensorInfo:
    """A tensor's shape and labelling."""

    shape: tuple[int, ...]
    fields: list[Field] = field(default_factory=list)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def field_at(self, axis: int) -> Field | None:
        for f in self.fields:
            if axis in f.axes:
                return f
        return None


@dataclass
class BlockRecord:
    """An explicit block: ``ids`` may not be removed because of ``reason`` at ``where``."""

    ids: np.ndarray
    reason: str
    where: str


class IdSpace:
    """Allocates ids and records couplings; :meth:`components` resolves them."""

    def __init__(self) -> None:
        self.size = 1  # id 0 is BLOCK
        self._a: list[np.ndarray] = []
        self._b: list[np.ndarray] = []
        self.blocks: list[BlockRecord] = []
        self.where = ""  # the op being propagated (set by the walker), named by merges
        self.merges: list[tuple[np.ndarray, str]] = []  # (ids merged into one unit per hyperplane, where)
        self.propagated: int | None = None  # couplings made by the ops themselves (before layouts are made rectangular)

    def fresh(self, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        ids = np.arange(self.size, self.size + n, dtype=np.int64).reshape(shape)
        self.size += n
        return ids

    def union(self, a: np.ndarray, b: np.ndarray | int) -> None:
        """Couple ``a`` and ``b`` position-wise (broadcasting)."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        if a.shape != b.shape:
            a, b = np.broadcast_arrays(a, b)
        mask = a != b
        if mask.any():
            self._a.append(a[mask].ravel())
            self._b.append(b[mask].ravel())

    def union_along(self, ids: np.ndarray, axes: tuple[int, ...]) -> None:
        """Couple all positions along ``axes`` (each hyperplane across them becomes one unit)."""
        if not axes or ids.size == 0:
            return
        first = ids
        for ax in axes:
            first = np.take(first, [0], axis=ax)
        self.union(ids, first)
        self.merges.append((ids, self.where))

    def fix(self, ids: np.ndarray) -> None:
        """Couple ``ids`` to the fixed world (an ordinary consequence of the model, no warning)."""
        self.union(ids, BLOCK)

    def block(self, ids: np.ndarray, reason: str, where: str) -> None:
        """Couple ``ids`` to the fixed world for a reason worth a warning."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size:
            self.blocks.append(BlockRecord(ids, reason, where))

    def seal(self) -> None:
        """Mark the couplings so far as the ops' own (see :meth:`components`' ``propagated_only``)."""
        self.propagated = len(self._a)

    def edges(self, explicit: bool = True, propagated_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        end = self.propagated if propagated_only and self.propagated is not None else len(self._a)
        a = list(self._a[:end])
        b = list(self._b[:end])
        if explicit:
            for rec in self.blocks:
                a.append(rec.ids)
                b.append(np.zeros_like(rec.ids))
        if not a:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(a), np.concatenate(b)

    def components(self, explicit: bool = True, extra: tuple[np.ndarray, np.ndarray] | None = None, propagated_only: bool = False) -> np.ndarray:
        """Component label of every id (``labels[0]`` is the blocked component); ``propagated_only``:
        from the ops' couplings alone, without the merges made after :meth:`seal`."""
        a, b = self.edges(explicit, propagated_only)
        if extra is not None:
            a, b = np.concatenate([a, extra[0]]), np.concatenate([b, extra[1]])
        return connected_components(self.size, a, b)


def connected_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes joined by the undirected edges ``a[i]``–``b[i]``, components
    numbered in the order of their smallest node (as ``scipy.sparse.csgraph.connected_components`` does).

    Vectorised union-find: every round hooks the larger root of each still-split edge under the
    smaller one, then points every node at its root; a root is thus its component's smallest node.
    """
    root = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while a.size:
        ra, rb = root[a], root[b]
        split = ra != rb
        if not split.any():
            break
        a, b, ra, rb = a[split], b[split], ra[split], rb[split]
        np.minimum.at(root, np.maximum(ra, rb), np.minimum(ra, rb))
        while True:
            up = root[root]
            if np.array_equal(up, root):
                break
            root = up
    return np.unique(root, return_inverse=True)[1].astype(np.int64)


def broadcast_to_axes(ids: np.ndarray, own: tuple[int, ...], target: tuple[int, ...]) -> np.ndarray:
    """View ``ids`` (over axes ``own``) as an array over ``target`` (a superset), size-1 on the others."""
    shape = [1] * len(target)
    order = [target.index(a) for a in own]
    perm = np.argsort(order)
    arr = np.transpose(ids, perm) if len(own) > 1 else ids
    for a, size in zip(sorted(order), arr.shape):
        shape[a] = size
    return arr.reshape(shape)


def varying_axes(arr: np.ndarray) -> tuple[int, ...]:
    """Axes along which ``arr`` is not constant."""
    out = []
    for ax in range(arr.ndim):
        if arr.shape[ax] > 1 and not np.array_equal(arr, np.broadcast_to(np.take(arr, [0], axis=ax), arr.shape)):
            out.append(ax)
    return tuple(out)


def squeeze_to_varying(arr: np.ndarray, axes: tuple[int, ...]) -> Field | None:
    """A field from ``arr`` over ``axes`` keeping only the axes it varies along (None if constant BLOCK)."""
    keep = varying_axes(arr)
    reduced = arr
    for ax in sorted(set(range(arr.ndim)) - set(keep), reverse=True):
        reduced = np.take(reduced, 0, axis=ax)
    if not keep:
        if int(np.asarray(reduced).ravel()[0]) == BLOCK:
            return None
        return Field(tuple(axes), np.ascontiguousarray(arr))  # one unit spans all of these axes
    return Field(tuple(axes[k] for k in keep), np.ascontiguousarray(reduced))

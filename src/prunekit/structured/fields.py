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
from scipy.sparse import coo_matrix, csgraph

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
        self._a: list[np.ndarray] = []  # couplings not yet joined into _edges
        self._b: list[np.ndarray] = []
        self._edges = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._components: dict[int, np.ndarray] = {}  # labels of the first n couplings, by n (for _components_size ids)
        self._components_size = 0
        self.blocks: list[BlockRecord] = []
        self.where = ""  # the op being propagated (set by the walker), named by merges
        self.merges: list[tuple[np.ndarray, str]] = []  # (ids merged into one unit per hyperplane, where)
        self.propagated: int | None = None  # how many couplings the ops made themselves (before layouts are made rectangular)

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
        self.propagated = self._joined()[0].size

    def _joined(self) -> tuple[np.ndarray, np.ndarray]:
        """Every coupling so far as two arrays (joined once, not on every call)."""
        if self._a:
            self._edges = (np.concatenate([self._edges[0], *self._a]), np.concatenate([self._edges[1], *self._b]))
            self._a, self._b = [], []
        return self._edges

    def components(self, explicit: bool = True, extra: tuple[np.ndarray, np.ndarray] | None = None, propagated_only: bool = False) -> np.ndarray:
        """Component label of every id (``labels[0]`` is the blocked component); ``propagated_only``:
        from the ops' couplings alone, without the merges made after :meth:`seal`."""
        a, _ = self._joined()
        labels = self._coupled(self.propagated if propagated_only and self.propagated is not None else a.size)
        more = [(rec.ids.ravel(), np.zeros(rec.ids.size, np.int64)) for rec in self.blocks] if explicit else []
        if extra is not None:
            more.append((np.asarray(extra[0], np.int64).ravel(), np.asarray(extra[1], np.int64).ravel()))
        if not more:
            return labels
        return _joined_components(labels, np.concatenate([m[0] for m in more]), np.concatenate([m[1] for m in more]))

    def _coupled(self, end: int) -> np.ndarray:
        """Components of the first ``end`` couplings (read-only), extended from the largest earlier result that fits."""
        a, b = self._joined()
        if self._components_size != self.size:  # ids allocated since: start over
            self._components, self._components_size = {}, self.size
        if end not in self._components:
            start = max((e for e in self._components if e <= end), default=None)
            if start is None:
                labels = connected_components(self.size, a[:end], b[:end])
            else:
                labels = _joined_components(self._components[start], a[start:end], b[start:end])
            labels.flags.writeable = False
            self._components[end] = labels
        return self._components[end]


def _joined_components(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Components after joining ``a[i]``–``b[i]`` to a labelling numbered by smallest node (the result is too)."""
    if not a.size:
        return labels
    return connected_components(int(labels.max()) + 1, labels[a], labels[b])[labels]


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``values`` (``np.unique`` by sorting: numpy 2's hash-based
    ``np.unique`` is several times slower on the large id arrays of a graph)."""
    flat = np.sort(np.asarray(values).ravel())
    return flat[np.r_[True, flat[1:] != flat[:-1]]] if flat.size else flat


def connected_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes joined by the undirected edges ``a[i]``–``b[i]``, components
    numbered in the order of their smallest node (``scipy.sparse.csgraph.connected_components``)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    edges = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, labels = csgraph.connected_components(edges, directed=False)
    labels = labels.astype(np.int64)
    running = np.maximum.accumulate(labels)
    if labels.size and (labels[0] != 0 or np.any(np.diff(running) > 1)):  # not numbered by smallest node: renumber
        labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
        first = np.full(int(labels.max()) + 1, n, np.int64)
        np.minimum.at(first, labels, np.arange(n))
        rank = np.empty_like(first)
        rank[np.argsort(first)] = np.arange(first.size)
        labels = rank[labels]
    return labels


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

"""The one coupling rule most operations reduce to: einsum semantics over labelled axes.

Each operand names its axes with letters (any hashable; ``None`` marks a broadcast size-1 axis).
Fields of different operands that share a letter are coupled position-wise; an operand that has a
letter at full size but no field there is fixed along it (so it blocks what it meets: silently when
it is computed from the model's inputs, else with a recorded reason, see :data:`CONSTANT`). Letters
absent from the output are contracted: a field that keeps some output letters is merged along the
contracted ones (an output position exists as long as anything along them does), while a field
contracted away entirely keeps its positions independent (dropping a term of a sum).

Elementwise ops, matmul, linear, convolution channels, attention and reductions are all instances.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from prunekit.structured.fields import BLOCK, Field, IdSpace, TensorInfo, broadcast_to_axes

Letters = Sequence[Hashable | None]

#: Why channels met by a fixed tensor that does not come from the model's inputs are left untouched.
CONSTANT = "combined with a constant tensor of one value per channel (it cannot shrink with them)"


def _letter_sizes(operands: Sequence[tuple[TensorInfo, Letters]]) -> dict[Hashable, int]:
    sizes: dict[Hashable, int] = {}
    for info, letters in operands:
        for size, letter in zip(info.shape, letters):
            if letter is not None and size != 1:
                sizes[letter] = size
            elif letter is not None:
                sizes.setdefault(letter, size)
    return sizes


def _single_axis(ids: IdSpace, operands: Sequence[tuple[TensorInfo, Letters]], out_letters: Letters, sizes: dict[Hashable, int],
                 where: str, ordinary: Sequence[bool]) -> list[Field]:
    """Fast path when every field spans one axis: couple per letter, no materialisation."""
    per_letter: dict[Hashable, list[np.ndarray]] = {}
    blocked: dict[Hashable, bool] = {}  # letter -> only by tensors from the model's inputs
    labelled: set[Hashable] = set()
    for info, letters in operands:
        for f in info.fields:
            letter = letters[f.axes[0]]
            if letter is not None and info.shape[f.axes[0]] == sizes[letter]:
                labelled.add(letter)
    for i, (info, letters) in enumerate(operands):
        own = {letters[f.axes[0]]: f.ids for f in info.fields}
        for ax, letter in enumerate(letters):
            if letter in labelled and info.shape[ax] == sizes[letter] and info.shape[ax] != 1:
                arr = own.get(letter)
                if arr is None:
                    blocked[letter] = blocked.get(letter, True) and ordinary[i]
                else:
                    per_letter.setdefault(letter, []).append(arr)
    out: list[Field] = []
    out_pos = {letter: ax for ax, letter in enumerate(out_letters) if letter is not None}
    for letter, arrays in per_letter.items():
        rep = arrays[0]
        for arr in arrays[1:]:
            if arr is not rep:
                ids.union(rep, arr)
        if letter in blocked:
            if blocked[letter]:
                ids.fix(rep)
            else:
                ids.block(rep, CONSTANT, where)
        if letter in out_pos:
            out.append(Field((out_pos[letter],), rep))
    out.sort(key=lambda f: f.axes)
    return out


def _kept_whole(ids: IdSpace, operands: Sequence[tuple[TensorInfo, Letters]], sizes: dict[Hashable, int], rigid: Sequence[bool] | None) -> set[int]:
    """Rigid operands spanning a strict, non-empty part of another operand's multi-axis field: fixed, kept whole."""
    if rigid is None or not any(rigid):
        return set()
    spans = [{letters[ax] for f in info.fields for ax in f.axes if letters[ax] is not None and info.shape[ax] == sizes.get(letters[ax])}
             for info, letters in operands]
    multi = [{letters[ax] for ax in f.axes} for i, (info, letters) in enumerate(operands) if not rigid[i] for f in info.fields if len(f.axes) > 1]
    out = set()
    for i, (info, _) in enumerate(operands):
        if rigid[i] and spans[i] and any(spans[i] & m and m - spans[i] for m in multi):
            out.add(i)
            for f in info.fields:
                ids.fix(f.ids)
    return out


def einsum_fields(
    ids: IdSpace,
    operands: Sequence[tuple[TensorInfo, Letters]],
    out_letters: Letters,
    where: str,
    merge: Sequence[Hashable] = (),
    ordinary: Sequence[bool] | None = None,
    rigid: Sequence[bool] | None = None,
) -> tuple[list[Field], list[Field]]:
    """Couple ``operands`` and return (output fields, multi-axis fields worth recording).

    ``merge`` letters are merged away within every field before coupling (e.g. attention heads when
    pruning head dimensions instead of heads). ``ordinary[i]``: operand ``i`` is computed from the
    model's inputs, so the axes it fixes are fixed silently (default: all operands). ``rigid[i]``:
    operand ``i`` is a buffer that had better stay whole: where it spans only some letters of
    another operand's multi-axis field (rotary sin/cos over the head dim, broadcast over heads), it
    is kept whole and that field is merged along its letters instead (whole heads stay removable).
    """
    sizes = _letter_sizes(operands)
    ordinary = [True] * len(operands) if ordinary is None else list(ordinary)
    if not merge and all(len(f.axes) == 1 for info, _ in operands for f in info.fields):
        return _single_axis(ids, operands, out_letters, sizes, where, ordinary), []
    kept_whole = _kept_whole(ids, operands, sizes, rigid)
    # fields in letter space: (operand index, letters tuple, ids array)
    lettered: list[tuple[int, tuple[Hashable, ...], np.ndarray]] = []
    for i, (info, letters) in enumerate(operands):
        for f in info.fields if i not in kept_whole else ():
            keep = [k for k, ax in enumerate(f.axes) if letters[ax] is not None and info.shape[ax] == sizes.get(letters[ax], -1)]
            if len(keep) != len(f.axes):
                drop = tuple(k for k in range(len(f.axes)) if k not in keep)
                arr = f.ids
                for ax in sorted(drop, reverse=True):
                    arr = np.take(arr, 0, axis=ax)
                if not keep:
                    continue
                f = Field(tuple(f.axes[k] for k in keep), arr)
            fl = tuple(letters[ax] for ax in f.axes)
            arr = f.ids
            mk = tuple(k for k, letter in enumerate(fl) if letter in merge)
            if mk:
                ids.union_along(arr, mk)
                for ax in sorted(mk, reverse=True):
                    arr = np.take(arr, 0, axis=ax)
                fl = tuple(letter for letter in fl if letter not in merge)
                if not fl:
                    continue
            lettered.append((i, fl, arr))
    # cluster fields that share letters
    parent = list(range(len(lettered)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    owner: dict[Hashable, int] = {}
    for k, (_, fl, _) in enumerate(lettered):
        for letter in fl:
            if letter in owner:
                parent[find(k)] = find(owner[letter])
            else:
                owner[letter] = k
    clusters: dict[int, list[int]] = {}
    for k in range(len(lettered)):
        clusters.setdefault(find(k), []).append(k)

    out_fields: list[Field] = []
    recorded: list[Field] = []
    out_pos = {letter: ax for ax, letter in enumerate(out_letters) if letter is not None}
    for members in clusters.values():
        cl: list[Hashable] = []
        for k in members:
            for letter in lettered[k][1]:
                if letter not in cl:
                    cl.append(letter)
        cl_t = tuple(cl)
        shape = tuple(sizes[letter] for letter in cl_t)
        arrays: list[np.ndarray] = []
        constant = False
        along: set[int] = set()  # cluster axes to merge along (spanned by an operand kept whole)
        by_operand: dict[int, list[int]] = {}
        for k in members:
            by_operand.setdefault(lettered[k][0], []).append(k)
        for i, (info, letters) in enumerate(operands):
            present = tuple(letter for ax, letter in enumerate(letters) if letter in cl_t and info.shape[ax] != 1)
            if not present:
                continue
            ks = by_operand.get(i, [])
            if len(ks) == 1:
                _, fl, arr = lettered[ks[0]]
                arrays.append(np.broadcast_to(broadcast_to_axes(arr, fl, cl_t), shape))
            else:
                if len(ks) > 1:
                    for k in ks:
                        ids.block(lettered[k][2], "channels laid out over several axes meet a single layout", where)
                if i in kept_whole:
                    along.update(k for k, letter in enumerate(cl_t) if letter in present)
                elif ks or ordinary[i]:
                    arrays.append(np.broadcast_to(np.full([1] * len(cl_t), BLOCK, np.int64), shape))
                else:
                    constant = True
        rep = max(arrays, key=lambda a: len(a.strides) - sum(s == 0 for s in a.strides)) if arrays else None
        if rep is None:
            continue
        for arr in arrays:
            if arr is not rep:
                ids.union(rep, arr)
        if constant:
            ids.block(rep, CONSTANT, where)
        if along:
            ids.union_along(np.ascontiguousarray(rep), tuple(sorted(along)))
        out_l = [letter for letter in cl_t if letter in out_pos]
        if not out_l:
            continue
        red = tuple(k for k, letter in enumerate(cl_t) if letter not in out_pos)
        full = np.ascontiguousarray(rep)
        if red:
            ids.union_along(full, red)
            for ax in sorted(red, reverse=True):
                full = np.take(full, 0, axis=ax)
        kept_letters = [letter for letter in cl_t if letter in out_pos]
        axes = tuple(out_pos[letter] for letter in kept_letters)
        field = Field(axes, full).moved(axes)
        out_fields.append(field)
        if len(axes) > 1:
            recorded.append(field)
    return out_fields, recorded

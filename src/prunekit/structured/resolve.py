"""Channel labels from a propagation: connected components, merged until every removal is rectangular."""

from __future__ import annotations

import numpy as np

from prunekit.errors import StructureError
from prunekit.structured.fields import BLOCK, Field, distinct
from prunekit.structured.propagate import Propagation


def _collapsed_stripes(prop: Propagation, labels: np.ndarray) -> set[str]:
    """Striped convolutions whose output (or input) stripes all fell into one removable unit."""
    out = set()
    for name, sides in prop.stripe_convs.items():
        for ids in sides:
            lab = distinct(labels[ids])
            if lab.size == 1 and lab[0] != labels[BLOCK]:
                out.add(name)
    return out


def whole_groups_where_stripes_collapse(prop: Propagation, labels: np.ndarray) -> tuple[Propagation, np.ndarray]:
    """``grouped_conv="auto"``: a grouped conv whose stripes other couplings merge into one unit (a
    GroupNorm over contiguous channels, say) is propagated again in whole-group mode."""
    collapsed = _collapsed_stripes(prop, labels)
    while collapsed:
        prop = prop.again(whole_group_convs=prop.whole_group_convs | collapsed)
        labels = resolve(prop)
        collapsed = _collapsed_stripes(prop, labels)
    return prop, labels


def resolve(prop: Propagation, max_rounds: int = 8) -> np.ndarray:
    """Connected components, then merge multi-axis fields until every removal is rectangular."""
    labels = prop.ids.components()
    for _ in range(max_rounds):
        changed = False
        for f in prop.recorded:
            if _rectify(prop, f, labels):
                changed = True
        if not changed:
            return labels
        labels = prop.ids.components()
    raise StructureError("channel groups did not settle; please report this model")


def _rectify(prop: Propagation, f: Field, labels: np.ndarray) -> bool:
    """Make ``f`` removable along one axis only (merging along the others); True if anything changed."""
    lab = labels[f.ids]
    if lab.ndim < 2 or lab.size == 0:
        return False
    for ax in range(lab.ndim):
        moved = np.moveaxis(lab, ax, 0).reshape(lab.shape[ax], -1)
        if (moved == moved[:, :1]).all():
            return False
    best = max(range(lab.ndim), key=lambda ax: (lab.shape[ax], ax))
    prop.ids.union_along(f.ids, tuple(ax for ax in range(lab.ndim) if ax != best))
    return True

"""Deprecated location of the TF-MOT (Keras) style API; it moved to :mod:`prunekit.integrations.keras_style`."""

from __future__ import annotations

from prunekit._deprecation import renamed
from prunekit.integrations import keras_style as _moved

__getattr__ = renamed(__name__, {
    name: (f"prunekit.integrations.keras_style.{name}", lambda name=name: getattr(_moved, name))
    for name in ("PRUNING_ATTR", "ConstantSparsity", "PolynomialDecay", "UpdatePruningStep", "prune_low_magnitude", "strip_pruning")
})

"""scikit-learn's bundled 8x8 digits (1797 images): the offline default, no download needed.

There is no official test split. The test split here is fixed: 20% of each class (rounded), chosen
with a seeded permutation (``numpy.random.RandomState(0)``, whose stream numpy keeps stable), so
it is the same on every machine and does not depend on the training seed. The remaining 80% is the
training split. Pixels (0..16) are scaled by 1/16 and normalised with the mean and std of all 1797
images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prunekit.zoo.data.registry import DatasetSpec, RawSplit, register_dataset

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def stratified_test_mask(labels: np.ndarray, fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask selecting ``round(fraction * n_c)`` seeded-random examples of each class ``c``."""
    rng = np.random.RandomState(seed)
    mask = np.zeros(labels.shape[0], dtype=bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_test = int(np.floor(fraction * members.size + 0.5))
        mask[rng.permutation(members)[:n_test]] = True
    return mask


def read_digits(folder: Path | None, splits: Sequence[str]) -> dict[str, RawSplit]:
    """Load ``sklearn.datasets.load_digits`` and split it deterministically."""
    from sklearn.datasets import load_digits  # imported lazily: sklearn's import takes ~0.5 s

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None]  # values are integers 0..16
    labels = bunch.target.astype(np.int64)
    test = stratified_test_mask(labels)
    chosen = {"train": ~test, "test": test}
    return {split: RawSplit(images[chosen[split]], labels[chosen[split]]) for split in splits}


DIGITS = register_dataset(
    DatasetSpec(
        name="digits",
        folder="digits",
        num_classes=10,
        input_shape=(1, 8, 8),
        class_names=tuple(str(i) for i in range(10)),
        mean=(0.3053,),
        std=(0.3760,),
        scale=1.0 / 16.0,
        description="scikit-learn 8x8 digits, 1797 images (bundled, no download); fixed stratified 80/20 split",
        bundled=read_digits,
    )
)

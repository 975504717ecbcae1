"""resolve_paths: every path setting of a recipe made absolute against one folder."""

from __future__ import annotations

import os
from pathlib import Path

from prunekit.experiment.recipe_paths import resolve_paths


def test_relative_paths_become_absolute_and_the_rest_is_untouched():
    raw = {
        "model": {"name": "../nets/net.py:build", "checkpoint": "w/dense.pt", "kwargs": {"checkpoint_path": "x.pt"}},
        "data": {"name": "imagefolder", "root": "~/data", "path": "./photos", "batch_size": 8},
        "prune": {"method": "unstructured", "sparsity": 0.5},
    }
    out = resolve_paths(raw, Path("/proj/recipes"))
    assert out == {
        "model": {"name": "/proj/nets/net.py:build", "checkpoint": "/proj/recipes/w/dense.pt", "kwargs": {"checkpoint_path": "x.pt"}},
        "data": {"name": "imagefolder", "root": os.path.expanduser("~/data"), "path": "/proj/recipes/photos", "batch_size": 8},
        "prune": {"method": "unstructured", "sparsity": 0.5},
    }
    assert raw["model"]["checkpoint"] == "w/dense.pt"  # a copy: the input is not changed


def test_timm_weight_files_module_factories_and_odd_values():
    timm = resolve_paths({"model": {"name": "timm/resnet18", "kwargs": {"checkpoint_path": "a.pt", "pretrained_cfg_overlay": {"file": "b.bin"}}}}, Path("/r"))
    assert timm["model"]["kwargs"] == {"checkpoint_path": "/r/a.pt", "pretrained_cfg_overlay": {"file": "/r/b.bin"}}
    assert resolve_paths({"model": {"name": "pkg.models:build"}, "data": {"name": "mypkg.data:splits"}}, Path("/r")) == {
        "model": {"name": "pkg.models:build"}, "data": {"name": "mypkg.data:splits"}}
    assert resolve_paths({"data": {"name": "data.py:splits"}}, Path("/r")) == {"data": {"name": "/r/data.py:splits"}}
    odd = {"model": {"checkpoint": 3}, "data": ["root"], "name": "x"}
    assert resolve_paths(odd, Path("/r")) == odd  # left for validation to report
    assert resolve_paths({"model": {"checkpoint": "/abs/w.pt"}}, Path("/r")) == {"model": {"checkpoint": "/abs/w.pt"}}

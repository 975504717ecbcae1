"""Benchmark caches keyed on the code version (benchmarks/code_version.py, benchmarks/common.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import code_version  # noqa: E402
from code_version import changed_files, code_record, git_proves_unchanged  # noqa: E402


def _tree(root: Path) -> Path:
    src = root / "src" / "prunekit"
    (src / "training").mkdir(parents=True)
    (src / "training" / "loop.py").write_text("x = 1\n")
    (src / "zoo").mkdir()
    (src / "zoo" / "models.py").write_text("y = 2\n")
    return src


def test_fingerprint_follows_file_contents_and_names_the_changed_file(tmp_path):
    src = _tree(tmp_path)
    before = code_record(("training", "zoo"), src)
    assert list(before["files"]) == ["training/loop.py", "zoo/models.py"]
    assert code_record(("zoo", "training"), src) == before  # order of the parts does not matter
    (src / "training" / "loop.py").write_text("x = 2\n")
    after = code_record(("training", "zoo"), src)
    assert after["fingerprint"] != before["fingerprint"]
    assert changed_files(before, after) == ["training/loop.py"]
    (src / "zoo" / "new.py").write_text("")
    assert changed_files(before, code_record(("training", "zoo"), src)) == ["training/loop.py", "zoo/new.py"]


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Python source at"):
        code_record(("nothing",), _tree(tmp_path))


def _git(repo: Path, *args: str, date: str = "@1000000000") -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)


def test_git_adopts_a_legacy_entry_only_when_the_code_is_provably_the_same(tmp_path):
    src = _tree(tmp_path)
    _git(tmp_path, "init", "-q")
    assert git_proves_unchanged(("training",), time.time(), tmp_path, src)[1].startswith("git could not tell")  # no commit yet
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "c1", date="@1000000000")
    ok, commit = git_proves_unchanged(("training", "zoo"), 1000000100, tmp_path, src)
    assert ok and len(commit) == 7
    assert git_proves_unchanged(("training",), 999999999, tmp_path, src) == (False, "no commit is older than the entry")
    (src / "zoo" / "models.py").write_text("y = 3\n")  # uncommitted edit of a dependency
    ok, why = git_proves_unchanged(("training", "zoo"), 1000000100, tmp_path, src)
    assert not ok and "differs from commit" in why
    assert git_proves_unchanged(("training",), 1000000100, tmp_path, src)[0]  # training alone is unchanged
    (src / "training" / "augment.py").write_text("")
    ok, why = git_proves_unchanged(("training",), 1000000100, tmp_path, src)
    assert not ok and "untracked source files (src/prunekit/training/augment.py)" in why


def test_code_status_verdicts(monkeypatch, caplog):
    import common

    current = {"fingerprint": "b", "files": {"training/loop.py": "2"}}
    old = {"fingerprint": "a", "files": {"training/loop.py": "1"}}
    kw = {"started": 0.0, "parts": ("training",), "what": "dense checkpoint k"}
    assert common.code_status(dict(current), current, reuse_stale=False, **kw) == "current"
    with caplog.at_level(logging.WARNING, logger="benchmarks"):
        assert common.code_status(old, current, reuse_stale=False, **kw) == "stale"
    assert "dense checkpoint k is computed by different code (changed: training/loop.py); computing it again" in caplog.text
    assert common.code_status(old, current, reuse_stale=True, **kw) == "stale-reused"
    monkeypatch.setattr(common, "git_proves_unchanged", lambda parts, started: (True, "2f1f48c"))
    assert common.code_status(None, current, reuse_stale=False, **kw) == "adopted"
    monkeypatch.setattr(common, "git_proves_unchanged", lambda parts, started: (False, "the code differs from commit 2f1f48c"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="benchmarks"):
        assert common.code_status(None, current, reuse_stale=False, **kw) == "stale"
    assert "has no code fingerprint and cannot be proved current: the code differs from commit 2f1f48c" in caplog.text


def test_adopting_a_legacy_entry_records_its_code_and_leaves_the_entry_alone(tmp_path, monkeypatch):
    import common

    entry = tmp_path / "dense-resnet20-cifar10-abc.safetensors"
    entry.write_bytes(b"weights")
    sidecar = tmp_path / "dense-resnet20-cifar10-abc.code.json"
    code = {"fingerprint": "f", "files": {}}
    monkeypatch.setattr(common, "git_proves_unchanged", lambda parts, started: (False, "the code differs"))
    assert not common._reusable(sidecar, code, 0.0, ("training",), "x", reuse_stale=False)
    assert not sidecar.exists() and entry.read_bytes() == b"weights"
    monkeypatch.setattr(common, "git_proves_unchanged", lambda parts, started: (True, "2f1f48c"))
    assert common._reusable(sidecar, code, 0.0, ("training",), "x", reuse_stale=False)
    assert sidecar.exists() and entry.read_bytes() == b"weights"
    assert common._reusable(sidecar, code, 0.0, ("training",), "x", reuse_stale=False)  # now current by its record


def test_run_steps_depend_on_their_own_and_earlier_code():
    import common

    dense = common.step_parts("dense", "unstructured")
    assert {"training/loop.py", "zoo/models/lenet.py", "zoo/data/loaders.py"} <= set(dense)
    assert "training/lottery.py" not in dense and "compression/codec.py" not in dense  # only what dense training imports
    compress = common.step_parts("compress-paper", "unstructured")
    assert set(dense) <= set(compress) and {"experiment/methods/unstructured.py", "compression/codec.py"} <= set(compress)
    assert "experiment/methods/lottery.py" not in compress


def test_module_closure_follows_re_exports_to_their_source(tmp_path):
    from code_version import module_closure

    src = tmp_path / "prunekit"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("from prunekit.pkg.used import f\nfrom prunekit.pkg.unused import g\n")
    (src / "pkg" / "used.py").write_text("from .helper import h\n\ndef f():\n    import prunekit.late\n")
    (src / "pkg" / "helper.py").write_text("h = 1\n")
    (src / "pkg" / "unused.py").write_text("g = 2\n")
    (src / "late.py").write_text("")
    (src / "main.py").write_text("from prunekit.pkg import f\nimport numpy\n")
    assert module_closure(["main"], src) == ("late.py", "main.py", "pkg/helper.py", "pkg/used.py")


def test_dense_checkpoint_uses_a_committed_checkpoint_and_refuses_a_stale_one(tmp_path, monkeypatch):
    """benchmarks/checkpoints/ entries are used like the work cache: by the current key, or an older fingerprint only
    when its code is current (else a new model is trained, here: fit is called)."""
    import json
    import types

    import common

    from prunekit._io import save_safetensors
    from prunekit.zoo import create_model

    work, committed = tmp_path / "work", tmp_path / "checkpoints"
    work.mkdir(), committed.mkdir()
    monkeypatch.setattr(common, "WORK", work)
    monkeypatch.setattr(common, "CHECKPOINTS", committed)
    monkeypatch.setattr(common, "get_loaders", lambda *a, **k: types.SimpleNamespace(num_classes=10, input_shape=(1, 28, 28), train=None, val=None))

    class Trained(Exception):
        pass

    def fit(*args, **kwargs):
        raise Trained

    monkeypatch.setattr(common, "fit", fit)
    train = common.TrainConfig(epochs=1)
    settings = {"model": "lenet_300_100", "dataset": "mnist", "train": common._train_key(train), "batch_size": 128, "val_fraction": 0.1, "seed": 0}
    code = common.code_record(common.module_closure(common.DENSE_CODE))
    legacy = f"dense-lenet_300_100-mnist-{common.settings_hash(settings)}"
    stale = f"{legacy}-c00000000"
    net = create_model("lenet_300_100", 10, (1, 28, 28))
    save_safetensors(committed / f"{stale}.safetensors", net.state_dict())
    (committed / f"{stale}.json").write_text(json.dumps({"key": stale, "test_accuracy": 0.5, "train_seconds": 1.0}))
    (committed / f"{stale}.code.json").write_text(json.dumps({"fingerprint": "0" * 64, "files": {}}))
    with pytest.raises(Trained):
        common.dense_checkpoint("lenet_300_100", "mnist", train, progress=False, reuse_stale=False)
    loaded, record = common.dense_checkpoint("lenet_300_100", "mnist", train, progress=False, reuse_stale=True)
    assert record["key"] == stale and record["weights"] == str(committed / f"{stale}.safetensors")
    current = f"{legacy}-c{code['fingerprint'][:8]}"
    for suffix in (".safetensors", ".json", ".code.json"):
        (committed / f"{stale}{suffix}").rename(committed / f"{current}{suffix}")
    loaded, record = common.dense_checkpoint("lenet_300_100", "mnist", train, progress=False, reuse_stale=False)
    assert record["key"] == current and record["weights"] == str(committed / f"{current}.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())

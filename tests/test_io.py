"""prunekit._io: damaged files are named errors, links are not followed, every file is 0644."""

import logging
import os
import stat

import pytest
import torch

from prunekit._io import (
    FILE_MODE,
    TEMP_NAME,
    append_jsonl,
    check_links,
    load_safetensors,
    read_json,
    read_jsonl,
    remove_temp_files,
    safetensors_metadata,
    save_safetensors,
    write_json,
)
from prunekit.errors import CheckpointError, DamagedFileError


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b'{"a": 1', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "a JSON list, not dict"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_read_json_names_a_damaged_file(tmp_path, content, problem):
    path = tmp_path / "steps" / "prune.json"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(DamagedFileError, match="step record .*prune.json is damaged") as info:
        read_json(path, "step record", fix="re-run it")
    assert problem in str(info.value) and str(info.value).endswith("; re-run it")


def test_read_json_of_a_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="summary .*nope.json is missing") as info:
        read_json(tmp_path / "nope.json", "summary")
    assert not isinstance(info.value, DamagedFileError)


def test_read_jsonl_skips_damaged_lines_with_one_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"a": 1}\n\xff\xfe garbage\n[1]\n\n{"b": 2}\n{"trunc')
    with caplog.at_level(logging.WARNING, logger="prunekit._io"):
        assert read_jsonl(path) == [{"a": 1}, {"b": 2}]
    assert [r.getMessage() for r in caplog.records] == [f"{path}: skipped 3 damaged line(s) (not a UTF-8 JSON object)"]


def test_append_jsonl_refuses_to_follow_a_link(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("mine\n")
    link = tmp_path / "run" / "metrics.jsonl"
    link.parent.mkdir()
    link.symlink_to(outside)
    with pytest.raises(CheckpointError, match="metrics.jsonl is a symbolic link"):
        append_jsonl(link, {"a": 1})
    assert outside.read_text() == "mine\n"


@pytest.mark.parametrize("content", [b"garbage, not safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":", b""])
def test_damaged_safetensors_are_named_without_advice_to_delete(tmp_path, content):
    good = tmp_path / "good.safetensors"
    save_safetensors(good, {"w": torch.ones(100)})
    path = tmp_path / "model.safetensors"
    path.write_bytes(content or good.read_bytes()[:-7])  # empty content: a truncated file
    for read in (load_safetensors, safetensors_metadata):
        with pytest.raises(DamagedFileError, match=r"model.safetensors is damaged or not a safetensors file") as info:
            read(path)
        assert "delete" not in str(info.value)


def test_every_written_file_is_0644_whatever_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        save_safetensors(tmp_path / "a.safetensors", {"w": torch.ones(2)})
        write_json(tmp_path / "a.json", {})
        append_jsonl(tmp_path / "a.jsonl", {"a": 1})
    finally:
        os.umask(previous)
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == dict.fromkeys(["a.safetensors", "a.json", "a.jsonl"], FILE_MODE)


def test_remove_temp_files_removes_only_prunekits_own(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    orphans = [tmp_path / "checkpoints" / ".dense.safetensors.k2_x9abc.tmp", tmp_path / ".summary.json.0a1b2c3d.tmp"]
    kept = [tmp_path / "notes.tmp", tmp_path / ".x.tmp", tmp_path / "checkpoints" / "dense.safetensors"]
    for path in orphans + kept:
        path.write_text("x")
    assert all(TEMP_NAME.fullmatch(p.name) for p in orphans)
    assert sorted(remove_temp_files(tmp_path)) == sorted(orphans)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in orphans)


def test_check_links_refuses_only_links_leading_outside(tmp_path):
    run, outside = tmp_path / "runs" / "run", tmp_path / "outside"
    (run / "plots").mkdir(parents=True)
    outside.mkdir()
    (run / "inside").symlink_to(run / "plots")
    check_links(run)
    (run / "plots" / "deep").symlink_to(outside)
    with pytest.raises(CheckpointError, match=r"deep is a symbolic link to .*outside, outside the run directory"):
        check_links(run, what="the run directory")


def test_check_links_resolves_the_folder_first(tmp_path):
    real = tmp_path / "real"
    (real / "run" / "steps").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(real)
    check_links(tmp_path / "alias" / "run")  # reached through a linked parent: fine
    (tmp_path / "cache").symlink_to(tmp_path)
    with pytest.raises(CheckpointError, match="cache is a symbolic link"):
        check_links(tmp_path / "cache", within=real)  # the folder itself leads out of ``within``


def test_a_loop_of_links_is_refused(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    run = tmp_path / "run"
    run.mkdir()
    (run / "loop").symlink_to(tmp_path / "a")
    with pytest.raises(CheckpointError, match="loop is a symbolic link"):
        check_links(run)

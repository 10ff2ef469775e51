"""Atomic writes never leave half-written output; manifests describe files exactly."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from vision_common.atomic import (
    OutputNotWritableError,
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    emit_json_report,
)
from vision_common.manifest import build_manifest, verify_manifest


def test_emit_json_report_writes_and_prints_only_when_asked(tmp_path, capsys):
    report = {"gain": 0.25, "by_category": {"color": 1.0}}
    assert emit_json_report(report, None, False) is False
    assert capsys.readouterr().out == ""
    assert emit_json_report(report, tmp_path / "r" / "report.json", True) is True
    assert json.loads(capsys.readouterr().out) == report
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == report


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out" / "a.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_atomic_directory_failure_keeps_previous_output(tmp_path):
    final = tmp_path / "result"
    with atomic_directory(final) as stage:
        (stage / "v").write_text("1")
    with pytest.raises(RuntimeError, match="boom"), atomic_directory(final) as stage:
        (stage / "v").write_text("2")
        raise RuntimeError("boom")
    assert (final / "v").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["result"]  # no temporaries left behind


def test_atomic_directory_success_swaps_whole_tree(tmp_path):
    final = tmp_path / "result"
    with atomic_directory(final) as stage:
        (stage / "old_only").write_text("x")
    with atomic_directory(final) as stage:
        (stage / "new").write_text("y")
    assert sorted(p.name for p in final.iterdir()) == ["new"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permission bits are not enforced")
def test_unwritable_parent_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputNotWritableError, match="locked"):
            atomic_write_json(locked / "x.json", {"a": 1})
    finally:
        locked.chmod(0o700)


def test_parent_that_is_a_file_is_named(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("I am a file")
    with pytest.raises(OutputNotWritableError, match="blocker"):
        atomic_write_text(blocker / "sub" / "x.txt", "data")


def test_manifest_hashes_sizes_and_producers(tmp_path):
    (tmp_path / "models" / "lm").mkdir(parents=True)
    (tmp_path / "models" / "lm" / "w.bin").write_bytes(b"abc")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "e.txt").write_bytes(b"")
    manifest = build_manifest(
        tmp_path,
        producers={"models/lm": "lm", "examples": "world"},
        commands={"lm": "python -m x", "world": "python -m y"},
        metrics={},
        recipe={},
    )
    by_file = {f["file"]: f for f in manifest["files"]}
    assert by_file["models/lm/w.bin"]["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert by_file["models/lm/w.bin"]["bytes"] == 3
    assert by_file["models/lm/w.bin"]["command"] == "python -m x"
    assert by_file["examples/e.txt"]["step"] == "world"
    assert manifest["total_bytes"] == 3
    assert verify_manifest(tmp_path, manifest) == []
    (tmp_path / "models" / "lm" / "w.bin").write_bytes(b"abd")
    (tmp_path / "stray").write_bytes(b"1")
    assert verify_manifest(tmp_path, manifest) == [
        "sha256 mismatch: models/lm/w.bin",
        "not in manifest: stray",
    ]


def test_outputs_get_umask_permissions_not_private_temp_modes(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "f.txt", "x")
        with atomic_directory(tmp_path / "d") as stage:
            (stage / "a").write_text("y")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755

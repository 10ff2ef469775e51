"""The recipe runner is resumable by step: finished steps are skipped on a rerun, an interrupted training step
continues with --resume, and a step that runs again makes every later step run again (its inputs changed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from trainer.recipes.foundation import Step, run_steps


def _step(name: str, log: Path, *, fail: bool = False, resume_dir: Path | None = None) -> Step:
    # Each run appends its name and argv tail to ``log``; ``fail`` exits 3 after logging (an interruption).
    code = (
        "import sys, pathlib; p = pathlib.Path(sys.argv[1]); "
        "p.write_text(p.read_text() + sys.argv[2] + ' ' + ' '.join(sys.argv[3:]) + '\\n' "
        "if p.exists() else sys.argv[2] + ' ' + ' '.join(sys.argv[3:]) + '\\n'); "
        f"sys.exit({3 if fail else 0})"
    )
    return Step(name, [sys.executable, "-c", code, str(log), name], [], resume_dir=resume_dir)


def _runs(log: Path) -> list[str]:
    return log.read_text().split("\n")[:-1] if log.exists() else []


def test_finished_steps_are_skipped_and_an_interrupted_stage_resumes(tmp_path: Path) -> None:
    log, done, world = tmp_path / "log.txt", tmp_path / ".done", tmp_path / "world"
    stage = tmp_path / "stage2"
    (stage / "checkpoints" / "step-00000100").mkdir(parents=True)  # what an interrupted trainer leaves
    steps = [_step("data", log), _step("stage2", log, fail=True, resume_dir=stage), _step("eval", log)]
    with pytest.raises(RuntimeError, match="'stage2' failed with exit code 3"):
        run_steps(steps, tmp_path, world, 0, "tiny", done_dir=done)
    # data ran fresh, so stage2's old checkpoints were stale: removed, not resumed.
    assert _runs(log) == ["data ", "stage2 "] and not stage.exists()
    assert json.loads((done / "data.json").read_text())["argv"] == steps[0].argv
    assert not (done / "stage2.json").exists()

    (stage / "checkpoints" / "step-00000050").mkdir(parents=True)  # the failed run checkpointed
    steps[1] = _step("stage2", log, resume_dir=stage)
    timings = run_steps(steps, tmp_path, world, 0, "tiny", done_dir=done)
    assert _runs(log)[2:] == ["stage2 --resume", "eval "]  # data skipped, stage2 continued
    assert set(timings) == {"data", "stage2", "eval"}

    run_steps(steps, tmp_path, world, 0, "tiny", done_dir=done)
    assert len(_runs(log)) == 4  # all done: nothing ran

    changed = [_step("data", log), steps[1], steps[2]]
    changed[0] = Step("data", [*changed[0].argv, "--seed", "1"], [])
    run_steps(changed, tmp_path, world, 0, "tiny", done_dir=done)
    assert _runs(log)[4:] == ["data --seed 1", "stage2 ", "eval "]  # a changed step reruns everything after


def test_without_a_done_folder_every_step_runs(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    steps = [_step("a", log), _step("b", log)]
    run_steps(steps, tmp_path, tmp_path / "world", 0, "tiny")
    run_steps(steps, tmp_path, tmp_path / "world", 0, "tiny")
    assert _runs(log) == ["a ", "b ", "a ", "b "]

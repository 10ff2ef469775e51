"""Multi-process jobs: ``processes`` > 1 starts the trainer under ``accelerate launch`` (DDP, one process per GPU;
a gloo CPU group here), as an argument list, and the launcher runs such a job to its result."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.llava_fixtures import stage2_records, write_json
from trainer.launcher.job_types import JOB_TYPES, JobParamsError
from trainer.launcher.local_executor import wait_until
from trainer.launcher.manager import JobManager
from trainer.runtime.checkpoint import latest_checkpoint, load_checkpoint, state_digest

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes"]


def test_processes_pick_accelerate_launch_and_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text("[]")
    (tmp_path / "images").mkdir()
    stage2 = JOB_TYPES["llava-stage2"]
    raw = {"preset": "tiny", "data": "data.json", "images": "images"}
    one = stage2.argv(stage2.params_from(raw, tmp_path), tmp_path / "run")
    assert one[:3] == [sys.executable, "-m", "trainer.llava.train"]
    four = stage2.argv(stage2.params_from({**raw, "processes": 4}, tmp_path), tmp_path / "run", resume=True)
    module = four.index("trainer.llava.train")
    assert four[: len(LAUNCH) + 1] == [*LAUNCH, "4"] and four[module - 1] == "-m"
    assert four[module + 1 :] == one[3:] + ["--resume"]  # the trainer's own flags are unchanged
    with pytest.raises(JobParamsError, match="processes must be between 1 and 64"):
        stage2.params_from({**raw, "processes": 0}, tmp_path)
    (tmp_path / "subset.parquet").write_bytes(b"")
    (tmp_path / "clip").mkdir()
    react = JOB_TYPES["react-customize"]
    raw = {"preset": "tiny", "subset": "subset.parquet", "base": "clip", "processes": 2}
    params = react.params_from(raw, tmp_path)
    argv = react.argv(params, tmp_path / "run")
    assert argv[: len(LAUNCH) + 1] == [*LAUNCH, "2"] and argv[argv.index("trainer.react") + 1] == "train"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_two_process_llava_job_runs_to_identical_replicas(
    tmp_path: Path, tiny_llava_dir: Path, tiny_llava_parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mgr = JobManager(tmp_path / "ws", grace_s=2.0)
    inputs = mgr.workspace / "inputs"  # inputs may be absolute paths inside the workspace
    shutil.copytree(tiny_llava_dir, inputs / "init")
    shutil.copytree(tiny_llava_parts.images, inputs / "images")
    write_json(inputs / "stage2.json", stage2_records())
    job = mgr.start(
        "llava-stage2",
        {"preset": "tiny", "data": str(inputs / "stage2.json"), "images": str(inputs / "images"),
         "init": str(inputs / "init"), "max_steps": 2, "processes": 2},
    )  # fmt: skip
    assert wait_until(
        lambda: mgr.tick() and mgr.registry.get(job.id).state in ("succeeded", "failed"), 220, 0.2
    ), mgr.log_tail(mgr.registry.get(job.id))
    done = mgr.registry.get(job.id)
    assert done.state == "succeeded", mgr.log_tail(done)
    run = mgr.run_dir(done)
    assert json.loads((run / "run_config.json").read_text())["world_size"] == 2
    checkpoint = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    digests = checkpoint.state["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] == state_digest(checkpoint.trainable)
    assert (run / "final" / "model.safetensors").is_file()


def test_a_recipe_job_keeps_its_intermediates_in_its_own_run_folder(tmp_path: Path) -> None:
    recipe = JOB_TYPES["recipe-llava"]
    argv = recipe.argv(recipe.params_from({"preset": "tiny"}, tmp_path), tmp_path / "run")
    assert argv[argv.index("--work") + 1] == str(tmp_path / "run" / "work")
    assert argv[argv.index("--out") + 1] == str(tmp_path / "run" / "model")

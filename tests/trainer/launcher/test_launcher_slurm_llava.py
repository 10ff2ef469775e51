"""A real trainer job through the real single-node Slurm: a tiny LLaVA stage-1 run submitted with the ``slurm``
executor writes its metrics while Slurm runs it, Cancel (``scancel --signal=TERM``) leaves a loadable checkpoint
at the last logged step and the job ``cancelled``, and Resume continues from that step under a new Slurm job.
Skipped, with the reason, where no Slurm is running."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from tests.support.llava_fixtures import stage1_records, write_json, write_parts
from tests.trainer.launcher.test_launcher_slurm import MISSING, run_until, steps
from trainer.launcher.job_types import JOB_TYPES
from trainer.launcher.local_executor import wait_until
from trainer.launcher.manager import JobManager
from trainer.launcher.slurm_config import SlurmSettings
from trainer.runtime.checkpoint import latest_checkpoint, load_checkpoint
from vision_common.paths import PROJECT_ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        MISSING is not None,
        reason=f"no Slurm running here ({MISSING}); as root: bash scripts/slurm_single_node.sh",
    ),
]


@pytest.fixture()
def project_data():
    """Job inputs must lie inside the project (the launcher refuses other paths): a throwaway folder in .cache."""
    relative = f".cache/test-launcher-slurm/{uuid.uuid4().hex[:8]}"
    root = PROJECT_ROOT / relative
    parts = write_parts(root)
    write_json(root / "stage1.json", stage1_records())
    yield relative, parts
    shutil.rmtree(root, ignore_errors=True)


def test_a_tiny_llava_stage1_job_on_slurm_cancels_with_a_checkpoint_and_resumes(
    tmp_path, project_data, monkeypatch
):
    relative, _ = project_data
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # sbatch passes the environment on; the CPU is shared
    mgr = JobManager(
        tmp_path / "ws",
        job_types=JOB_TYPES,
        grace_s=60.0,
        slurm=SlurmSettings(gpus_per_node=0, cpus_per_task=1),
    )
    params = {
        "preset": "tiny", "data": f"{relative}/stage1.json", "images": f"{relative}/images",
        "vision_tower": f"{relative}/clip-vision", "language_model": f"{relative}/lm",
        "tokenizer": f"{relative}/tokenizer", "max_steps": 100000,
    }  # fmt: skip
    job = mgr.start("llava-stage1", params, executor="slurm")
    assert wait_until(lambda: mgr.tick() and len(steps(mgr, job.id)) >= 3, 240, 0.5), mgr.log_tail(job, 40)
    first_cluster_id = mgr.registry.get(job.id).cluster_id
    mgr.cancel(job.id)
    run_until(mgr, job.id, ("cancelled",), timeout=120)
    cancelled = mgr.registry.get(job.id)
    assert cancelled.exit_code == 143, mgr.log_tail(cancelled, 40)
    checkpoint = load_checkpoint(latest_checkpoint(mgr.run_dir(cancelled) / "checkpoints"))
    last_logged = steps(mgr, job.id)[-1]
    assert checkpoint.step == last_logged >= 3  # the update in flight finished and was checkpointed

    mgr.resume(job.id)
    assert wait_until(lambda: mgr.tick() and len(steps(mgr, job.id)) >= last_logged + 2, 240, 0.5)
    resumed = mgr.registry.get(job.id)
    assert resumed.cluster_id != first_cluster_id
    assert steps(mgr, job.id)[: last_logged + 2] == list(
        range(1, last_logged + 3)
    )  # continued, not restarted
    assert json.loads((mgr.run_dir(resumed) / "run_config.json").read_text())
    mgr.cancel(job.id)
    run_until(mgr, job.id, ("cancelled",), timeout=120)

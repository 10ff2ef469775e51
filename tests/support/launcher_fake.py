"""The launcher tests' stand-in job type: ``launcher_fake_job.py`` writes metrics.jsonl in a fraction of a
second per step, checkpoints on SIGTERM like the trainer's CLIs, and with ``hold`` keeps stepping until a
``release`` file appears in its run folder (so a test decides when it ends, however slow the machine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.launcher.job_types import JobType

FAKE_JOB = str(Path(__file__).resolve().with_name("launcher_fake_job.py"))
RELEASE_FILE = "release"


@dataclass(frozen=True)
class FakeParams:
    steps: int = 3
    sleep: float = 0.05
    fail: bool = False
    hold: bool = False


FAKE = JobType(
    "fake", "fake job", FakeParams, {"tiny": {"steps": 2}},
    lambda p, run: [FAKE_JOB, "--out", str(run), "--steps", str(p.steps), "--sleep", str(p.sleep),
                    *(["--fail"] if p.fail else []), *(["--hold"] if p.hold else [])],
    "checkpoint.json", resumable=True,
)  # fmt: skip

"""Benchmark: a LLaVA training run started from the launcher tab (scheduler ticking, the page refreshing)
against the same run started from the command line.

    python -m bench.launcher_overhead [--steps 24] [--warmup 4] [--rounds 2] [--refresh-s 0.5]

Arms, alternating per round (C L, L C, ...), each a separate process running
``python -m trainer.llava.train --config tiny --stage 2`` on the same data (a tiny SynthWorld's instruction
data, built once) from the embedded model:

* ``cli``: the command as a user would type it (a subprocess of this script).
* ``launcher``: the same job type through ``JobManager`` (registry, ``job_process`` wrapper, process group),
  with this process running the app's scheduler thread (``JobScheduler``, 1 s) and a thread that calls the
  tab's ``refresh`` every ``--refresh-s`` like an open page's ``gr.Timer`` (jobs table, curves, log tail).

Throughput is the trainer's own ``samples_per_s`` in metrics.jsonl, averaged over the updates after
``--warmup``. The ratio is launcher over cli; the claim in docs/launcher.md is ratio >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from trainer.data_engine.cli import main as data_engine_main
from trainer.launcher.manager import JobManager
from trainer.launcher.settings import LauncherSettings
from trainer.launcher.tab import JobScheduler, LauncherActions
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world
from vision_common.paths import PROJECT_ROOT

EMBEDDED = "assets/models/synthworld-llava-next"


def build_inputs(root: Path) -> tuple[Path, Path]:
    world = root / "world"
    generate_world(world, WorldConfig.preset("tiny"), seed=0)
    ann = world / "scenes" / "annotations"
    data = root / "instructions.json"
    args = [
        "build",
        "--captions",
        str(ann / "captions_train.json"),
        "--instances",
        str(ann / "instances_train.json"),
    ]
    args += ["--images", str(world / "scenes" / "images" / "train"), "--out", str(data), "--limit", "40"]
    if data_engine_main(args) != 0:
        raise SystemExit("the data engine failed")
    return data, world / "scenes" / "images" / "train"


def rate(metrics_path: Path, warmup: int) -> float:
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    rates = [r["samples_per_s"] for r in records if r["step"] > warmup]
    if not rates:
        raise SystemExit(f"{metrics_path}: no updates after the warmup")
    return statistics.fmean(rates)


def run_cli(data: Path, images: Path, out: Path, steps: int) -> None:
    argv = [
        sys.executable,
        "-m",
        "trainer.llava.train",
        "--config",
        "tiny",
        "--stage",
        "2",
        "--data",
        str(data),
    ]
    argv += [
        "--images",
        str(images),
        "--init",
        EMBEDDED,
        "--max-steps",
        str(steps),
        "--checkpoint-every",
        "0",
    ]
    subprocess.run(
        [*argv, "--out", str(out), "--no-progress"], cwd=PROJECT_ROOT, check=True, capture_output=True
    )


def run_launcher(data: Path, images: Path, workspace: Path, steps: int, refresh_s: float) -> Path:
    manager = JobManager(workspace)
    actions = LauncherActions(manager, LauncherSettings(workspace=workspace))
    scheduler = JobScheduler(manager)
    stop = threading.Event()

    def page() -> None:  # an open tab: its timer refreshes the table, both curves and the log tail
        while not stop.wait(refresh_s):
            actions.refresh(None)

    viewer = threading.Thread(target=page, daemon=True)
    job = manager.start("llava-stage2", {"preset": "tiny", "data": str(data), "images": str(images), "init": EMBEDDED,
                                         "max_steps": steps, "checkpoint_every": 0})  # fmt: skip
    scheduler.start()
    viewer.start()
    try:
        while manager.registry.get(job.id).state in ("queued", "running"):
            time.sleep(0.5)
    finally:
        stop.set()
        scheduler.stop()
    final = manager.registry.get(job.id)
    if final.state != "succeeded":
        raise SystemExit(f"launcher job {final.state}: {final.error}")
    return manager.run_dir(final) / "metrics.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--refresh-s", type=float, default=0.5, help="page refresh period (the tab uses 2 s)")
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {"cli": [], "launcher": []}
    with tempfile.TemporaryDirectory(
        dir=PROJECT_ROOT / ".cache" if (PROJECT_ROOT / ".cache").is_dir() else None
    ) as tmp:
        root = Path(tmp)
        data, images = build_inputs(root)
        for round_number in range(args.rounds):
            order = ("cli", "launcher") if round_number % 2 == 0 else ("launcher", "cli")
            for arm in order:
                if arm == "cli":
                    out = root / f"cli-{round_number}"
                    run_cli(data, images, out, args.steps)
                    value = rate(out / "metrics.jsonl", args.warmup)
                else:
                    metrics = run_launcher(
                        data, images, root / f"ws-{round_number}", args.steps, args.refresh_s
                    )
                    value = rate(metrics, args.warmup)
                results[arm].append(value)
                print(f"round {round_number} {arm:8s} {value:7.2f} samples/s", flush=True)
    cli, launcher = statistics.fmean(results["cli"]), statistics.fmean(results["launcher"])
    print(json.dumps({"cli_samples_per_s": cli, "launcher_samples_per_s": launcher, "ratio": launcher / cli,
                      "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
                      "refresh_s": args.refresh_s}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

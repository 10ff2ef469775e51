"""The trainer throughput bench, on a tiny in-process LLaVA-NeXT: output structure and arithmetic, not timing.

The bench's numbers must be what it measured: each rate is samples over seconds, the ratio is the trainer's
rate over the bare loop's, every arm times exactly ``updates`` micro-batches per round, and both model arms
start from the same weights on the same first batch (their first losses are equal).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest

from tests.support.llava_fixtures import stage2_records, write_images, write_json
from tests.support.paths import REPO_ROOT


def _bench_module():
    # bench/ is a folder of scripts run with ``python -m`` from the repository root, not an installed package.
    spec = importlib.util.spec_from_file_location(
        "llava_trainer_throughput", REPO_ROOT / "bench" / "llava_trainer_throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module's namespace through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_result(tmp_path_factory, tiny_llava_dir):
    root = tmp_path_factory.mktemp("trainer-bench")
    model = tiny_llava_dir
    write_images(root / "images")
    data = write_json(root / "data.json", stage2_records(copies=2))  # 12 records -> 6 micro-batches of 2
    out = root / "bench.json"
    command = [sys.executable, "-m", "bench.llava_trainer_throughput", "--model", str(model)]
    command += ["--data", str(data), "--images", str(root / "images"), "--preset", "tiny"]
    command += ["--updates", "2", "--warmup", "1", "--rounds", "2", "--json-out", str(out)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


@pytest.mark.slow
def test_rounds_alternate_and_time_the_same_batches(bench_result):
    result, _ = bench_result
    order = [(row["round"], row["arm"]) for row in result["rounds"]]
    assert order == [
        (0, "dataloader"),
        (0, "trainer"),
        (0, "bare"),
        (1, "dataloader"),
        (1, "bare"),
        (1, "trainer"),
    ]
    # Tiny preset: micro-batch 2, 2 timed updates per round -> 4 samples per arm per round, for every arm.
    assert {row["samples"] for row in result["rounds"]} == {4}
    tokens = {row["arm"]: row["tokens"] for row in result["rounds"] if row["round"] == 0}
    assert tokens["trainer"] == tokens["bare"] == tokens["dataloader"] > 0
    assert all(row["seconds"] > 0 for row in result["rounds"])
    assert result["environment"]["micro_batch_size"] == 2
    assert result["environment"]["torch_threads"] == 1
    assert result["environment"]["data"]["samples"] == 12


@pytest.mark.slow
def test_same_weights_same_first_batch(bench_result):
    result, _ = bench_result
    first = [row["first_loss"] for row in result["rounds"] if row["arm"] != "dataloader"]
    assert len(first) == 4 and all(math.isfinite(loss) for loss in first)
    assert result["first_loss_max_abs_diff"] == 0.0
    assert [row["first_loss"] for row in result["rounds"] if row["arm"] == "dataloader"] == [None, None]


@pytest.mark.slow
def test_rates_and_ratio_are_the_measured_quotients(bench_result):
    result, stdout = bench_result
    arms = result["arms"]
    for arm, row in arms.items():
        rows = [r for r in result["rounds"] if r["arm"] == arm]
        assert row["samples"] == sum(r["samples"] for r in rows) == 8
        assert row["seconds"] == pytest.approx(sum(r["seconds"] for r in rows), rel=1e-12)
        assert row["batches"] == 4
        assert row["samples_per_s"] == pytest.approx(row["samples"] / row["seconds"], rel=1e-12)
        assert row["batches_per_s"] == pytest.approx(row["batches"] / row["seconds"], rel=1e-12)
        assert row["ms_per_batch"] == pytest.approx(1e3 * row["seconds"] / row["batches"], rel=1e-12)
        for r in rows:
            assert r["samples_per_s"] == pytest.approx(r["samples"] / r["seconds"], rel=1e-12)
    ratio = arms["trainer"]["samples_per_s"] / arms["bare"]["samples_per_s"]
    assert result["ratio_trainer_over_bare"] == pytest.approx(ratio, rel=1e-12)
    headroom = arms["dataloader"]["batches_per_s"] / arms["bare"]["batches_per_s"]
    assert result["dataloader_headroom_over_bare"] == pytest.approx(headroom, rel=1e-12)
    overhead = arms["trainer"]["ms_per_batch"] - arms["bare"]["ms_per_batch"]
    assert result["trainer_overhead_ms_per_update"] == pytest.approx(overhead, rel=1e-9, abs=1e-9)
    assert f"ratio trainer/bare samples/s: {ratio:.3f}" in stdout
    rate = {(r["round"], r["arm"]): r["samples_per_s"] for r in result["rounds"]}
    per_round = [rate[(n, "trainer")] / rate[(n, "bare")] for n in (0, 1)]
    assert result["round_ratios"] == pytest.approx(per_round, rel=1e-12)
    assert result["median_round_ratio"] == pytest.approx(sum(per_round) / 2, rel=1e-12)


def test_config_rejects_contradictions():
    bench = _bench_module()
    BenchError, ThroughputBenchConfig = bench.BenchError, bench.ThroughputBenchConfig
    assert ThroughputBenchConfig.tiny().batches_per_round == 3
    with pytest.raises(BenchError, match="warmup must be >= 1"):
        ThroughputBenchConfig(warmup=0)
    with pytest.raises(BenchError, match="preset must be one of"):
        ThroughputBenchConfig(preset="huge")
    with pytest.raises(BenchError, match="num_workers"):
        ThroughputBenchConfig(num_workers=-1)


@pytest.mark.slow
def test_too_few_batches_is_a_clear_error(tmp_path, tiny_llava_dir):
    model = tiny_llava_dir
    write_images(tmp_path / "images")
    data = write_json(tmp_path / "data.json", stage2_records(copies=1))  # 6 records -> 3 micro-batches
    command = [sys.executable, "-m", "bench.llava_trainer_throughput", "--model", str(model)]
    command += ["--data", str(data), "--images", str(tmp_path / "images"), "--preset", "tiny"]
    command += ["--updates", "5", "--warmup", "1"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "fewer than warmup + updates = 6" in done.stderr

"""The preprocessing benchmark runs end to end on a small image, checks parity itself, and reports ratios
against the fastest transformers processor (that processor's ratio is exactly 1)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.slow  # spawns processes or serves HTTP


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bench.anyres_preprocess", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_bench_small_image_json(tmp_path):
    out = tmp_path / "bench.json"
    done = _bench("--size", "96x64", "--runs", "2", "--warmup", "0", "--json-out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    rows = {row["candidate"]: row for row in result["rows"]}
    assert {"ours (torch backend)", "ours (pil backend)", "transformers LlavaNextImageProcessor"} <= set(rows)
    transformers_ratios = [
        row["ratio_vs_fastest_transformers"] for name, row in rows.items() if "transformers" in name
    ]
    assert min(transformers_ratios) == 1.0
    assert all(row["min_ms"] <= row["median_ms"] for row in rows.values())
    assert result["max_abs_diff"] and all(diff == 0.0 for diff in result["max_abs_diff"].values())
    assert result["environment"]["image"] == "96x64 (synthetic)"
    assert "ratio vs fastest transformers" in done.stdout


def test_bench_bad_size():
    done = _bench("--size", "96")
    assert done.returncode == 2
    assert "--size must be WxH with positive integers, got '96'" in done.stderr

"""The batched-eval benchmark runs end to end on a tiny model and world, checks parity itself (batched answers
equal the chat backend's one-at-a-time answers on real eval prompts) and reports ratios against that
baseline (whose own ratio is exactly 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.eval_batch import main
from tests.support.tiny_llava import build_tiny_llava
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world


@pytest.mark.slow
def test_bench_checks_parity_and_reports_ratios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = tmp_path / "world"
    generate_world(world, WorldConfig.preset("tiny"), seed=0)
    model = build_tiny_llava(tmp_path / "model")
    out = tmp_path / "bench.json"
    argv = ["--model", str(model), "--world", str(world), "--questions", "2", "--batch-sizes", "2,6"]
    assert main([*argv, "--max-new-tokens", "4", "--threads", "1", "--json-out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["questions"] == 6  # 2 each from vqa, pope and detail
    baseline, *batched = result["rows"]
    assert baseline["batch_size"] == 1 and baseline["speedup_wall"] == baseline["speedup_cpu"] == 1.0
    assert [row["batch_size"] for row in batched] == [2, 6]
    assert all(row["seconds"] > 0 and row["cpu"] > 0 for row in result["rows"])
    assert "every batched answer equals the baseline's" in capsys.readouterr().out

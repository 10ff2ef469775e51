"""The recipes' CI variant: every step of both recipes runs on tiny presets, so the recipes cannot rot.

Same code path as the committed recipes (the same CLIs in the same order), only the presets differ.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import pytest

from trainer.recipes.foundation import RecipeConfig, plan_steps
from trainer.recipes.llava import LlavaRecipeConfig, plan_llava_steps
from vision_common.manifest import MANIFEST_NAME, verify_manifest
from vision_common.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow


def run_recipe_cli(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.recipe", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_recipe_steps_are_argument_lists_of_project_clis(tmp_path):
    steps = plan_steps(RecipeConfig.full(), tmp_path / "w", tmp_path / "work", tmp_path / "stage")
    assert [s.name for s in steps] == [
        "world",
        "instruction-data",
        "tokenizer",
        "clip",
        "clip-zeroshot",
        "clip-convert",
        "lm",
        "lm-reading",
    ]
    for step in steps:
        assert all(isinstance(a, str) for a in step.argv)
        assert step.argv[0] == sys.executable and step.argv[1] == "-m"


def test_reduced_recipes_build_world_foundation_and_llava(tmp_path):
    foundation = tmp_path / "foundation"
    run_recipe_cli("synthworld", "--reduced", "--out", str(foundation))
    manifest = json.loads((foundation / MANIFEST_NAME).read_text())
    assert verify_manifest(foundation, manifest) == []
    files = {f["file"] for f in manifest["files"]}
    for required in (
        "models/synthworld-tokenizer/tokenizer.json",
        "models/synthworld-clip/open_clip_config.json",
        "models/synthworld-clip/open_clip_model.safetensors",
        "models/synthworld-lm/model.safetensors",
        "examples/examples.json",
    ):
        assert required in files
    lm_entry = next(f for f in manifest["files"] if f["file"] == "models/synthworld-lm/model.safetensors")
    assert lm_entry["command"].startswith("python -m trainer.foundation.lm_pretrain")
    tasks = {t["task"]: t for t in manifest["metrics"]["zeroshot"]["tasks"]}
    assert set(tasks) == {"shapes", "colors", "species"}
    assert manifest["metrics"]["lm"]["heldout_perplexity"] < manifest["metrics"]["lm"]["unigram_perplexity"]
    reading = manifest["metrics"]["lm_reading"]
    assert reading["questions"] > 0 and 0.0 <= reading["with_scene"]["accuracy"] <= 1.0
    assert "lm" not in reading  # no staging path in the manifest
    gap = reading["with_scene"]["accuracy"] - reading["without_scene"]["accuracy"]
    assert reading["gain"] == pytest.approx(gap, abs=1e-3)

    # The LLaVA recipe on top of that reduced foundation.
    llava = tmp_path / "llava"
    run_recipe_cli("synthworld-llava", "--reduced", "--foundation", str(foundation), "--out", str(llava))
    llava_manifest = json.loads((llava / MANIFEST_NAME).read_text())
    assert verify_manifest(llava, llava_manifest) == []
    assert (llava / "config.json").exists() and (llava / "README.md").exists()
    # It was built from the foundation asked for, not from a default location.
    assert str(foundation.resolve() / "models" / "synthworld-lm") in llava_manifest["commands"]["stage1"]
    report = llava_manifest["metrics"]["eval"]
    for key in ("short_answer_accuracy", "yes_no_f1", "multiple_choice_accuracy", "small_detail_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    # The drill chain ran: base tile until the last stage, which moved to the AnyRes grids.
    commands = llava_manifest["commands"]
    assert "--anyres-grids 1x1" in commands["stage1"] and "--academic-repeats 2" in commands["drill-data"]
    assert "--anyres-grids 1x2,2x1,2x2,3x1,1x3" in commands["anyres"]
    assert json.loads((llava / "config.json").read_text())["image_grid_pinpoints"] != [[64, 64]]
    examples = json.loads((llava / "examples" / "examples.json").read_text())
    assert examples and all((llava / "examples" / e["image"]).is_file() for e in examples)
    assert examples[-1]["category"] == "yes_no" and examples[-1]["answer"] in ("yes", "no")


def test_llava_recipe_plans_the_drill_on_the_base_tile_then_anyres(tmp_path):
    full = plan_llava_steps(LlavaRecipeConfig.full(), tmp_path / "w", tmp_path / "work")
    names = [s.name for s in full]
    assert names == [
        "world", "instruction-data", "clip-convert", "stage1", "stage2", "drill-data", "drill", "anyres", "eval"
    ]  # fmt: skip
    by_name = {s.name: s for s in full}
    assert by_name["drill"].argv[by_name["drill"].argv.index("--micro-batch-size") + 1] == "32"
    assert by_name["drill"].resume_dir == tmp_path / "work" / "drill"  # an interrupted drill resumes
    assert str(tmp_path / "work" / "anyres" / "final") in by_name["eval"].argv
    ablation = LlavaRecipeConfig(**{**asdict(LlavaRecipeConfig.full()), "anyres_grids": "1x1"})
    ablation_steps = plan_llava_steps(ablation, tmp_path / "w", tmp_path / "work")
    base_tile = {s.name: s for s in ablation_steps}["base-tile"]
    assert base_tile.argv[base_tile.argv.index("--anyres-grids") + 1] == "1x1"  # the ablation stays on 1x1
    # Both share every step before the last stage, argv for argv: one --work folder serves both builds.
    assert [s.argv for s in ablation_steps[:7]] == [s.argv for s in full[:7]]
    no_drill = LlavaRecipeConfig(drill_steps=0)
    assert [s.name for s in plan_llava_steps(no_drill, tmp_path / "w", tmp_path / "work")] == [
        "world", "instruction-data", "clip-convert", "stage1", "stage2", "eval"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="drill_steps must be >= 0"):
        LlavaRecipeConfig(drill_steps=-1)

"""The image-use diagnostic: answer loss with the right, blank and another record's images."""

from __future__ import annotations

from pathlib import Path

import PIL.Image
import pytest
import torch

from tests.support.llava_fixtures import stage2_records, write_images, write_json
from trainer.llava.assemble import anyres_of, load_llava, pixel_config_of
from trainer.llava.data import DataError, LlavaDataset, prepare_samples, read_records, validate_all
from trainer.llava.eval.answer_loss import swapped_items
from trainer.llava.eval.data import evenly_spaced
from trainer.probes.image_use import main, measure_image_use
from vision_common.anyres.pixels import preprocess


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_llava_dir: Path) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("image_use")
    write_images(root / "images")
    data = write_json(root / "data.json", stage2_records(copies=1))
    return tiny_llava_dir, data, root / "images"


def test_evenly_spaced() -> None:
    assert evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7]
    assert evenly_spaced([1, 2], 5) == [1, 2]


def test_conditions_swap_only_the_pixels(setup: tuple[Path, Path, Path]) -> None:
    model_dir, data, images = setup
    parts = load_llava(model_dir)
    tokenizer = parts.processor.tokenizer
    records = [r for r in validate_all(read_records(data), "x") if r.get("image")]
    samples, _ = prepare_samples(
        records, images, tokenizer, template="vicuna_v1", anyres=anyres_of(parts.model),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), max_length=2048,
    )  # fmt: skip
    dataset = LlavaDataset(samples, anyres_of(parts.model), pixel_config_of(parts.processor))
    right, blank, other = (swapped_items(dataset, c) for c in ("right", "blank", "other"))
    for a, b, c in zip(right, blank, other):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["input_ids"], c["input_ids"])
        assert [p.shape for p in a["pixel_values"]] == [p.shape for p in c["pixel_values"]]
        assert all(not p.any() for p in b["pixel_values"])
    # Record 0 gets record 1's image, resized to record 0's size.
    donor = PIL.Image.open(dataset.samples[1].image_paths[0]).convert("RGB")
    expected = preprocess(donor.resize(dataset.samples[0].image_sizes_wh[0], PIL.Image.BICUBIC), dataset.anyres,
                          dataset.pixels).pixel_values  # fmt: skip
    assert torch.equal(other[0]["pixel_values"][0], expected)
    with pytest.raises(ValueError, match="condition must be one of"):
        swapped_items(dataset, "noise")


@pytest.mark.slow  # two probe passes, > 15 s on a loaded CPU
def test_a_model_blind_to_pixels_has_no_gap(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model_dir, data, images = setup
    seeing = measure_image_use(model_dir, data, images, records=6, batch_size=4)
    assert seeing.records == 5 and seeing.supervised_tokens > 0  # the text-only records are skipped
    assert abs(seeing.gap_blank) > 1e-4 and abs(seeing.gap_other) > 1e-4
    parts = load_llava(model_dir)
    projector = parts.model.model.multi_modal_projector
    with torch.no_grad():  # every image token becomes the same vector, whatever the pixels
        projector.linear_2.weight.zero_()
    parts.model.save_pretrained(tmp_path / "blind")
    parts.processor.save_pretrained(tmp_path / "blind")
    blind = measure_image_use(tmp_path / "blind", data, images, records=6, batch_size=4)
    assert blind.gap_blank == pytest.approx(0.0, abs=1e-6) and blind.gap_other == pytest.approx(0.0, abs=1e-6)
    assert blind.supervised_tokens == seeing.supervised_tokens


def test_cli_reports_json_and_names_bad_selections(setup, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir, data, images = setup
    argv = ["--model", str(model_dir), "--data", str(data), "--images", str(images), "--records", "2"]
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"gap_other"' in out and '"records": 2' in out
    assert main([*argv, "--id-suffix", "_nothing"]) == 2
    assert "no record with an image and an id ending in '_nothing'" in capsys.readouterr().err
    with pytest.raises(DataError):
        measure_image_use(model_dir, data, images, id_suffix="_nothing")
    if not torch.cuda.is_available():
        assert main([*argv, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert main([*argv, "--device", "gpu"]) == 2
    assert "device must be 'auto'" in capsys.readouterr().err

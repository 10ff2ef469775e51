"""``python -m trainer.react synthworld --strategies all``: the four-strategy before/after table in one command,
on the tiny world and preset, built from each strategy's report, resumable per strategy."""

from __future__ import annotations

import json
import logging

import pytest

from tests.support.react_support import save_random_tiny_clip
from trainer.react import synthworld
from trainer.react.__main__ import main
from trainer.react.config import STRATEGIES
from trainer.react.strategy_table import ROW_FIELDS

logging.getLogger().setLevel(logging.ERROR)
TASKS = ("species", "shapes", "colors")


@pytest.fixture(scope="module")
def four_strategies(tiny_world, tmp_path_factory):
    """One run of the command on the tiny world (``--preset tiny``: 3 updates per strategy); (argv, out, rc)."""
    root = tmp_path_factory.mktemp("react-synthworld")
    clip = save_random_tiny_clip(root)
    out = root / "out"
    argv = ["synthworld", "--strategies", "all", "--preset", "tiny", "--world", str(tiny_world),
            "--clip", str(clip), "--out", str(out), "--index-cache", str(root / "index-cache"),
            "--threads", "1", "--json"]  # fmt: skip
    return argv, out, main(argv)


def test_all_strategies_give_one_table_of_four_rows_from_their_reports(four_strategies):
    _, out, rc = four_strategies
    assert rc == 0
    table = json.loads((out / "table.json").read_text())
    assert json.loads((out / "report.json").read_text())["table"] == table
    before = json.loads((out / "before.json").read_text())["scores"]
    assert table["preset"] == "tiny" and table["tasks"] == list(TASKS)
    assert table["before"] == {t: {"top1": before[t]["top1"], "top5": before[t]["top5"]} for t in TASKS}
    assert table["subset_pairs"] == json.loads((out / "retrieval.json").read_text())["subset_pairs"] > 4
    assert [row["strategy"] for row in table["rows"]] == list(STRATEGIES)
    for row in table["rows"]:
        report = json.loads((out / row["strategy"] / "report.json").read_text())
        assert set(row) == {*ROW_FIELDS, "after", "top1_change_points"}
        assert {key: row[key] for key in ROW_FIELDS} == {key: report[key] for key in ROW_FIELDS}
        assert report["steps"] == 3 and report["before"] == before  # the tiny preset's updates, one base
        for task in TASKS:
            assert row["after"][task] == {
                "top1": report["after"][task]["top1"],
                "top5": report["after"][task]["top5"],
            }
            change = 100 * (report["after"][task]["top1"] - before[task]["top1"])
            assert row["top1_change_points"][task] == pytest.approx(change, abs=1e-4)
    trainable = {row["strategy"]: row["trainable_parameters"] for row in table["rows"]}
    # full trains both towers: more than either locked strategy, and far more than the gates + logit_scale.
    assert (
        trainable["full"]
        > max(trainable["locked-text"], trainable["locked-image"])
        > trainable["gated-image"]
    )
    lines = (out / "table.md").read_text().splitlines()
    assert len(lines) == 3 + 4 and lines[2].startswith("| base (before) |")
    gated = table["rows"][0]
    assert lines[3].startswith(f"| gated-image | {gated['trainable_parameters']:,} | ")
    assert (
        f"{100 * gated['after']['species']['top1']:.1f} ({gated['top1_change_points']['species']:+.1f})"
        in lines[3]
    )


def test_a_strategy_with_a_report_is_skipped_and_a_missing_one_is_run(four_strategies, monkeypatch, capsys):
    argv, out, rc = four_strategies
    assert rc == 0
    old_full = json.loads((out / "full" / "report.json").read_text())
    (out / "full" / "report.json").unlink()
    runs = []
    real = synthworld.customize

    def counting(subset, base, run_dir, cfg, **kwargs):
        runs.append((cfg.strategy, kwargs["resume"]))
        return real(subset, base, run_dir, cfg, **kwargs)

    monkeypatch.setattr(synthworld, "customize", counting)
    capsys.readouterr()
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    # Only full ran, resuming from its last checkpoint (step 3 of 3: nothing left to train, evaluated again).
    assert runs == [("full", True)]
    assert report["breakdown"]["reused"] == ["subset", "before", "gated-image", "locked-text", "locked-image"]
    new_full = json.loads((out / "full" / "report.json").read_text())
    assert new_full["after"] == old_full["after"] and new_full["steps"] == 3 and new_full["resumed"]
    assert [row["strategy"] for row in report["table"]["rows"]] == list(STRATEGIES)


def test_pieces_made_with_other_settings_are_an_error(four_strategies, capsys):
    argv, out, rc = four_strategies
    assert rc == 0
    assert main([*argv[:-1], "--strategy", "gated-image", "--max-steps", "2"]) == 2
    assert "gated-image/report.json was made with settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--strategy", "gated,full"])  # an unknown strategy name
    assert "distinct strategies from gated-image" in capsys.readouterr().err

"""Issue 19, defect 8 of the issue (newcomer paths): ``python -m react_explorer.retrieve --classes ...`` without
``--index`` uses the embedded SynthWorld index, building it (with a message) when it is missing."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from react_explorer.cli.retrieve import main as retrieve_main
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.index_sources import embedded_index_dir, embedded_index_ready
from tests.support.react_support import write_toy_pool


@pytest.mark.slow
def test_retrieve_without_index_builds_and_uses_the_embedded_index(tmp_path, capsys):
    world = tmp_path / "world"
    write_toy_pool(world / "pool", count=24)
    cache = tmp_path / "cache"
    out = tmp_path / "subset.parquet"
    argv = ["--world", str(world), "--index-cache", str(cache), "--classes", "red square,blue circle",
            "--templates", "synthworld", "--mode", "t2t", "--k", "3", "--no-progress", "--out", str(out)]  # fmt: skip
    assert retrieve_main(argv) == 0
    err = capsys.readouterr().err
    assert "no --index given: indexing the SynthWorld pool" in err
    directory = embedded_index_dir(ExplorerConfig(world=world, cache_root=cache))
    assert embedded_index_ready(directory)  # the same folder the app's explorer would use
    table = pq.read_table(out)
    assert set(table.column("class").to_pylist()) == {"red square", "blue circle"} and table.num_rows > 0
    assert retrieve_main(argv) == 0  # second time: no build
    assert "indexing" not in capsys.readouterr().err


def test_retrieve_without_index_and_without_a_world_says_how_to_make_one(tmp_path, capsys):
    out = tmp_path / "subset.parquet"
    rc = retrieve_main(["--world", str(tmp_path / "nowhere"), "--index-cache", str(tmp_path / "cache"),
                        "--classes", "a", "--out", str(out)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "no --index given and the SynthWorld world is not generated yet" in err
    assert "python -m trainer.synthworld generate" in err and not out.exists()

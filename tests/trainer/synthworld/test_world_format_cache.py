"""A cached world is reused only when its manifest records the current generator format (issue #18 changed
what signs say, so a world cached by older code must be regenerated, not reused)."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.recipes.foundation import world_is_current
from trainer.synthworld.world import WORLD_FORMAT


def _world(tmp_path: Path, **meta: object) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "manifest.json").write_text(json.dumps(meta))
    return tmp_path


def test_reuse_needs_seed_preset_and_format(tmp_path: Path) -> None:
    assert WORLD_FORMAT == "synthworld/2"
    current = _world(tmp_path / "a", seed=0, preset="default", format=WORLD_FORMAT)
    assert world_is_current(current, 0, "default")
    assert not world_is_current(current, 1, "default") and not world_is_current(current, 0, "tiny")
    old = _world(tmp_path / "b", seed=0, preset="default", format="synthworld/1")  # the code world
    assert not world_is_current(old, 0, "default")
    assert not world_is_current(_world(tmp_path / "c", seed=0, preset="default"), 0, "default")
    assert not world_is_current(tmp_path / "missing", 0, "default")

"""What an export hands to the launcher: the task whose classes hold the retrieval's class names (case-insensitive,
the smallest such task), the CLIP directory and pool the index records. Pure: the index is a stand-in with the two
attributes the handoff reads (``model``, ``manifest.source``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from react_explorer.ui.subset_handoff import SubsetHandoff, index_model_dir, matching_task, subset_handoff


def write_tasks(root: Path) -> Path:
    tasks = root / "world" / "tasks"
    for name, classes in {
        "shapes": ["circle", "square", "triangle"],
        "everything": ["circle", "square", "triangle", "Vorn", "tessel"],
        "species": ["Vorn", "tessel", "quorl"],
    }.items():
        (tasks / name).mkdir(parents=True)
        (tasks / name / "classes.txt").write_text("\n".join(classes) + "\n")
    (tasks / "notes").mkdir()  # no classes.txt: not a task
    return tasks


def test_the_smallest_task_holding_every_class_wins_in_its_own_spelling(tmp_path):
    tasks = write_tasks(tmp_path)
    assert matching_task(tasks, ("square", "circle")) == (tasks / "shapes", ("square", "circle"))
    # "vorn" is spelled "Vorn" by both tasks that have it; species (3 classes) beats everything (5).
    assert matching_task(tasks, ("vorn", "TESSEL")) == (tasks / "species", ("Vorn", "tessel"))
    assert matching_task(tasks, ("square", "vorn")) == (tasks / "everything", ("square", "Vorn"))
    assert matching_task(tasks, ("square", "hexagon")) is None
    assert matching_task(tasks, ()) is None
    assert matching_task(tmp_path / "no-world", ("square",)) is None


def fake_index(model: str | None, source: dict) -> SimpleNamespace:
    return SimpleNamespace(model=model, manifest=SimpleNamespace(source=source))


def test_handoff_records_model_dir_pool_and_task(tmp_path):
    tasks = write_tasks(tmp_path)
    clip = tmp_path / "clip"
    index = fake_index(
        f"local-dir:{clip}", {"pool": str(tmp_path / "pool.parquet"), "pool_format": "parquet"}
    )
    handoff = subset_handoff(index, tmp_path / "out.parquet", ("VORN", "quorl"), 12, tasks)
    assert handoff == SubsetHandoff(
        subset=tmp_path / "out.parquet",
        class_names=("Vorn", "quorl"),
        model_dir=clip.resolve(),
        pool=tmp_path / "pool.parquet",
        task_dir=tasks / "species",
        rows=12,
    )
    # Typed names no task holds are kept as typed, with no task; a hub model and an unrecorded pool are None.
    other = subset_handoff(fake_index("hf-hub:org/clip", {}), tmp_path / "o.parquet", ("red car",), 3, tasks)
    assert (other.class_names, other.task_dir, other.model_dir, other.pool) == (
        ("red car",),
        None,
        None,
        None,
    )
    assert index_model_dir(fake_index(None, {})) is None
    assert index_model_dir(fake_index("ViT-B-32/openai", {})) is None

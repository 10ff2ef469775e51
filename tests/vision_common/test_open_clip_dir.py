"""The one loader of open_clip model directories: tokenizer resolution, checks, and both users agreeing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from react_explorer.customized.gated_blocks import ReactModelError
from react_explorer.customized.model_dir import load_model_dir
from tests.support.react_support import save_random_tiny_clip
from vision_common.open_clip_dir import (
    OPEN_CLIP_CONFIG_NAME,
    OPEN_CLIP_WEIGHTS_NAME,
    OpenClipDirError,
    load_open_clip_dir,
    local_tokenizer_dir,
    read_open_clip_dir,
    register_open_clip_config,
)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return save_random_tiny_clip(tmp_path_factory.mktemp("open-clip-dir"))


def text_cfg(name: str | None) -> dict:
    return {"text_cfg": {} if name is None else {"hf_tokenizer_name": name}}


def test_tokenizer_name_resolves_to_a_folder_of_the_directory_or_to_none(clip_dir, tmp_path):
    assert local_tokenizer_dir(clip_dir, text_cfg(".")) == clip_dir.resolve()
    assert local_tokenizer_dir(tmp_path, text_cfg(str(clip_dir))) == clip_dir.resolve()  # absolute
    assert local_tokenizer_dir(clip_dir, text_cfg(None)) is None
    assert local_tokenizer_dir(clip_dir, text_cfg("bert-base-uncased")) is None  # a hub id: open_clip's job
    (tmp_path / "tok").mkdir()
    with pytest.raises(OpenClipDirError, match=r"tokenizer folder .*tok has no tokenizer.json"):
        local_tokenizer_dir(tmp_path, text_cfg("tok"))


def test_directory_checks_name_the_missing_part(clip_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(clip_dir, copy)
    checked = read_open_clip_dir(copy)
    assert (
        checked.weights == copy.resolve() / OPEN_CLIP_WEIGHTS_NAME and checked.tokenizer_dir == copy.resolve()
    )
    checked.model_cfg["text_cfg"]["hf_tokenizer_name"] = "changed"  # a copy: the read config stays as read
    assert checked.config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] == "."
    (copy / OPEN_CLIP_WEIGHTS_NAME).unlink()
    with pytest.raises(OpenClipDirError, match="has no weights"):
        read_open_clip_dir(copy)
    (copy / OPEN_CLIP_CONFIG_NAME).write_text("{not json")
    with pytest.raises(OpenClipDirError, match="is not valid JSON"):
        read_open_clip_dir(copy)


def test_registered_names_are_content_addressed(tmp_path):
    cfg = {"embed_dim": 8, "vision_cfg": {"layers": 1, "width": 16}, "text_cfg": {"layers": 1, "width": 16}}
    first = register_open_clip_config(cfg, "probe", registry_dir=tmp_path)
    assert first == register_open_clip_config(dict(cfg), "probe", registry_dir=tmp_path)
    assert first != register_open_clip_config({**cfg, "embed_dim": 16}, "probe", registry_dir=tmp_path)
    assert json.loads((tmp_path / f"{first}.json").read_text()) == cfg


def test_one_loader_serves_the_tiny_clip_and_the_react_model_dir(clip_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the tokenizer "." must resolve in the directory, not the working directory
    plain, preprocess, tokenizer = load_open_clip_dir(clip_dir)
    bundle = load_model_dir(clip_dir)
    texts = ["red square", "blue circle photo icon"]
    assert torch.equal(tokenizer(texts), bundle.tokenizer(texts))
    assert bundle.tokenizer_dir == clip_dir.resolve()
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.encode_image(pixels), bundle.model.encode_image(pixels))
        assert torch.equal(plain.encode_text(tokenizer(texts)), bundle.model.encode_text(tokenizer(texts)))
    with pytest.raises(ReactModelError, match="open_clip_config.json not found"):
        load_model_dir(tmp_path)  # the shared checks, in the customized loader's error type

"""Session-scoped fixtures for the tiny artefacts many test modules share, each built once per pytest run.

Registered by tests/conftest.py (``pytest_plugins``). Every fixture hands out something other tests will read
after you: treat it as read-only. A test that changes one copies it first (``shutil.copytree`` into its own
``tmp_path``; ``copy.deepcopy`` for the tokenizer), so every test sees the same bytes whatever the test order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.llava_fixtures import PartsPaths, write_parts
from tests.support.llava_fixtures import tiny_tokenizer as train_tiny_tokenizer
from tests.support.tiny_llava import build_tiny_llava
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The LLaVA tests' byte-level BPE tokenizer (llava_fixtures.CORPUS, 300 ids, ``<image>`` = 4)."""
    return train_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_llava_parts(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> PartsPaths:
    """The LLaVA trainer's inputs on disk, seed 0: tiny CLIP tower, tiny Llama, ``tiny_tokenizer``, images."""
    return write_parts(tmp_path_factory.mktemp("tiny-llava-parts"), tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LLaVA-NeXT checkpoint + processor (tests/support/tiny_llava.py), greedy answers may stop."""
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="session")
def tiny_llava_endless_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny LLaVA-NeXT whose generation config never samples ``</s>``: answers run to max_new_tokens
    (for streaming, cancellation and timeout tests)."""
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava-endless"), suppress_eos=True)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SynthWorld world of ``WorldConfig.preset("tiny")``, seed 0 (the same bytes for any worker count)."""
    out = tmp_path_factory.mktemp("synthworld") / "tiny"
    generate_world(out, WorldConfig.preset("tiny"), seed=0, workers=1)
    return out

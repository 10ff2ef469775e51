"""The SGLang release this project targets: the launch flags, chat-template names, API shapes and the export
layout are checked against this version's own code (tests/test_sglang_conformance_*.py, docs/backends.md
"What is verified against SGLang, and how"). Bumping it means rerunning that suite against the new release.

Kept in its own module, free of imports, so the launcher, the docs check and the test environment
(tests/support/sglang_env.py) read one constant.
"""

from __future__ import annotations

SGLANG_VERSION = "0.5.23"
"""The pinned ``sglang`` release (PyPI). The ``sglang`` extra in pyproject.toml installs exactly this."""

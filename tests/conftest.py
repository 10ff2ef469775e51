"""Test-wide offline hygiene, and the shared session fixtures (tests/support/fixtures.py).

The environment is set here, before any test module imports transformers or gradio (both read it at import).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Imported by pytest after this module has run, so the variables above are already set.
pytest_plugins = ["tests.support.fixtures"]

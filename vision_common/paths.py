"""Where the project lives on disk: the repository root that holds ``assets/``, ``runs/`` and ``.cache/``."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

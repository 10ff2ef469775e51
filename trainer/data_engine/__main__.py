"""``python -m trainer.data_engine``: see :mod:`trainer.data_engine.cli`."""

from __future__ import annotations

import sys

from trainer.data_engine.cli import main

sys.exit(main())

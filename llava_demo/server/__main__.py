"""``python -m llava_demo.server``: the OpenAI-compatible API server (``llava_demo.server.cli``)."""

from llava_demo.server.cli import main

raise SystemExit(main())

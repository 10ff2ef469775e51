"""The Gradio app's shell and the visual chat tab (``python app.py``; see docs/app.md).

``settings`` and ``app_args`` hold the configuration (flags and environment variables) and import no Gradio,
so ``python app.py --help`` stays fast. ``shell`` builds the multi-tab ``gr.Blocks`` from tab factories that
each pillar package provides; ``chat_tab`` is the visual chat tab and the ``chat_*`` modules under it hold its
logic as plain functions and small services.
"""

"""The OpenAI-compatible API server (``python -m llava_demo.server``): FastAPI app, request parsing, response
shapes, admission and errors, in front of any ``ChatBackend``."""

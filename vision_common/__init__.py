"""The shared library layer: imports no pillar (``llava_demo``, ``react_explorer``), no ``trainer`` and no app
shell. Atomic files and manifests, safe image input, AnyRes, conversations and chat templates, format prompts,
CLIP constants and the tiny CLIP architecture, bind-address facts, the app-tab contract."""

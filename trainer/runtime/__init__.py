"""A small, model-agnostic training runtime shared by the LLaVA trainer and the REACT customisation.

The runtime owns what every trainer here needs and nothing model-specific: the optimiser and schedule
(``schedule``), a deterministic, resumable data order (``data_order``), atomic checkpoints with RNG state
(``checkpoint``), per-step metrics (``metrics``), SIGTERM handling (``stop``) and the loop itself, which
runs single-process or under ``accelerate launch`` (``loop``). A trainer hands it a ``TrainJob``.
"""

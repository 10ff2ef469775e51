"""The training launcher: a persistent job system for the trainer's CLIs (registry in SQLite, executors,
registered job types with validated parameters). The launcher tab and the Slurm executor build on it."""

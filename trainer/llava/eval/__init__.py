"""Evaluation of a chat model on SynthWorld held-out sets: data, answering, metrics, report, run."""

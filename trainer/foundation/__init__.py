"""Foundation models built from scratch on SynthWorld: the tokenizer and the tiny base LLM."""

"""Safe image input: limits and errors, sources (file, data URL, http), decoding and mode conversion, and the one
loader every image passes through."""

"""Conversations, chat templates (data + one renderer, or the checkpoint's Jinja template) and format prompts."""

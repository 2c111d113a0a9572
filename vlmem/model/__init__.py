"""Backbones, tokenizer and the MemoryVLM model."""

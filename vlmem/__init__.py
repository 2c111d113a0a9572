"""vlmem: memory-augmented vision-language models for spatial video reasoning."""

__version__ = "0.2.0"

"""edgebench: end-to-end benchmarks of LLM inference engines on the same GGUF models."""

__version__ = "0.1.0"


class EdgebenchError(Exception):
    """An error the user can act on: the CLI prints its message on one line and exits nonzero."""

"""scaling: train Transformer language models with JAX, sweep them, and fit scaling laws."""

__version__ = "0.1.0"

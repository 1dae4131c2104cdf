"""Sweeps: `python -m scaling.sweep --experiment experiments/<name>.py`."""

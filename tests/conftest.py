"""Tests run from the repository root, whatever directory pytest was started in, and share one JAX compilation
cache (set before JAX is imported, and inherited by the commands the tests start): the many short runs of the
same tiny models compile each of their programs once."""

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "scaling-tests-jax-cache"))

"""Tests run from the repository root, whatever directory pytest was started in. Set before JAX is imported, and
inherited by the commands the tests start:
- one JAX compilation cache: the many short runs of the same tiny models compile each of their programs once;
- XLA's CPU code generation without LLVM's optimisations (XLA_FLAGS, ahead of any the caller set): the tests'
  tiny programs compile in about half the time and run about as fast. Every comparison in the suite is between
  programs compiled the same way; tests that set XLA_FLAGS for a subprocess add to these (`xla_flags`)."""

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "scaling-tests-jax-cache"))

FAST_COMPILE = "--xla_backend_optimization_level=0"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{FAST_COMPILE} {os.environ.get('XLA_FLAGS', '')}".strip()

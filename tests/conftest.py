"""Tests run from the repository root, whatever directory pytest was started in."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)

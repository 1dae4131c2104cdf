#!/usr/bin/env bash
# Wheels (Python 3.12, x86-64) of the project's dependencies that the workplace's GPU image lacks, into
# .whl/ for the device tool's `carry` (docs/perf.md, "Measuring on the GPU"). The list is what
# `pip install --dry-run --report` resolves for this project on Python 3.12 less what the image holds
# (jax, flax, optax, orbax, etils, absl, rich, tensorboard, ...), as of 2026-11.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
rm -rf .whl && mkdir -p .whl
python3 -m pip wheel -q --no-deps -w .whl promise  # sdist only on PyPI; pure Python
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  ml-collections grain tensorflow-datasets array-record importlib_resources tensorboardX dm-tree immutabledict \
  simple-parsing tensorflow-metadata termcolor toml docstring-parser googleapis-common-protos tzdata portpicker
ls .whl
du -sh .whl

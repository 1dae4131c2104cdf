"""scaling: train Transformer language models with JAX, sweep them, and fit scaling laws."""

import signal
import sys

__version__ = "0.1.0"

# `python -m scaling.<command>` (argv[0] is "-m" while the package imports): Ctrl-C ends the process at once, by
# the signal, as for most Unix tools, until the command takes it over (raise_on_ctrl_c, or training's
# checkpointing handler). Python's KeyboardInterrupt would land inside an import (a traceback), a garbage
# collector callback (where it is swallowed and the command goes on) or an XLA compilation (a segfault). Nothing
# is lost: what a command writes before it takes Ctrl-C over (datasets, token caches) is written atomically.
if sys.argv[:1] == ["-m"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def raise_on_ctrl_c() -> None:
  """From here on Ctrl-C raises KeyboardInterrupt, for a command that cleans up after it, also where SIGINT
  was ignored (`cmd &` in a script, nohup)."""
  signal.signal(signal.SIGINT, signal.default_int_handler)

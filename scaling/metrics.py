"""Where metrics go: JSONL and TensorBoard in the workdir, a progress bar on the terminal, MFU."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from scaling import flops


def mfu(flops_per_token: float, tokens_per_s: float, num_devices: int, device_kind: str) -> float | None:
  """Model FLOPs utilisation: achieved training FLOP/s over the devices' peak (None on CPUs)."""
  peak = flops.peak_flops(device_kind)
  return None if peak is None else flops_per_token * tokens_per_s / (peak * num_devices)


class MetricWriter:
  """metrics.jsonl + TensorBoard event files under workdir; a no-op on every process but the first.

  start_step: the step the run continues from (0: from scratch). Its records are kept, but a run that
  stopped past its last checkpoint (or before its first) logged later steps that this run logs again:
  metrics.jsonl is rewound by train.rewind_metrics, and this writer's event file starts with a purge
  marker at start_step + 1, on
  which TensorBoard's event loader (EventAccumulator, `tensorboard --load_fast=false`) drops the earlier
  files' events from that step on, so each step shows once, with the resumed run's value (the fast data
  server drops them by itself when a step comes again). Each writer gets an event file of its own: the
  name's suffix is the time in nanoseconds, so that files sort in the order they were written and one
  opened within the same second as another does not replace it.
  """

  def __init__(self, workdir: str, enabled: bool = True, start_step: int = 0):
    self.enabled = enabled
    if enabled:
      from tensorboardX import SummaryWriter

      os.makedirs(workdir, exist_ok=True)
      self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), filename_suffix=f".{time.time_ns()}",
                              purge_step=start_step + 1)

  def write(self, step: int, split: str, scalars: dict) -> None:
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items() if v is not None}
    self.jsonl.write(json.dumps({"step": step, "split": split, "time": time.time(), **scalars}) + "\n")
    self.jsonl.flush()
    for name, value in scalars.items():
      self.tb.add_scalar(f"{split}/{name}", value, step)
    self.tb.flush()

  def close(self) -> None:
    if self.enabled:
      self.jsonl.close()
      self.tb.close()


PROGRESS_LOG_S = 60.0  # without a terminal, long work (tokenizing, evaluating) logs its progress this often
log = logging.getLogger("scaling")


class WorkProgress:
  """Long work of a known size (documents tokenized, batches evaluated): a bar with an ETA on a terminal, else
  a log line every PROGRESS_LOG_S seconds (a large corpus takes hours, and a run's first start waits for it)."""

  def __init__(self, what: str, total: int, unit: str):
    self.what, self.total, self.unit = what, total, unit
    self.start = self.logged = time.time()
    self.bar = None
    if sys.stderr.isatty():
      self.bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn(f"{unit}, ETA"),
                          TimeRemainingColumn(), transient=True)
      self.task = self.bar.add_task(what, total=total)
      self.bar.start()

  def update(self, done: int, note: str = "") -> None:
    """`done` of the total so far; `note` (as '1,234 tokens') goes into the log line."""
    if self.bar is not None:
      self.bar.update(self.task, completed=done)
      return
    now = time.time()
    if now - self.logged >= PROGRESS_LOG_S:
      self.logged = now
      left = (self.total - done) * (now - self.start) / done
      log.info("%s: %s of %s %s (%.1f%%)%s, about %.0f min left", self.what, f"{done:,}", f"{self.total:,}",
               self.unit, 100 * done / self.total, f", {note}" if note else "", left / 60)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.stop()


class ProgressBar:
  """A rich progress bar (step, loss, tokens/s, ETA) on a terminal; plain log lines otherwise."""

  def __init__(self, total: int, start: int, enabled: bool = True):
    self.enabled, self.live = enabled, enabled and sys.stdout.isatty()
    if self.live:
      self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                          TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
      self.task = self.bar.add_task("train", total=total, completed=start, info="compiling...")
      self.bar.start()
      # Log lines go through rich's redirected stderr, above the bar, instead of over it.
      self.handlers = [h for h in logging.getLogger().handlers
                       if type(h) is logging.StreamHandler and h.stream in (sys.__stderr__, sys.__stdout__)]
      self.streams = [h.setStream(sys.stderr) for h in self.handlers]

  def update(self, step: int, info: str) -> None:
    if self.live:
      self.bar.update(self.task, completed=step, info=info)
    elif self.enabled:
      print(f"step {step}: {info}", flush=True)

  def close(self) -> None:
    if self.live:
      for handler, stream in zip(self.handlers, self.streams):
        handler.setStream(stream)
      self.bar.stop()

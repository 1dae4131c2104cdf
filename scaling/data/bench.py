"""Loader throughput: tokens per second that train_iterator delivers to one host, after warm-up.

  python -m scaling.data.bench                                  # pystdlib, byte tokenizer
  python -m scaling.data.bench --tokenizer tok.model --workers 2

The first run also builds the dataset and its token cache; their times are printed separately.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from scaling.data import DataError, pipeline


def benchmark(config, seconds: float = 5.0, warmup_batches: int = 20) -> dict[str, float]:
  """Build what is missing, warm up, then count the tokens delivered in `seconds`."""
  start = time.perf_counter()
  iterator = pipeline.train_iterator(config)
  for _ in range(warmup_batches):
    next(iterator)
  setup = time.perf_counter() - start
  tokens, batches, start = 0, 0, time.perf_counter()
  while (elapsed := time.perf_counter() - start) < seconds:
    tokens += next(iterator)["inputs"].size
    batches += 1
  iterator.close()
  return {"tokens_per_s": tokens / elapsed, "batches_per_s": batches / elapsed, "setup_s": setup}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m scaling.data.bench", description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="pystdlib", help="synthetic | pystdlib | files | a TFDS name")
  parser.add_argument("--data-dir", default="", help="TFDS data_dir ('' = $SCALING_DATA_DIR or ~/.cache/scaling/tfds)")
  parser.add_argument("--files", default="", help="glob of local files, for --dataset=files")
  parser.add_argument("--tokenizer", default="byte", help="byte | path of a SentencePiece .model")
  parser.add_argument("--seq-len", type=int, default=1024)
  parser.add_argument("--batch-size", type=int, default=16, help="sequences per batch")
  parser.add_argument("--workers", type=int, default=0, help="Grain worker processes")
  parser.add_argument("--seconds", type=float, default=5.0, help="measurement time after warm-up")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)  # grain sets one up on import

  from configs import base
  config = base.get_config()
  config.data.update(dataset=args.dataset, data_dir=args.data_dir, files=args.files, tokenizer=args.tokenizer,
                     seq_len=args.seq_len, num_workers=args.workers)
  config.train.batch_size = args.batch_size
  try:
    result = benchmark(config, args.seconds)
  except DataError as e:
    sys.exit(f"error: {e}")
  print(f"{args.dataset} {args.tokenizer} seq_len={args.seq_len} batch={args.batch_size} workers={args.workers}:"
        f" {result['tokens_per_s']:,.0f} tokens/s ({result['batches_per_s']:,.1f} batches/s;"
        f" setup and warm-up {result['setup_s']:.1f}s)")


if __name__ == "__main__":
  main()

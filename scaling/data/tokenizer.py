"""Tokenizers: byte-level (the default) and SentencePiece, with the special ids the objectives use.

Both give `vocab_size`, `eos_id`, `pad_id`, `mask_id`, `cls_id`, `sep_id`, a `key` naming the exact
vocabulary (it keys the token caches), `encode(str | bytes) -> int32 array`, `encode_batch` and
`decode`. Train a SentencePiece model on a dataset's train split:

  python -m scaling.data.tokenizer train --dataset pystdlib --vocab-size 8192 --out tok.model
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm

from scaling.data.errors import DataError
from scaling.errors import UserError

SPECIAL_PIECES = ("[MASK]", "[CLS]", "[SEP]")  # user-defined pieces of our SentencePiece models
MIN_PIECES = 256 + 3 + len(SPECIAL_PIECES)  # byte fallback's 256, pad/unk/eos and the user-defined pieces


class ByteTokenizer:
  """UTF-8 bytes are ids 0..255; the specials follow them."""

  key = "byte"
  pad_id, eos_id, mask_id, cls_id, sep_id = 256, 257, 258, 259, 260
  vocab_size = 261

  def encode(self, text: str | bytes) -> np.ndarray:
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return np.frombuffer(data, np.uint8).astype(np.int32)

  def encode_batch(self, texts: Sequence[str | bytes]) -> list[np.ndarray]:
    return [self.encode(t) for t in texts]

  def decode(self, ids) -> str:
    ids = np.asarray(ids)
    return ids[ids < 256].astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class SentencePieceTokenizer:
  """A SentencePiece model file; bytes are decoded as UTF-8 (invalid bytes become U+FFFD)."""

  def __init__(self, path: str):
    if not os.path.isfile(path):
      raise DataError(f"config.data.tokenizer={path!r}: no such SentencePiece model file"
                      " (train one: python -m scaling.data.tokenizer train --out PATH)")
    with open(path, "rb") as f:
      proto = f.read()
    self.processor = spm.SentencePieceProcessor()
    try:
      self.processor.LoadFromSerializedProto(proto)
    except (RuntimeError, OSError) as e:
      raise DataError(f"config.data.tokenizer={path!r} is not a SentencePiece model ({e})") from None
    self.vocab_size = self.processor.get_piece_size()
    self.key = f"sp{self.vocab_size}-{hashlib.sha256(proto).hexdigest()[:12]}"
    self.eos_id = self.processor.eos_id()
    if self.eos_id < 0:
      raise DataError(f"config.data.tokenizer={path!r} has no end-of-sequence piece (train with eos_id >= 0)")
    self.pad_id = self.processor.pad_id() if self.processor.pad_id() >= 0 else self.eos_id
    self.mask_id, self.cls_id, self.sep_id = (self._special(p) for p in SPECIAL_PIECES)

  def _special(self, piece: str) -> int | None:
    """The id of a user-defined piece, or None where the model lacks it."""
    i = self.processor.piece_to_id(piece)
    return None if i == self.processor.unk_id() else i

  def encode(self, text: str | bytes) -> np.ndarray:
    return self.encode_batch([text])[0]

  def encode_batch(self, texts: Sequence[str | bytes]) -> list[np.ndarray]:
    strings = [t if isinstance(t, str) else bytes(t).decode("utf-8", errors="replace") for t in texts]
    ids = self.processor.encode(strings, num_threads=os.cpu_count() or 1)
    return [np.asarray(i, np.int32) for i in ids]

  def decode(self, ids) -> str:
    ids = [int(i) for i in np.asarray(ids).reshape(-1) if not self.processor.is_control(int(i))]
    return self.processor.decode(ids)


def get_tokenizer(data_config) -> ByteTokenizer | SentencePieceTokenizer:
  """config.data -> its tokenizer: 'byte' or the path of a SentencePiece model."""
  if data_config.tokenizer == "byte":
    return ByteTokenizer()
  return SentencePieceTokenizer(os.path.expanduser(data_config.tokenizer))


def token_dtype(vocab_size: int) -> np.dtype:
  """The narrowest unsigned dtype that holds every id (the token caches store this)."""
  return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def _sentences(documents: Iterable[bytes], max_chars: int, max_bytes: int) -> Iterator[str]:
  """Runs of whole lines (newlines kept, so SentencePiece learns indentation) of at most `max_bytes`
  of UTF-8 each, stopping after the document that brings the total past `max_chars` characters."""
  total = 0
  for doc in documents:
    lines, size = [], 0
    for line in doc.decode("utf-8", errors="replace").splitlines(keepends=True):
      line = line[:max_bytes // 4]  # a line too long for a sentence is cut (4 bytes per char at most)
      if lines and size + len(line.encode("utf-8")) > max_bytes:
        yield "".join(lines)
        lines, size = [], 0
      lines.append(line)
      size += len(line.encode("utf-8"))
      total += len(line)
    if lines:
      yield "".join(lines)
    if total >= max_chars:
      return


def _check_out(out: str) -> None:
  """Raise DataError unless a model file can be written at `out` (checked before training, not after)."""
  parent = os.path.dirname(os.path.abspath(out))
  if os.path.isdir(out):
    example = os.path.join(out, "tok.model")
    raise DataError(f"--out {out} is a directory; give the path of the .model file to write, e.g. {example}")
  if not os.path.isdir(parent):
    raise DataError(f"--out {out}: no such directory {parent}")
  if not os.access(parent, os.W_OK):
    raise DataError(f"--out {out}: directory {parent} is not writable")


def _training_error(message: str, vocab_size: int) -> str:
  """SentencePiece's message, in terms of our CLI's options (it names options that we don't have)."""
  if m := re.match(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)", message):
    return (f"--vocab-size={vocab_size} is too small for this text: it needs {m[1]} pieces at least (the 256"
            f" bytes, {MIN_PIECES - 256} special pieces and the text's characters); pass --vocab-size {m[1]} or more")
  if m := re.match(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", message):
    return (f"--vocab-size={vocab_size} is more pieces than this text yields ({m[1]} at most); pass --vocab-size"
            f" {m[1]} or less, or train on more text (--max-chars, a larger dataset)")
  return f"SentencePiece training with --vocab-size={vocab_size} failed: {message}"


def train_sentencepiece(data_config, vocab_size: int, out: str, model_type: str = "bpe",
                        max_chars: int = 50_000_000) -> SentencePieceTokenizer:
  """Train a SentencePiece model on the train split of config.data's dataset; write it to `out`.

  The model round-trips any text exactly: identity normalisation, no dummy prefix, whitespace
  pieces allowed, unknown characters fall back to bytes. Ids: pad 0, unk 1, eos 2, then
  [MASK] [CLS] [SEP].
  """
  from scaling.data import sources  # the TFDS side; imported here so tokenizers stay light

  _check_out(out)
  if vocab_size < MIN_PIECES:
    raise DataError(f"--vocab-size={vocab_size} is too small: a model needs {MIN_PIECES} pieces (the 256 bytes"
                    f" and {MIN_PIECES - 256} special pieces) plus one per character of the text;"
                    " pass a larger --vocab-size")
  documents = sources.documents(data_config, "train")
  max_bytes = 4096
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=_sentences(documents, max_chars, max_bytes), model_writer=model,
        vocab_size=vocab_size, model_type=model_type, normalization_rule_name="identity",
        add_dummy_prefix=False, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        split_digits=True, byte_fallback=True, character_coverage=0.9995, max_sentence_length=max_bytes,
        pad_id=0, unk_id=1, eos_id=2, bos_id=-1, user_defined_symbols=list(SPECIAL_PIECES),
        num_threads=os.cpu_count() or 1, minloglevel=2)
  except RuntimeError as e:
    raise DataError(_training_error(str(e).rsplit("] ", 1)[-1], vocab_size)) from None
  with open(out, "wb") as f:
    f.write(model.getvalue())
  return SentencePieceTokenizer(out)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m scaling.data.tokenizer",
                                   description="Train a SentencePiece tokenizer on a dataset's train split.")
  commands = parser.add_subparsers(dest="command", required=True)
  train = commands.add_parser("train", help="train a SentencePiece model")
  train.add_argument("--dataset", default="pystdlib", help="pystdlib | files | any TFDS dataset name")
  train.add_argument("--data-dir", default="", help="TFDS data_dir ('' = $SCALING_DATA_DIR or ~/.cache/scaling/tfds)")
  train.add_argument("--files", default="", help="glob of local files, for --dataset=files")
  train.add_argument("--text-field", default="text", help="field holding the text (.jsonl, TFDS)")
  train.add_argument("--vocab-size", type=int, default=8192)
  train.add_argument("--model-type", default="bpe", choices=("bpe", "unigram"))
  train.add_argument("--max-chars", type=int, default=50_000_000, help="characters of text to train on at most")
  train.add_argument("--out", required=True, help="where to write the .model file")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)  # grain sets one up on import

  from scaling.data import data_config  # the data section of configs/base.py, with these fields set
  config = data_config(dataset=args.dataset, data_dir=args.data_dir, files=args.files,
                       text_field=args.text_field)
  start = time.time()
  try:
    tokenizer = train_sentencepiece(config, args.vocab_size, args.out, args.model_type, args.max_chars)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}: {tokenizer.vocab_size} pieces ({args.model_type}) trained on {args.dataset}"
        f" in {time.time() - start:.0f}s; use it with --config.data.tokenizer={args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Every configuration field, its default and what it means: the single source of truth.

Family files (configs/gpt2.py, configs/lm.py, ...) start from `get_config()` and change fields;
any field can be overridden on the command line: `--config.optim.lr=3e-4`.
"""

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg  # the base config has no sizes
  c = ml_collections.ConfigDict()
  c.family = "base"  # model family name, recorded in summary.json and results.csv
  c.size = ""  # size name within the family (e.g. '124m'), recorded likewise
  c.seed = 0  # seeds parameters, dropout, MLM masking and data order
  c.objective = "causal_lm"  # causal_lm | mlm (BERT's masked LM) | mlm_nsp (MLM + next-sentence prediction)

  m = c.model = ml_collections.ConfigDict()
  m.num_layers = 2  # Transformer blocks
  m.d_model = 64  # residual stream width
  m.num_heads = 4  # attention (query) heads; must divide d_model
  m.num_kv_heads = 0  # key/value heads: 0 = num_heads (MHA), 1 = MQA, else GQA (must divide num_heads)
  m.head_dim = 0  # per-head width; 0 = d_model // num_heads
  m.d_ff = 256  # MLP hidden width
  m.vocab_size = 0  # 0 = the tokenizer's vocabulary size
  m.vocab_multiple = 1  # pad the vocabulary up to a multiple of this (64 or 128 helps matmuls)
  m.max_len = 256  # longest sequence the position table supports (learned/sinusoidal)
  m.position = "rope"  # rope | learned | sinusoidal | none
  m.rope_theta = 10000.0  # RoPE base frequency
  m.mlp = "swiglu"  # gelu | relu | swiglu
  m.norm = "rmsnorm"  # layernorm | rmsnorm
  m.norm_placement = "pre"  # pre (x + f(norm(x))) | post (norm(x + f(x)))
  m.norm_eps = 1e-6  # epsilon inside the norms
  m.use_bias = False  # biases on dense layers and layernorm
  m.tie_embeddings = True  # output projection shares the token embedding
  m.causal = True  # causal (decoder) or bidirectional (encoder) attention
  m.num_segments = 0  # token-type (segment) embeddings; 0 = none (BERT uses 2)
  m.embed_norm = False  # normalise the embeddings before the first block (BERT)
  m.embed_scale = False  # multiply token embeddings by sqrt(d_model), as the original Transformer does
  m.mlm_head = False  # BERT's MLM head: dense, activation, norm before the decoder; output bias if use_bias
  m.pooler = False  # BERT's [CLS] pooler (dense, tanh) and the 2-way next-sentence classifier on it
  m.dropout = 0.0  # dropout rate on embeddings, attention output and MLP output
  m.init_std = 0.02  # std of the normal initialiser of kernels and embeddings
  m.dtype = "auto"  # compute dtype: auto (bfloat16 on GPU/TPU, float32 on CPU) | float32 | bfloat16
  m.attention = "auto"  # auto (cuDNN flash attention on GPU when possible, else XLA) | xla | cudnn
  m.remat = "none"  # rematerialise blocks in the backward pass: none | full | dots
  m.scan_layers = False  # run the blocks as one lax.scan over stacked params (faster compiles) instead of a loop
  m.scan_unroll = 1  # with scan_layers: blocks per scan iteration (num_layers = fully unrolled)
  m.logits_chunk = 0  # >0: compute the loss over this many positions at a time (never all the logits at once)

  d = c.data = ml_collections.ConfigDict()
  d.dataset = "pystdlib"  # pystdlib (built-in corpus) | synthetic | files | any TFDS dataset name
  d.data_dir = ""  # TFDS data_dir; '' = $SCALING_DATA_DIR or ~/.cache/scaling/tfds
  d.files = ""  # glob of local files for dataset=files (.txt, .py, .md, .jsonl)
  d.text_field = "text"  # field holding the text in .jsonl files and TFDS examples
  d.tokenizer = "byte"  # byte | path to a SentencePiece .model file
  d.seq_len = 128  # tokens per training sequence
  d.num_workers = 0  # Grain worker processes (0 = in the training process)
  d.prefetch = 2  # batches prepared ahead of the step
  d.val_fraction = 0.01  # fraction of files held out for validation (built-in and file datasets)

  o = c.optim = ml_collections.ConfigDict()
  o.lr = 1e-3  # peak learning rate
  o.schedule = "cosine"  # constant | cosine | linear | wsd (warmup-stable-decay)
  o.warmup_steps = 10  # linear warmup from 0 to lr
  o.min_lr_ratio = 0.1  # final learning rate as a fraction of lr (cosine, linear, wsd)
  o.decay_fraction = 0.2  # wsd: fraction of the steps spent in the final decay
  o.b1 = 0.9  # AdamW beta1
  o.b2 = 0.95  # AdamW beta2
  o.eps = 1e-8  # AdamW epsilon
  o.weight_decay = 0.1  # decoupled weight decay (never on norms or biases)
  o.decay_embeddings = False  # apply weight decay to embedding tables too
  o.clip_norm = 1.0  # global gradient-norm clipping; 0 = off
  o.z_loss = 0.0  # coefficient of the z-loss (log Z)^2 that keeps logits small
  o.accum_steps = 1  # split each batch into this many microbatches, one update
  o.moments_dtype = "float32"  # float32 | bfloat16: dtype of Adam's first moment (optax mu_dtype)

  t = c.train = ml_collections.ConfigDict()
  t.steps = 200  # optimizer steps
  t.batch_size = 16  # global batch, in sequences
  t.log_every = 10  # steps between metric records
  t.eval_every = 100  # steps between evaluations (and one at the end); 0 = only at the end
  t.eval_batches = 8  # most validation batches per evaluation; 0 = the whole split
  t.progress = True  # progress bar on the terminal

  k = c.checkpoint = ml_collections.ConfigDict()
  k.every = 1000  # save every this many steps (and at the end); 0 = only at the end
  k.keep = 2  # checkpoints to keep
  k.async_save = True  # save in the background while training goes on
  k.skip_nonfinite = 0  # skip up to this many steps with a non-finite loss or gradient (no update); 0 = stop at once

  h = c.mesh = ml_collections.ConfigDict()
  h.data = 1  # data-parallel axis size (-1 = all remaining devices)
  h.fsdp = -1  # fully-sharded data-parallel axis size (-1 = all remaining devices)
  h.tensor = 1  # tensor-parallel axis size (-1 = all remaining devices)
  h.dcn_data = 1  # data-parallel factor across slices/nodes (the slow network)
  # Logical axis -> mesh axes ('a,b'; '' = replicated). Parameters use the first block, activations
  # the act_* names. An axis not listed here is replicated.
  r = h.rules = ml_collections.ConfigDict()
  r.batch = "data,fsdp"
  r.embed = "fsdp"
  r.mlp = "tensor"
  r.heads = "tensor"
  r.kv_heads = "tensor"
  r.vocab = "tensor"
  r.act_embed = ""
  r.act_mlp = "tensor"
  r.act_heads = "tensor"
  r.act_kv_heads = "tensor"
  r.act_vocab = "tensor"

  j = c.distributed = ml_collections.ConfigDict()
  j.coordinator_address = ""  # host:port of process 0; '' = auto-detect (SLURM, TPU) or single process
  j.num_processes = 0  # total processes; 0 = auto
  j.process_id = -1  # this process's index; -1 = auto
  j.init_timeout_s = 300  # seconds for the coordinator to be reached and every process to join
  return c

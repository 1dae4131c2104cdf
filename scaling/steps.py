"""The training state, its shardings, sharded initialisation, and the pure train and eval steps.

State is a plain dict {'params', 'opt_state', 'step'}; the model's structure (an nnx GraphDef) is
static. Steps are pure functions of (state, batch): the keys of dropout and MLM masking derive from
(seed, step), so a resumed run draws the same keys. `scaling.train` and `scaling.bench` both use
`Trainer`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from scaling import objectives, optim, sharding
from scaling.model import Transformer


class Trainer:
  """Everything a run compiles once: model structure, optimizer, shardings, jitted steps."""

  def __init__(self, config, mesh):
    self.config, self.mesh = config, mesh
    sharding.check_processes_agree(config)
    self.rules = sharding.parse_rules(config.mesh.rules)
    self.model_config = ml_collections.FrozenConfigDict(config.model)
    abstract = nnx.eval_shape(lambda: Transformer(self.model_config, rngs=nnx.Rngs(config.seed)))
    self.graphdef, abstract_state = nnx.split(abstract)
    param_shardings = sharding.param_shardings(abstract_state, mesh, self.rules)
    self.optimizer = optim.make_optimizer(config)
    self.schedule = optim.schedule(config)
    abstract_params = nnx.to_pure_dict(abstract_state)
    abstract_opt = jax.eval_shape(self.optimizer.init, abstract_params)
    opt_shardings = optax.tree_map_params(
        self.optimizer, lambda _, s: s, abstract_opt, param_shardings,
        transform_non_params=lambda _: sharding.replicated(mesh))
    self.state_shardings = {"params": param_shardings, "opt_state": opt_shardings,
                            "step": sharding.replicated(mesh)}
    self.batch_sharding = sharding.batch_sharding(mesh, self.rules)
    self.objective = functools.partial(objectives.OBJECTIVES[config.objective], config=config)
    prepare = objectives.PREPARE.get(config.objective)
    self.prepare = prepare and functools.partial(prepare, config=config)
    self.init = jax.jit(self._init, out_shardings=self.state_shardings)
    self.train_step = jax.jit(self._train_step, in_shardings=(self.state_shardings, self.batch_sharding),
                              out_shardings=(self.state_shardings, None), donate_argnums=0)
    self.eval_step = jax.jit(self._eval_step, in_shardings=(self.state_shardings["params"], self.batch_sharding))

  def abstract_state(self):
    """ShapeDtypeStructs of the state, with their shardings: the target for restoring."""
    shapes = jax.eval_shape(self._init)
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, self.state_shardings)

  def _init(self):
    model = Transformer(self.model_config, rngs=nnx.Rngs(self.config.seed))
    params = nnx.to_pure_dict(nnx.state(model))
    return {"params": params, "opt_state": self.optimizer.init(params), "step": jnp.zeros((), jnp.int32)}

  def _loss(self, params, batch, key):
    with sharding.use_rules(self.mesh, self.rules):
      return self.objective(nnx.merge(self.graphdef, params), batch, key)

  def _train_step(self, state, batch):
    """One optimizer update over the whole batch, accumulated over `optim.accum_steps` microbatches."""
    params, accum = state["params"], self.config.optim.accum_steps
    key = jax.random.fold_in(jax.random.key(self.config.seed + 1), state["step"])
    if self.prepare is not None:  # before the microbatches: they are masked as the whole batch would be
      mask_key, key = jax.random.split(key)
      batch = self.prepare(batch, mask_key)
    grad_fn = jax.value_and_grad(self._loss, has_aux=True)
    if accum == 1:
      (_, stats), grads = grad_fn(params, batch, key)
    else:
      # Microbatch i holds rows i, i + accum, ...: each device keeps its own rows.
      micro = jax.tree.map(lambda x: jnp.moveaxis(x.reshape(-1, accum, *x.shape[1:]), 1, 0), batch)
      keys = jax.random.split(key, accum)

      def add(total, i):
        (_, s), g = grad_fn(params, jax.tree.map(lambda x: x[i], micro), keys[i])
        return jax.tree.map(jnp.add, total, (s, g)), None

      (_, stat_shapes), grad_shapes = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], micro), None)
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (stat_shapes, grad_shapes))
      (stats, grads), _ = jax.lax.scan(add, zeros, jnp.arange(accum))
    grads = jax.tree.map(lambda g: g / stats["weight"], grads)
    updates, opt_state = self.optimizer.update(grads, state["opt_state"], params, step=state["step"])
    new_params = optax.apply_updates(params, updates)
    metrics = {"loss": stats["ce"] / stats["weight"], "grad_norm": optax.tree.norm(grads),
               "lr": self.schedule(state["step"])}
    if self.config.checkpoint.skip_nonfinite:  # a non-finite loss or gradient leaves params and moments as they were
      finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
      new_params, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                           (new_params, opt_state), (params, state["opt_state"]))
    return {"params": new_params, "opt_state": opt_state, "step": state["step"] + 1}, metrics

  def _eval_step(self, params, batch):
    if self.prepare is not None:  # every evaluation masks the same positions
      batch = self.prepare(batch, jax.random.key(objectives.EVAL_MASK_KEY))
    _, stats = self._loss(params, batch, None)
    return stats

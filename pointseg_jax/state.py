"""The train state of a run: model, optimiser, fresh / abstract / restored state, init weights.

The state is a plain dict pytree {'step', 'params', 'opt_state', 'rng'}: everything a resumed run
needs (docs/training.md, "Resume, exactly"). Everything that builds or restores a run's parameters lives
here, so training, evaluation, prediction and the notebook share one definition.
"""
import functools
import hashlib
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tensorflow as tf

from pointseg_jax import checkpointing
from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import parallel
from pointseg_jax.data import spec as spec_lib
from pointseg_jax.models import FCN
from pointseg_jax.models import fcn
from pointseg_jax.models import vgg16
from pointseg_jax.models import weights as weights_lib


def make_model(model_config) -> FCN:
  """The FCN of a `config.model` block (Flax lives in pointseg_jax.models only); a bad variant or
  mode is a ConfigError here, before anything compiles (numbers: config_lib.validate)."""
  m = model_config
  for field, allowed in (("variant", fcn.VARIANTS), ("mode", vgg16.MODES)):
    if m[field] not in allowed:
      raise errors.ConfigError(f"config.model.{field} = {m[field]!r}: must be one of {allowed}")
  dtype = m.get("compute_dtype", "float32")   # config.json of runs before mixed precision: float32
  if fcn.dtype_name(dtype) not in fcn.COMPUTE_DTYPES:
    raise errors.ConfigError(f"config.model.compute_dtype = {dtype!r}: must be one of "
                             f"{fcn.COMPUTE_DTYPES} (--config.model.compute_dtype=bfloat16)")
  return FCN(num_classes=m.num_classes, variant=m.variant, width=float(m.width), mode=m.mode,
             dropout=float(m.dropout), dtype=jnp.dtype(dtype))


class OptimizerSpec(NamedTuple):
  """The static (compile-time) part of the optimiser; the learning rate is a traced input."""
  momentum: float = 0.9
  weight_decay: float = 5e-4
  bias_lr_mult: float = 2.0
  accum_steps: int = 1
  clip_grad_norm: float = 0.0   # > 0: clip the global gradient norm first (not in the paper)
  name: str = "sgd"             # 'sgd' (paper) | 'adam' (same lr multipliers and L2 decay)
  input_rms: float = 1.0        # r > 1: conv1_1's kernel trained as V = r W (see make_optimizer)

  @classmethod
  def from_config(cls, optimizer_config) -> "OptimizerSpec":
    """From a `config.optimizer` block; bad values are a ConfigError before anything compiles."""
    o = optimizer_config
    if int(o.accum_steps) < 1:
      raise errors.ConfigError(f"config.optimizer.accum_steps must be >= 1; got {o.accum_steps}")
    name = o.get("name", "sgd")
    if name not in ("sgd", "adam"):
      raise errors.ConfigError(f"config.optimizer.name must be 'sgd' or 'adam'; got {name!r}")
    input_rms = float(o.get("input_rms", 1.0))
    if input_rms != 1.0 and name != "sgd":
      raise errors.ConfigError(
          f"config.optimizer.input_rms = {input_rms:g} needs name='sgd': it rescales conv1_1's "
          "gradient, which Adam's per-weight normalisation undoes (--config.optimizer.input_rms=1)")
    return cls(float(o.momentum), float(o.weight_decay), float(o.bias_lr_mult),
               int(o.accum_steps), float(o.get("clip_grad_norm", 0.0)), name, input_rms)


def _param_labels(params):
  """'bias' for every bias leaf, 'weight' otherwise (Caffe's lr_mult / decay_mult 1/2 and 1/0)."""
  def label(path, _):
    return "bias" if getattr(path[-1], "key", None) == "bias" else "weight"
  return jax.tree_util.tree_map_with_path(label, params)


def _is_conv1_1_kernel(params):
  def first(path, _):
    return [getattr(k, "key", None) for k in path[-2:]] == ["conv1_1", "kernel"]
  return jax.tree_util.tree_map_with_path(first, params)


def _conv1_1_gradient_scale(input_rms):
  return optax.masked(optax.scale(1.0 / input_rms), _is_conv1_1_kernel)


def make_optimizer(learning_rate, spec: OptimizerSpec) -> optax.GradientTransformation:
  """Caffe SGD (paper §4.1; docs/training.md, "Optimiser") from optax pieces.

  Weights: g + wd * w (weight decay added to the gradient), momentum, lr. Biases: momentum,
  bias_lr_mult * lr, no decay. Caffe's v = m v + lr g; w -= v equals optax's trace-then-scale for a
  fixed lr. accum_steps > 1 averages the gradients of that many batches per update
  (optax.MultiSteps). clip_grad_norm > 0 clips the gradient's global norm before all of it (off
  in the paper's setup).

  input_rms = r > 1 trains conv1_1's kernel W as V = r W, i.e. SGD on the input divided by r, the
  way the pretrained backbone was trained (pretrain.stored_params; docs/training.md, "Pretraining"):
  its gradient is divided by r before the clip (V's gradient is W's / r) and by r again after it
  (W moves by V's step / r), so W's gradient step is lr g / r^2 while its weight decay stays lr wd W.
  Without it the FCN's SGD moves a pretrained conv1_1 r^2 ~ 3,000 times faster than pretraining did.
  """
  def base(lr):
    if spec.name == "adam":
      return optax.adam(lr, b1=spec.momentum)
    return optax.sgd(lr, momentum=spec.momentum)

  tx = optax.multi_transform({
      "weight": optax.chain(optax.add_decayed_weights(spec.weight_decay), base(learning_rate)),
      "bias": base(learning_rate * spec.bias_lr_mult),
  }, _param_labels)
  if spec.input_rms != 1.0:
    tx = optax.chain(_conv1_1_gradient_scale(spec.input_rms), tx)
  if spec.clip_grad_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(spec.clip_grad_norm), tx)
  if spec.input_rms != 1.0:
    tx = optax.chain(_conv1_1_gradient_scale(spec.input_rms), tx)
  if spec.accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=spec.accum_steps)
  return tx


# XLA:CPU spends ~1 s optimising each random initialiser (30+ s for the FCN's init on 2 busy
# cores); unoptimised it compiles ~10x faster and still runs in milliseconds. Bits differ from an
# optimised compile, but every run compiles init the same way, so runs stay reproducible.
_FAST_COMPILE_CPU = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def compiler_options(fast_compile: bool):
  """XLA options: `fast_compile` turns backend optimisation off (CPU only; the tiny configs, where
  compiling is most of the run). Every run of a config compiles the same way (reproducible)."""
  return _FAST_COMPILE_CPU if fast_compile and jax.default_backend() == "cpu" else None


def fresh_state(model, opt: OptimizerSpec, seed: int):
  """The initial train state (pure; jit or eval_shape it). Parameter shapes do not depend on the
  image size, so init runs on a 32x32 image (the 'same' mode minimum)."""
  init_key, dropout_key = jax.random.split(jax.random.key(seed))
  params = model.init(init_key, jnp.zeros((1, 32, 32, 3), jnp.float32), train=False)["params"]
  return {"step": jnp.zeros((), jnp.int32), "params": params,
          "opt_state": make_optimizer(0.0, opt).init(params),
          "rng": jax.random.key_data(dropout_key)}


def create_train_state(model, opt: OptimizerSpec, seed: int, mesh, *, init_from=None):
  """Fresh state replicated over the mesh; params from `init_from` (a converted .npz) when set."""
  init = jax.jit(functools.partial(fresh_state, model, opt, int(seed)),
                 out_shardings=parallel.replicated(mesh))
  state = init.lower().compile(compiler_options=compiler_options(fast_compile=True))()
  if init_from:
    state["params"] = parallel.replicate(load_init_params(init_from, state["params"]), mesh)
  return state


def abstract_train_state(model, opt: OptimizerSpec, mesh):
  """Shapes, dtypes and (replicated) shardings of the state: the restore target, no compute."""
  shapes = jax.eval_shape(functools.partial(fresh_state, model, opt, 0))
  sharding = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def check_init_from(path, model=None) -> str:
  """The expanded `config.model.init_from`, or a clear error on how to make the file. Local paths
  and URLs (gs://..., through TensorFlow's file systems, as the loader reads them) alike. With the
  model: a pretrained classifier file of another width is refused here, before any data is built."""
  path = spec_lib.expand_path(str(path))
  exists = tf.io.gfile.exists(path) if "://" in path else pathlib.Path(path).is_file()
  if not exists and path == config_lib.PRETRAINED_INIT_FROM:
    raise errors.MissingInputError(
        f"config.model.init_from={path!r} (the `pretrained` variant's backbone) does not exist: "
        f"make it with `{weights_lib.PRETRAIN_COMMAND}` (docs/training.md, \"Pretraining\"), or "
        "drop the `pretrained` variant to train from scratch")
  if not exists:
    raise errors.MissingInputError(
        f"config.model.init_from={path!r} does not exist: the voc configs start from ImageNet "
        "VGG16 weights converted once with `python -m pointseg_jax.models.weights convert --from "
        f"keras|torchvision|npz <VGG16 weights file> --out={path}` (docs/model.md says where to "
        "get them), or train from scratch with --config.model.init_from=''")
  if model is not None:
    weights_lib.check_width(path, model)
  return path


def load_init_params(path, params):
  """ImageNet-initialised FCN params from a converted .npz, or a clear error on how to get one."""
  path = check_init_from(path)
  return weights_lib.load_params(path, jax.eval_shape(lambda: params))


def restore_params(workdir, model, opt: OptimizerSpec, mesh, step=None):
  """(params, step) of a checkpoint in workdir/checkpoints (the latest by default)."""
  ckpt_dir = pathlib.Path(workdir) / "checkpoints"
  step = checkpoint_step(workdir, step)
  with checkpointing.Checkpointer(ckpt_dir, async_save=False) as ckpt:
    state = ckpt.restore(abstract_train_state(model, opt, mesh), step)
  return state["params"], int(step)


def checkpoint_step(workdir, step=None) -> int:
  """`step` (default: the latest) if workdir has that checkpoint; else a MissingInputError. Cheap:
  eval and predict call it before building any data."""
  ckpt_dir = pathlib.Path(workdir) / "checkpoints"
  latest = checkpointing.latest_step(ckpt_dir)
  if latest is None:
    raise errors.MissingInputError(f"no checkpoint in {ckpt_dir}: train first (--mode=train) "
                                   "with the same --workdir")
  if step is not None and not (ckpt_dir / str(int(step))).is_dir():
    raise errors.MissingInputError(f"no checkpoint of step {step} in {ckpt_dir} (latest: "
                                   f"{latest})")
  return latest if step is None else int(step)


def params_sha256(params) -> str:
  """sha256 over every parameter's bytes, leaves in flattened-path order (summary.json)."""
  digest = hashlib.sha256()
  for _, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  return digest.hexdigest()

"""Pretrain the synthetic configs' backbone as a classifier: the paper's ImageNet step, in small.

    taskset -c 1 python -m pointseg_jax.pretrain --config=configs/pretrain.py

The paper fine-tunes a VGG16 trained on ImageNet classification (§4.1); the embedded benchmark's
counterpart is `synthetic_classes` (160 procedural classes, the benchmark's 20 among them). This
trains `models.classifier.Classifier` on its train split, reports top-1 on the held-out split, and
writes the params to `config.out` (.npz, our param paths + '_meta') for `init_from`, where the
authors' surgery turns fc8's rows of the benchmark classes into score_fr's rows 1..20
(models/weights.py). The run is a pure function of the config: batch order and flips from numpy
(seed), dropout keys fold_in(seed, step), so the same command on the same machine type writes the
same bytes (docs/training.md, "Pretraining").
"""
import functools
import hashlib
import json
import time

from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import optax

from pointseg_jax import cli
from pointseg_jax import state as state_lib
from pointseg_jax import train as train_lib
from pointseg_jax.data import prepare
from pointseg_jax.data.synthetic_classes import corpus
from pointseg_jax.models import lsuv
from pointseg_jax.models import vgg16
from pointseg_jax.models import weights as weights_lib
from pointseg_jax.models.classifier import Classifier

FLAGS = flags.FLAGS


def define_flags() -> None:
  """--config; defined only when this module runs as a program (absl flags are global, and tests
  import this module next to main.py's --config)."""
  config_flags.DEFINE_config_file("config", None, "configs/pretrain.py[:tiny]", lock_config=True)
  flags.mark_flag_as_required("config")


def load_split(dataset: str, split: str, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, S, S, 3], labels int32 [N]) of a split, built on first use, in file order."""
  builder = prepare(dataset, data_dir)
  ds = builder.as_dataset(split=split, shuffle_files=False, batch_size=-1)
  arrays = {k: np.asarray(v) for k, v in ds.items() if k in ("image", "label")}
  return arrays["image"], arrays["label"].astype(np.int32)


def batches(num: int, batch_size: int, seed: int):
  """Yields (indices, flip mask) per step: epochs of a seeded permutation, random left-right flips."""
  rng = np.random.default_rng(seed)
  order = np.empty(0, np.int64)
  while True:
    while len(order) < batch_size:
      order = np.concatenate([order, rng.permutation(num)])
    idx, order = order[:batch_size], order[batch_size:]
    yield idx, rng.random(batch_size) < 0.5


def train_step(state, images, labels, hparams, *, model, opt):
  """Softmax cross-entropy, the project's Caffe SGD (state.make_optimizer), warmup + cosine lr."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

  def loss_fn(params):
    logits = model.apply({"params": stored_params(params, hparams["input_rms"])}, images,
                         train=True, rngs={"dropout": key})
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state["params"])
  grad_norm = optax.global_norm(grads)
  step = state["step"]
  lr = train_lib.learning_rate(hparams, step) * 0.5 * (
      1 + jnp.cos(jnp.pi * jnp.minimum(step / hparams["num_steps"], 1.0)))
  updates, opt_state = state_lib.make_optimizer(lr, opt).update(grads, state["opt_state"],
                                                                 state["params"])
  params = optax.apply_updates(state["params"], updates)
  return dict(state, step=step + 1, params=params, opt_state=opt_state), {"loss": loss, "lr": lr,
                                                                  "grad_norm": grad_norm}


def trained_params(params, input_rms):
  """The params SGD sees: conv1_1's kernel as V = r W, r the input's RMS (see `stored_params`)."""
  return dict(params, conv1_1=dict(params["conv1_1"], kernel=params["conv1_1"]["kernel"] * input_rms))


def stored_params(params, input_rms):
  """The net's params (what the file holds and the FCN loads) from the trained ones: W = V / r.

  The Caffe preprocess leaves the input at RMS r ~ 55 where every other layer's input is ~1 (after
  LSUV), so plain SGD on conv1_1's kernel W moves its output r^2 times faster than the other
  layers' (Adam: r times). Training V = r W instead is training on the normalised input x / r, the
  usual input normalisation, while the network itself, and so the FCN that loads it, keeps the
  Caffe preprocess. r = 1 is plain training of W.
  """
  return dict(params, conv1_1=dict(params["conv1_1"], kernel=params["conv1_1"]["kernel"] / input_rms))


def top1(model, params, images, labels, batch_size) -> float:
  """Share of images whose arg-max logit is their label (no test-time augmentation)."""
  predict = jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, x), -1))
  hits = 0
  for start in range(0, len(images), batch_size):
    hits += int(np.sum(np.asarray(predict(params, images[start:start + batch_size]))
                       == labels[start:start + batch_size]))
  return hits / len(images)


def flat_params(params) -> dict[str, np.ndarray]:
  return {f"{layer}/{leaf}": np.asarray(v, np.float32)
          for layer, leaves in params.items() for leaf, v in leaves.items()}


def file_sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


INITS = ("he", "lsuv")
# Every layer LSUV rescales, in network order (fc8 starts at zero and stays as it is).
LSUV_LAYERS = vgg16.CONV_NAMES + ("fc6", "fc7")


def init_scale(config, model, params, train_x):
  """config.init 'lsuv': unit output variance per layer on the first `init_images` training
  images (models/lsuv.py); 'he': params as drawn. Returns (params, {layer: output std before})."""
  if config.init not in INITS:
    raise ValueError(f"config.init must be one of {INITS}; got {config.init!r}")
  if config.init == "he":
    return params, {}
  images = jnp.asarray(train_x[:config.init_images], jnp.float32)
  return lsuv.rescale(model, params, images, LSUV_LAYERS)


def pretrain(config) -> dict:
  """Train, evaluate on the held-out split, write config.out; returns the summary (also in _meta)."""
  t0 = time.time()
  model = Classifier(num_classes=corpus.NUM_CLASSES, width=float(config.width),
                     dropout=float(config.dropout))
  train_x, train_y = load_split(config.dataset, "train", config.data_dir)
  held_x, held_y = load_split(config.dataset, "heldout", config.data_dir)
  logging.info("corpus %s: %d train / %d held-out images of %s px, %d classes", config.dataset,
               len(train_x), len(held_x), train_x.shape[1:3], corpus.NUM_CLASSES)
  opt = state_lib.OptimizerSpec.from_config(config.optimizer)
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  # Compiled like the trainer's init (XLA optimisation off: ~10x faster to compile, same bits
  # every run).
  init = jax.jit(lambda k: model.init(k, jnp.zeros((1, *train_x.shape[1:]), jnp.float32))["params"])
  params = init.lower(init_key).compile(state_lib.compiler_options(fast_compile=True))(init_key)
  params, init_stds = init_scale(config, model, params, train_x)
  input_rms = np.float32(1.0)
  if config.normalise_input:
    x = vgg16.preprocess(jnp.asarray(train_x[:config.init_images], jnp.float32))
    input_rms = np.float32(jnp.sqrt(jnp.mean(jnp.square(x))))
  params = trained_params(params, input_rms)
  state = {"step": jnp.zeros((), jnp.int32), "params": params,
           "opt_state": state_lib.make_optimizer(0.0, opt).init(params),
           "rng": jax.random.key_data(dropout_key)}
  hparams = {"learning_rate": np.float32(config.optimizer.learning_rate),
             "warmup_steps": np.float32(config.optimizer.warmup_steps),
             "num_steps": np.float32(config.num_steps), "input_rms": input_rms}
  step_fn = jax.jit(functools.partial(train_step, model=model, opt=opt), donate_argnums=(0,))
  history = []
  loss = float("nan")
  for step, (idx, flip) in zip(range(config.num_steps), batches(len(train_x), config.batch_size,
                                                                config.seed)):
    images = train_x[idx]
    images[flip] = images[flip, :, ::-1]
    state, metrics = step_fn(state, images, train_y[idx], hparams)
    if (step + 1) % config.log_every == 0 or step + 1 == config.num_steps:
      loss = float(metrics["loss"])
      if not np.isfinite(loss):
        raise FloatingPointError(f"pretraining loss is {loss} at step {step + 1}")
      logging.info("step %d loss %.4f lr %.5f grad norm %.3g (%.0f s)", step + 1, loss,
                   float(metrics["lr"]), float(metrics["grad_norm"]), time.time() - t0)
    if (step + 1) % config.eval_every == 0 and step + 1 < config.num_steps:
      acc = top1(model, stored_params(state["params"], input_rms), held_x, held_y,
                 config.eval_batch_size)
      history.append({"step": step + 1, "heldout_top1": acc, "train_loss": round(loss, 4)})
      logging.info("step %d held-out top-1 %.4f", step + 1, acc)
  acc = top1(model, stored_params(state["params"], input_rms), held_x, held_y,
                 config.eval_batch_size)
  history.append({"step": int(config.num_steps), "heldout_top1": acc, "train_loss": round(loss, 4)})
  summary = {
      "dataset": config.dataset, "width": float(config.width), "image_size": int(train_x.shape[1]),
      "num_train": len(train_x), "num_heldout": len(held_x), "num_classes": corpus.NUM_CLASSES,
      "num_steps": int(config.num_steps), "batch_size": int(config.batch_size),
      "seed": int(config.seed), "init": config.init,
      "init_output_stds": {k: round(v, 4) for k, v in init_stds.items()},
      "input_rms": float(input_rms),
      "optimizer": config.optimizer.to_dict(), "heldout_top1": acc, "history": history,
      "seconds": round(time.time() - t0, 1),
      # score_fr row c (VOC class c = 1..20) <- fc8 row score_rows[c - 1] (models/weights.py).
      "score_rows": list(corpus.BENCHMARK_ROWS), "classes": list(corpus.CLASS_NAMES_CORPUS),
      "command": weights_lib.PRETRAIN_COMMAND,
  }
  params = jax.device_get(stored_params(state["params"], input_rms))
  written = weights_lib.save_npz(config.out, flat_params(params),
                                 **{k: v for k, v in summary.items() if k != "seconds"})
  summary["out"], summary["sha256"] = written, file_sha256(written)
  return summary


def main(argv) -> int:
  del argv
  summary = pretrain(FLAGS.config)
  print(json.dumps({k: v for k, v in summary.items() if k != "classes"}, indent=1))
  return 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)

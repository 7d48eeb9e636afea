"""Every loss of the paper, forward + backward, against the memory roofline of a same-size copy.

    python -m bench.losses [--batch 8 --size 256 --rounds 7 --reps 5]

A loss's gradient has the logits' shape, so fwd+bwd must at least read the logits once and write
the gradient once: exactly what `-x` does on an array of that size. The ratio
t(loss fwd+bwd) / t(copy), each pair timed side by side in alternating rounds, is how far a loss
is from that roofline (target <= 3). Two reference rows bound what a softmax loss can reach: one
exp over the logits written out, and optax's plain cross-entropy (no mask). The regime row is the
point regime's whole objective
(Eq. 2 + 3 + 4), what the train step differentiates.
"""
from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench import common
from pointseg_jax import IGNORE_INDEX
from pointseg_jax import NUM_CLASSES
from pointseg_jax import losses
from pointseg_jax import supervision

flags.DEFINE_integer("batch", 8, "Images per batch.")
flags.DEFINE_integer("size", 256, "Image side.")
flags.DEFINE_integer("rounds", 31, "Alternating rounds: each round times every function once.")
flags.DEFINE_integer("reps", 1, "Timed calls per function per round (median).")
FLAGS = flags.FLAGS
TARGET = 3.0


def loss_batch(b: int, size: int, c: int = NUM_CLASSES, seed: int = 0) -> dict[str, np.ndarray]:
  """Logits and every label field of a batch, with padding, ignored pixels and ~5 clicks/image."""
  rng = np.random.default_rng(seed)
  valid = np.ones((b, size, size), bool)
  valid[:, :, size - size // 8:] = False               # a padded right margin
  # Dense labels in blocks (objects) with 255 on the block borders, like VOC's boundary band.
  cells = rng.integers(0, c, (b, size // 32 + 1, size // 32 + 1))
  labels = np.repeat(np.repeat(cells, 32, 1), 32, 2)[:, :size, :size].astype(np.int32)
  labels[:, ::32, :] = labels[:, 1::32, :] = IGNORE_INDEX
  labels[:, :, ::32] = labels[:, :, 1::32] = IGNORE_INDEX
  sparse = np.full((b, size, size), IGNORE_INDEX, np.int32)
  for i in range(b):
    ys, xs = rng.integers(0, size, 5), rng.integers(0, size - size // 8, 5)
    sparse[i, ys, xs] = rng.integers(0, c, 5)
  return {"logits": (3 * rng.standard_normal((b, size, size, c))).astype(np.float32),
          "labels": labels, "valid": valid,
          "present": rng.random((b, c)) < 0.3,
          "known": rng.random((b, c)) < 0.8,
          "sparse_labels": sparse, "sparse_weights": (sparse != IGNORE_INDEX).astype(np.float32),
          "objectness": rng.uniform(0.01, 0.99, (b, size, size)).astype(np.float32)}


def loss_fns() -> dict:
  """name -> f(logits, batch) = mean per-image loss (jax.value_and_grad differentiates z)."""
  point_terms = supervision.active_terms(supervision.default_weights("point"))

  def regime(z, b):
    weights = {t: jnp.float32(1.0) for t in point_terms}
    return supervision.total_loss(supervision.loss_terms(z, b, point_terms), weights).mean()
  return {
      "pixel (Eq. 1)": lambda z, b: losses.pixel_loss(z, b["labels"], b["valid"]).mean(),
      "image-level (Eq. 2)": lambda z, b: losses.image_level_loss(
          z, b["present"], b["valid"], b["known"]).mean(),
      "point (Eq. 3)": lambda z, b: losses.point_loss(
          z, b["sparse_labels"], b["sparse_weights"]).mean(),
      "objectness (Eq. 4)": lambda z, b: losses.objectness_loss(
          z, b["objectness"], b["valid"], b["sparse_labels"] != IGNORE_INDEX).mean(),
      "regime point (Eq. 2+3+4)": regime,
  }


def main(argv):
  del argv
  common.print_header("losses: fwd+bwd vs a same-size copy")
  host = loss_batch(FLAGS.batch, FLAGS.size)
  batch = {k: jnp.asarray(v) for k, v in host.items()}
  z = batch.pop("logits")
  nbytes = z.size * z.dtype.itemsize
  copy, exp = jax.jit(lambda x: -x), jax.jit(jnp.exp)
  calls = {"copy (-x)": lambda: copy(z), "reference: exp(x), no loss": lambda: exp(z)}
  fns = dict(loss_fns())
  fns["reference: optax softmax CE, no mask"] = lambda z, b: (
      optax.softmax_cross_entropy_with_integer_labels(z, b["labels"] % z.shape[-1]).mean())
  for name, f in fns.items():
    calls[name] = lambda f=jax.jit(jax.value_and_grad(f)): f(z, batch)
  with common.Load() as load:
    times = common.alternate(calls, FLAGS.rounds, FLAGS.reps, warmup=2)
  copy = times["copy (-x)"]
  rows, worst = [], ("", 0.0)
  for name, ts in times.items():
    med = float(np.median(ts))
    gbs = 2 * nbytes / med / 1e9
    if name.startswith("copy"):
      rows.append((name, f"{1e3 * med:.1f}", f"{gbs:.1f}", "1 (roofline)", "1", ""))
      continue
    ratio = common.paired_ratio(ts, copy)
    best = common.min_ratio(ts, copy)
    ok = "yes" if ratio[0] <= TARGET else "**no**"
    rows.append((name, f"{1e3 * med:.1f}", f"{gbs:.1f}", common.fmt_range(*ratio), f"{best:.2f}",
                 ok))
    if ratio[0] > worst[1] and not name.startswith("reference"):
      worst = (name, ratio[0])
  shape = f"{FLAGS.batch}x{FLAGS.size}x{FLAGS.size}x{NUM_CLASSES}"
  print(f"\nlogits {shape} f32 = {nbytes / 1e6:.1f} MB; "
        f"{FLAGS.rounds} alternating rounds x {FLAGS.reps} call(s); load during the run: {load}\n")
  common.table(("fwd+bwd of", "ms (median)", "GB/s (read logits + write grad)",
                "t / t_copy per round: median [range]", "min t / min t_copy",
                f"<= {TARGET:g}x"), rows)
  loss_rows = [r for r in rows if not r[0].startswith(("copy", "reference"))]
  n_ok = sum(r[-1] == "yes" for r in loss_rows)
  common.summary(f"losses: {n_ok}/{len(loss_rows)} within {TARGET:g}x the copy roofline; worst "
                 f"{worst[0]} at {worst[1]:.2f}x (load: {load})",
                 worst=worst[1], others_cores=load.others)


if __name__ == "__main__":
  app.run(main)

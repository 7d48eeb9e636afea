"""Plan a Cloud TPU budget before renting one: XLA's FLOP count of each regime's `voc` train step
and the images/s per chip it implies on TPU v4 / v5e / v5p / v6e at an assumed utilisation.

    python -m launch.plan [--regimes point,full] [--mfu 0.25,0.5] [--out_json plan.json]

The FLOPs are counted, not estimated: each regime's `configs/<regime>.py:voc` step (full-width
FCN-32s, Caffe geometry, 500x500 input, that regime's losses, Caffe SGD) is compiled here for one
image, exactly as bench/train_step.py builds it, and XLA's cost analysis of the compiled program
gives its FLOPs. They do not depend on the dtype (bfloat16 halves the bytes, not the operations).
The images/s are an *estimate* until measured on the chip:

    images/s per chip = peak bf16 FLOP/s per chip x MFU / FLOP per training image

with the chips' published bf16 peaks (Cloud TPU system-architecture pages, cited in
docs/cloud_tpu.md) and an assumed model-FLOP utilisation (MFU) range. Compiling the full-width
step takes about a minute of one CPU core per regime.
"""
import json
import time

from absl import app
from absl import flags

from bench import common

# Peak bf16 FLOP/s per chip, from the Cloud TPU documentation's system-architecture page of each
# version (docs/cloud_tpu.md cites them): v4 275 TFLOP/s, v5e 197, v5p 459, v6e (Trillium) 918.
PEAK_BF16_TFLOPS = {"v4": 275.0, "v5e": 197.0, "v5p": 459.0, "v6e": 918.0}

flags.DEFINE_list("regimes", ["full", "image", "image_obj", "point", "point_noobj", "all_points",
                              "squiggle", "box", "point_crf"],
                  "Regimes whose configs/<regime>.py:voc step is counted.")
flags.DEFINE_list("mfu", ["0.25", "0.5"], "Assumed model-FLOP utilisation range (low, high).")
flags.DEFINE_string("out_json", "", "Also write the counts and estimates to this file.")
FLAGS = flags.FLAGS


def voc_config(regime: str):
  """configs/<regime>.py:voc for one image, without the ImageNet weight file (FLOPs only)."""
  from pointseg_jax import config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.get_config(regime, "voc")
  config.model.init_from = None
  config.train.batch_size = 1
  return config


def count(regime: str) -> dict:
  """XLA's FLOPs and the parameter count of one image's train step of the regime's voc config."""
  import jax  # pylint: disable=g-import-not-at-top
  from pointseg_jax import parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh(jax.devices()[:1])
  t = time.perf_counter()
  step = common.RealStep(voc_config(regime), mesh=mesh)
  return dict(regime=regime, gflop_per_image=step.flops / 1e9, params=step.num_params,
              compile_s=time.perf_counter() - t)


def small_layer_shares(size: int = 500) -> tuple[float, float]:
  """Shares of the forward conv FLOPs (voc geometry) in layers with fewer than 128 / 256 channels
  on one side: the part that cannot fill a 128- / 256-wide MXU along that side."""
  rows = []
  for _, h, _, cin, cout, k, pad in common.layer_shapes(size, 1.0, "caffe"):
    out = h + 2 * pad - k + 1
    rows.append((min(cin, cout), 2.0 * out * out * cin * cout * k * k))
  total = sum(f for _, f in rows)
  return (sum(f for c, f in rows if c < 128) / total, sum(f for c, f in rows if c < 256) / total)


def images_per_s(gflop_per_image: float, peak_tflops: float, mfu: float) -> float:
  """Training images/s of one chip: the FLOP/s it delivers over the FLOPs of one image."""
  return peak_tflops * 1e12 * mfu / (gflop_per_image * 1e9)


def main(argv):
  del argv
  lo, hi = (float(v) for v in FLAGS.mfu)
  common.print_header("launch.plan: FLOPs of each regime's voc train step and the TPU estimate")
  rows = []
  for regime in FLAGS.regimes:
    rows.append(count(regime))
    r = rows[-1]
    print(f"{regime}: {r['gflop_per_image']:.1f} GFLOP per image, {r['params'] / 1e6:.1f} M "
          f"params (compiled in {r['compile_s']:.0f} s)", flush=True)
  print()
  common.table(("regime", "GFLOP / image (XLA)")
               + tuple(f"{chip} images/s/chip (MFU {lo:g}–{hi:g})" for chip in PEAK_BF16_TFLOPS),
               [(r["regime"], f"{r['gflop_per_image']:.0f}")
                + tuple(f"{images_per_s(r['gflop_per_image'], p, lo):.0f}–"
                        f"{images_per_s(r['gflop_per_image'], p, hi):.0f}"
                        for p in PEAK_BF16_TFLOPS.values()) for r in rows])
  lt128, lt256 = small_layer_shares()
  print(f"\nforward conv FLOPs in layers with < 128 channels on one side: {100 * lt128:.0f} %, "
        f"< 256: {100 * lt256:.0f} % (v6e's MXUs are 256x256)")
  if FLAGS.out_json:
    with open(FLAGS.out_json, "w") as f:
      json.dump(dict(peak_bf16_tflops=PEAK_BF16_TFLOPS, mfu=[lo, hi], regimes=rows), f, indent=2)
  common.summary("launch.plan GFLOP/image: " + ", ".join(
      f"{r['regime']} {r['gflop_per_image']:.0f}" for r in rows),
      **{r["regime"]: r["gflop_per_image"] for r in rows})


if __name__ == "__main__":
  app.run(main)

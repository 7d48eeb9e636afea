"""The pretraining corpus (synthetic_classes/tiny), the classifier, its load into the FCN through
`init_from` (the authors' score-row trick) and the `:pretrained` variant."""
import functools
import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pointseg_jax import CLASS_NAMES
from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import pretrain
from pointseg_jax import state as state_lib
from pointseg_jax.data import prepare
from pointseg_jax.data.synthetic_classes import corpus
from pointseg_jax.data.synthetic_points import scenes
from pointseg_jax.models import classifier
from pointseg_jax.models import fcn
from pointseg_jax.models import lsuv
from pointseg_jax.models import weights
from helpers import load_config


def optax_ce(logits, labels):
  """Mean softmax cross-entropy, the pretraining loss."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# ---------------------------------------------------------------------------------- corpus ---


def test_classes_are_every_style_with_the_benchmarks_first():
  assert corpus.NUM_CLASSES == len(scenes.SHAPES) * len(scenes.COLOURS) * len(scenes.TEXTURES)
  assert len(set(corpus.STYLES)) == corpus.NUM_CLASSES
  for c in range(1, 21):   # VOC class c is corpus class BENCHMARK_ROWS[c - 1], drawn the same way
    row = corpus.BENCHMARK_ROWS[c - 1]
    assert corpus.STYLES[row] == scenes.CLASS_STYLES[c]
    assert corpus.CLASS_NAMES_CORPUS[row].endswith("/" + CLASS_NAMES[c])
  assert "/" not in corpus.CLASS_NAMES_CORPUS[20]


def test_seeds_are_disjoint_from_the_benchmarks_and_examples_reproduce():
  a = corpus.make_example(0, "train", 5, 32)[1]["image"]
  assert np.array_equal(a, corpus.make_example(0, "train", 5, 32)[1]["image"])
  assert not np.array_equal(a, corpus.make_example(0, "heldout", 5, 32)[1]["image"])
  benchmark = np.random.default_rng(np.random.SeedSequence([0, 0, 5])).random(4)
  assert not np.allclose(corpus.example_rng(0, "train", 5).random(4), benchmark)


@pytest.fixture(scope="module")
def tiny_classes_dir(tmp_path_factory):
  """synthetic_classes/tiny built once for this file (seconds), in a private TFDS data dir."""
  path = str(tmp_path_factory.mktemp("tfds_classes"))
  prepare("synthetic_classes/tiny", path)
  return path


def test_tiny_builder_splits_are_balanced(tiny_classes_dir):
  builder = prepare("synthetic_classes/tiny", tiny_classes_dir)
  assert builder.info.splits["train"].num_examples == 2 * corpus.NUM_CLASSES
  assert builder.info.splits["heldout"].num_examples == corpus.NUM_CLASSES
  images, labels = pretrain.load_split("synthetic_classes/tiny", "heldout", tiny_classes_dir)
  assert images.shape == (corpus.NUM_CLASSES, 32, 32, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(np.sort(labels), np.arange(corpus.NUM_CLASSES))
  # Example i of a split is class i mod 160, from its own seed (the builder adds nothing).
  i = int(np.flatnonzero(labels == 7)[0])
  np.testing.assert_array_equal(images[i], corpus.make_example(1, "heldout", 7, 32)[1]["image"])


# ------------------------------------------------------------------------------ classifier ---


def test_fc6_taps_beyond_the_pool5_map_start_and_stay_zero():
  init = classifier.reachable_taps_init((1, 1))   # pool5 2x2 (64 px): offsets -1..1 see the map
  k = np.asarray(init(jax.random.key(0), (7, 7, 3, 5)))
  live = np.zeros((7, 7), bool)
  live[2:5, 2:5] = True
  assert np.all(k[~live] == 0) and np.all(np.abs(k[live]).sum(-1).sum(-1) > 0)
  # He init over the live taps only: fan-in 3 * 3 * 3 = 27, std sqrt(2 / 27) ~ 0.27.
  assert 0.15 < k[live].std() < 0.4
  # SAME conv on a 2x2 map: the outer taps multiply padding only, so they get no gradient.
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 2, 3)), jnp.float32)
  g = np.asarray(jax.grad(lambda w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum())(jnp.asarray(k)))
  assert np.all(g[~live] == 0) and np.abs(g[live]).min() > 0


def _tiny_classifier(dropout=0.5, num_classes=7):
  """Width 1/16 at 32 px (pool5 1x1: only fc6's centre tap is live), He-initialised with numbers
  from numpy as the classifier draws them (compiling its RNG init takes ~15 s), fc8 zero."""
  model = classifier.Classifier(num_classes=num_classes, width=1 / 16, dropout=dropout)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  rng = np.random.default_rng(1)
  params = {}
  for name, leaves in shapes["params"].items():
    kh, kw, cin, cout = leaves["kernel"].shape
    kernel = np.zeros((kh, kw, cin, cout), np.float32)
    if name != "fc8":
      kernel[kh // 2, kw // 2] = rng.standard_normal((cin, cout)) * np.sqrt(2 / cin)
      if name.startswith("conv"):
        kernel = (rng.standard_normal(kernel.shape) * np.sqrt(2 / (9 * cin))).astype(np.float32)
    params[name] = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(cout, jnp.float32)}
  images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
  return model, params, images


def test_lsuv_gives_every_layer_unit_output_variance_on_its_batch():
  model, params, images = _tiny_classifier()
  names = pretrain.LSUV_LAYERS
  he = lsuv.output_stds(model, params, images)
  # The problem it fixes: He init keeps the 0..255-minus-mean input's scale (RMS ~74 for uniform
  # pixels) all the way up to fc7 instead of ~1.
  assert he["conv1_1"] > 20 and he["fc7"] > 4, he
  scaled, before = lsuv.rescale(model, params, images, names)
  after = lsuv.output_stds(model, scaled, images)
  for name in names:
    np.testing.assert_allclose(float(after[name]), 1.0, rtol=1e-4, err_msg=name)
    # Only the scale changes: kernel = He kernel / (that layer's std with the layers below
    # already rescaled); biases stay zero.
    he_k, k = np.asarray(params[name]["kernel"]), np.asarray(scaled[name]["kernel"])
    live = he_k != 0
    np.testing.assert_allclose(he_k[live] / k[live], before[name], rtol=1e-5)
    assert not np.any(np.asarray(scaled[name]["kernel"])[~live])   # fc6's dead taps stay zero
    np.testing.assert_array_equal(scaled[name]["bias"], 0)
  np.testing.assert_allclose(before["conv1_1"], float(he["conv1_1"]), rtol=1e-5)
  assert not np.any(np.asarray(scaled["fc8"]["kernel"]))           # fc8 untouched (zero)


def test_lsuv_refuses_a_dead_layer():
  model, params, images = _tiny_classifier()
  params = dict(params, conv2_1=dict(params["conv2_1"], kernel=params["conv2_1"]["kernel"] * 0))
  with pytest.raises(FloatingPointError, match="conv2_1 has std 0"):
    lsuv.rescale(model, params, images, pretrain.LSUV_LAYERS)


def test_train_and_eval_mode_agree_without_dropout():
  """Dropout is the only train/eval difference: at rate 0 the logits are the same."""
  model, params, images = _tiny_classifier(dropout=0.0)
  params = dict(params, fc8=dict(params["fc8"], kernel=jax.random.normal(
      jax.random.key(2), params["fc8"]["kernel"].shape)))
  train = model.apply({"params": params}, images, train=True, rngs={"dropout": jax.random.key(1)})
  np.testing.assert_allclose(train, model.apply({"params": params}, images), rtol=1e-6)


def test_normalised_input_makes_sgd_on_conv1_1_r_squared_slower():
  """Training V = r W (pretrain.stored_params) is SGD on the input / r: one step moves conv1_1's
  kernel W by lr * dL/dW / r^2, every other layer by lr * dL/dW, and the file holds W."""
  model, params, images = _tiny_classifier(dropout=0.0)
  params = dict(params, fc8=dict(params["fc8"], kernel=jax.random.normal(
      jax.random.key(2), params["fc8"]["kernel"].shape) * 0.01))
  labels = jnp.arange(8) % 7
  opt = state_lib.OptimizerSpec(name="sgd", momentum=0.9, weight_decay=0.0, bias_lr_mult=1.0)

  def loss(p):
    logits = model.apply({"params": p}, images)
    return optax_ce(logits, labels)

  grads = jax.jit(jax.grad(loss))(params)
  r = np.float32(4.0)
  np.testing.assert_array_equal(pretrain.stored_params(pretrain.trained_params(params, r), r)[
      "conv1_1"]["kernel"], params["conv1_1"]["kernel"])
  state = {"step": jnp.zeros((), jnp.int32), "params": pretrain.trained_params(params, r),
           "opt_state": state_lib.make_optimizer(0.0, opt).init(params),
           "rng": jax.random.key_data(jax.random.key(0))}
  hparams = {"learning_rate": np.float32(0.1), "warmup_steps": np.float32(0),
             "num_steps": np.float32(1000), "input_rms": r}
  step = jax.jit(functools.partial(pretrain.train_step, model=model, opt=opt))
  state, _ = step(state, images, labels, hparams)
  new = pretrain.stored_params(state["params"], r)
  for name, scale in (("conv1_1", 1 / r**2), ("conv3_1", 1.0), ("fc7", 1.0)):
    np.testing.assert_allclose(params[name]["kernel"] - new[name]["kernel"],
                               0.1 * scale * grads[name]["kernel"], rtol=2e-3,
                               atol=1e-6 * float(jnp.abs(grads[name]["kernel"]).max()) + 1e-12,
                               err_msg=name)


def test_top1_counts_argmax_hits_over_uneven_batches():
  model, params, images = _tiny_classifier()
  bias = np.zeros(7, np.float32)
  bias[3] = 1.0                               # fc8 kernel zero: every image is predicted class 3
  params = dict(params, fc8=dict(params["fc8"], bias=jnp.asarray(bias)))
  labels = np.array([3, 0, 3, 3, 1, 2, 6, 3], np.int32)
  assert pretrain.top1(model, params, images, labels, batch_size=3) == 4 / 8


def test_batches_are_seeded_epochs():
  a = [idx for (idx, _), _ in zip(pretrain.batches(10, 4, seed=3), range(5))]
  b = [idx for (idx, _), _ in zip(pretrain.batches(10, 4, seed=3), range(5))]
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  np.testing.assert_array_equal(np.sort(np.concatenate(a)[:10]), np.arange(10))   # one epoch
  np.testing.assert_array_equal(np.sort(np.concatenate(a)[10:20]), np.arange(10))


@pytest.mark.slow   # two runs of configs/pretrain.py:tiny, 4 steps each: ~40 s idle, 4 min loaded
def test_tiny_pretraining_reports_what_its_file_holds_and_repeats_bit_for_bit(tiny_classes_dir,
                                                                          tmp_path):
  config = importlib.import_module("configs.pretrain").get_config("tiny")
  config.data_dir, config.init = tiny_classes_dir, "lsuv"
  runs = []
  for name in ("a", "b"):
    config.out = str(tmp_path / f"{name}.npz")
    runs.append(pretrain.pretrain(config))
  a, b = runs
  assert a["sha256"] == b["sha256"]                      # a pure function of the config
  assert a["init"] == "lsuv" and set(a["init_output_stds"]) == set(pretrain.LSUV_LAYERS)
  assert [h["step"] for h in a["history"]] == [2, 4]
  stored = np.load(a["out"])
  meta = json.loads(str(stored["_meta"]))
  assert meta["heldout_top1"] == a["heldout_top1"] and meta["init"] == "lsuv"
  # The reported top-1 is the written params' top-1 on the held-out split, recomputed by hand.
  model = classifier.Classifier(num_classes=corpus.NUM_CLASSES, width=config.width)
  params = {}
  for key in stored.files:
    if key != "_meta":
      layer, leaf = key.split("/")
      params.setdefault(layer, {})[leaf] = jnp.asarray(stored[key])
  images, labels = pretrain.load_split(config.dataset, "heldout", tiny_classes_dir)
  logits = model.apply({"params": params}, jnp.asarray(images, jnp.float32))
  assert a["heldout_top1"] == float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


# ----------------------------------------------------------------- init_from: score rows ---


def _classifier_file(path, width, rows, num_classes=7):
  """A classifier .npz as pretrain writes it, fc8 / biases set to hand-checkable numbers."""
  model = classifier.Classifier(num_classes=num_classes, width=width)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3))))
  rng = np.random.default_rng(0)      # numbers from numpy: no compile of the RNG (seconds)
  flat = {f"{layer}/{leaf}": rng.standard_normal(v.shape).astype(np.float32)
          for layer, leaves in shapes["params"].items() for leaf, v in leaves.items()}
  n_in = flat["fc8/kernel"].shape[2]
  flat["fc8/kernel"] = (np.arange(n_in)[:, None] * 100 + np.arange(num_classes)[None, :]
                        ).astype(np.float32).reshape(1, 1, n_in, num_classes)
  flat["fc8/bias"] = np.arange(num_classes, dtype=np.float32) + 0.5
  return weights.save_npz(path, flat, width=width, score_rows=list(rows),
                          command=weights.PRETRAIN_COMMAND), flat


def test_score_fr_rows_are_the_classifier_rows_of_the_benchmark_classes(tmp_path):
  rows = (6, 0, 3)                       # VOC-like classes 1, 2, 3 <- classifier rows 6, 0, 3
  path, flat = _classifier_file(tmp_path / "c.npz", 1 / 16, rows)
  model = fcn.FCN(num_classes=4, variant="8s", width=1 / 16, mode="same")
  params = weights.load_params(path, model)
  k, b = np.asarray(params["score_fr"]["kernel"]), np.asarray(params["score_fr"]["bias"])
  assert k.shape == (1, 1, 256, 4)
  np.testing.assert_array_equal(k[0, 0, :, 0], 0)          # background row zero (the authors)
  np.testing.assert_array_equal(b, [0, 6.5, 0.5, 3.5])
  np.testing.assert_array_equal(k[0, 0, 5, :], [0, 506, 500, 503])   # input 5: 100 * 5 + row
  for layer in ("conv1_1", "conv5_3", "fc6", "fc7"):
    np.testing.assert_array_equal(params[layer]["kernel"], flat[f"{layer}/kernel"])
  for head in ("score_pool4", "score_pool3"):              # FCN's skip heads start at zero
    assert not np.any(np.asarray(params[head]["kernel"]))


def test_a_classifier_of_another_width_is_one_line_naming_file_and_command(tmp_path):
  path, _ = _classifier_file(tmp_path / "c.npz", 1 / 16, range(20), num_classes=25)
  model = state_lib.make_model(load_config("point", "synthetic").model)   # width 1/8
  for check in (lambda: weights.load_params(path, model),
                lambda: state_lib.check_init_from(path, model)):
    with pytest.raises(errors.WeightsError) as e:
      check()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    assert "python -m pointseg_jax.pretrain" in msg and "4 conv1_1 channels" in msg


# --------------------------------------------------------------------- :pretrained variant ---


def test_pretrained_variant_combines_with_others():
  c = config_lib.get_config("point", "pretrained")
  assert c.model.init_from == config_lib.PRETRAINED_INIT_FROM
  assert config_lib.get_config("squiggle", "pretrained,radius=25").data.squiggle_radius == 25
  assert config_lib.get_config("image", "tpu,pretrained").train.batch_size == 16
  assert config_lib.get_config("point").model.init_from is None
  with pytest.raises(errors.ConfigError, match="voc and pretrained exclude"):
    config_lib.get_config("point", "voc,pretrained")


@pytest.mark.skipif(not os.path.exists(config_lib.PRETRAINED_INIT_FROM),
                    reason="the committed pretrained backbone is not in this checkout")
def test_committed_backbone_loads_into_the_synthetic_model_with_its_score_rows():
  config = config_lib.get_config("point", "pretrained")
  model = state_lib.make_model(config.model)
  path = state_lib.check_init_from(config.model.init_from, model)
  params = weights.load_params(path, model)
  stored = np.load(path)
  meta = json.loads(str(stored["_meta"]))
  assert meta["score_rows"] == list(corpus.BENCHMARK_ROWS) and meta["width"] == 1 / 8
  # The file is what configs/pretrain.py makes (the command docs/training.md gives remakes it).
  made_by = importlib.import_module("configs.pretrain").get_config()
  assert (meta["num_steps"], meta["init"], meta["seed"]) == (made_by.num_steps, made_by.init,
                                                             made_by.seed)
  assert meta["optimizer"] == made_by.optimizer.to_dict() and meta["heldout_top1"] > 0.2
  fc8 = stored["fc8/kernel"][0, 0]
  np.testing.assert_array_equal(params["score_fr"]["kernel"][0, 0, :, 1:],
                                fc8[:, list(corpus.BENCHMARK_ROWS)])
  np.testing.assert_array_equal(params["score_fr"]["kernel"][..., 0], 0)
  np.testing.assert_array_equal(params["conv3_2"]["kernel"], stored["conv3_2/kernel"])


def test_missing_pretrained_file_names_the_command(tmp_path, monkeypatch):
  missing = str(tmp_path / "vgg16_w8_synthetic_classes.npz")
  monkeypatch.setattr(config_lib, "PRETRAINED_INIT_FROM", missing)
  with pytest.raises(errors.MissingInputError, match="python -m pointseg_jax.pretrain"):
    state_lib.check_init_from(missing)

"""VGG16 weight import: Keras and torchvision files -> FCN params, parity with each framework's forward."""
import collections
import io
import json
import pathlib
import pickle
import sys
import types
import zipfile

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pointseg_jax.models import FCN
from pointseg_jax.models import fcn
from pointseg_jax.models import vgg16
from pointseg_jax.models import weights
from pointseg_jax.models.weights import load_params

CLI = "pointseg_jax.models.weights"

WIDTH = 1 / 8
SIZE = 224       # VGG's classifier input: pool5 is 7x7, so fc6 = Keras' fc1 / torchvision's Linear
ROWS = list(weights.PASCAL_FROM_ILSVRC)


def _rel_close(got, want, rtol=1e-4):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (got.shape, want.shape)
  scale = np.abs(want).max()
  assert scale > 0
  np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


def _images(seed=0, n=1, hw=(SIZE, SIZE)):
  return np.random.default_rng(seed).uniform(0, 255, (n, *hw, 3)).astype(np.float32)


def _ours(params, images, width=WIDTH):
  """Our FCN ('same' mode, the classifier geometry at 224) -> conv block ends, fc7, score at centre."""
  model = FCN(mode="same", width=width)
  logits, state = jax.jit(lambda p, x: model.apply(
      {"params": p}, x, capture_intermediates=True, mutable=["intermediates"]))(params, images)
  inter = state["intermediates"]
  out = {name: np.maximum(np.asarray(inter[name]["__call__"][0]), 0)
         for name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")}
  # fc6 SAME on the 7x7 pool5: its centre pixel sees exactly the 7x7 window of the VALID fc layer
  out["fc7"] = np.maximum(np.asarray(inter["fc7"]["__call__"][0])[:, 3, 3], 0)
  out["score"] = np.asarray(inter["score_fr"]["__call__"][0])[:, 3, 3]
  assert logits.shape == (*images.shape[:3], 21)
  return out


# -------------------------------------------------------------------------------------- Keras ---

keras = pytest.importorskip("keras")


def _keras_vgg16(width=WIDTH, seed=0):
  """keras.applications.VGG16's graph and layer names at a width multiplier, random weights."""
  keras.utils.set_random_seed(seed)
  kl = keras.layers
  init = dict(bias_initializer=keras.initializers.RandomNormal(stddev=0.1))
  inp = keras.Input((SIZE, SIZE, 3))
  x = inp
  for b, block in enumerate(vgg16.BLOCKS, start=1):
    for i, (_, c) in enumerate(block, start=1):
      x = kl.Conv2D(vgg16.scaled(c, width), 3, padding="same", activation="relu",
                    name=f"block{b}_conv{i}", **init)(x)
    x = kl.MaxPooling2D(2, 2, name=f"block{b}_pool")(x)
  x = kl.Flatten(name="flatten")(x)
  fc = vgg16.scaled(4096, width)
  x = kl.Dense(fc, activation="relu", name="fc1", **init)(x)
  x = kl.Dense(fc, activation="relu", name="fc2", **init)(x)
  x = kl.Dense(1000, name="predictions", **init)(x)    # logits (classifier_activation=None)
  return keras.Model(inp, x, name="vgg16")


def _keras_outputs(model, images):
  names = ["block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3", "fc2",
           "predictions"]
  probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
  # Keras' VGG16 input: 'caffe' preprocessing = BGR minus a mean (here the FCN one, vgg16.BGR_MEAN)
  outs = probe.predict(images[..., ::-1] - np.asarray(vgg16.BGR_MEAN, np.float32), verbose=0)
  ours = ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc7", "fc8"]
  return dict(zip(ours, outs))


def _write_keras2_h5(path, layers):
  """The classic Keras-2 download layout (vgg16_weights_tf_dim_ordering_tf_kernels.h5): one group
  per layer with 'layer_names' / 'weight_names' attributes and '<layer>_W_1:0' names.
  `layers`: [(name, [kernel, bias] or [])]."""
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
    for name, arrays in layers:
      g = f.create_group(name)
      wn = [f"{name}_{s}_1:0".encode() for s in ("W", "b")][:len(arrays)]
      g.attrs["weight_names"] = np.array(wn)
      for n, w in zip(wn, arrays):
        g.create_dataset(n.decode(), data=w)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
  d = tmp_path_factory.mktemp("keras")
  model = _keras_vgg16()
  paths = {"h5": str(d / "vgg16.h5"), "keras": str(d / "vgg16.keras"),
           "weights.h5": str(d / "vgg16.weights.h5")}
  model.save(paths["h5"])
  model.save(paths["keras"])
  model.save_weights(paths["weights.h5"])
  paths["keras2.h5"] = str(d / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
  _write_keras2_h5(paths["keras2.h5"],
                   [(layer.name, layer.get_weights()) for layer in model.layers])
  return model, paths


@pytest.fixture(scope="module")
def keras_cli_run(keras_files, tmp_path_factory, run_cli):
  """The converter CLI on the Keras .h5, with --out given without the .npz suffix."""
  _, paths = keras_files
  out = tmp_path_factory.mktemp("conv") / "fcn_init"
  proc = run_cli(CLI, "convert", "--from", "keras", paths["h5"], f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc, f"{out}.npz"


@pytest.fixture(scope="module")
def keras_converted(keras_cli_run):
  return keras_cli_run[1]


def test_cli_prints_the_path_it_wrote_and_no_runpy_warning(keras_cli_run):
  proc, written = keras_cli_run
  # numpy appends '.npz' to a suffix-less --out: the message names the file that exists.
  assert proc.stdout.startswith(f"wrote {written}: 32 arrays,"), proc.stdout
  assert pathlib.Path(written).is_file()
  assert not pathlib.Path(written[:-len(".npz")]).exists()
  assert "RuntimeWarning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_every_keras_file_format_converts_to_the_same_arrays(keras_files):
  model, paths = keras_files
  flats = {fmt: weights.convert("keras", p) for fmt, p in paths.items()}
  ref = flats.pop("h5")
  kw = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
  np.testing.assert_array_equal(ref["conv1_1/kernel"], kw["block1_conv1"][0])     # HWIO, BGR as is
  np.testing.assert_array_equal(ref["fc6/kernel"].reshape(-1, 512), kw["fc1"][0])  # HWC flatten
  for fmt, flat in flats.items():
    assert set(flat) == set(ref), fmt
    for k in ref:
      np.testing.assert_array_equal(flat[k], ref[k], err_msg=f"{fmt} {k}")


def test_keras_vgg16_activations_and_logits_match_ours(keras_files, keras_converted):
  model, _ = keras_files
  params = load_params(keras_converted, FCN(mode="same", width=WIDTH))
  images = _images(1, n=2)
  want = _keras_outputs(model, images)
  got = _ours(params, images)
  for name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc7"):
    _rel_close(got[name], want[name])
  # score_fr = the authors' classifier init: background 0, class k = ILSVRC logit ROWS[k-1]
  np.testing.assert_array_equal(got["score"][:, 0], 0.0)
  _rel_close(got["score"][:, 1:], want["fc8"][:, ROWS])


def test_score_fr_rows_are_the_authors_ilsvrc_classes(keras_files, keras_converted):
  model, _ = keras_files
  fc8_w, fc8_b = model.get_layer("predictions").get_weights()
  with np.load(keras_converted) as z:
    k, b = z["score_fr/kernel"], z["score_fr/bias"]
    meta = json.loads(str(z["_meta"]))
  assert k.shape == (1, 1, 512, 21) and meta["format"] == "keras"
  assert not k[..., 0].any() and b[0] == 0
  # hand-picked rows: 1 aeroplane <- 404 airliner, 15 person <- 981 ballplayer, 20 tv <- 664 monitor
  for cls, row in ((1, 404), (15, 981), (20, 664), (8, 284)):
    np.testing.assert_array_equal(k[0, 0, :, cls], fc8_w[:, row])
    assert b[cls] == fc8_b[row]


@pytest.mark.slow
def test_full_keras_applications_vgg16_end_to_end(tmp_path, run_cli):
  """The real keras.applications.VGG16 graph (random weights), .h5 -> CLI -> FCN-32s parity."""
  keras.utils.set_random_seed(7)
  model = keras.applications.VGG16(weights=None, classifier_activation=None)
  src, out = str(tmp_path / "vgg16.h5"), str(tmp_path / "fcn32s.npz")
  model.save(src)
  proc = run_cli(CLI, "convert", "--from=keras", src, f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  params = load_params(out, FCN(mode="same"))
  assert fcn.param_count(params) == 134_346_581
  images = _images(2)
  want, got = _keras_outputs(model, images), _ours(params, images, width=1.0)
  for name in ("conv3_3", "conv5_3", "fc7"):
    _rel_close(got[name], want[name])
  _rel_close(got["score"][:, 1:], want["fc8"][:, ROWS])


# -------------------------------------------------------------------------------- torchvision ---


def _torchvision_state_dict(width=WIDTH, seed=0):
  """A torchvision vgg16 state dict at a width multiplier: OIHW convs, Linear [out, in]."""
  rng = np.random.default_rng(seed)
  sd, cin = collections.OrderedDict(), 3
  for name, idx in weights.TORCHVISION_INDEX.items():
    if name in weights.FC_NAMES:
      continue
    cout = vgg16.scaled(dict(b for blk in vgg16.BLOCKS for b in blk)[name], width)
    sd[f"features.{idx}.weight"] = (rng.standard_normal((cout, cin, 3, 3)) *
                                    np.sqrt(2 / (9 * cin))).astype(np.float32)
    sd[f"features.{idx}.bias"] = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    cin = cout
  fc = vgg16.scaled(4096, width)
  for name, n_in, n_out in (("fc6", 49 * cin, fc), ("fc7", fc, fc), ("fc8", fc, 1000)):
    idx = weights.TORCHVISION_INDEX[name]
    sd[f"classifier.{idx}.weight"] = (rng.standard_normal((n_out, n_in)) *
                                      np.sqrt(2 / n_in)).astype(np.float32)
    sd[f"classifier.{idx}.bias"] = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
  return sd


def _conv_nchw(x, w, b, pad_value=None):
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  if pad_value is not None:   # pad channel c with pad_value[c] instead of 0
    inside = np.zeros(xp.shape[2:], bool)
    inside[1:-1, 1:-1] = True
    xp = np.where(inside, xp, np.asarray(pad_value)[None, :, None, None])
  win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))   # [N, C, H, W, 3, 3]
  return np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2) + b[:, None, None]


def _torchvision_forward(sd, images, conv1_pad_pixel=None):
  """torchvision's VGG16 forward in numpy (NCHW, RGB (x/255 - mean)/std, (C,H,W) flatten).

  conv1_pad_pixel: an RGB 0..255 pixel whose normalised value pads conv1_1's input (torchvision
  pads with 0, i.e. the pixel 255*mean).
  """
  norm = lambda v: (np.asarray(v) / 255.0 - np.asarray(weights.TORCHVISION_MEAN)) / np.asarray(
      weights.TORCHVISION_STD)
  x = norm(images).transpose(0, 3, 1, 2).astype(np.float64)
  pad = None if conv1_pad_pixel is None else norm(conv1_pad_pixel)
  out = {}
  for block in vgg16.BLOCKS:
    for name, _ in block:
      idx = weights.TORCHVISION_INDEX[name]
      x = np.maximum(_conv_nchw(x, sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"],
                                pad if name == "conv1_1" else None), 0)
      out[name] = x.transpose(0, 2, 3, 1)
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
  x = x.reshape(x.shape[0], -1)
  for name in weights.FC_NAMES:
    idx = weights.TORCHVISION_INDEX[name]
    x = x @ sd[f"classifier.{idx}.weight"].T + sd[f"classifier.{idx}.bias"]
    out[name] = x = np.maximum(x, 0) if name != "fc8" else x
  return out


# A torch.save writer without torch: the same pickle opcodes (torch._utils._rebuild_tensor_v2 +
# persistent storage ids), produced with stand-in `torch` modules registered only while writing.
class _StorageRef:
  def __init__(self, key, data):
    self.key, self.data = key, data


class _TensorRef:
  def __init__(self, storage, offset, shape, stride, rebuild):
    self.args = (storage, offset, shape, stride)
    self.rebuild = rebuild

  def __reduce_ex__(self, protocol):
    return (self.rebuild, (*self.args, False, collections.OrderedDict()))


def _torch_save(path, sd, legacy, monkeypatch):
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")
  float_storage = type("FloatStorage", (), {"__module__": "torch"})
  def _rebuild_tensor_v2(*args):
    raise AssertionError("never called while writing")
  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = float_storage, utils, _rebuild_tensor_v2
  storages, obj = {}, collections.OrderedDict()
  items = list(sd.items())
  for i, (k, v) in enumerate(items):
    v = np.ascontiguousarray(v, np.float32)
    if k == "classifier.3.weight":     # stored transposed: a non-contiguous stride, like a .t()
      s = _StorageRef(str(i), v.T.copy().ravel())
      obj[k] = _TensorRef(s, 0, v.shape, (1, v.shape[0]), _rebuild_tensor_v2)
    elif k.endswith(".bias") and i > 0 and items[i - 1][0].endswith(".weight") and k.startswith("features"):
      prev = storages[str(i - 1)]      # bias shares its weight's storage at an offset
      n0 = prev.data.size
      prev.data = np.concatenate([prev.data, v.ravel()])
      obj[k] = _TensorRef(prev, n0, v.shape, (1,), _rebuild_tensor_v2)
      continue
    else:
      s = _StorageRef(str(i), v.ravel())
      strides = tuple(int(np.prod(v.shape[j + 1:])) for j in range(v.ndim))
      obj[k] = _TensorRef(s, 0, v.shape, strides, _rebuild_tensor_v2)
    storages[s.key] = s

  class Pickler(pickle.Pickler):
    def persistent_id(self, o):
      if isinstance(o, _StorageRef):
        pid = ("storage", float_storage, o.key, "cpu", o.data.size)
        return pid + (None,) if legacy else pid
      return None

  with monkeypatch.context() as m:
    m.setitem(sys.modules, "torch", torch)
    m.setitem(sys.modules, "torch._utils", utils)
    buf = io.BytesIO()
    if legacy:
      for header in (weights._LEGACY_MAGIC, 1001, dict(protocol_version=1001, little_endian=True)):
        pickle.dump(header, buf, protocol=2)
    Pickler(buf, protocol=2).dump(obj)
  if legacy:
    keys = sorted(storages)
    pickle.dump(keys, buf, protocol=2)
    for k in keys:
      buf.write(np.int64(storages[k].data.size).tobytes())
      buf.write(storages[k].data.astype("<f4").tobytes())
    with open(path, "wb") as f:
      f.write(buf.getvalue())
  else:
    with zipfile.ZipFile(path, "w") as z:
      z.writestr("vgg16/data.pkl", buf.getvalue())
      z.writestr("vgg16/byteorder", "little")
      z.writestr("vgg16/version", "3\n")
      for k, s in storages.items():
        z.writestr(f"vgg16/data/{k}", s.data.astype("<f4").tobytes())


@pytest.fixture(scope="module")
def torchvision_sd():
  return _torchvision_state_dict()


@pytest.mark.parametrize("container", ["npz", "zip.pth", "legacy.pth"])
def test_torchvision_containers_read_without_torch(container, torchvision_sd, tmp_path, monkeypatch):
  path = str(tmp_path / f"vgg16.{container}")
  if container == "npz":
    np.savez(path, **torchvision_sd)
  else:
    _torch_save(path, torchvision_sd, container == "legacy.pth", monkeypatch)
  monkeypatch.setitem(sys.modules, "torch", None)    # `import torch` fails: our readers are used
  ref = weights.convert("torchvision", path)
  if container != "npz":
    sd = weights._torch_file(path)
    assert list(sd) == list(torchvision_sd)
    for k, v in torchvision_sd.items():
      np.testing.assert_array_equal(sd[k], v, err_msg=k)
  fc7 = torchvision_sd["classifier.3.weight"]
  np.testing.assert_array_equal(ref["fc7/kernel"][0, 0], fc7.T)
  assert ref["fc6/kernel"].shape == (7, 7, 64, 512)


def test_torchvision_weights_match_a_torchvision_forward(torchvision_sd, tmp_path):
  src, out = str(tmp_path / "vgg16_tv.npz"), str(tmp_path / "fcn.npz")
  np.savez(src, **torchvision_sd)
  weights.save_npz(out, weights.convert("torchvision", src))
  params = load_params(out, FCN(mode="same", width=WIDTH))
  images = _images(3)
  got = _ours(params, images)
  # The fold is exact for every pixel whose 3x3 window lies inside the image; at the border our
  # zero padding of (x - Caffe mean) is the Caffe mean pixel, torchvision's is the pixel 255*mean.
  # With that one pad value made equal, the whole network agrees ...
  caffe_mean_rgb = np.asarray(vgg16.BGR_MEAN[::-1])
  want = _torchvision_forward(torchvision_sd, images, conv1_pad_pixel=caffe_mean_rgb)
  for name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc7"):
    _rel_close(got[name], want[name])
  np.testing.assert_array_equal(got["score"][:, 0], 0.0)
  _rel_close(got["score"][:, 1:], want["fc8"][:, ROWS])
  # ... and with torchvision's own padding conv1_1 agrees everywhere but the 1-pixel border.
  real = _torchvision_forward(torchvision_sd, images)["conv1_1"]
  _, state = FCN(mode="same", width=WIDTH).apply(
      {"params": params}, jnp.asarray(images), capture_intermediates=True, mutable=["intermediates"])
  ours = np.maximum(np.asarray(state["intermediates"]["conv1_1"]["__call__"][0]), 0)
  _rel_close(ours[:, 1:-1, 1:-1], real[:, 1:-1, 1:-1], 1e-5)
  border = np.abs(ours[:, 0] - real[:, 0]).max() / np.abs(real).max()
  assert 1e-5 < border < 0.05, border     # small, real, documented


def test_torchvision_batchnorm_vgg_is_refused(torchvision_sd, tmp_path):
  sd = dict(torchvision_sd, **{"features.1.running_mean": np.zeros(8, np.float32)})
  path = str(tmp_path / "vgg16_bn.npz")
  np.savez(path, **sd)
  with pytest.raises(weights.WeightsError, match="batch-norm"):
    weights.convert("torchvision", path)


# ---------------------------------------------------------------------- npz source, score init ---


def test_npz_sources_our_paths_and_W_b_style(keras_converted, tmp_path):
  with np.load(keras_converted) as z:
    ref = {k: z[k] for k in z.files if k != "_meta"}
  again = weights.convert("npz", keras_converted)       # keeps the file's 21-way score_fr
  for k in ref:
    np.testing.assert_array_equal(again[k], ref[k], err_msg=k)
  skip = np.full((1, 1, 64, 21), 0.5, np.float32)        # an FCN-16s file keeps its skip head
  fcn16s = str(tmp_path / "fcn16s.npz")
  np.savez(fcn16s, **ref, **{"score_pool4/kernel": skip, "score_pool4/bias": np.ones(21, np.float32)})
  np.testing.assert_array_equal(weights.convert("npz", fcn16s)["score_pool4/kernel"], skip)
  # '<layer>_W' / '<layer>_b' (a common VGG16 .npz), fc kernels flattened [in, out], RGB conv1_1
  wb = {}
  for k, v in ref.items():
    layer, leaf = k.split("/")
    if layer.startswith("score"):
      continue
    if layer in ("fc6", "fc7") and leaf == "kernel":
      v = v.reshape(-1, v.shape[-1])
    if layer == "conv1_1" and leaf == "kernel":
      v = v[:, :, ::-1]
    wb[f"{layer}_{'W' if leaf == 'kernel' else 'b'}"] = v
  path = str(tmp_path / "vgg16_weights.npz")
  np.savez(path, **wb)
  flat = weights.convert("npz", path, conv1_order="rgb")
  for k in ref:
    if not k.startswith("score"):
      np.testing.assert_array_equal(flat[k], ref[k], err_msg=k)
  assert not flat["score_fr/kernel"].any()          # no fc8 in that file: zeros


def test_without_fc8_score_fr_starts_at_zero_and_says_so(torchvision_sd, tmp_path, caplog):
  sd = {k: v for k, v in torchvision_sd.items() if not k.startswith("classifier.6")}
  path = str(tmp_path / "no_fc8.npz")
  np.savez(path, **sd)
  flat = weights.convert("torchvision", path)
  assert "score_fr initialised to zeros: the source has no fc8" in caplog.text
  assert not flat["score_fr/kernel"].any() and not flat["score_fr/bias"].any()
  flat = weights.convert("torchvision", str(tmp_path / "no_fc8.npz"), num_classes=5)
  assert flat["score_fr/kernel"].shape == (1, 1, 512, 5)


def test_other_class_counts_start_at_zero(torchvision_sd, tmp_path, caplog):
  path = str(tmp_path / "tv.npz")
  np.savez(path, **torchvision_sd)
  flat = weights.convert("torchvision", path, num_classes=3)
  assert "rows are for 21 classes, not 3" in caplog.text
  assert flat["score_fr/kernel"].shape == (1, 1, 512, 3) and not flat["score_fr/kernel"].any()


def test_missing_fc_layers_name_the_notop_file(keras_files, tmp_path):
  model, _ = keras_files
  notop = keras.Model(model.input, model.get_layer("block5_pool").output)
  path = str(tmp_path / "notop.weights.h5")
  notop.save_weights(path)
  with pytest.raises(weights.WeightsError, match=r"missing VGG16 layers \['fc6', 'fc7'\].*notop"):
    weights.convert("keras", path)


def test_wrong_source_files_are_clear_errors(tmp_path):
  text = tmp_path / "not_weights.h5"
  text.write_text("hello")
  with pytest.raises(weights.WeightsError, match="not_weights.h5.*Keras"):
    weights.convert("keras", str(text))
  with pytest.raises(weights.WeightsError, match="not a PyTorch file"):
    weights.convert("torchvision", str(text))
  with pytest.raises(FileNotFoundError, match="nope.h5"):
    weights.convert("keras", str(tmp_path / "nope.h5"))
  with pytest.raises(weights.WeightsError, match="--from"):
    weights.convert("caffe", str(text))
  with pytest.raises(weights.WeightsError, match="conv1_order does not apply to torchvision"):
    weights.convert("torchvision", str(text), conv1_order="rgb")


# ------------------------------------------------------------------------------- load_params ---


def test_load_params_fills_16s_and_8s_skip_heads_with_zeros(keras_converted):
  params = load_params(keras_converted, FCN(variant="8s", width=WIDTH))
  assert params["score_pool4"]["kernel"].shape == (1, 1, 64, 21)
  assert not np.asarray(params["score_pool3"]["kernel"]).any()
  abstract = fcn.abstract_variables(FCN(variant="8s", width=WIDTH))   # variables tree works too
  params2 = load_params(keras_converted, abstract)
  np.testing.assert_array_equal(params2["fc6"]["kernel"], params["fc6"]["kernel"])


def test_load_params_reads_tensorflow_file_system_urls(keras_converted):
  tf = pytest.importorskip("tensorflow")
  url = "ram://fcn_init/keras.npz"      # stands in for gs://... on Cloud TPU
  tf.io.gfile.makedirs("ram://fcn_init")
  tf.io.gfile.copy(keras_converted, url, overwrite=True)
  params = load_params(url, FCN(width=WIDTH))
  with np.load(keras_converted) as z:
    np.testing.assert_array_equal(params["fc6"]["kernel"], z["fc6/kernel"])
  with pytest.raises(FileNotFoundError, match="ram://fcn_init/absent.npz"):
    load_params("ram://fcn_init/absent.npz", FCN(width=WIDTH))


def test_load_params_checks_every_leaf(keras_converted, tmp_path):
  with np.load(keras_converted) as z:
    flat = {k: z[k] for k in z.files}
  with pytest.raises(weights.WeightsError,
                     match=r"conv1_1/kernel: file has \(3, 3, 3, 8\), model expects \(3, 3, 3, 16\)"):
    load_params(keras_converted, FCN(width=2 * WIDTH))
  with pytest.raises(weights.WeightsError, match=r"score_fr/kernel: file has .*21\), model expects .*5\)"):
    load_params(keras_converted, FCN(width=WIDTH, num_classes=5))
  missing = str(tmp_path / "missing.npz")
  np.savez(missing, **{k: v for k, v in flat.items() if k != "fc7/kernel"})
  with pytest.raises(weights.WeightsError, match=r"missing layers \['fc7/kernel'\]"):
    load_params(missing, FCN(width=WIDTH))
  extra = str(tmp_path / "extra.npz")
  np.savez(extra, **flat, **{"fc8/kernel": np.zeros((1, 1, 512, 1000), np.float32)})
  with pytest.raises(weights.WeightsError, match=r"does not have \['fc8/kernel'\]"):
    load_params(extra, FCN(width=WIDTH))
  foreign = str(tmp_path / "foreign.npz")
  np.savez(foreign, a=np.zeros(3))
  with pytest.raises(weights.WeightsError, match="foreign.npz: no FCN param paths"):
    load_params(foreign, FCN(width=WIDTH))
  text = tmp_path / "text.npz"
  text.write_text("not a zip")
  with pytest.raises(weights.WeightsError, match="text.npz: not an .npz file.*it should be the FCN "
                     "params .npz") as e:
    load_params(str(text), FCN(width=WIDTH))
  assert "allow_pickle" not in str(e.value)
  with pytest.raises(FileNotFoundError, match="convert"):
    load_params(str(tmp_path / "absent.npz"), FCN(width=WIDTH))


def test_cli_info_lists_a_converted_file(keras_converted, run_cli):
  proc = run_cli(CLI, "info", keras_converted)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "fc6/kernel ((7, 7, 64, 512), dtype('float32'))" in proc.stdout
  assert '"format": "keras"' in proc.stdout
  assert "RuntimeWarning" not in proc.stderr, proc.stderr


def test_cli_missing_source_is_one_line_and_writes_nothing(tmp_path, run_cli):
  proc = run_cli(CLI, "convert", "--from=keras", tmp_path / "x.h5", f"--out={tmp_path / 'y.npz'}")
  assert "x.h5: no such file" in run_cli.error(proc)
  assert not (tmp_path / "y.npz").exists()


def test_info_on_files_that_are_not_npz_says_what_the_file_should_be(tmp_path, run_cli):
  """A text file, a lone .npy, a zip of something else, pickled objects: one line each, never
  numpy's `allow_pickle` advice (pickles are never loaded)."""
  text = tmp_path / "notes.txt"
  text.write_text("hello\n")
  line = run_cli.error(run_cli(CLI, "info", text))
  assert "notes.txt: not an .npz file" in line and "should be the FCN params .npz" in line, line
  assert "allow_pickle" not in line and "pickle" not in line.lower()
  npy = tmp_path / "one.npy"
  np.save(npy, np.zeros(3))
  with pytest.raises(weights.WeightsError, match="one.npy: not an .npz file"):
    weights.info_lines(str(npy))
  other_zip = tmp_path / "model.keras"
  with zipfile.ZipFile(other_zip, "w") as z:
    z.writestr("config.json", "{}")
  with pytest.raises(weights.WeightsError, match="member 'config.json' is not a numpy array"):
    weights.info_lines(str(other_zip))
  objects = tmp_path / "objects.npz"
  np.savez(objects, a=np.array([{"x": 1}], dtype=object))
  with pytest.raises(weights.WeightsError, match="holds Python objects.*never loaded") as e:
    weights.info_lines(str(objects))
  assert "allow_pickle" not in str(e.value)
  with pytest.raises(weights.WeightsError, match="objects.npz: .*holds Python objects"):
    weights.convert("npz", str(objects))


def _with_vgg19_convs(layers):
  """keras.applications' VGG19 names: VGG16 plus block3_conv4, block4_conv4, block5_conv4."""
  out = []
  for name, arrays in layers:
    out.append((name, arrays))
    if name in ("block3_conv3", "block4_conv3", "block5_conv3"):
      out.append((name[:-1] + "4", [a + 0.01 for a in arrays]))
  return out


def test_cli_refuses_a_vgg19_file_and_keeps_the_existing_output(keras_files, tmp_path, run_cli):
  """VGG19's extra convs would be dropped silently (fc7 then differs by relL2 2.4 from the real
  network): refused with one line, and an existing --out stays as it was."""
  model, _ = keras_files
  src = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
  _write_keras2_h5(str(src), _with_vgg19_convs(
      [(layer.name, layer.get_weights()) for layer in model.layers]))
  out = tmp_path / "init.npz"
  out.write_bytes(b"the user's previous file")
  line = run_cli.error(run_cli(CLI, "convert", "--from=keras", src, f"--out={out}"))
  assert "VGG16 does not have: ['conv3_4', 'conv4_4', 'conv5_4']" in line, line
  assert "VGG19" in line and "Use a VGG16 weights file" in line
  assert out.read_bytes() == b"the user's previous file"
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, out.name])


def test_vgg19_layers_are_refused_from_npz_and_torchvision(torchvision_sd, keras_converted,
                                                           tmp_path):
  with np.load(keras_converted) as z:
    flat = {k: z[k] for k in z.files if k != "_meta"}
  path = str(tmp_path / "vgg19.npz")
  np.savez(path, **flat, **{"conv5_4/kernel": flat["conv5_3/kernel"],
                            "conv5_4/bias": flat["conv5_3/bias"]})
  with pytest.raises(weights.WeightsError, match=r"VGG16 does not have: \['conv5_4'\]"):
    weights.convert("npz", path)
  # torchvision's vgg19 has convs at features.16, 25, 34 (ReLUs in vgg16) among others
  sd = dict(torchvision_sd)
  sd["features.16.weight"] = sd["features.14.weight"]
  sd["features.16.bias"] = sd["features.14.bias"]
  path = str(tmp_path / "vgg19_tv.npz")
  np.savez(path, **sd)
  with pytest.raises(weights.WeightsError,
                     match=r"layers \['features.16'\] are not in torchvision's vgg16.*vgg19"):
    weights.convert("torchvision", path)


def test_torchvision_text_file_is_a_clear_error_with_torch_installed(tmp_path):
  pytest.importorskip("torch")
  text = tmp_path / "vgg16.pth"
  text.write_text("hello")
  with pytest.raises(weights.WeightsError, match="vgg16.pth: not a PyTorch file"):
    weights.convert("torchvision", str(text))

"""VGG16 ImageNet weights -> FCN params (.npz), and loading such a file into the model.

    python -m pointseg_jax.models.weights convert --from=keras vgg16.h5 --out=fcn32s_init.npz
    python -m pointseg_jax.models.weights convert --from=torchvision vgg16-397923af.pth \
        --out=init.npz
    python -m pointseg_jax.models.weights info init.npz

The first argument is the command: `convert SRC` (flags --from, --out, --num_classes,
--conv1_order) or `info PATH` (lists the arrays of a converted .npz).

Sources and how each is made to see our input (BGR, 0..255 minus the Caffe VGG mean, vgg16.py):
  keras        `keras.applications.VGG16` files (.h5 legacy/Keras-2, .keras, .weights.h5). Keras'
               VGG16 is the Caffe model: BGR 'caffe' preprocessing, HWIO kernels, Dense kernels
               [in, out] with Flatten in (H, W, C) order -> taken as is.
  torchvision  a `torchvision.models.vgg16` state dict (.pth/.pt, read without torch when it is not
               installed; or an .npz with the same keys). OIHW -> HWIO; Linear [out, in] -> [in, out];
               fc6's input is flattened (C, H, W) -> reordered to (H, W, C); conv1_1 takes RGB
               (x/255 - mean)/std -> its input channels are flipped to BGR, divided by 255*std, and
               the mean difference is folded into its bias (exact except at the zero-padded image
               border, where torchvision's pad value is the pixel 255*mean and ours the Caffe mean:
               at most 1 grey level apart).
  npz          our own param paths ('conv1_1/kernel', ...) or the `conv1_1_W`/`conv1_1_b` style;
               HWIO kernels (fc kernels 4-D or [in, out] flattened (H, W, C)), conv1_1 BGR unless
               --conv1_order=rgb.
Only VGG16 converts: a file with conv layers VGG16 does not have (VGG19's conv3_4, conv4_4,
conv5_4, another VGG's layout) is refused rather than silently cut down to VGG16.
The 21-way `score_fr` follows the authors (docs/model.md, "The classifier init"): background row
zero, rows 1..20 = ImageNet fc8 rows `PASCAL_FROM_ILSVRC`. Without fc8 (or for num_classes != 21)
it starts at zero, the FCN authors' choice for full supervision, and the converter says so.

The output .npz maps flattened param paths ('fc6/kernel', ...) to arrays, plus '_meta' (JSON).
`load_params(path, model_or_params)` reads it back, checking every leaf. Every .npz is read with
pickles refused: a file that is not a zip of plain numpy arrays is a `WeightsError` saying so.
"""
import collections
import io
import json
import os
import pickle
import re
import zipfile
from typing import Any, Callable, Mapping

from absl import app
from absl import flags
from absl import logging
from flax import traverse_util
import h5py
import jax.numpy as jnp
import numpy as np

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax.models import fcn
from pointseg_jax.models import vgg16

# 0-based ILSVRC-2012 fc8 rows for PASCAL classes 1..20 (the authors' mapping.txt; docs/model.md).
PASCAL_FROM_ILSVRC = (404, 671, 12, 814, 907, 654, 609, 284, 559, 345,
                      532, 234, 339, 665, 981, 738, 348, 831, 466, 664)
FORMATS = ("keras", "torchvision", "npz")
FC_NAMES = ("fc6", "fc7", "fc8")
# torchvision.models.vgg16: index of each conv in `features`, of each Linear in `classifier`.
TORCHVISION_INDEX = dict(zip(vgg16.CONV_NAMES, (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)))
TORCHVISION_INDEX.update({"fc6": 0, "fc7": 3, "fc8": 6})
TORCHVISION_MEAN = (0.485, 0.456, 0.406)   # RGB, on 0..1 pixels
TORCHVISION_STD = (0.229, 0.224, 0.225)
META_KEY = "_meta"
# What remakes the committed pretrained backbone (config_lib.PRETRAINED_INIT_FROM), bit-exact on
# the same machine type (docs/training.md, "Pretraining").
PRETRAIN_COMMAND = ("taskset -c 1 python -m pointseg_jax.pretrain --config=configs/pretrain.py "
                    "--config.data_dir=/tmp/tfds_pretrain")
COMMANDS = ("convert", "info")
FLAGS = flags.FLAGS

# A VGG in our layout: name -> {'kernel', 'bias'}; convs HWIO taking BGR (conv1_1), fc kernels
# [in, out] with fc6's input flattened (H, W, C).
Vgg = dict[str, dict[str, np.ndarray]]


class WeightsError(errors.WeightsError):
  """A weights file that cannot become FCN params; the message names the file, layer and fix."""


# ------------------------------------------------------------------------------------ Keras ---


def _keras_name(name: str) -> str | None:
  m = re.fullmatch(r"block(\d)_conv(\d)", name)
  if m:
    return f"conv{m[1]}_{m[2]}"
  return {"fc1": "fc6", "fc2": "fc7", "predictions": "fc8"}.get(name)


def _kernel_bias(arrays: list[np.ndarray], where: str) -> dict[str, np.ndarray]:
  kernels = [a for a in arrays if a.ndim >= 2]
  biases = [a for a in arrays if a.ndim == 1]
  if len(kernels) != 1 or len(biases) != 1:
    raise WeightsError(f"{where}: expected one kernel and one bias, found shapes "
                       f"{[a.shape for a in arrays]}")
  return {"kernel": kernels[0], "bias": biases[0]}


def _h5_layers(f) -> dict[str, list[np.ndarray]]:
  """Layer name -> weight arrays of a Keras HDF5 file (Keras 3 or legacy Keras 1/2 layout)."""
  out = {}
  if "layers" in f and isinstance(f["layers"], h5py.Group):   # Keras 3 (.weights.h5, .keras)
    def visit(_, obj):
      if isinstance(obj, h5py.Group) and "name" in obj.attrs and obj.name.endswith("/vars"):
        arrays = [obj[k][()] for k in sorted(obj.keys(), key=int)]
        if arrays:
          out[str(obj.attrs["name"])] = arrays
    f.visititems(visit)
    return out
  root = f["model_weights"] if "model_weights" in f else f
  if "layer_names" not in root.attrs:
    raise WeightsError("not a Keras weights file (no 'layers' group, no 'layer_names' attribute)")
  for raw in root.attrs["layer_names"]:
    name = raw.decode() if isinstance(raw, bytes) else str(raw)
    group = root[name]
    names = [n.decode() if isinstance(n, bytes) else str(n)
             for n in group.attrs.get("weight_names", [])]
    if names:
      out[name] = [group[n][()] for n in names]
  return out


def read_keras(path: str) -> Vgg:
  """A Keras VGG16 file (.h5, .keras, .weights.h5) -> Vgg (already our layout: BGR, HWIO)."""
  try:
    if zipfile.is_zipfile(path):   # .keras: a zip holding model.weights.h5
      with zipfile.ZipFile(path) as z:
        if "model.weights.h5" not in z.namelist():
          raise WeightsError(f"{path}: a zip without model.weights.h5 is not a .keras file")
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
          raw = _h5_layers(f)
    else:
      with h5py.File(path, "r") as f:
        raw = _h5_layers(f)
  except OSError as e:
    raise WeightsError(f"{path}: cannot be read as a Keras HDF5/.keras file ({e})") from e
  except WeightsError as e:
    raise WeightsError(f"{path}: {e}") from e
  vgg = {}
  for name, arrays in raw.items():
    ours = _keras_name(name)
    if ours is not None:
      vgg[ours] = _kernel_bias(arrays, f"{path} layer {name}")
  return vgg


# ------------------------------------------------------------------------------ torchvision ---


class _Storage:
  def __init__(self, dtype, key, numel):
    self.dtype, self.key, self.numel, self.data = dtype, key, numel, None
    self.view = None  # (root storage, element offset) for legacy storage views


class _Tensor:
  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def numpy(self) -> np.ndarray:
    storage, offset = self.storage, self.offset
    if storage.view is not None:
      storage, offset = storage.view[0], storage.view[1] + offset
    if storage.data is None:
      raise WeightsError(f"storage {storage.key} has no data in the file")
    flat = storage.data
    if not self.size:
      return flat[offset].copy()
    item = flat.itemsize
    return np.lib.stride_tricks.as_strided(
        flat[offset:], shape=self.size, strides=[s * item for s in self.stride]).copy()


_TORCH_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                 "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
                 "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                 "BoolStorage": np.bool_}


def _rebuild_tensor(storage, offset, size, stride, *unused):
  return _Tensor(storage, offset, size, stride)


class _TorchUnpickler(pickle.Unpickler):
  """Reads a plain state dict pickle (tensors, OrderedDict) and nothing else: no torch needed."""

  def __init__(self, f, persistent_load: Callable[[tuple], _Storage]):
    super().__init__(f)
    self._persistent = persistent_load

  def find_class(self, module, name):
    if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return lambda data, *unused: data
    if module == "torch" and name in _TORCH_DTYPES:
      return _TORCH_DTYPES[name]
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    raise pickle.UnpicklingError(f"{module}.{name} is not part of a plain state dict")

  def persistent_load(self, pid):
    return self._persistent(pid)


_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


def _torch_zip(path: str) -> Any:
  """torch.save's zip format (PyTorch >= 1.6): <dir>/data.pkl + <dir>/data/<key>."""
  with zipfile.ZipFile(path) as z:
    pkl = [n for n in z.namelist() if n.endswith("data.pkl")]
    if not pkl:
      raise WeightsError(f"{path}: a zip without data.pkl is not a torch.save file")
    prefix = pkl[0][:-len("data.pkl")]
    order = "<"
    if prefix + "byteorder" in z.namelist() and z.read(prefix + "byteorder").strip() == b"big":
      order = ">"
    storages = {}

    def load(pid):
      _, dtype, key, _, numel = pid[:5]
      if key not in storages:
        storages[key] = s = _Storage(np.dtype(dtype).newbyteorder(order), key, numel)
        s.data = np.frombuffer(z.read(f"{prefix}data/{key}"), s.dtype)
      return storages[key]

    return _TorchUnpickler(io.BytesIO(z.read(pkl[0])), load).load()


def _torch_legacy(path: str) -> Any:
  """torch.save's legacy format (PyTorch < 1.6, e.g. torchvision's vgg16-397923af.pth)."""
  with open(path, "rb") as f:
    try:
      magic = pickle.load(f)
    except Exception as e:  # pylint: disable=broad-except
      raise WeightsError(f"{path}: not a PyTorch file ({type(e).__name__})") from e
    if magic != _LEGACY_MAGIC:
      raise WeightsError(f"{path}: not a PyTorch file (bad magic number)")
    pickle.load(f)                       # protocol version
    sys_info = pickle.load(f)
    order = "<" if sys_info.get("little_endian", True) else ">"
    storages = {}

    def load(pid):
      _, dtype, key, _, numel, view = pid[:6]
      if key not in storages:
        storages[key] = _Storage(np.dtype(dtype).newbyteorder(order), key, numel)
      if view is None:
        return storages[key]
      view_key, offset, view_numel = view
      v = _Storage(storages[key].dtype, view_key, view_numel)
      v.view = (storages[key], offset)
      return v

    obj = _TorchUnpickler(f, load).load()
    for key in pickle.load(f):
      s = storages[key]
      numel = int(np.frombuffer(f.read(8), "<i8")[0])
      s.data = np.frombuffer(f.read(numel * s.dtype.itemsize), s.dtype)
  return obj


def _torch_file(path: str) -> dict[str, np.ndarray]:
  """A .pth/.pt state dict -> {key: array}; uses torch when installed, else reads the file."""
  try:
    import torch  # pylint: disable=g-import-not-at-top  # optional: read with it when installed
  except ImportError:
    torch = None
  if torch is not None:
    try:
      obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pylint: disable=broad-except  # torch raises anything on a bad file
      raise WeightsError(f"{path}: not a PyTorch file torch.load can read ({type(e).__name__}: "
                         f"{e}); it should be a torchvision vgg16 state dict (.pth)") from e
  else:
    obj = _torch_zip(path) if zipfile.is_zipfile(path) else _torch_legacy(path)
  if isinstance(obj, Mapping) and "features.0.weight" not in obj:
    for v in obj.values():   # {'state_dict': {...}} / {'model': {...}} wrappers
      if isinstance(v, Mapping) and "features.0.weight" in v:
        obj = v
        break
  if not isinstance(obj, Mapping):
    raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict")
  out = {}
  for k, v in obj.items():
    if isinstance(v, _Tensor):
      v = v.numpy()
    elif hasattr(v, "detach"):
      v = v.detach().cpu().numpy()
    out[str(k)] = np.asarray(v)
  return out


def read_torchvision(path: str) -> Vgg:
  """A torchvision VGG16 state dict (.pth/.pt or .npz with its keys) -> Vgg in our layout."""
  if path.endswith(".npz"):
    sd = read_npz_arrays(
        path, "an .npz of a torchvision vgg16 state dict ('features.0.weight', ...)")
  else:
    sd = _torch_file(path)
  if any(k.startswith("features.1.") for k in sd):
    raise WeightsError(f"{path}: has batch-norm layers (vgg16_bn?); only plain vgg16 converts")
  _check_torchvision_layout(sd, path)
  vgg = {}
  for name, idx in TORCHVISION_INDEX.items():
    part = "classifier" if name in FC_NAMES else "features"
    wk, bk = f"{part}.{idx}.weight", f"{part}.{idx}.bias"
    if wk not in sd:
      continue
    if bk not in sd:
      raise WeightsError(f"{path}: {wk} has no {bk}")
    w, b = np.asarray(sd[wk]), np.asarray(sd[bk])
    if name in FC_NAMES:
      if w.ndim != 2:
        raise WeightsError(f"{path}: {wk} ({name}) should be a Linear [out, in]; got {w.shape}")
      if name == "fc6":   # [F, C*7*7] flattened (C, H, W) -> rows in (H, W, C) order
        c = _fc6_channels(w.shape[1], path, wk)
        w = w.reshape(w.shape[0], c, 7, 7).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
      vgg[name] = {"kernel": w.T, "bias": b}
    else:
      if w.ndim != 4:
        raise WeightsError(f"{path}: {wk} ({name}) should be a conv [out, in, kh, kw]; got {w.shape}")
      vgg[name] = {"kernel": w.transpose(2, 3, 1, 0), "bias": b}
  if "conv1_1" in vgg:
    vgg["conv1_1"] = _fold_torchvision_input(**vgg["conv1_1"])
  return vgg


def _check_torchvision_layout(sd: Mapping[str, Any], path: str) -> None:
  """Refuse layers a torchvision vgg16 does not have (vgg19/vgg11/vgg13 put convs elsewhere)."""
  known = {f"{'classifier' if n in FC_NAMES else 'features'}.{i}"
           for n, i in TORCHVISION_INDEX.items()}
  unknown = sorted({k.rsplit(".", 1)[0] for k in sd
                    if re.fullmatch(r"(features|classifier)\.\d+\.(weight|bias)", k)} - known,
                   key=lambda k: (k.split(".")[0], int(k.split(".")[1])))
  if unknown:
    raise WeightsError(
        f"{path}: layers {unknown} are not in torchvision's vgg16 (its convs are features."
        f"{{{','.join(str(TORCHVISION_INDEX[n]) for n in vgg16.CONV_NAMES)}}}); this looks like "
        "another VGG (vgg19 has 16 convs): only VGG16 converts, use a vgg16 state dict")


def _fc6_channels(n_in: int, path: str, key: str) -> int:
  if n_in % 49:
    raise WeightsError(f"{path}: {key} has {n_in} inputs, not 7*7*channels")
  return n_in // 49


def _fold_torchvision_input(kernel: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
  """conv1_1 on RGB (x/255 - m)/s -> the same conv on BGR x - BGR_MEAN (weights and bias folded)."""
  std = np.asarray(TORCHVISION_STD[::-1], np.float64)          # BGR
  mean255 = 255.0 * np.asarray(TORCHVISION_MEAN[::-1], np.float64)
  k = kernel[:, :, ::-1, :].astype(np.float64) / (255.0 * std)[None, None, :, None]
  shift = np.asarray(vgg16.BGR_MEAN, np.float64) - mean255
  b = bias.astype(np.float64) + np.einsum("hwcd,c->d", k, shift)
  return {"kernel": k.astype(kernel.dtype), "bias": b.astype(bias.dtype)}


# -------------------------------------------------------------------------------------- npz ---


_CONVERTED = "the FCN params .npz that `python -m pointseg_jax.models.weights convert` writes"


def read_npz_arrays(path: str, should_be: str, opener: Callable[..., Any] = open,
                    meta: bool = False) -> dict[str, np.ndarray]:
  """Every array of an .npz (a zip of .npy files, what np.savez writes); '_meta' only if `meta`.

  Pickles are never loaded. A file that is not such a zip (a text file, a lone .npy, a .keras or
  torch zip) is a WeightsError naming the file and what it should be (`should_be`).
  """
  try:
    with opener(path, "rb") as f:
      if not zipfile.is_zipfile(f):
        raise WeightsError(f"{path}: not an .npz file (a zip of numpy arrays, as numpy.savez "
                           f"writes); it should be {should_be}")
      with np.load(f, allow_pickle=False) as z:
        arrays = {}
        for k in z.files:
          if k == META_KEY and not meta:
            continue
          try:
            value = z[k]
          except ValueError as e:   # object arrays: numpy would need allow_pickle, never given
            raise WeightsError(f"{path}: array {k!r} holds Python objects, not numbers (pickled "
                               f"data is never loaded); it should be {should_be}") from e
          if not isinstance(value, np.ndarray):   # a zip member that is not an .npy file
            raise WeightsError(f"{path}: member {k!r} is not a numpy array, so this zip is not "
                               f"an .npz; it should be {should_be}")
          arrays[k] = value
  except (OSError, EOFError, zipfile.BadZipFile) as e:
    raise WeightsError(f"{path}: cannot be read as an .npz ({type(e).__name__}: {e}); it should "
                       f"be {should_be}") from e
  return arrays


def read_meta(path: str) -> dict[str, Any]:
  """The '_meta' JSON of an .npz that save_npz wrote ({} when it has none)."""
  arrays = read_npz_arrays(path, "an .npz written by this package", _open, meta=True)
  return json.loads(str(arrays[META_KEY])) if META_KEY in arrays else {}


def read_npz(path: str) -> tuple[Vgg, dict[str, np.ndarray]]:
  """Our param paths or `<layer>_W`/`<layer>_b` keys -> (Vgg, any FCN score layers present).

  Conv layers VGG16 lacks (e.g. VGG19's 'conv3_4') are kept so that `fcn_params_from_vgg` refuses
  the file instead of dropping them.
  """
  arrays = read_npz_arrays(path, "an .npz of VGG16 arrays ('conv1_1/kernel' or 'conv1_1_W' keys)")
  return vgg_from_arrays(arrays, path)


def vgg_from_arrays(arrays: Mapping[str, np.ndarray], path: str = "") -> tuple[Vgg, dict]:
  """`read_npz`'s parsing of an .npz's arrays: (Vgg, FCN score layers)."""
  vgg, extra = {}, {}
  for key, value in arrays.items():
    m = re.fullmatch(r"(\w+?)(?:/(kernel|bias)|_(W|b))", key)
    if not m:
      continue
    layer, leaf = m[1], m[2] or {"W": "kernel", "b": "bias"}[m[3]]
    if layer in vgg16.CONV_NAMES or layer in FC_NAMES or re.fullmatch(r"conv\d+_\d+", layer):
      vgg.setdefault(layer, {})[leaf] = value
    elif layer.startswith("score_"):
      extra[f"{layer}/{leaf}"] = value
  for layer, leaves in vgg.items():
    if set(leaves) != {"kernel", "bias"}:
      raise WeightsError(f"{path}: layer {layer} has {sorted(leaves)}, needs kernel and bias")
    if layer in FC_NAMES and leaves["kernel"].ndim == 4:   # 1x1 / 7x7 conv form -> [in, out]
      leaves["kernel"] = leaves["kernel"].reshape(-1, leaves["kernel"].shape[-1])
  return vgg, extra


# ------------------------------------------------------------------------- Vgg -> FCN params ---


def fcn_params_from_vgg(vgg: Vgg, num_classes: int = 21,
                        score: Mapping[str, np.ndarray] | None = None,
                        source: str = "", score_rows: tuple[int, ...] = PASCAL_FROM_ILSVRC
                        ) -> dict[str, np.ndarray]:
  """Vgg -> flattened FCN params {'conv1_1/kernel': ..., 'fc6/kernel' [7,7,C,F], 'score_fr/...'}.

  score_rows: the fc8 row of each class 1..num_classes-1 (ImageNet: `PASCAL_FROM_ILSVRC`; the
  synthetic pretraining: the corpus classes of the benchmark's, stored in the file's _meta).
  """
  where = f"{source}: " if source else ""
  unknown = sorted(n for n in vgg if n not in vgg16.CONV_NAMES and n not in FC_NAMES)
  if unknown:
    raise WeightsError(
        f"{where}has layers VGG16 does not have: {unknown} (VGG19 adds conv3_4, conv4_4, "
        "conv5_4). Only VGG16 converts: dropping layers would give a different network. Use a "
        "VGG16 weights file.")
  missing = [n for n in (*vgg16.CONV_NAMES, "fc6", "fc7") if n not in vgg]
  if missing:
    hint = ""
    if set(missing) <= {"fc6", "fc7"}:
      hint = (" FCN needs VGG16's fully connected layers (fc6/fc7 = Keras fc1/fc2, torchvision "
              "classifier.0/3): use the full weights file, not the '_notop'/features-only one.")
    raise WeightsError(f"{where}missing VGG16 layers {missing} (found {sorted(vgg)}).{hint}")
  out = {}
  for name in vgg16.CONV_NAMES:
    k, b = vgg[name]["kernel"], vgg[name]["bias"]
    if k.ndim != 4 or k.shape[:2] != (3, 3) or b.shape != (k.shape[-1],):
      raise WeightsError(f"{where}{name}: expected kernel [3, 3, in, out] and bias [out]; got "
                         f"{k.shape} and {b.shape}")
    out[f"{name}/kernel"], out[f"{name}/bias"] = k, b
  c5 = out["conv5_3/kernel"].shape[-1]
  fc6 = vgg["fc6"]["kernel"]
  if fc6.ndim != 2 or fc6.shape[0] != 49 * c5:
    raise WeightsError(f"{where}fc6: kernel {fc6.shape} does not take conv5_3's 7x7x{c5} "
                       f"(expected [{49 * c5}, out])")
  out["fc6/kernel"] = fc6.reshape(7, 7, c5, fc6.shape[1])
  fc7 = vgg["fc7"]["kernel"]
  if fc7.shape[0] != fc6.shape[1]:
    raise WeightsError(f"{where}fc7: kernel {fc7.shape} does not take fc6's {fc6.shape[1]} outputs")
  out["fc7/kernel"] = fc7.reshape(1, 1, *fc7.shape)
  for name in ("fc6", "fc7"):
    b, n_out = vgg[name]["bias"], vgg[name]["kernel"].shape[-1]
    if b.shape != (n_out,):
      raise WeightsError(f"{where}{name}: bias {b.shape} does not match its {n_out} outputs")
    out[f"{name}/bias"] = b
  out.update(_score_fr(vgg.get("fc8"), fc7.shape[1], num_classes, score, where,
                       tuple(score_rows)))
  for key, value in (score or {}).items():   # an FCN-16s/8s file's skip heads pass through
    if key.split("/")[0] in ("score_pool4", "score_pool3") and value.shape[-1] == num_classes:
      out[key] = value
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def _score_fr(fc8, n_in, num_classes, score, where, rows=PASCAL_FROM_ILSVRC
              ) -> dict[str, np.ndarray]:
  """Authors' init: background zero, class c = fc8 row rows[c - 1]; else zeros (with a message)."""
  score = dict(score or {})
  kshape = (1, 1, n_in, num_classes)
  if score.get("score_fr/kernel") is not None and score["score_fr/kernel"].shape == kshape:
    logging.info("%skeeping the file's score_fr %s", where, kshape)
    return {"score_fr/kernel": score["score_fr/kernel"], "score_fr/bias": score["score_fr/bias"]}
  kernel = np.zeros(kshape, np.float32)
  bias = np.zeros((num_classes,), np.float32)
  reason = None
  if fc8 is None:
    reason = "the source has no fc8 (ImageNet classifier)"
  elif num_classes != 1 + len(rows):
    reason = f"the classifier->score rows are for {1 + len(rows)} classes, not {num_classes}"
  elif fc8["kernel"].shape[0] != n_in or fc8["kernel"].shape[1] <= max(rows):
    reason = (f"fc8 kernel is {fc8['kernel'].shape}, not [{n_in}, > {max(rows)}] (rows "
              f"{rows[:3]}...)")
  if reason:
    logging.warning("%sscore_fr initialised to zeros: %s (FCN's init for full supervision).",
                    where, reason)
  else:
    rows = list(rows)
    kernel[0, 0, :, 1:] = fc8["kernel"][:, rows]
    bias[1:] = fc8["bias"][rows]
  return {"score_fr/kernel": kernel, "score_fr/bias": bias}


def convert(fmt: str, src: str, num_classes: int = 21, conv1_order: str | None = None
            ) -> dict[str, np.ndarray]:
  """Read `src` in format `fmt` -> flattened FCN params (see module doc).

  conv1_order: the channel order conv1_1 of a keras/npz source expects ('bgr' default, 'rgb').
  """
  if fmt not in FORMATS:
    raise WeightsError(f"--from must be one of {FORMATS}; got {fmt!r}")
  if conv1_order not in (None, "bgr", "rgb"):
    raise WeightsError(f"conv1_order must be 'bgr' or 'rgb'; got {conv1_order!r}")
  if fmt == "torchvision" and conv1_order is not None:
    raise WeightsError("--conv1_order does not apply to torchvision sources (always RGB, "
                       "converted to BGR by the converter)")
  if not os.path.exists(src):
    raise errors.MissingInputError(f"{src}: no such file")
  score = None
  if fmt == "keras":
    vgg = read_keras(src)
  elif fmt == "torchvision":
    vgg = read_torchvision(src)
  else:
    vgg, score = read_npz(src)
  if conv1_order == "rgb" and "conv1_1" in vgg:
    vgg["conv1_1"]["kernel"] = vgg["conv1_1"]["kernel"][:, :, ::-1, :]
  return fcn_params_from_vgg(vgg, num_classes, score, source=src)


def npz_path(path: str) -> str:
  """The file np.savez writes for `path`: '.npz' is appended when missing."""
  return path if path.endswith(".npz") else path + ".npz"


def save_npz(path: str, flat: Mapping[str, np.ndarray], **meta: Any) -> str:
  """Write params + '_meta' (JSON) atomically (temp file + rename); returns the path written."""
  path = npz_path(os.path.expanduser(path))
  folder, name = os.path.split(path)
  if folder:
    os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
  try:
    with open(tmp, "wb") as f:
      np.savez(f, **flat, **{META_KEY: np.asarray(json.dumps(meta))})
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


# ------------------------------------------------------------------------------ load_params ---


# TensorFlow is imported only for URLs: it adds seconds to every start of this module's CLI and
# of the model, and local paths never need it.
def _exists(path: str) -> bool:
  if "://" in path:   # gs://... (Cloud TPU runs): through TensorFlow's file system layer
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.io.gfile.exists(path)
  return os.path.exists(path)


def _open(path: str, mode: str = "rb"):
  if "://" in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.io.gfile.GFile(path, mode)
  return open(path, mode)


def _target_params(target: Any) -> dict[str, Any]:
  if isinstance(target, fcn.FCN):
    target = fcn.abstract_variables(target)
  if isinstance(target, Mapping) and set(target) == {"params"}:
    target = target["params"]
  return traverse_util.flatten_dict(dict(target), sep="/")


def _check_width(path, meta, have: int, want: int) -> None:
  if have != want:
    raise WeightsError(
        f"{path}: a backbone of width {meta.get('width', '?')} ({have} conv1_1 channels), the "
        f"model has {want} (config.model.width); make one of this width with `"
        f"{meta.get('command', PRETRAIN_COMMAND)} --config.width=<width> --config.out=<file>` and "
        "set --config.model.init_from=<file>")


def check_width(path: str, model_or_params: Any) -> None:
  """The cheap early check of a pretrained classifier file (before any data is built): its
  backbone width against the model's, reading only conv1_1 and _meta. Files without fc8 (the
  ImageNet conversions) and unreadable ones are left to `load_params`, which checks everything."""
  want = _target_params(model_or_params)["conv1_1/kernel"].shape[-1]
  try:
    with _open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
      if "fc8/kernel" not in z.files or "score_fr/kernel" in z.files or (
          "conv1_1/kernel" not in z.files):
        return
      have = z["conv1_1/kernel"].shape[-1]
      meta = json.loads(str(z[META_KEY])) if META_KEY in z.files else {}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile):
    return
  _check_width(path, meta, have, want)


def classifier_to_fcn(stored: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                      target: Mapping[str, Any], path: str) -> dict[str, np.ndarray]:
  """A pretrained classifier's params (fc8 over its classes, `pointseg_jax.pretrain`) -> FCN
  params: the authors' surgery at load time, score_fr rows 1..20 = fc8 rows `_meta.score_rows`,
  background row zero. A backbone of another width than the model is one error naming the file
  and the command that makes it (`_meta.command`)."""
  _check_width(path, meta, stored["conv1_1/kernel"].shape[-1],
               target["conv1_1/kernel"].shape[-1])
  if "score_rows" not in meta:
    raise WeightsError(f"{path}: has a classifier (fc8) but no _meta.score_rows saying which of "
                       "its rows are the benchmark's classes; remake it with "
                       f"`{meta.get('command', PRETRAIN_COMMAND)}`")
  vgg, score = vgg_from_arrays(stored, path)
  num_classes = target["score_fr/kernel"].shape[-1]
  return fcn_params_from_vgg(vgg, num_classes, score, path, tuple(meta["score_rows"]))


def load_params(path: str, model_or_params: Any) -> dict[str, Any]:
  """Params tree for a model from a converted .npz, every leaf checked against the model.

  `path`: local or any TensorFlow file system URL (gs://...). `model_or_params`: an `FCN` or its
  (abstract) params / variables tree. Skip-head score layers
  (score_pool4/3) absent from the file start at zero, as in FCN; anything else missing, extra or
  of the wrong shape is an error naming the layer and both shapes.
  """
  target = _target_params(model_or_params)
  if not _exists(path):
    raise errors.MissingInputError(f"{path}: no such params file (make one with `python -m "
                                   "pointseg_jax.models.weights convert ...`)")
  stored = read_npz_arrays(path, _CONVERTED, _open, meta=True)
  meta = json.loads(str(stored.pop(META_KEY))) if META_KEY in stored else {}
  if "fc8/kernel" in stored and "score_fr/kernel" not in stored:   # a classifier (pretrain.py)
    stored = classifier_to_fcn(stored, meta, target, path)
  if not set(stored) & set(target):
    raise WeightsError(f"{path}: no FCN param paths in this file (found e.g. {sorted(stored)[:4]}); "
                       "convert it with `python -m pointseg_jax.models.weights convert`")
  out, missing, bad = {}, [], []
  for key, leaf in target.items():
    if key not in stored:
      if key.split("/")[0] in ("score_pool4", "score_pool3"):
        logging.info("%s: %s not in file, starts at zero (FCN skip-head init)", path, key)
        out[key] = jnp.zeros(leaf.shape, leaf.dtype)
      else:
        missing.append(key)
      continue
    value = stored[key]
    if value.shape != tuple(leaf.shape):
      bad.append(f"{key}: file has {value.shape}, model expects {tuple(leaf.shape)}")
      continue
    out[key] = jnp.asarray(value, leaf.dtype)
  extra = sorted(set(stored) - set(target))
  problems = []
  if missing:
    problems.append(f"missing layers {missing}")
  if bad:
    problems.append("shape mismatch: " + "; ".join(bad))
  if extra:
    problems.append(f"layers the model does not have {extra}")
  if problems:
    raise WeightsError(f"{path} does not fit the model: " + " | ".join(problems) +
                       " (check num_classes / variant / width of the model against the file)")
  return traverse_util.unflatten_dict(out, sep="/")


# ------------------------------------------------------------------------------------- CLI ---


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  flags.DEFINE_enum("from", None, FORMATS, "convert: the source's format.",
                    flag_values=flag_values)
  flags.DEFINE_string("out", None, "convert: destination .npz ('.npz' is appended when missing, "
                      "folders are created).", flag_values=flag_values)
  flags.DEFINE_integer("num_classes", 21, "convert: classes of the score layer.", lower_bound=1,
                       flag_values=flag_values)
  flags.DEFINE_enum("conv1_order", None, ["bgr", "rgb"], "convert: input channel order conv1_1 "
                    "of an npz/keras source expects (default bgr).", flag_values=flag_values)


def info_lines(path: str) -> list[str]:
  """One line per array of a converted .npz: path, (shape, dtype); '_meta' as its JSON text."""
  arrays = read_npz_arrays(path, _CONVERTED, meta=True)
  return [f"{k} {v}" if k == META_KEY else f"{k} {(v.shape, v.dtype)}" for k, v in arrays.items()]


def main(argv: list[str]) -> int:
  command, args = (argv[1], argv[2:]) if len(argv) > 1 else (None, [])
  if command not in COMMANDS:
    raise app.UsageError(f"the first argument must be a command, one of {COMMANDS}; got "
                         f"{command!r}")
  if len(args) != 1:
    raise app.UsageError(f"{command} takes one file argument; got {args}")
  if command == "info":
    given = [f"--{n}" for n in ("from", "out", "num_classes", "conv1_order") if FLAGS[n].present]
    if given:
      raise app.UsageError(f"{given} apply to convert, not info")
    path = os.path.expanduser(args[0])
    if not os.path.isfile(path):
      raise errors.MissingInputError(f"{path}: no such file")
    for line in info_lines(path):
      print(line)
    return 0
  src = os.path.expanduser(args[0])
  if FLAGS["from"].value is None or FLAGS.out is None:
    raise app.UsageError("convert needs --from=keras|torchvision|npz and --out=DST.npz")
  fmt = FLAGS["from"].value
  flat = convert(fmt, src, FLAGS.num_classes, FLAGS.conv1_order)
  written = save_npz(FLAGS.out, flat, source=os.path.abspath(src), format=fmt,
                     num_classes=FLAGS.num_classes, input="BGR 0..255 minus " + str(vgg16.BGR_MEAN))
  n = sum(v.size for v in flat.values())
  print(f"wrote {written}: {len(flat)} arrays, {n:,} parameters "
        f"(fc6 {flat['fc6/kernel'].shape}, score_fr {flat['score_fr/kernel'].shape})")
  return 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)

"""The naive-Bayes cue model: per-cue likelihood histograms P(cue | object), P(cue | background).

P(object | cues) = p·Π_c P(v_c|obj) / (p·Π_c P(v_c|obj) + (1-p)·Π_c P(v_c|bg)) with the prior
p = `pobj` (TPAMI 2012 §5, `integrateBayes.m`). Each cue value is binned to its nearest bin centre,
exactly how `hist` built the histograms during learning (the release's scoring code bins ED on a
different grid from the one it was learned on; here learning and scoring share one binning).

The model is a small .npz; `alexe_v22.npz` shipped with the package holds the parameters and
likelihoods of objectness v2.2 (Alexe, Deselaers, Ferrari; research and non-profit use, see
docs/objectness.md), converted by `python -m pointseg_jax.objectness.convert --release_dir=DIR`.
"""
import dataclasses
import functools
import importlib.resources
import pathlib

import numpy as np
from scipy import io as sio

from pointseg_jax import errors

CUES = ("MS", "CC", "ED", "SS")
DEFAULT_MODEL = "alexe_v22.npz"


@dataclasses.dataclass(frozen=True)
class Model:
  """Cue parameters (θ per cue) and likelihood histograms; immutable. Equality compares the
  parameters only (not the likelihood arrays)."""
  cues: tuple = ("MS", "CC", "SS")
  pobj: float = 0.0797
  distribution_windows: int = 100000
  min_window: int = 10
  nms_iou: float = 0.5
  ms_scales: tuple = (16, 24, 32, 48, 64)
  ms_theta: tuple = (0.43, 0.32, 0.34, 0.35, 0.26)
  ms_filtersize: int = 3
  cc_theta: float = 100.0
  cc_quant: tuple = (4, 8, 8)
  ed_theta: float = 17.0
  ss_theta: float = 450.0
  ss_basis_sigma: float = 0.5
  ss_basis_min_area: float = 200.0
  # Rendering (beyond the release, docs/objectness.md §5b): the summed window map is averaged
  # within Felzenszwalb superpixels of scale `smooth_k` (0 = off, the release) before the min-max
  # uint8 step, and that uint8 level o is mapped through `calibration` (256 levels, o -> o'; empty =
  # identity) so that P = (o' + 1) / 257 is P(object | o) measured on training images.
  smooth_k: float = 0.0
  calibration: tuple = ()
  # cue -> (bin centres [B], likelihood [2, B]: row 0 = P(v|object), row 1 = P(v|background)).
  likelihoods: dict = dataclasses.field(default_factory=dict, compare=False)
  source: str = ""

  def posterior(self, cue_values: dict) -> np.ndarray:
    """P(object | cues) per window; `cue_values` maps each cue of `self.cues` to [N] values."""
    pos = neg = 1.0
    for cue in self.cues:
      centres, lik = self.likelihoods[cue]
      idx = bin_index(np.asarray(cue_values[cue], np.float64), centres)
      pos = pos * lik[0, idx]
      neg = neg * lik[1, idx]
    num = self.pobj * pos
    den = num + (1.0 - self.pobj) * neg
    post = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return post + np.finfo(np.float64).eps  # the release adds eps so no window scores exactly 0

  def replace(self, **kw) -> "Model":
    return dataclasses.replace(self, **kw)


def bin_index(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """Index of the nearest centre of an evenly spaced grid (values outside go to the end bins)."""
  step = (centres[-1] - centres[0]) / max(len(centres) - 1, 1)
  idx = np.floor((values - centres[0]) / step + 0.5)
  return np.clip(np.nan_to_num(idx, nan=0.0), 0, len(centres) - 1).astype(np.int64)


def histogram_likelihood(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """Normalised histogram over nearest-centre bins + eps (MATLAB `hist(v, c)/n + eps`)."""
  counts = np.bincount(bin_index(values, centres), minlength=len(centres)).astype(np.float64)
  return counts / max(len(values), 1) + np.finfo(np.float64).eps


# --------------------------------------------------------------------------------------- io ----

_SCALARS = ("pobj", "distribution_windows", "min_window", "nms_iou", "ms_filtersize", "cc_theta",
            "ed_theta", "ss_theta", "ss_basis_sigma", "ss_basis_min_area")
_TUPLES = ("ms_scales", "ms_theta", "cc_quant")
_OPTIONAL = {"smooth_k": 0.0, "calibration": ()}   # absent from older model files: the release's


def save(model: Model, path) -> str:
  """Write the model as a compressed .npz; returns the path written ('.npz' appended if missing,
  as numpy does)."""
  path = str(path)
  if not path.endswith(".npz"):
    path += ".npz"
  arrays = {"cues": np.array(model.cues), "source": np.array(model.source)}
  for name in _SCALARS:
    arrays[name] = np.array(getattr(model, name))
  for name in _TUPLES:
    arrays[name] = np.array(getattr(model, name))
  arrays["smooth_k"] = np.array(float(model.smooth_k))
  arrays["calibration"] = np.array(model.calibration, np.int64)
  for cue, (centres, lik) in model.likelihoods.items():
    arrays[f"{cue}_bincenters"] = np.asarray(centres, np.float64)
    arrays[f"{cue}_likelihood"] = np.asarray(lik, np.float64)
  np.savez_compressed(path, **arrays)
  return path


def load(path=None) -> Model:
  """Load a model .npz; `None` = the default model shipped inside the package."""
  if path is None:
    return load_packaged(DEFAULT_MODEL)
  path = pathlib.Path(path)
  if not path.is_file():
    raise errors.MissingInputError(f"objectness model {path} not found; relearn one with "
                                   "`python -m pointseg_jax.objectness.learn` or pass model=None")
  with np.load(path, allow_pickle=False) as z:
    kw = {name: z[name].item() for name in _SCALARS}
    for name in ("distribution_windows", "min_window", "ms_filtersize"):
      kw[name] = int(kw[name])
    for name in _TUPLES:
      kw[name] = tuple(z[name].tolist())
    if "smooth_k" in z:
      kw["smooth_k"] = float(z["smooth_k"])
    if "calibration" in z:
      kw["calibration"] = tuple(int(v) for v in z["calibration"].tolist())
    if kw.get("calibration") and len(kw["calibration"]) != 256:
      raise errors.DataError(f"objectness model {path}: calibration has "
                             f"{len(kw['calibration'])} levels, expected 256 (one per uint8 level)")
    lik = {c: (z[f"{c}_bincenters"], z[f"{c}_likelihood"]) for c in CUES if f"{c}_likelihood" in z}
    cues = tuple(str(c) for c in z["cues"])
    missing = [c for c in cues if c not in lik]
    if missing:
      raise errors.DataError(f"objectness model {path}: cues {missing} have no likelihood arrays")
    return Model(cues=cues, likelihoods=lik, source=str(z["source"]), **kw)


@functools.lru_cache(maxsize=4)
def load_packaged(name: str) -> Model:
  """A model file shipped inside the package: `alexe_v22.npz` (the release's, the default) or
  `synthetic_v2.npz` (learned on synthetic_points/default train scenes, docs/objectness.md §5b)."""
  ref = importlib.resources.files("pointseg_jax.objectness") / name
  if not ref.is_file():
    raise errors.MissingInputError(f"no packaged objectness model {name!r} in pointseg_jax/"
                                   "objectness/ (reinstall the package)")
  with importlib.resources.as_file(ref) as p:
    return load(p)


def default_model() -> Model:
  return load_packaged(DEFAULT_MODEL)


def from_release(release_dir) -> Model:
  """Read objectness v2.2's `Data/params.mat` and `Data/{MS,CC,ED,SS}likelihood.mat`."""
  data = pathlib.Path(release_dir) / "Data"
  if not (data / "params.mat").is_file():
    raise errors.MissingInputError(f"{data / 'params.mat'} not found: the release folder of "
                                   "objectness v2.2 holds Data/params.mat")
  p = sio.loadmat(data / "params.mat", squeeze_me=True, struct_as_record=False)["params"]
  lik = {}
  for cue in CUES:
    f = data / f"{cue}likelihood.mat"
    if f.is_file():
      centres = np.asarray(getattr(p, cue).bincenters, np.float64)
      lik[cue] = (centres, np.asarray(sio.loadmat(f)["likelihood"], np.float64))
  return Model(
      cues=tuple(str(c) for c in np.atleast_1d(p.cues)), pobj=float(p.pobj),
      distribution_windows=int(p.distribution_windows), min_window=int(p.min_window_width),
      nms_iou=float(p.pascalThreshold),
      ms_scales=tuple(int(s) for s in p.MS.scale), ms_theta=tuple(float(t) for t in p.MS.theta),
      ms_filtersize=int(p.MS.filtersize), cc_theta=float(p.CC.theta),
      cc_quant=tuple(int(q) for q in p.CC.quant), ed_theta=float(p.ED.theta),
      ss_theta=float(p.SS.theta), ss_basis_sigma=float(p.SS.basis_sigma),
      ss_basis_min_area=float(p.SS.basis_min_area), likelihoods=lik,
      source="objectness v2.2 (Alexe, Deselaers, Ferrari, TPAMI 2012) Data/params.mat + "
             "*likelihood.mat, trained on its 50 training images; research/non-profit licence")

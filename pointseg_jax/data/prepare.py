"""One call from a fresh clone to a ready TFDS dataset (the `tfds build` of this package).

    from pointseg_jax.data import prepare
    builder = prepare("synthetic_points/default")          # builds once, then reuses
    ds = builder.as_dataset(split="train")
    builder = prepare("voc2012_points", manual_dir="~/data/voc")   # real data, manual download
    builder = prepare("custom_points", manual_dir="my_data")       # your images + click JSON

`tfds build` itself needs apache_beam, which the pinned stack does not install; this is the same
`download_and_prepare` call with the package's builders registered and clear errors when the manual
VOC data is missing.
"""
import importlib
import os

from absl import logging

from pointseg_jax import errors
from pointseg_jax.data.spec import expand_path

# Builder name -> package whose import registers it with TFDS.
BUILDERS = {
    "synthetic_points": "pointseg_jax.data.synthetic_points",
    "voc2012_points": "pointseg_jax.data.voc2012_points",
    "custom_points": "pointseg_jax.data.custom_points",
    "synthetic_classes": "pointseg_jax.data.synthetic_classes",   # pretraining corpus
}
VOC_MARKER = os.path.join("VOCdevkit", "VOC2012")
# Builders that read a manual_dir -> the entry that must be in it.
MANUAL_MARKERS = {"voc2012_points": VOC_MARKER, "custom_points": "images"}


class NoStdoutBanner:
  """Builder mixin: no "Downloading and preparing dataset ..." banner on stdout.

  TFDS prints that banner (and a "downloaded and prepared" one) with `print` for every build, even
  of a set generated locally with nothing to download, so it lands in a run's stdout between its
  results. `prepare` logs one absl line instead; TFDS itself logs "Generating dataset" at INFO.
  """

  def _log_download_bytes(self) -> None:  # overrides tfds.core.DatasetBuilder's banner
    pass

  def _log_download_done(self) -> None:  # overrides tfds.core.DatasetBuilder's banner
    pass


def builder_name(dataset: str) -> str:
  """'synthetic_points/tiny:1.0.0' -> 'synthetic_points'."""
  return dataset.split("/")[0].split(":")[0]


def dataset_names() -> list[str]:
  """Every dataset name the package's builders answer to, e.g. 'synthetic_points/tiny'."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (keep import light)

  names = []
  for name, module in BUILDERS.items():
    importlib.import_module(module)
    configs = tfds.builder_cls(name).BUILDER_CONFIGS
    names += [f"{name}/{c.name}" for c in configs] if configs else [name]
  return names


def get_builder(dataset: str, data_dir: str | None = None, **builder_kwargs):
  """The registered TFDS builder for `dataset` (not prepared)."""
  # Imported here: `pointseg_jax.data` (which imports this module) stays TensorFlow-free.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name = builder_name(dataset)
  if name not in BUILDERS:
    raise errors.ConfigError(f"unknown dataset {dataset!r}: expected one of {sorted(BUILDERS)} "
                     "(e.g. 'synthetic_points/tiny', 'synthetic_points/default', 'voc2012_points', "
                     "'custom_points')")
  importlib.import_module(BUILDERS[name])
  if data_dir is not None:
    data_dir = expand_path(data_dir)
  try:
    return tfds.builder(dataset, data_dir=data_dir, **builder_kwargs)
  except ValueError as e:    # e.g. an unknown builder config 'synthetic_points/huge'
    raise errors.ConfigError(f"cannot open dataset {dataset!r} ({e}); known datasets: "
                             f"{', '.join(dataset_names())}") from None


def prepared_split(dataset: str, split: str, data_dir: str | None = None):
  """The numpy examples of a split of an already prepared dataset (never a build: the commands
  that read a split, e.g. data/objectness_maps.py, must not start one); one line when unprepared."""
  builder = get_builder(dataset, data_dir)
  if not builder.is_prepared():
    raise errors.MissingInputError(
        f"--dataset {dataset} is not prepared in {builder.data_dir_root}; build it first "
        f"(python -c \"from pointseg_jax.data import prepare; prepare('{dataset}')\") or pass "
        "--data_dir")
  return builder.as_dataset(split=split).as_numpy_iterator()


def prepare(dataset: str = "synthetic_points/default", data_dir: str | None = None, *,
            manual_dir: str | None = None, num_workers: int | None = None):
  """Builds `dataset` on first use (idempotent) and returns its TFDS builder.

  dataset: 'synthetic_points[/tiny|/default]' (generated here, with a progress bar),
    'voc2012_points' (from the manually downloaded archives in `manual_dir`, default
    `<data_dir>/downloads/manual`, as TFDS does) or 'custom_points[/no_objectness]' (your folder
    `manual_dir`, docs/data_custom.md).
  data_dir: TFDS data dir (None = TFDS default, ~/tensorflow_datasets or $TFDS_DATA_DIR).
  num_workers: processes generating synthetic examples (default: one per core for big splits).
  """
  # Imported here: `pointseg_jax.data` (which imports this module) stays TensorFlow-free.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name = builder_name(dataset)
  kwargs = {"num_workers": num_workers} if name == "synthetic_points" and num_workers else {}
  builder = get_builder(dataset, data_dir, **kwargs)
  manual = None
  if name in MANUAL_MARKERS:
    manual = expand_path(manual_dir) if manual_dir else os.path.join(
        os.fspath(builder.data_dir_root), "downloads", "manual")
  if builder.is_prepared():
    # custom_points: a folder that changed since the build must not be silently ignored.
    if manual_dir and hasattr(builder, "check_prepared_from"):
      builder.check_prepared_from(manual)
    logging.info("%s already prepared in %s", dataset, builder.data_dir)
    return builder
  download_config = None
  if name == "custom_points" and not os.path.isdir(os.path.join(manual, MANUAL_MARKERS[name])):
    raise errors.MissingInputError(
        f"custom_points is not prepared in {builder.data_dir_root} and {manual!r} has no "
        f"images/ folder: pass your folder as manual_dir (config.data.manual_dir)."
        f"\n{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  if name == "voc2012_points":
    if not os.path.isdir(os.path.join(manual, VOC_MARKER)):
      raise errors.MissingInputError(
          f"voc2012_points is not prepared in {builder.data_dir_root} and its manual data is not "
          f"in {manual!r} (no {VOC_MARKER} there). PASCAL VOC cannot be downloaded automatically: "
          f"get the archives yourself, then call prepare('voc2012_points', manual_dir=DIR)."
          f"\n{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}\nWithout real data, use "
          "'synthetic_points/default' (built here, no download).")
  if manual is not None:
    download_config = tfds.download.DownloadConfig(manual_dir=manual)
  logging.info("preparing %s in %s (first use; later calls reuse it)", dataset, builder.data_dir)
  builder.download_and_prepare(download_config=download_config)
  return builder


def prepare_spec(spec):
  """`prepare` for a run's DataSpec: build on first use (synthetic) or say how to get VOC; then
  the builder's own check of the spec (custom_points: label kinds that need masks)."""
  try:
    builder = prepare(spec.dataset, spec.data_dir,
                      **({"manual_dir": spec.manual_dir} if spec.manual_dir else {}))
    if hasattr(builder, "check_spec"):
      builder.check_spec(spec)
    return builder
  except errors.UserError as e:
    raise type(e)(f"config.data.dataset={spec.dataset!r}: {e}") from e

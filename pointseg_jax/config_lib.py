"""What every regime config shares: `get_config(regime, arg)` builds the whole ConfigDict.

A regime file is three lines (configs/point.py):

    from pointseg_jax import config_lib
    def get_config(arg=None):
      return config_lib.get_config("point", arg)

The regime table (loss terms, weights, label kind, learning rate) lives in `supervision.py`; the
data fields and their defaults in `data/spec.py` (DataSpec). `arg` is the part after the colon,
comma separated (`--config=configs/point.py:voc,tpu`), parsed by `parse_arg`:
  synthetic  (default) the embedded benchmark, width-1/8 FCN-8s from scratch, CPU-sized
  tiny       tiny model, images and step counts; finishes in seconds (tests, CI)
  voc        the paper's setup: VOC2012+SBD clicks, full FCN-32s (caffe mode) from ImageNet VGG16,
             bfloat16 compute (float32 params; --config.model.compute_dtype=float32 on CPU)
  tpu        platform: global batch 16, jax.distributed.initialize(); combine with voc
  pretrained init from the backbone pretrained on `synthetic_classes` (the paper's ImageNet step on
             the embedded benchmark; score_fr rows from the classifier's; docs/training.md)
  key=value  regime arguments (grown_points: radius=R, any R >= 0 in stored-image pixels;
             squiggle: radius=2|5|25; or a bare number)
"""
import dataclasses
import math
import numbers
import os

import ml_collections
from ml_collections.config_dict import placeholder

from pointseg_jax import NUM_CLASSES
from pointseg_jax import errors
from pointseg_jax import supervision
from pointseg_jax.data.spec import DataSpec
from pointseg_jax.data.spec import expand_path

DATASET_VARIANTS = ("synthetic", "tiny", "voc")
PLATFORM_VARIANTS = ("tpu",)
INIT_VARIANTS = ("pretrained",)
# Regime arguments: regime -> {name: (type, allowed values)}; a bare number is the first one.
# Empty choices: any value of the type (DataSpec checks the range).
REGIME_ARGS = {"grown_points": {"radius": (float, ())},   # paper §5: 2, 5, 25 px of VOC
               "squiggle": {"radius": (int, (2, 5, 25))}}  # beyond the paper, same radii
# grown_points without a radius: the paper's middle radius, 5 px of a ~500-px VOC photo scaled to
# the 128-px benchmark (docs/clicks.md, "Grown points").
GROWN_POINTS_RADIUS = 1.3

# Where `python -m pointseg_jax.models.weights convert` writes the FCN init by default (voc runs).
VOC_INIT_FROM = "weights/fcn32s_vgg16_imagenet.npz"
# The synthetic configs' backbone pretrained on `synthetic_classes` (the `pretrained` variant),
# committed with the package; `python -m pointseg_jax.pretrain` remakes it (docs/training.md).
PRETRAINED_INIT_FROM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models",
                                    "pretrained", "vgg16_w8_synthetic_classes.npz")

# r of that file (its _meta.input_rms): the RMS of the Caffe-preprocessed corpus input its conv1_1
# was trained on as V = r W; the variant fine-tunes conv1_1 the same way (optimizer.input_rms),
# chosen on the train hold-out (experiments_results/first_layer; docs/training.md, "Pretraining").
PRETRAINED_INPUT_RMS = 54.807552337646484

# From-scratch width-1/8 net on the synthetic set: the paper's 1e-5 (tuned for a pretrained
# VGG16) barely moves it; 1e-3 with a 200-step warmup and gradient clipping learned fastest of the
# SGD settings measured, for every regime (the authors' 5x for AllPoints / random points halved
# the mIoU here). docs/training.md, "Learning rate on the synthetic set".
SYNTHETIC_LR = 1e-3
# config.optimizer.schedule: 'constant' (the paper's fixed lr, every config's default) or a decay
# to 0 after the warmup (train.learning_rate). Not in the paper; docs/training.md, "Schedules".
LR_SCHEDULES = ("constant", "cosine", "poly")


@dataclasses.dataclass(frozen=True)
class ConfigArgs:
  """The parsed `arg` of a config file."""
  dataset: str = "synthetic"              # one of DATASET_VARIANTS
  tpu: bool = False
  pretrained: bool = False
  regime_args: tuple[tuple[str, object], ...] = ()   # typed (name, value) pairs

  def get(self, name, default=None):
    return dict(self.regime_args).get(name, default)


def parse_arg(regime_name: str, arg: str | None) -> ConfigArgs:
  """'voc,tpu,radius=5' -> ConfigArgs('voc', True, (('radius', 5),)); anything else is one
  ConfigError that names the bad token and what is accepted."""
  allowed = REGIME_ARGS.get(regime_name, {})
  variants = DATASET_VARIANTS + PLATFORM_VARIANTS + INIT_VARIANTS
  accepted = (f"variants {', '.join(variants)}"
              + (f" and {', '.join(f'{k}=<{t.__name__}>' for k, (t, _) in allowed.items())}"
                 if allowed else ""))
  datasets, tpu, pretrained, kwargs = [], False, False, {}
  for token in (arg or "").split(","):
    token = token.strip()
    if not token:
      continue
    if "=" not in token and token not in variants and allowed and _is_number(token):
      token = f"{next(iter(allowed))}={token}"        # 'squiggle.py:25' == 'radius=25'
    if "=" in token:
      key, value = (part.strip() for part in token.split("=", 1))
      if key not in allowed:
        raise errors.ConfigError(
            f"config argument {key!r} is not known to regime {regime_name!r} (it takes "
            f"{list(allowed) or 'none'}); accepted: {accepted}")
      kind, choices = allowed[key]
      try:
        typed = kind(value)
      except ValueError:
        raise errors.ConfigError(f"config argument {key}={value!r} of regime {regime_name!r} must "
                                 f"be {kind.__name__}" + (f", one of {choices}" if choices else
                                                          "")) from None
      if choices and typed not in choices:
        raise errors.ConfigError(f"config argument {key}={typed!r} of regime {regime_name!r}: "
                                 f"must be one of {choices} (paper §4.2)")
      kwargs[key] = typed
    elif token in DATASET_VARIANTS:
      datasets.append(token)
    elif token in PLATFORM_VARIANTS:
      tpu = True
    elif token in INIT_VARIANTS:
      pretrained = True
    else:
      raise errors.ConfigError(f"unknown config variant {token!r}; accepted: {accepted} "
                               "(comma separated, e.g. configs/point.py:voc,tpu)")
  if len(set(datasets)) > 1:
    raise errors.ConfigError(f"config variants {sorted(set(datasets))} exclude each other: pick "
                             f"one of {DATASET_VARIANTS}")
  if pretrained and "voc" in datasets:
    raise errors.ConfigError("config variants voc and pretrained exclude each other: voc already "
                             "starts from ImageNet VGG16 (pretrained is the synthetic set's "
                             "counterpart)")
  return ConfigArgs(datasets[0] if datasets else "synthetic", tpu, pretrained,
                    tuple(sorted(kwargs.items())))


def _is_number(token: str) -> bool:
  try:
    float(token)
  except ValueError:
    return False
  return True


def data_block(**overrides) -> ml_collections.ConfigDict:
  """config.data: DataSpec's fields and defaults (one place), path fields overridable from the CLI."""
  values = DataSpec(**overrides).to_dict()
  for field in ("data_dir", "manual_dir"):
    if values[field] is None:
      values[field] = placeholder(str)   # None, but `--config.data.data_dir=...` may set a str
  if values["oracle_objectness"] is None:
    values["oracle_objectness"] = placeholder(float)
  return ml_collections.ConfigDict(values)


def get_config(regime_name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """The full config of one regime in the variants named by `arg` (see module doc)."""
  regime = supervision.get_regime(regime_name)
  args = parse_arg(regime.name, arg)

  c = ml_collections.ConfigDict()
  c.regime = regime.name
  c.seed = 0
  # jax.distributed.initialize() before touching devices (multi-host TPU/GPU; see docs/training.md).
  c.distributed = False

  c.model = ml_collections.ConfigDict(dict(
      num_classes=NUM_CLASSES,
      # '32s' (paper) | '16s' | '8s'. 8s on the 128-px synthetic images gives a 16x16 score map,
      # what 32s gives on VOC's 500-px photos (32s: 4x4; 3-5 % vs 16-21 % mIoU after 1000 steps).
      variant="8s",
      width=1 / 8,           # channel multiplier (1.0 = VGG16)
      mode="same",           # 'caffe' (released deploy geometry) | 'same' (padded, TPU-friendly)
      dropout=0.5,
      # Activations' dtype; params, optimiser state and checkpoints are float32 whatever it is.
      # 'bfloat16' uses a TPU's MXU / a GPU's tensor cores; XLA:CPU runs it slower than float32
      # (docs/model.md, "Compute dtype"; docs/performance.md).
      compute_dtype="float32",
      init_from=placeholder(str),  # .npz written by `python -m pointseg_jax.models.weights convert`
  ))

  # Every data field with its default is DataSpec's (data/spec.py); the synthetic benchmark's
  # 128-px images and one_point clicks are those defaults.
  c.data = data_block()

  c.loss = ml_collections.ConfigDict(dict(
      weights={},            # the regime's row (set_regime below)
      # True: the authors' Eq. 4 (only at unclicked pixels); False: the paper text (all pixels).
      objectness_exclude_clicked=True,
      # The pairwise term's window and kernel (supervision.PairwiseKernel; docs/losses.md). Every
      # regime has them, so `--config.loss.weights.pairwise=0.1` adds the term to any regime.
      pairwise=supervision.PairwiseKernel().to_dict(),
  ))

  # The authors' solver (docs/training.md, "Optimiser"): SGD, momentum 0.9, fixed lr, biases 2x lr
  # and no decay, weight decay 5e-4 added to the gradient (Caffe). Effective batch =
  # batch_size * accum_steps.
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd",            # 'sgd' (paper) | 'adam'
      learning_rate=SYNTHETIC_LR,
      momentum=0.9,
      weight_decay=5e-4,
      bias_lr_mult=2.0,
      accum_steps=1,
      warmup_steps=200,      # linear ramp to learning_rate (not in the paper: from scratch)
      clip_grad_norm=20.0,   # clip the gradient's global norm (not in the paper: from scratch)
      schedule="constant",   # LR_SCHEDULES; 'cosine' / 'poly' decay to 0 by decay_steps
      decay_steps=0,         # a decaying schedule's last step; 0 = train.num_steps (resolved
                             # into config.json when the run starts: with_decay_length)
      input_rms=1.0,         # > 1: conv1_1 trained as V = r W, as pretraining did (state.make_optimizer)
  ))

  c.train = ml_collections.ConfigDict(dict(
      batch_size=8,          # global, over all devices and hosts
      num_steps=2000,        # steps = batches; optimizer updates = num_steps / accum_steps
      log_every=50,
      checkpoint_every=500,
      eval_every=1000,
      keep_checkpoints=3,
      async_checkpoints=True,
      progress_bar=True,
      fast_compile=False,    # XLA:CPU backend optimisation off: 2-3x faster compile, slower steps
  ))

  c.eval = ml_collections.ConfigDict(dict(
      split="val",
      batch_size=8,          # global; the last batch is padded, no image is dropped
  ))

  c.predict = ml_collections.ConfigDict(dict(
      split="val",
      num_images=8,          # PNG panels written by --mode=predict
      batch_size=8,
  ))

  if args.dataset == "tiny":
    c.data.dataset = "synthetic_points/tiny"
    c.data.image_size = (64, 64)
    c.model.width = 1 / 16
    c.train.update(num_steps=4, log_every=1, checkpoint_every=2, eval_every=4, keep_checkpoints=2,
                   fast_compile=True)
    c.predict.num_images = 2

  if args.dataset == "voc":
    # The paper (§4.1) / authors' solver: full FCN-32s in Caffe geometry from ImageNet VGG16,
    # lr 1e-5 (5e-5 AllPoints / random), 1 image per step as the authors trained (the paper's
    # "minibatch of 20": --config.train.batch_size=4 --config.optimizer.accum_steps=5 on 4 devices).
    c.data.dataset = "voc2012_points"
    c.data.image_size = (500, 500)   # VOC images are at most 500x500: pad, never crop
    c.data.augment = False           # the authors used no crop / flip / scale
    c.model.update(width=1.0, mode="caffe", variant="32s", init_from=VOC_INIT_FROM,
                   compute_dtype="bfloat16")   # an accelerator's run (on CPU: =float32)
    c.optimizer.update(learning_rate=regime.learning_rate, warmup_steps=0, clip_grad_norm=0.0)
    c.train.update(batch_size=1, num_steps=50_000, log_every=100, checkpoint_every=1000,
                   eval_every=5000)
    c.eval.batch_size = 1
    c.predict.batch_size = 1

  if args.pretrained:
    # The width-1/8 backbone pretrained on synthetic_classes (python -m pointseg_jax.pretrain);
    # another width (e.g. tiny's 1/16) is refused when loading, naming the command.
    c.model.init_from = PRETRAINED_INIT_FROM
    c.optimizer.input_rms = PRETRAINED_INPUT_RMS

  if args.tpu:
    c.distributed = True
    c.train.batch_size = 16          # divides v3-8 / v4-8 / v5e-8 device counts
    c.eval.batch_size = 64
    c.predict.batch_size = 16
    c.train.progress_bar = False

  _set_regime(c, regime.name)
  if regime.name == "squiggle":
    c.data.squiggle_radius = args.get("radius", c.data.squiggle_radius)
  if regime.name == "grown_points":
    c.data.point_radius = args.get("radius", GROWN_POINTS_RADIUS)
    DataSpec.from_config(c.data)   # a bad radius fails here, naming config.data.point_radius
  return c


def _set_regime(c, regime_name: str) -> None:
  """The regime's row of supervision.REGIMES into c: its name, label kind and loss weights."""
  row = supervision.get_regime(regime_name)
  c.regime = row.name
  c.data.label_kind = row.label_kind
  c.loss.weights = supervision.default_weights(row.name)
  # The grown-points radius is that regime's own default (configs/grown_points.py), 0 elsewhere.
  c.data.point_radius = (GROWN_POINTS_RADIUS if row.name == "grown_points"
                         else DataSpec().point_radius)


def with_regime(config, regime_name: str, *, squiggle_radius=None, train_fraction=None):
  """`config` with another regime's row swapped in and nothing else changed: what `demo --compare`
  and the experiment runners train, so a comparison changes only the supervision.

  On VOC the authors' learning-rate ratio between the two regimes is kept (a user's lr override
  scales with it); the synthetic variants use one lr for every regime. On an unmodified
  `get_config(r, variant)` this equals `get_config(regime_name, variant)` (a test checks every
  regime). squiggle_radius: config.data.squiggle_radius (paper §4.2: 2, 5, 25); train_fraction:
  config.data.train_fraction (train on a fixed share of the train split, e.g. equal budget).
  """
  other = config.copy_and_resolve_references()
  base = supervision.get_regime(config.regime)
  row = supervision.get_regime(regime_name)
  with other.unlocked():
    _set_regime(other, regime_name)
    if config.data.dataset.startswith("voc"):
      other.optimizer.learning_rate = (config.optimizer.learning_rate * row.learning_rate
                                       / base.learning_rate)
    if squiggle_radius is not None:
      other.data.squiggle_radius = squiggle_radius
    if train_fraction is not None:
      other.data.train_fraction = train_fraction
  return other


# ----------------------------------------------------------------------------------------------
# Checks every entry point (train, eval, predict) runs before building data or compiling.

# Paths the user gives in a config: `~` and $VARS are expanded (URLs such as gs://... are kept).
PATH_FIELDS = ("data.data_dir", "data.manual_dir", "model.init_from")


def _int(lo):
  return (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= lo,
          f"an integer >= {lo}")


def _real(lo, hi=math.inf, lo_open=False, hi_open=True):
  def ok(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
      return False
    return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
  what = (f"a finite number {'>' if lo_open else '>='} {lo:g}"
          + (f" and {'<' if hi_open else '<='} {hi:g}" if math.isfinite(hi) else ""))
  return ok, what


# field -> (predicate, what it must be). Fields a saved config.json may lack are skipped.
NUMERIC_FIELDS = {
    "seed": _int(0),
    "model.width": _real(0, lo_open=True),
    "model.dropout": _real(0, 1),
    "optimizer.learning_rate": _real(0, lo_open=True),
    "optimizer.momentum": _real(0, 1),
    "optimizer.weight_decay": _real(0),
    "optimizer.bias_lr_mult": _real(0),
    "optimizer.accum_steps": _int(1),
    "optimizer.warmup_steps": _int(0),
    "optimizer.clip_grad_norm": _real(0),
    "optimizer.decay_steps": _int(0),
    "optimizer.input_rms": _real(1),
    "train.batch_size": _int(1),
    "train.num_steps": _int(0),
    "train.log_every": _int(1),
    "train.checkpoint_every": _int(1),
    "train.eval_every": _int(1),
    "train.keep_checkpoints": _int(1),
    "eval.batch_size": _int(1),
    "predict.batch_size": _int(1),
    "predict.num_images": _int(1),
}


def _lookup(config, dotted):
  node = config
  for key in dotted.split("."):
    if key not in node:
      return None, False
    node = node[key]
  return node, True


def validate(config) -> None:
  """Every number and choice of a run's config, checked before any data is built or anything
  compiles: a ConfigError naming the field, its value and what it must be (docs/errors.md).
  The model's variant / mode are checked by `state.make_model`, the data block by DataSpec."""
  supervision.get_regime(config.regime)
  for dotted, (ok, what) in NUMERIC_FIELDS.items():
    value, present = _lookup(config, dotted)
    if present and not ok(value):
      raise errors.ConfigError(f"config.{dotted} = {value!r}: must be {what} "
                               f"(--config.{dotted}=...)")
  if config.model.num_classes != NUM_CLASSES:
    raise errors.ConfigError(f"config.model.num_classes = {config.model.num_classes!r}: the "
                             f"data has {NUM_CLASSES} classes (VOC: background + 20)")
  weights = dict(config.loss.weights)
  for term, value in weights.items():
    if not _real(0)[0](value):
      raise errors.ConfigError(f"config.loss.weights.{term} = {value!r}: must be a finite "
                               "number >= 0 (0 turns the term off)")
  supervision.active_terms(weights)
  _validate_schedule(config.optimizer)
  DataSpec.from_config(config.data)
  oracle = config.data.get("oracle_objectness")
  if oracle is not None and not str(config.eval.split).startswith("train["):
    raise errors.ConfigError(
        f"config.data.oracle_objectness = {oracle!r} with eval.split = {config.eval.split!r}: "
        "the oracle map is made from ground-truth masks, so it may only be scored on a train "
        "hold-out (eval.split = 'train[k:]'); leave it unset (None) for a real run")


def _validate_schedule(optimizer) -> None:
  schedule = optimizer.get("schedule", "constant")
  if schedule not in LR_SCHEDULES:
    raise errors.ConfigError(f"config.optimizer.schedule = {schedule!r}: must be one of "
                             f"{', '.join(LR_SCHEDULES)} (--config.optimizer.schedule=cosine)")
  decay, warmup = optimizer.get("decay_steps", 0), optimizer.get("warmup_steps", 0)
  if schedule != "constant" and 0 < decay <= warmup:
    raise errors.ConfigError(
        f"config.optimizer.decay_steps = {decay}: a {schedule} schedule decays after the "
        f"warmup, so it must be > optimizer.warmup_steps = {warmup} (or 0 = train.num_steps)")


def with_decay_length(config) -> ml_collections.ConfigDict:
  """config with a decaying schedule's `optimizer.decay_steps = 0` resolved to train.num_steps.

  Training resolves it before the workdir check, so config.json records the length the lr
  decayed over, and resuming with more steps is refused (naming optimizer.decay_steps) instead of
  silently changing the lr of steps already taken; pass the old decay_steps to train on at the
  schedule's final lr."""
  optimizer = config.optimizer
  if optimizer.get("schedule", "constant") == "constant" or optimizer.get("decay_steps", 0):
    return config
  out = config.copy_and_resolve_references()
  out.optimizer.decay_steps = int(config.train.num_steps)
  _validate_schedule(out.optimizer)
  return out


def with_expanded_paths(config) -> ml_collections.ConfigDict:
  """A copy of config with `~` and $VARS expanded in every path field (PATH_FIELDS)."""
  out = config.copy_and_resolve_references()
  for dotted in PATH_FIELDS:
    value, present = _lookup(out, dotted)
    if present and isinstance(value, str) and expand_path(value) != value:
      parent, leaf = dotted.rsplit(".", 1)
      out[parent][leaf] = expand_path(value)
  return out

"""A run's workdir remembers what it holds: `config.json` says which run its checkpoints belong to.

Before a run writes anything it compares its config with the saved one on the fields that give the
parameters their meaning (regime, seed, model, data, loss, optimiser, batch size) and refuses a
mismatch with one line naming the fields and the fix. Fields that only say how long to train, how
often to log / evaluate / checkpoint, or where the same data lives may change on a resume
(MAY_CHANGE; docs/training.md, "Workdir"). `config_sha256` hashes exactly the guarded fields, so two
runs with the same hash trained the same thing.
"""
import hashlib
import json
import pathlib
from typing import Any

import ml_collections

from pointseg_jax import errors
from pointseg_jax import files
from pointseg_jax.data.spec import expand_path

CONFIG_FILE = "config.json"

# Fields a resumed (or evaluated) run may change: how long to train (train.num_steps, extended
# past the last checkpoint), how often to log / evaluate / checkpoint, how it is shown, how XLA
# compiles it (train.fast_compile: same parameters, other rounding), where the same data lives,
# and what eval / predict look at. Everything else -- including any field added later -- is
# guarded.
MAY_CHANGE = (
    "train.num_steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
    "train.keep_checkpoints", "train.async_checkpoints", "train.progress_bar",
    "train.fast_compile", "data.data_dir", "data.manual_dir", "distributed", "eval.", "predict.",
)
SHOWN_DIFFERENCES = 6   # the error names at most this many fields


def resolve(workdir) -> pathlib.Path:
  """The workdir as a local path: `~` and $VARS expanded; a file or a URL is a WorkdirError."""
  text = str(workdir)
  if "://" in text:
    raise errors.WorkdirError(
        f"--workdir={text}: the workdir must be a filesystem path (metrics.jsonl is appended to, "
        "which object stores do not support); mount the bucket (gcsfuse) and pass its path, e.g. "
        "--workdir=/mnt/bucket/runs/point (docs/training.md)")
  path = pathlib.Path(expand_path(text))
  if path.exists() and not path.is_dir():
    raise errors.WorkdirError(f"--workdir={text}: {path} is a file, not a directory; pass a new "
                              "or existing run directory")
  for parent in path.parents:
    if parent.exists():
      if not parent.is_dir():
        raise errors.WorkdirError(f"--workdir={text}: {parent} is a file, not a directory")
      break
  return path


def _plain(config) -> dict[str, Any]:
  """The config as plain JSON values (what config.json holds: tuples are lists)."""
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(config))


def _flatten(tree, prefix="") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def may_change(field: str) -> bool:
  return any(field == f or (f.endswith(".") and field.startswith(f)) for f in MAY_CHANGE)


def _inactive(field: str, flat: dict[str, Any]) -> bool:
  """A loss term that is off says nothing about the parameters: its zero weight and its option
  block (`loss.<term>.*`, e.g. the pairwise kernel) are left out, so adding a new, inactive term
  to every config does not change what older runs are. Likewise `data.point_radius` outside the
  grown_points label kind (the only kind that reads it), and `model.compute_dtype` at float32 (what
  every run was before the field existed), so older runs' fingerprints and config.json still match.
  The lr schedule's fields at 'constant' (the fixed lr every run had before they existed) too, and
  the objectness oracle when unset (None: the prior's maps), and `optimizer.input_rms` at 1 (plain
  SGD on conv1_1)."""
  if field == "optimizer.input_rms":
    return flat[field] == 1.0
  if field == "data.oracle_objectness":
    return flat[field] is None
  if field in ("optimizer.schedule", "optimizer.decay_steps"):
    return flat.get("optimizer.schedule", "constant") == "constant"
  if field == "data.point_radius":
    return flat.get("data.label_kind") != "grown_points"
  if field == "model.compute_dtype":
    return flat[field] == "float32"
  parts = field.split(".")
  if len(parts) < 3 or parts[0] != "loss":
    return False
  if parts[1] == "weights":
    return not flat[field]
  weight = flat.get(f"loss.weights.{parts[1]}")
  return f"loss.weights.{parts[1]}" in flat and not weight


def identity(config) -> dict[str, Any]:
  """The guarded fields of a config, flattened ({'model.width': 0.125, ...}), without inactive
  loss terms."""
  flat = _flatten(_plain(config))
  return {k: v for k, v in sorted(flat.items()) if not may_change(k) and not _inactive(k, flat)}


def config_sha256(config) -> str:
  """sha256 of the guarded fields (canonical JSON): equal hashes, same trained thing."""
  text = json.dumps(identity(config), sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def differences(saved, config) -> list[str]:
  """'field: saved -> new' for every guarded field that differs (absent fields included)."""
  a, b = identity(saved), identity(config)
  shown_a, shown_b = _flatten(_plain(saved)), _flatten(_plain(config))   # zero weights included
  missing = "<absent>"
  return [f"{k}: {shown_a.get(k, missing)!r} -> {shown_b.get(k, missing)!r}"
          for k in sorted(set(a) | set(b), key=lambda k: (k != "regime", k))
          if a.get(k, missing) != b.get(k, missing)]


def load_config(workdir) -> ml_collections.ConfigDict:
  """The config a run saved in workdir/config.json."""
  path = resolve(workdir) / CONFIG_FILE
  if not path.is_file():
    raise errors.MissingInputError(
        f"{path} not found: {workdir} holds no trained run (train first with --mode=train, or "
        "pass the run's --workdir)")
  try:
    config = ml_collections.ConfigDict(json.loads(path.read_text()))
  except (ValueError, TypeError) as e:
    raise errors.WorkdirError(f"{path} is not a config written by a run ({e}); pass another "
                              "--workdir") from None
  config.data.image_size = tuple(config.data.image_size)
  return config


def check_matches(config, workdir, what="this run") -> None:
  """Refuse `config` for a workdir whose config.json holds another run (guarded fields differ)."""
  path = resolve(workdir) / CONFIG_FILE
  if not path.is_file():
    return
  diffs = differences(load_config(workdir), config)
  if diffs:
    shown = "; ".join(diffs[:SHOWN_DIFFERENCES])
    more = f"; and {len(diffs) - SHOWN_DIFFERENCES} more" if len(diffs) > SHOWN_DIFFERENCES else ""
    raise errors.WorkdirError(
        f"{workdir} holds a run with another config than {what} ({shown}{more}; saved -> "
        "asked). Use a new --workdir, or give the run's values (its config.json); only "
        "train.num_steps, the log/eval/checkpoint cadence, data paths and eval/predict fields "
        "may change in a run's workdir")


def run_config(workdir, config=None) -> ml_collections.ConfigDict:
  """eval / predict: the run's own config.json, or `config` after checking it matches."""
  saved = load_config(workdir)
  if config is None:
    return saved
  check_matches(config, workdir, what="--config")
  return config


def write_config(config, workdir) -> None:
  """config.json, written once every check passed (process 0)."""
  path = resolve(workdir)
  path.mkdir(parents=True, exist_ok=True)
  files.write_text(path / CONFIG_FILE, config.to_json_best_effort(indent=2) + "\n")

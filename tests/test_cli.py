"""Every command-line tool's flags: defined only when it runs, never clashing with a flag that any
module of the package defines on import (absl flags live in one process-wide registry)."""
import importlib
import sys

from absl import flags
import pytest

# Modules with `define_flags()` + `main(argv)`, run as `python -m <module>`.
CLI_MODULES = (
    "pointseg_jax.models.weights",
    "pointseg_jax.objectness.precompute",
    "pointseg_jax.objectness.evaluate",
    "pointseg_jax.objectness.learn",
    "pointseg_jax.objectness.convert",
    "pointseg_jax.data.synthetic_points.stats",
    "pointseg_jax.data.voc2012_points.__main__",
    "pointseg_jax.data.objectness_maps",
    "pointseg_jax.data.objectness_eval",
    "pointseg_jax.data.objectness_learn",
    "pointseg_jax.experiments.demo",
    "pointseg_jax.experiments.table1",
    "pointseg_jax.experiments.pairwise_search",
    "pointseg_jax.experiments.schedule_search",
    "pointseg_jax.experiments.objectness_ablation",
    "pointseg_jax.experiments.first_layer",
    "pointseg_jax.experiments.transfer_check",
    "pointseg_jax.experiments.demo_stability",
    "pointseg_jax.experiments.table1_v2",
    "pointseg_jax.experiments.confusion",
    "pointseg_jax.experiments.full_gap",
)
# Programs whose flags are defined at import (the trainer: `python -m pointseg_jax.main`).
IMPORT_TIME_FLAGS = ("pointseg_jax.main", "pointseg_jax.objectness.__main__")
# Flags a program shares with the trainer on purpose (same name, same meaning); the two are never
# defined in one process.
SHARED_WITH_MAIN = {"pointseg_jax.experiments.demo": {"config", "workdir"}}


def test_cli_modules_import_together_and_define_no_flags_on_import():
  modules = [importlib.import_module(m) for m in CLI_MODULES]
  defining = set(flags.FLAGS.flags_by_module_dict())
  for m in modules:
    assert m.__name__ not in defining, m.__name__
    assert callable(m.define_flags) and callable(m.main), m.__name__
  assert "verbose" in flags.FLAGS   # cli.py's, shared by every tool


@pytest.mark.parametrize("name", CLI_MODULES)
def test_cli_flags_are_snake_case_and_clash_with_nothing(name):
  for m in (*CLI_MODULES, *IMPORT_TIME_FLAGS):
    importlib.import_module(m)
  own = flags.FlagValues()
  importlib.import_module(name).define_flags(own)
  names = set(own)
  assert names, name
  assert all(n.islower() and "-" not in n for n in names), sorted(names)
  clash = (names - SHARED_WITH_MAIN.get(name, set())) & set(flags.FLAGS)
  assert not clash, sorted(clash)


@pytest.mark.parametrize("command,moved", [("evaluate", "pointseg_jax.data.objectness_eval"),
                                           ("learn", "pointseg_jax.data.objectness_learn")])
def test_objectness_tfds_mode_names_where_it_moved(command, moved, monkeypatch, capsys):
  from pointseg_jax.objectness import __main__ as objectness_main
  monkeypatch.setattr(sys, "argv", ["objectness", command, "--tfds=synthetic_points/default"])
  with pytest.raises(SystemExit) as e:
    objectness_main.main()
  assert e.value.code == 2
  assert f"run `python -m {moved} --dataset=" in capsys.readouterr().err

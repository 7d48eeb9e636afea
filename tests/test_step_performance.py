"""The training loop's performance contract (docs/performance.md): the train step and the eval step
compile once per run, the train state's buffers are donated to the step, and the host never waits
for a step except at log / eval / checkpoint steps."""
import warnings

import jax
import pytest

from pointseg_jax import evaluate
from pointseg_jax import parallel
from pointseg_jax import state as state_lib
from pointseg_jax import supervision
from pointseg_jax import train
from pointseg_jax.data import spec as spec_lib
from helpers import tiny_config

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"   # one per XLA compilation


class CompileLog:
  """Every XLA compilation while registered, tagged with the phase the loop was in."""

  def __init__(self):
    self.phase = "setup"
    self.compiles = []   # (phase, compiled function's name)

  def __call__(self, event, duration, **kwargs):
    del duration
    if event == COMPILE_EVENT:
      self.compiles.append((self.phase, kwargs.get("fun_name")))

  def wrap(self, fn, name):
    """fn with each call tagged '<name> <n>' (n counts from 1) while it runs."""
    calls = [0]

    def wrapped(*args, **kwargs):
      calls[0] += 1
      self.phase = f"{name} {calls[0]}"
      try:
        return fn(*args, **kwargs)
      finally:
        self.phase = "loop"
    wrapped.calls = calls
    return wrapped


@pytest.fixture
def compile_log():
  log = CompileLog()
  jax.monitoring.register_event_duration_secs_listener(log)
  yield log
  jax.monitoring.unregister_event_duration_listener(log)


def test_one_compile_per_step_function_and_no_per_step_host_sync(tiny_data_dir, tmp_path,
                                                                  compile_log, monkeypatch):
  num_steps = 6
  config = tiny_config(tiny_data_dir, train__num_steps=num_steps, train__log_every=3,
                       train__eval_every=3, train__checkpoint_every=6)
  # Tag every call of the compiled steps; count the host fetches of step metrics.
  compiled_train_step, compiled_eval_step = train.compiled_train_step, evaluate.compiled_eval_step
  steps = {}

  def tagged(factory, name):
    def make(*args, **kwargs):
      steps[name] = compile_log.wrap(factory(*args, **kwargs), name)
      return steps[name]
    return make
  monkeypatch.setattr(train, "compiled_train_step", tagged(compiled_train_step, "train"))
  monkeypatch.setattr(evaluate, "compiled_eval_step", tagged(compiled_eval_step, "eval"))
  fetches = []
  device_get = jax.device_get

  def counting_device_get(x):
    if isinstance(x, list) and x and isinstance(x[0], dict) and "train/loss" in x[0]:
      fetches.append(len(x))
    return device_get(x)
  monkeypatch.setattr(jax, "device_get", counting_device_get)

  summary = train.train_and_evaluate(config, tmp_path)

  assert summary["step"] == num_steps
  assert compile_log.compiles, "the listener heard no compilation at all"
  assert steps["train"].calls[0] == num_steps and steps["eval"].calls[0] >= 2
  late = [c for c in compile_log.compiles
          if c[0].split()[0] in ("train", "eval") and int(c[0].split()[1]) > 1]
  assert not late, f"step functions recompiled after their first call: {late}"
  # Metrics come over at the log steps 3 and 6 only, three steps at a time.
  assert fetches == [3, 3]


def test_train_step_donates_the_state(tiny_data_dir):
  config = tiny_config(tiny_data_dir)
  mesh = parallel.make_mesh()
  model = state_lib.make_model(config.model)
  opt = state_lib.OptimizerSpec.from_config(config.optimizer)
  terms = supervision.active_terms(dict(config.loss.weights))
  step = train.compiled_train_step(model, terms, opt, supervision.LossOptions(), mesh, True)
  state = state_lib.create_train_state(model, opt, 0, mesh)
  spec = spec_lib.DataSpec.from_config(config.data)
  batches = train.train_batches(spec, config.train.batch_size, 0, 0,
                                supervision.needed_fields(terms))
  hparams = parallel.replicate(train.hyperparams(config.optimizer, config.loss.weights), mesh)
  # Only the donation warning fails the test: the session's shared compilation cache may warn
  # (and recompile) when it reads an entry another worker is still writing.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range(2):
      old = state
      state, _ = step(state, parallel.host_to_global(next(batches), mesh), hparams)
      assert all(leaf.is_deleted() for leaf in jax.tree.leaves(old))
  jax.block_until_ready(state)
  donation = [str(w.message) for w in caught if "donat" in str(w.message).lower()]
  assert not donation, donation

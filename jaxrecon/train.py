"""Full-batch training of homogeneous nets into the implicit-bias regime, with resumable workdirs.

Optimizers: 'relative_gd' (the default: ||step|| / ||theta|| = lr / max(1, -log Loss) along -grad Loss, so
lr is dimensionless: no data scale, width or depth in it; lr 0.03 trains the sphere tasks and the 3-layer
MNIST / CIFAR-10 nets alike, BUILD_NOTES.md has the comparison), 'gd' (theta -= lr grad; the reference
protocol is lr 0.01), 'normalized_gd' (the step divided by the loss, lr_eff = min(lr / loss, lr_cap)),
'log_normalized_gd' (lr_eff = lr / (loss * max(1, -log loss)^(2 - 2/L)) for an L-homogeneous net: the
previous default; its lr depends on the data scale), and any optax optimizer by name ('adam', 'sgd', ...),
optionally loss-normalized as well (`normalize=True`).

Why the relative step shrinks like 1/|log Loss|: for an L-homogeneous net a step of constant relative size
makes the direction chatter once the soft-min over margins that log Loss stands for sharpens, and the KKT
residual grows (measured in BUILD_NOTES.md); shrinking it like 1/|log Loss| makes the loss fall by a roughly
constant factor per step while theta keeps tracking the gradient flow. Plain GD, by contrast, has a
relative step that shrinks like Loss |log Loss|.
Loss-normalized steps use grad Loss / Loss = grad log Loss computed in log space, so they keep working
after the loss itself underflows (below ~1e-308 in float64, ~1e-38 in float32).
The step loop runs inside `lax.scan` chunks between fixed boundaries (log rows and log-spaced checkpoints
at {1, 2, 5} x 10^k steps), so a run resumed from a checkpoint repeats exactly the same computation.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shutil
import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import losses
from jaxrecon import nets
from jaxrecon import workdir as wd


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run: data, architecture, loss, optimizer and schedule.

  Attributes:
    data: What to train on (DataConfig).
    widths: Hidden widths, e.g. 1000 or 1000,1000.
    init_scales: Per-layer init std (N(0,1)*s); 'default' or missing = PyTorch's U(+-1/sqrt(fan_in)).
    first_bias: First-layer bias (keeps the net homogeneous).
    loss: Training loss: logistic | exponential.
    optimizer: relative_gd (lr = the relative step ||step||/||theta|| at loss >= 1/e, then divided by
      -log Loss) | gd | normalized_gd | log_normalized_gd | sumo | an optax name (adam, sgd, ...).
    lr: Learning rate (relative_gd: the dimensionless relative step; normalized_gd: the step is lr / loss).
    lr_cap: normalized_gd: cap on the effective step lr / loss (empty = none).
    momentum: Momentum for the GD rules.
    normalize: Divide an optax optimizer's gradient by the loss first.
    steps: Training steps.
    target_loss: Stop once the training loss is at or below this (0 = never).
    max_wall_s: Stop after this many seconds of training (0 = no limit).
    log_every: Metrics row and progress line every this many steps.
    checkpoint_mantissas: Checkpoints at these mantissas x 10^k steps (and the last step).
    dtype: Parameter and data dtype.
    seed: Seed for data and initialization.
    kink_tol: Relative |w.x| below which a pair counts as near its ReLU kink (the relaxed residual).
    relaxed: Also solve the relaxed KKT residual (kink neighbourhood) in the summary.
  """
  data: data_lib.DataConfig = data_lib.DataConfig()
  widths: tuple = (1000,)
  init_scales: Optional[tuple] = (1e-4,)
  first_bias: bool = False
  loss: str = "logistic"
  optimizer: str = "relative_gd"
  lr: float = 0.03
  lr_cap: Optional[float] = None
  momentum: float = 0.0
  normalize: bool = False
  steps: int = 5000
  target_loss: float = 0.0
  max_wall_s: float = 0.0
  log_every: int = 100
  checkpoint_mantissas: tuple = (1, 2, 5)
  dtype: str = "float64"
  seed: int = 0
  kink_tol: float = 1e-3
  relaxed: bool = True

  @staticmethod
  def from_dict(d: dict) -> "TrainConfig":
    d = dict(d)
    d["data"] = data_lib.DataConfig(**d.get("data", {}))
    for k in ("widths", "init_scales", "checkpoint_mantissas"):
      if d.get(k) is not None:
        d[k] = tuple(d[k])
    return TrainConfig(**d)

  def mlp(self, d_in: int, n_out: int) -> nets.MLPConfig:
    return nets.MLPConfig(d_in=d_in, widths=tuple(self.widths), n_out=n_out,
                          init_scales=self.init_scales, first_bias=self.first_bias)


# A certificate above this (an upper bound on eps_rel) means the run is not near a KKT point yet.
CERT_FAR = 0.5

# Fields that may change when a run is resumed (they do not change the computation up to a step).
RESUMABLE_CHANGES = ("steps", "target_loss", "max_wall_s", "log_every", "relaxed", "kink_tol")


class TrainState(NamedTuple):
  params: nets.Params
  opt_state: optax.OptState


def make_optimizer(config: TrainConfig) -> tuple:
  """(optax transformation, whether gradients are divided by the loss first)."""
  name = config.optimizer
  if name in ("gd", "normalized_gd", "log_normalized_gd", "relative_gd"):
    # relative_gd sets the step length itself (lr is the relative step), so the optimizer's lr is 1
    opt = optax.sgd(1.0 if name == "relative_gd" else config.lr, momentum=config.momentum or None)
    return opt, name != "gd" or config.normalize
  if name == "sumo":  # SUMO on the weight matrices, AdamW (same lr) on biases
    from jaxrecon import sumo  # noqa: PLC0415
    # the randomized projector's key comes from the run's seed (a stream of its own)
    return sumo.sumo(config.lr, key=jax.random.fold_in(jax.random.key(config.seed), 0x5D30)), config.normalize
  factory = getattr(optax, name, None)
  if factory is None or not callable(factory):
    raise ValueError(f"unknown optimizer {name!r}: use 'gd', 'normalized_gd' or an optax name like 'adam'")
  try:
    opt = factory(learning_rate=config.lr)
  except TypeError as e:
    raise ValueError(f"optax.{name} cannot be built from a learning rate alone: {e}") from None
  if not isinstance(opt, optax.GradientTransformation):
    raise ValueError(f"optax.{name} is not an optimizer")
  return opt, config.normalize


def loss_fn(params, x, y, loss: str) -> jax.Array:
  return losses.mean_loss(loss, kkt.margins_of(params, x, y))


def log_loss_fn(params, x, y, loss: str) -> jax.Array:
  return losses.log_mean_loss(loss, kkt.margins_of(params, x, y))


def make_train_step(config: TrainConfig, optimizer: optax.GradientTransformation, normalized: bool):
  """(state, x, y) -> (state, log loss): one full-batch step. Pure; scan and jit at the caller.

  Normalized: the gradient fed to the optimizer is grad log Loss = grad Loss / Loss, times
  min(1, lr_cap * Loss / lr) when a cap is set (so lr_eff = min(lr / Loss, lr_cap)).
  """
  log_cap = None if config.lr_cap is None else math.log(config.lr_cap / config.lr)
  log_normalized = config.optimizer == "log_normalized_gd"
  relative = config.optimizer == "relative_gd"

  def step(state: TrainState, x, y):
    if normalized:
      log_loss, grads = jax.value_and_grad(log_loss_fn)(state.params, x, y, config.loss)
      factor = None
      if log_normalized:
        power = 2.0 - 2.0 / nets.degree(state.params)
        factor = jnp.maximum(1.0, -log_loss) ** (-power)
      if relative:  # ||step|| / ||theta|| = lr / max(1, -log Loss): no data scale, width or depth in it
        gnorm = jnp.maximum(nets.param_norm(grads), jnp.finfo(log_loss.dtype).tiny)
        factor = config.lr * nets.param_norm(state.params) / gnorm / jnp.maximum(1.0, -log_loss)
      if log_cap is not None:
        cap = jnp.exp(jnp.minimum(0.0, log_cap + log_loss))
        factor = cap if factor is None else jnp.minimum(factor, cap)
      if factor is not None:
        grads = jax.tree_util.tree_map(lambda g: g * factor, grads)
    else:
      loss, grads = jax.value_and_grad(loss_fn)(state.params, x, y, config.loss)
      log_loss = jnp.log(loss)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), log_loss
  return step


def make_chunk_runner(step_fn) -> Callable:
  """jit((state, x, y, length) -> state) running `length` steps in one lax.scan (length static)."""
  def run(state, x, y, length):
    def body(s, _):
      s, loss = step_fn(s, x, y)
      return s, loss
    state, _ = jax.lax.scan(body, state, None, length=length)
    return state
  return jax.jit(run, static_argnums=3)


def metrics_fn(params, x, y, x_test, y_test, loss: str) -> dict:
  """Per-chunk metrics: loss, accuracies, q_min, normalized margin, ||theta||, the cheap certificate."""
  q = kkt.margins_of(params, x, y)
  theta_norm = nets.param_norm(params)
  cert_rel, cert_abs = kkt.certificate(params, x, y, loss)
  out = {
      "loss": losses.mean_loss(loss, q),
      "log10_loss": losses.log_mean_loss(loss, q) / jnp.log(10.0),
      "train_acc": jnp.mean((q > 0).astype(x.dtype)),
      "q_min": jnp.min(q),
      "normalized_margin": jnp.min(q) / theta_norm ** nets.degree(params),
      "theta_norm": theta_norm,
      "cert_eps_rel": cert_rel,
      "cert_eps_abs": cert_abs,
  }
  out["test_acc"] = (jnp.mean((kkt.margins_of(params, x_test, y_test) > 0).astype(x.dtype))
                     if x_test.shape[0] else jnp.nan)
  return out


def checkpoint_steps(total: int, mantissas=(1, 2, 5)) -> list:
  """Log-spaced steps {m * 10^k} up to total, plus total itself."""
  out = {total}
  k = 0
  while 10 ** k <= total:
    out.update(m * 10 ** k for m in mantissas if m * 10 ** k <= total)
    k += 1
  return sorted(s for s in out if s > 0)


def boundaries(total: int, log_every: int, mantissas) -> list:
  grid = set(range(log_every, total + 1, log_every)) if log_every > 0 else set()
  return sorted(grid | set(checkpoint_steps(total, mantissas)))


def _pow2_parts(n: int) -> list:
  return [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]


def _dtype(config):
  if config.dtype not in ("float32", "float64"):
    raise ValueError(f"dtype must be float32 or float64, got {config.dtype!r}")
  if config.dtype == "float64" and not jax.config.jax_enable_x64:
    raise ValueError("dtype float64 needs jax_enable_x64 (scripts enable it at start)")
  return jnp.dtype(config.dtype)


class TrainingDiverged(RuntimeError):
  """The training loss became non-finite; the workdir keeps the last finite checkpoint as its latest."""


LOSSES = ("logistic", "exponential")


def validate(config: TrainConfig) -> None:
  """Raises ValueError naming the field for a config that cannot run (before anything is written)."""
  _dtype(config)
  if config.loss not in LOSSES:
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {config.loss!r}")
  for name in ("steps", "log_every"):
    if getattr(config, name) < (1 if name == "steps" else 0):
      raise ValueError(f"{name} must be positive; got {getattr(config, name)}")
  if not config.widths or min(config.widths) < 1:
    raise ValueError(f"widths must be positive integers; got {config.widths}")
  if not (config.lr > 0 and math.isfinite(config.lr)):
    raise ValueError(f"lr must be a positive number; got {config.lr}")
  make_optimizer(config)  # unknown optimizer names fail here


def _check_resumable(saved: dict, config: TrainConfig, workdir: str):
  diffs = wd.config_diffs(saved, config, ignore=RESUMABLE_CHANGES)
  if diffs:
    raise ValueError(f"{workdir} holds a run with a different config ({', '.join(diffs)} differ); "
                     "use a new --workdir or the same settings")


def _fmt_loss(m: dict) -> str:
  """The loss, or 10^(log10 loss) once it is below what the dtype can hold."""
  if m["loss"] > 0 or not np.isfinite(m["log10_loss"]):
    return f"{m['loss']:.3e}"
  return f"1e{m['log10_loss']:.1f}"


def _fmt_time(s: float) -> str:
  if not math.isfinite(s):
    return "?"
  s = int(s)
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run(config: TrainConfig, workdir: str, log: Callable = print) -> dict:
  """Trains as configured, writing (or resuming) a workdir; returns the summary dict.

  workdir: config.json, data.npz, metrics.jsonl (one row per log step), checkpoints/step_*.npz (params and
  optimizer state at {1,2,5} x 10^k steps and the last step), summary.json (final metrics and KKT residuals).
  """
  validate(config)
  dtype = _dtype(config)
  key = jax.random.key(config.seed)
  key_data, key_init = jax.random.split(key)
  with wd.claim(workdir, "train"):
    return _run_in(config, workdir, dtype, key_data, key_init, log)


def _run_in(config, workdir, dtype, key_data, key_init, log) -> dict:
  ds, latest = _open_run(config, workdir, key_data, log)
  x, y = jnp.asarray(ds.x_train, dtype), jnp.asarray(ds.y_train)
  xt, yt = jnp.asarray(ds.x_test, dtype), jnp.asarray(ds.y_test)
  n_out = 1 if config.data.task == "binary" or config.data.name not in ("mnist", "cifar10") else 10
  optimizer, normalized = make_optimizer(config)
  params = nets.init(key_init, config.mlp(x.shape[1], n_out), dtype)
  state = TrainState(params, optimizer.init(params))
  start = 0
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if latest is not None:
    start, _, arrays = latest
    state = TrainState(wd.unflatten_tree(state.params, arrays, "params"),
                       wd.unflatten_tree(state.opt_state, arrays, "opt_state"))
    wd.write_jsonl(metrics_path, [r for r in wd.read_jsonl(metrics_path) if r["step"] <= start])
    log(f"resuming {workdir} from step {start}")
  elif os.path.exists(metrics_path):
    os.remove(metrics_path)
  log(f"training {nets.num_params(state.params):,} parameters on {x.shape[0]} points, "
      f"{config.optimizer} lr={config.lr}, {config.steps} steps, {config.dtype}")
  state, m, step, stop_reason = _train_loop(config, workdir, state, start, (x, y, xt, yt),
                                            make_train_step(config, optimizer, normalized), log)
  return _summarize(config, workdir, state, m, step, stop_reason, x, y, log)


def _open_run(config, workdir, key_data, log):
  """(dataset, latest readable checkpoint or None): the saved run to resume, or a fresh one written."""
  cfg_path = os.path.join(workdir, "config.json")
  data_path = os.path.join(workdir, "data.npz")
  # A run to resume has a config, its data and at least one readable checkpoint; anything less starts afresh.
  latest = wd.latest_readable_checkpoint(workdir, log) if os.path.exists(cfg_path) and os.path.exists(
      data_path) else None
  if latest is not None:
    saved = wd.read_json(cfg_path)
    _check_resumable(saved, config, workdir)
    if latest[0] > config.steps:
      raise wd.RunDirError(f"{workdir} holds a run already at step {latest[0]}, beyond steps={config.steps}; "
                           f"ask for steps >= {latest[0]} (or use a new workdir)")
    if saved != wd.to_jsonable(config):
      wd.write_json(cfg_path, config)
    return read_dataset(data_path), latest
  ds = data_lib.load(key_data, config.data)  # bad data fail here, before anything is written
  stale = os.path.join(workdir, "checkpoints")
  if os.path.isdir(stale):  # left by a run that never got going; a fresh start must not resume them
    shutil.rmtree(stale)
  wd.write_npz(data_path, **{k: np.asarray(v) for k, v in ds._asdict().items()})
  wd.write_json(cfg_path, config)
  return ds, None


def _train_loop(config, workdir, state, start, arrays, train_step, log):
  """Runs the chunks from `start`; returns (state, last metrics row, step, stop reason)."""
  x, y, xt, yt = arrays
  runner = make_chunk_runner(train_step)
  metrics = jax.jit(metrics_fn, static_argnums=5)
  ckpts = set(checkpoint_steps(config.steps, config.checkpoint_mantissas))
  bounds = [b for b in boundaries(config.steps, config.log_every, config.checkpoint_mantissas) if b > start]
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  rows = wd.read_jsonl(metrics_path)
  prior_wall = rows[-1].get("wall_s", 0.0) if rows else 0.0
  t0 = t_last = time.time()
  step = step_last = start
  if start == 0:
    wd.save_checkpoint(workdir, 0, params=state.params, opt_state=state.opt_state)
  m = None
  for b in bounds:
    for part in _pow2_parts(b - step):
      state = runner(state, x, y, part)
    step = b
    m = {k: float(v) for k, v in metrics(state.params, x, y, xt, yt, config.loss).items()}
    now = time.time()
    rate = (step - step_last) / max(now - t_last, 1e-9)
    t_last, step_last = now, step
    m.update(step=step, steps_per_s=rate, wall_s=prior_wall + now - t0)
    wd.append_jsonl(metrics_path, m)
    done = config.target_loss > 0 and m["loss"] <= config.target_loss
    out_of_time = config.max_wall_s > 0 and now - t0 >= config.max_wall_s
    diverged = not (np.isfinite(m["log10_loss"]) and np.isfinite(m["theta_norm"]))
    if (step in ckpts or done or out_of_time) and not diverged:  # a non-finite state is never a checkpoint
      wd.save_checkpoint(workdir, step, params=state.params, opt_state=state.opt_state)
    if config.log_every and (step % config.log_every == 0 or step == config.steps or done):
      log(f"step {step:>8d}  loss {_fmt_loss(m)}  acc {m['train_acc']:.3f}  q_min {m['q_min']:+.3e}  "
          f"cert_eps {m['cert_eps_rel']:.3f}  {rate:,.1f} steps/s  "
          f"left {_fmt_time((config.steps - step) / max(rate, 1e-9))}")
    if diverged:
      _diverged(workdir, m, step)
    if done:
      far = m["cert_eps_rel"] > CERT_FAR
      log(f"target loss {config.target_loss:g} reached at step {step}"
          + (f", but the certificate bounds eps_rel only by {m['cert_eps_rel']:.3f}: a small loss is not a KKT "
             "point; the exact eps_rel is measured below (train longer or drop --target_loss)" if far else ""))
      return state, m, step, "target_loss"
    if out_of_time:
      log(f"wall-time budget {config.max_wall_s:g}s used at step {step}")
      return state, m, step, "max_wall_s"
  if m is None:  # nothing left to run: a finished workdir re-run
    m = {k: float(v) for k, v in metrics(state.params, x, y, xt, yt, config.loss).items()}
    m.update(step=step, wall_s=prior_wall)
  return state, m, step, "steps"


def _diverged(workdir, m, step):
  last_good = wd.latest_checkpoint(workdir)[0]
  wd.write_json(os.path.join(workdir, "summary.json"), {
      "stop_reason": "diverged", "diverged_at_step": step, "last_finite_checkpoint": last_good,
      "steps": step, "wall_s": m["wall_s"]})
  raise TrainingDiverged(f"{workdir}: the training loss is {m['loss']} at step {step} (diverged); the "
                         f"latest checkpoint is step {last_good}. Lower --lr (or set --lr_cap) and use a "
                         "new workdir")


def _summarize(config, workdir, state, m, step, stop_reason, x, y, log) -> dict:
  """The final KKT report and metrics as summary.json."""
  report_fn = jax.jit(functools.partial(kkt.kkt_report, kink_tol=config.kink_tol,
                                        relaxed=config.relaxed, loss=config.loss))
  rep = kkt.summarize(report_fn(state.params, x, y))
  summary = {k: m[k] for k in ("train_acc", "test_acc", "q_min", "normalized_margin", "theta_norm", "wall_s")}
  summary.update({k: rep[k] for k in ("eps_rel", "delta", "eps_rel_relaxed", "delta_relaxed", "relax_radius",
                                      "relaxed_gap", "support_size", "kink_pairs", "freed_pairs",
                                      "cert_eps_rel", "nnls_converged")})
  summary.update(final_loss=m["loss"], final_log10_loss=m["log10_loss"], kink_tol=config.kink_tol, steps=step,
                 n_train=int(x.shape[0]), n_params=nets.num_params(state.params), stop_reason=stop_reason,
                 stop_cert_eps_rel=m.get("cert_eps_rel"))
  if stop_reason == "target_loss" and rep["eps_rel"] > CERT_FAR:
    log(f"stopped by --target_loss with eps_rel {rep['eps_rel']:.3f} (exact): not a KKT point yet")
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  log(f"done: loss {_fmt_loss(m)}  train_acc {summary['train_acc']:.3f}  "
      f"test_acc {summary['test_acc']:.3f}  eps_rel {summary['eps_rel']:.4f} "
      f"(relaxed {summary['eps_rel_relaxed']:.4f})  delta {summary['delta']:.3e}  "
      f"support {summary['support_size']}/{x.shape[0]}")
  return summary


def read_dataset(path: str) -> data_lib.Dataset:
  """The Dataset a run saved in its data.npz."""
  arrays = wd.read_npz(path)
  return data_lib.Dataset(**{k: arrays[k] for k in data_lib.Dataset._fields if k != "image_shape"},
                          image_shape=tuple(arrays["image_shape"].tolist()))


def load_run(workdir: str):
  """(config, dataset, [(step, params)]) of a training workdir."""
  cfg_path = os.path.join(workdir, "config.json")
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(f"{workdir}: no config.json (not a training workdir)")
  config = TrainConfig.from_dict(wd.read_json(cfg_path))
  ds = read_dataset(os.path.join(workdir, "data.npz"))
  dtype = _dtype(config)
  n_out = 1 if ds.y_train.min() < 0 else int(ds.y_train.max()) + 1
  template = nets.init(jax.random.key(0), config.mlp(ds.x_train.shape[1], n_out), dtype)
  ckpts = []
  for step, path in wd.list_checkpoints(workdir):
    ckpts.append((step, wd.unflatten_tree(template, wd.read_npz(path), "params")))
  return config, ds, ckpts

"""The training job: trains a `train.TrainConfig` into a run folder and resumes it bit-identically.

Run folder: config.json, data.npz, metrics.jsonl (one row per log step), checkpoints/step_*.npz (params and
optimizer state at {1,2,5} x 10^k steps and the last step), summary.json (final metrics and KKT residuals).
A killed run resumes from its last readable checkpoint and repeats exactly the same computation; a diverged
run stops with `TrainingDiverged`, its latest checkpoint the last finite one.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import metric_writers
from jaxrecon import nets
from jaxrecon import report
from jaxrecon import train
from jaxrecon import workdir as wd
from jaxrecon.train import TrainConfig, TrainState

# Fields that may change when a run is resumed (they do not change the computation up to a step).
RESUMABLE_CHANGES = ("steps", "target_loss", "max_wall_s", "log_every", "relaxed", "kink_tol")


class TrainingDiverged(RuntimeError):
  """The training loss became non-finite; the workdir keeps the last finite checkpoint as its latest."""


def _check_resumable(saved: dict, config: TrainConfig, workdir: str):
  diffs = wd.config_diffs(saved, config, ignore=RESUMABLE_CHANGES)
  if diffs:
    raise ValueError(f"{workdir} holds a run with a different config ({', '.join(diffs)} differ); "
                     "use a new --workdir or the same settings")


def run(config: TrainConfig, workdir: str, log: Callable = print,
        writer: Optional[metric_writers.MetricWriter] = None) -> dict:
  """Trains as configured, writing (or resuming) a workdir; returns the summary dict.

  workdir: config.json, data.npz, metrics.jsonl (one row per log step), checkpoints/step_*.npz (params and
  optimizer state at {1,2,5} x 10^k steps and the last step), summary.json (final metrics and KKT residuals).
  writer: also gets each metrics row's numbers as `train/<key>` scalars (a CLU metric writer or
  metric_writers.TensorBoardWriter); None: metrics.jsonl only.
  """
  config.validate()
  dtype = train.dtype_of(config)
  key = jax.random.key(config.seed)
  key_data, key_init = jax.random.split(key)
  with wd.claim(workdir, "train"):
    return _run_in(config, workdir, dtype, key_data, key_init, log, writer)


def _run_in(config, workdir, dtype, key_data, key_init, log, writer) -> dict:
  ds, latest = _open_run(config, workdir, key_data, log)
  x, y = jnp.asarray(ds.x_train, dtype), jnp.asarray(ds.y_train)
  xt, yt = jnp.asarray(ds.x_test, dtype), jnp.asarray(ds.y_test)
  n_out = (data_lib.IMAGE_SETS[config.data.name].n_classes
           if config.data.task == "multiclass" and data_lib.is_image(config.data.name) else 1)
  optimizer, normalized = train.make_optimizer(config)
  params = nets.init(key_init, config.mlp(x.shape[1], n_out), dtype)
  state = TrainState(params, optimizer.init(params))
  start = 0
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if latest is not None:
    start, _, arrays = latest
    state = TrainState(wd.unflatten_tree(state.params, arrays, "params"),
                       wd.unflatten_tree(state.opt_state, arrays, "opt_state", missing_ok=True))
    wd.write_jsonl(metrics_path, [r for r in wd.read_jsonl(metrics_path) if r["step"] <= start])
    log(f"resuming {workdir} from step {start}")
  elif os.path.exists(metrics_path):
    os.remove(metrics_path)
  log(f"training {nets.num_params(state.params):,} parameters on {x.shape[0]} points, "
      f"{config.optimizer} lr={config.lr}, {config.steps} steps, {config.dtype}")
  state, m, step, stop_reason = _train_loop(config, workdir, state, start, (x, y, xt, yt),
                                            train.make_train_step(config, optimizer, normalized), log, writer)
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
  stale = os.path.join(workdir, "checkpoints")
  if os.path.isdir(stale) and os.listdir(stale):  # never deleted: a run's checkpoints (or *.corrupt) are data
    missing = [f for f in ("config.json", "data.npz") if not os.path.exists(os.path.join(workdir, f))]
    why = f"lost {' and '.join(missing)}" if missing else "no checkpoint that reads"
    raise wd.RunDirError(f"{workdir} holds checkpoints but {why}, so it cannot be resumed; to start afresh move "
                         f"{stale} away (or use a new --workdir)")
  ds = data_lib.load(key_data, config.data)  # bad data fail here, before anything is written
  if os.path.isdir(stale):
    os.rmdir(stale)
  wd.write_npz(data_path, compressed=True, **{k: np.asarray(v) for k, v in ds._asdict().items()})
  wd.write_json(cfg_path, config)
  return ds, None


def _train_loop(config, workdir, state, start, arrays, train_step, log, writer=None):
  """Runs the chunks from `start`; returns (state, last metrics row, step, stop reason)."""
  x, y, xt, yt = arrays
  runner = train.make_chunk_runner(train_step)
  metrics = jax.jit(train.metrics_fn, static_argnums=5)
  ckpts = set(train.checkpoint_steps(config.steps, config.checkpoint_mantissas))
  bounds = [b for b in train.boundaries(config.steps, config.log_every, config.checkpoint_mantissas) if b > start]
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  rows = wd.read_jsonl(metrics_path)
  prior_wall = rows[-1].get("wall_s", 0.0) if rows else 0.0
  t0 = t_last = time.time()
  step = step_last = start
  if start == 0:
    wd.save_checkpoint(workdir, 0, params=state.params, opt_state=state.opt_state)
  m = None
  for b in bounds:
    state = runner(state, x, y, b - step)  # one compiled program for every chunk length
    step = b
    m = {k: float(v) for k, v in metrics(state.params, x, y, xt, yt, config.loss).items()}
    now = time.time()
    rate = (step - step_last) / max(now - t_last, 1e-9)
    t_last, step_last = now, step
    m.update(step=step, steps_per_s=rate, wall_s=prior_wall + now - t0)
    wd.append_jsonl(metrics_path, m)
    metric_writers.write_row(writer, step, m, "train")
    done = config.target_loss > 0 and m["loss"] <= config.target_loss
    out_of_time = config.max_wall_s > 0 and now - t0 >= config.max_wall_s
    diverged = not (np.isfinite(m["log10_loss"]) and np.isfinite(m["theta_norm"]))
    if (step in ckpts or done or out_of_time) and not diverged:  # a non-finite state is never a checkpoint
      wd.save_checkpoint(workdir, step, params=state.params, opt_state=state.opt_state)
    if config.log_every and (step % config.log_every == 0 or step == config.steps or done):
      log(f"step {step:>8d}  loss {report.fmt_loss(m['loss'], m['log10_loss'])}  acc {m['train_acc']:.3f}  q_min {m['q_min']:+.3e}  "
          f"cert_eps {m['cert_eps_rel']:.3f}  {rate:,.1f} steps/s  "
          f"left {report.fmt_time((config.steps - step) / max(rate, 1e-9))}")
    if diverged:
      _diverged(workdir, m, step)
    if done:
      far = m["cert_eps_rel"] > train.CERT_FAR
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
  rep = kkt.summarize(kkt.report(state.params, x, y, kink_tol=config.kink_tol, relaxed=config.relaxed,
                                 loss=config.loss))
  summary = {k: m[k] for k in ("train_acc", "test_acc", "q_min", "normalized_margin", "theta_norm", "wall_s")}
  summary.update({k: rep[k] for k in ("eps_rel", "delta", "eps_rel_relaxed", "delta_relaxed", "relax_radius",
                                      "relaxed_gap", "support_size", "kink_pairs", "freed_pairs", "relaxed_capped",
                                      "cert_eps_rel", "nnls_converged")})
  summary.update(final_loss=m["loss"], final_log10_loss=m["log10_loss"], kink_tol=config.kink_tol, steps=step,
                 n_train=int(x.shape[0]), n_params=nets.num_params(state.params), stop_reason=stop_reason,
                 stop_cert_eps_rel=m.get("cert_eps_rel"))
  if not m["q_min"] > 0:
    log(f"the net does not separate its training data (q_min {m['q_min']:.3g}, train accuracy "
        f"{summary['train_acc']:.3f}): the KKT residuals below are not a statement about a max-margin point; "
        "train longer, wider or with another --lr")
  if stop_reason == "target_loss" and rep["eps_rel"] > train.CERT_FAR:
    log(f"stopped by --target_loss with eps_rel {rep['eps_rel']:.3f} (exact): not a KKT point yet")
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  log(f"done: loss {report.fmt_loss(m['loss'], m['log10_loss'])}  train_acc {summary['train_acc']:.3f}  "
      f"test_acc {summary['test_acc']:.3f}  eps_rel {summary['eps_rel']:.4f} "
      + (f"({report.fmt_relaxed(summary)})  " if config.relaxed else " ")
      + f"delta {summary['delta']:.3e}  "
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
  dtype = train.dtype_of(config)
  n_out = 1 if ds.y_train.min() < 0 else int(ds.y_train.max()) + 1
  template = nets.init(jax.random.key(0), config.mlp(ds.x_train.shape[1], n_out), dtype)
  ckpts = []
  for step, path in wd.list_checkpoints(workdir):
    ckpts.append((step, wd.unflatten_tree(template, wd.read_npz(path), "params")))
  return config, ds, ckpts



"""The attack job: sweep against one checkpoint of a training workdir, pool, evaluate, write.

Writes into its workdir: config.json, metrics.jsonl (one row per log step and configuration: its loss
terms), candidates.npz (all final candidates, multipliers, swept values, losses, the pool and its
evaluation), summary.json (n_good_ssim_0.4, mean_top10_ssim, pool_size, configs, steps, wall_s, ...) and
figures: pairs.png (the best reconstructions sorted by SSIM, each above its nearest training image, as in the
paper) and curve.png (the reconstruction curve). For vector data (no image shape) the evaluation is by L2
distance instead of SSIM. `run` returns an `AttackOutcome`: the typed numbers the jobs built on it read.
A killed attack resumes from progress.npz (written every `checkpoint_every_s`) bit-identically.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, NamedTuple, Optional

import jax
import numpy as np

from jaxrecon import data as data_lib
from jaxrecon import metric_writers
from jaxrecon import nets
from jaxrecon import validation
from jaxrecon import workdir as wd
from jaxrecon.attack import loss as attack_loss
from jaxrecon.attack import protocols as attack_protocols
from jaxrecon.attack import sweep as attack_sweep
from jaxrecon.experiments import train as train_job
from jaxrecon.experiments.attack_report import AttackOutcome, evaluate_candidates


@dataclasses.dataclass(frozen=True)
class ReconstructConfig:
  """The attack job.

  Attributes:
    attack: What is fixed across the sweep (AttackConfig).
    sweep: Which configurations run (SweepConfig); its start radii (sphere prior) are in units of the
      attacked training data's RMS norm.
    step: The checkpoint to attack (None = the last).
    theta_scale: Multiply the attacked weights by this (the attacker may rescale a homogeneous net; it moves
      the multipliers by theta_scale^(2 - L)).
    theta_norm: If > 0, rescale the weights to this norm instead (a data-free choice that makes one
      learning-rate range fit networks trained to very different norms).
    pool_top: Pool the candidates of this many best configurations by final loss (0 = all finite).
    half_res: NCC at half resolution (None = for colour images, as the reference does for CIFAR).
    ssim_window: SSIM window size.
    ssim_sigma: SSIM Gaussian window sigma.
    figure_pairs: Reconstructions shown in pairs.png.
    close_tol: Vector data: a training point counts as reconstructed when a candidate is within close_tol
      times the data's RMS norm.
    checkpoint_every_s: How often a long sweep saves its progress (candidates, multipliers, optimizer state)
      so that a killed attack resumes where it stopped, bit-identically (0 = every log_every segment;
      changing it does not change the run).
    prune_at: Successive halving: at these steps only the best prune_keep of the live configurations by
      attack loss go on (`sweep.run_halving`; empty = every configuration runs to the end). A halving attack
      does not save progress: killed, it starts again.
    prune_keep: The fraction kept at each prune.
    distinct: Evaluate a pool without near-duplicates: in pool order, drop a candidate whose NCC (cosine for
      vectors) with a kept one is >= distinct (`credit.distinct`; no training data; 0 = every candidate).
  """
  attack: attack_loss.AttackConfig = attack_loss.AttackConfig()
  sweep: attack_sweep.SweepConfig = attack_sweep.SweepConfig()
  step: Optional[int] = None
  theta_scale: float = 1.0
  theta_norm: float = 0.0
  pool_top: int = 0
  half_res: Optional[bool] = None
  ssim_window: int = 3
  ssim_sigma: float = 1.5
  figure_pairs: int = 60
  close_tol: float = 0.1
  checkpoint_every_s: float = 60.0
  prune_at: tuple = ()
  prune_keep: float = 0.5
  distinct: float = 0.0

  @staticmethod
  def from_dict(d: dict) -> "ReconstructConfig":
    return wd.config_from_dict(ReconstructConfig, d)

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run (what needs the network is checked by `run`)."""
    self.attack.validate()
    self.sweep.validate()
    validation.check(len(self.sweep.radii) == 1 or self.attack.prior == "sphere",
                     f"several start radii ({self.sweep.radii}) need prior 'sphere' (prior is {self.attack.prior!r})")
    validation.positive(self, "theta_scale", "ssim_sigma", "close_tol")
    validation.at_least(self, 0, "theta_norm", "pool_top", "figure_pairs", "checkpoint_every_s")
    validation.check(self.step is None or self.step >= 0, f"step must be >= 0 (None = the last); got {self.step}")
    validation.check(isinstance(self.ssim_window, int) and self.ssim_window >= 1 and self.ssim_window % 2,
                     f"ssim_window must be an odd positive integer; got {self.ssim_window!r}")
    validation.each_at_least(self, 1, "prune_at", nonempty=False)
    validation.check(0 < self.prune_keep <= 1, f"prune_keep must be in (0, 1]; got {self.prune_keep}")
    validation.at_least(self, 0, "distinct")



# The attack command's protocols (`jaxrecon-attack --protocol=...`, default "fast"): attack/protocols.py says
# what each fixes; here each is a ReconstructConfig preset.
PROTOCOLS = {name: ReconstructConfig(attack=p.attack, sweep=p.sweep, theta_norm=p.theta_norm)
             for name, p in attack_protocols.PROTOCOLS.items()}


def pick_checkpoint(ckpts: list, step: Optional[int]):
  if not ckpts:
    raise ValueError("the training workdir has no checkpoints")
  if step is None:
    return ckpts[-1]
  for s, p in ckpts:
    if s == step:
      return s, p
  raise ValueError(f"no checkpoint at step {step}; available: {[s for s, _ in ckpts]}")


def theta_scale(config: ReconstructConfig, params) -> float:
  if config.theta_norm > 0:
    return config.theta_norm / float(nets.param_norm(params))
  return config.theta_scale


class _Target(NamedTuple):
  """The attacked network as the attack sees it."""
  params: nets.Params
  params_init: Optional[nets.Params]
  step: int
  scale: float
  acfg: attack_loss.AttackConfig


def _target(config: ReconstructConfig, ds, ckpts, train_workdir: str) -> _Target:
  """The checkpoint, its rescaling and the attack config completed for this network (variant, classes)."""
  step, params = pick_checkpoint(ckpts, config.step)
  params_init = ckpts[0][1] if ckpts[0][0] == 0 else None
  acfg = config.attack
  multiclass = ds.y_train.min() >= 0
  if multiclass and acfg.variant != "multiclass":
    acfg = dataclasses.replace(acfg, variant="multiclass")
  if acfg.variant == "multiclass" and acfg.n_classes <= 1:
    acfg = dataclasses.replace(acfg, n_classes=int(ds.y_train.max()) + 1)
  if not multiclass and acfg.variant == "multiclass":
    raise ValueError("variant 'multiclass' needs a multiclass network; this one has one output")
  if acfg.match_init and params_init is None:
    raise ValueError(f"{train_workdir} has no step-0 checkpoint; match_init needs the initialization")
  if acfg.dtype == "float64" and not jax.config.jax_enable_x64:
    raise ValueError("attack dtype float64 needs jax_enable_x64 (the scripts enable it at start; in a notebook "
                     "call jax.config.update('jax_enable_x64', True) first, or use dtype float32)")
  scale = theta_scale(config, params)
  if scale != 1.0:
    params = nets.scale_params(params, scale)
    params_init = None if params_init is None else nets.scale_params(params_init, scale)
  return _Target(params, params_init, step, scale, acfg)


def run(config: ReconstructConfig, train_workdir: str, workdir: str, key: Optional[jax.Array] = None,
        log: Callable = print, mesh=None, writer: Optional[metric_writers.MetricWriter] = None) -> AttackOutcome:
  """Attacks a checkpoint of `train_workdir`; writes `workdir` (resuming an interrupted attack there).

  writer: also gets each metrics row's numbers as `attack/config_<c>/<key>` scalars (a CLU metric writer or
  metric_writers.TensorBoardWriter); None: metrics.jsonl only.
  """
  config.validate()
  _, ds, ckpts = train_job.load_run(train_workdir)
  tgt = _target(config, ds, ckpts, train_workdir)
  mesh = attack_sweep.config_mesh() if mesh is None else mesh  # every visible device, when there are several
  if key is None:
    key = jax.random.key(config.sweep.seed)
  key_sweep, key_attack = jax.random.split(key)
  hyper = config.sweep.hyper(key_sweep, data_lib.rms_radius(ds.x_train), tgt.acfg.lr_lambda)
  if os.path.realpath(workdir) == os.path.realpath(train_workdir):
    raise wd.RunDirError(f"the attack's workdir {workdir} is the training workdir it attacks; choose another")
  with wd.claim(workdir, "attack"):
    run_config = {"attack": tgt.acfg, "sweep": config.sweep, "reconstruct": config,
                  "train_workdir": os.path.abspath(train_workdir), "step": tgt.step}
    resume = _prior_attack(workdir, run_config, log)
    if resume == "finished":  # re-running a finished attack (e.g. a study resumed) re-evaluates it
      log(f"{workdir} holds this attack, finished: evaluating its saved candidates")
      return _reevaluate(workdir, log, **{f: getattr(config, f) for f in EVALUATION_FIELDS})
    _open(workdir, run_config, resume, log)
    n, d = ds.x_train.shape
    m = tgt.acfg.m or 2 * n
    log(f"attacking {train_workdir} at step {tgt.step}: {nets.num_params(tgt.params):,} parameters, n={n}; "
        f"{hyper.size} configurations x {m} candidates x {tgt.acfg.steps} steps ({tgt.acfg.optimizer}, prior "
        f"{tgt.acfg.prior}, {tgt.acfg.dtype})")
    if config.prune_at:
      res = attack_sweep.run_halving(key_attack, tgt.params, hyper, d, tgt.acfg, prune_at=config.prune_at,
                                     keep=config.prune_keep, params_init=tgt.params_init, n_train=n, mesh=mesh,
                                     log=log, on_segment=_halving_rows(workdir, writer))
    else:
      res = attack_sweep.run_sweep(key_attack, tgt.params, hyper, d, tgt.acfg, params_init=tgt.params_init,
                                   n_train=n, mesh=mesh, log=log, resume=resume,
                                   **_savers(workdir, config.checkpoint_every_s, writer))
    summary, raw = _raw_results(res, hyper, tgt, n, m)
    wd.write_npz(os.path.join(workdir, "candidates.npz"), **raw)  # kept even if the evaluation fails
    wd.write_json(os.path.join(workdir, "summary.json"), summary)
    if os.path.exists(os.path.join(workdir, PROGRESS_FILE)):
      os.remove(os.path.join(workdir, PROGRESS_FILE))
    return evaluate_candidates(config, ds, tgt.params, raw, summary, workdir, log)


def _open(workdir: str, run_config: dict, resume, log: Callable) -> None:
  """A fresh attack: its config, and no stale results beside it; a resumed one: its metrics cut back."""
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if resume is None:
    wd.write_json(os.path.join(workdir, "config.json"), run_config)
    for stale in ("summary.json", "candidates.npz", PROGRESS_FILE):  # never beside this config's results
      if os.path.exists(os.path.join(workdir, stale)):
        os.remove(os.path.join(workdir, stale))
    wd.write_jsonl(metrics_path, [])
  else:
    # rows written before the saved progress: finished configurations, and the current chunk up to its step
    wd.write_jsonl(metrics_path, [r for r in wd.read_jsonl(metrics_path)
                                  if r["config"] < resume.c0 or r["step"] <= resume.step])
    log(f"resuming the attack in {workdir}: configurations {resume.c0 + 1}.. at step {resume.step}")


def _emit(metrics_path: str, flat: dict, writer) -> None:
  wd.append_jsonl(metrics_path, flat)
  metric_writers.write_row(writer, flat["step"], {k: v for k, v in flat.items() if k != "config"},
                           f"attack/config_{flat['config']}")


def _savers(workdir: str, every_s: float, writer=None) -> dict:
  """run_sweep's hooks: rows appended to metrics.jsonl, progress.npz at most every `every_s` seconds."""
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  last_save = [time.time()]

  def on_rows(rows):  # one row per (step, configuration)
    for r in rows:
      for flat in attack_sweep.flat_rows(r):
        _emit(metrics_path, flat, writer)

  def on_progress(make_progress):
    if time.time() - last_save[0] >= every_s:
      _write_progress(os.path.join(workdir, PROGRESS_FILE), make_progress())
      last_save[0] = time.time()
  return {"on_rows": on_rows, "on_progress": on_progress}


def _halving_rows(workdir: str, writer=None) -> Callable:
  """run_halving's hook: each segment's rows (its live configurations) appended to metrics.jsonl."""
  metrics_path = os.path.join(workdir, "metrics.jsonl")

  def on_segment(step, snapshot, row):
    del step, snapshot
    for flat in attack_sweep.flat_rows(row):
      _emit(metrics_path, flat, writer)
  return on_segment


def _raw_results(res: attack_sweep.SweepResult, hyper: attack_sweep.Hyper, tgt: _Target, n: int, m: int):
  """(summary dict of the sweep, arrays for candidates.npz)."""
  steps = tgt.acfg.steps
  summary = {"configs": hyper.size, "steps": steps, "m": m, "wall_s": res.wall_s,
             "compile_s": res.compile_s, "diverged": int(res.diverged.sum()), "attacked_step": tgt.step,
             "n_train": n, "theta_scale": tgt.scale,
             "candidate_steps_per_s": hyper.size * m * steps / max(res.wall_s - res.compile_s, 1e-9),
             "final_loss": [float(v) for v in res.loss], "final_stat": [float(v) for v in res.stat]}
  finite = np.isfinite(res.loss)
  if finite.any():
    best = int(np.nanargmin(np.where(finite, res.loss, np.nan)))
    summary["best_config"] = {**hyper.rows()[best], "index": best, "loss": float(res.loss[best])}
  raw = {"x": res.x, "lam": res.lam, "y_hat": res.y_hat, "loss": res.loss, "stat": res.stat,
         "diverged": res.diverged, **{f"hyper_{k}": np.asarray(v) for k, v in hyper._asdict().items()}}
  return summary, raw


PROGRESS_FILE = "progress.npz"
PROGRESS_FIELDS = ("x", "lam", "loss", "stat", "diverged")


# Fields that may change between a run and its resumption (they do not change the computation).
# Fields that only decide how finished candidates are evaluated: a finished attack re-run with other values is
# re-evaluated with them (the candidates do not depend on them).
EVALUATION_FIELDS = ("pool_top", "half_res", "ssim_window", "ssim_sigma", "figure_pairs", "close_tol", "distinct")
RESUMABLE_CHANGES = ("reconstruct.checkpoint_every_s", *(f"reconstruct.{f}" for f in EVALUATION_FIELDS))


def _config_diffs(workdir: str, run_config: dict) -> Optional[list]:
  """What differs from the attack config saved in workdir (None when there is none)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  return wd.config_diffs(wd.read_json(path), run_config, ignore=RESUMABLE_CHANGES)


def _has(workdir: str, *names) -> bool:
  return all(os.path.exists(os.path.join(workdir, n)) for n in names)


def _prior_attack(workdir: str, run_config: dict, log: Callable):
  """What workdir holds of this attack: 'finished', its saved SweepProgress, or None (start afresh).

  Refuses (RunDirError) a folder whose attack has another config and results or progress to lose."""
  diffs = _config_diffs(workdir, run_config)
  if diffs is None:
    return None
  if diffs:
    if _has(workdir, "summary.json") or _has(workdir, PROGRESS_FILE):
      raise wd.RunDirError(f"{workdir} holds an attack with a different config ({', '.join(diffs)} differ); "
                           "use a new --workdir (or delete it)")
    return None
  if _has(workdir, "summary.json", "candidates.npz"):
    return "finished"
  if not _has(workdir, PROGRESS_FILE) or _has(workdir, "summary.json"):
    return None
  try:
    return _read_progress(os.path.join(workdir, PROGRESS_FILE))
  except wd.RunDirError as e:
    log(f"{e}; starting the attack afresh")
    return None


def _write_progress(path: str, p: attack_sweep.SweepProgress) -> None:
  arrays = {f: getattr(p, f) for f in PROGRESS_FIELDS}
  arrays.update(c0=p.c0, step=p.step, rows=p.rows, wall_s=p.wall_s)
  if p.states is not None:
    arrays.update({f"state_{i}": np.asarray(v) for i, v in enumerate(jax.tree_util.tree_leaves(p.states))})
  wd.write_npz(path, **arrays)


def _read_progress(path: str) -> attack_sweep.SweepProgress:
  a = wd.read_npz(path)
  states = [a[f"state_{i}"] for i in range(sum(k.startswith("state_") for k in a))] or None
  return attack_sweep.SweepProgress(int(a["c0"]), int(a["step"]), states, *(a[f] for f in PROGRESS_FIELDS),
                              int(a["rows"]), float(a["wall_s"]))


def reevaluate(workdir: str, log: Callable = print, **overrides) -> dict:
  """Evaluates an attack workdir's candidates again (e.g. with other `ReconstructConfig` evaluation fields:
  pool_top, half_res, ssim_window, ssim_sigma, figure_pairs, close_tol, distinct); rewrites its summary and
  figures."""
  with wd.claim(workdir, "attack"):
    return _reevaluate(workdir, log, **overrides)


def _reevaluate(workdir: str, log: Callable = print, **overrides) -> dict:
  saved = wd.read_json(os.path.join(workdir, "config.json"))
  config = dataclasses.replace(ReconstructConfig.from_dict(saved["reconstruct"]), **overrides)
  _, ds, ckpts = train_job.load_run(saved["train_workdir"])
  _, params = pick_checkpoint(ckpts, saved["step"])
  params = nets.scale_params(params, theta_scale(config, params))
  arrays = wd.read_npz(os.path.join(workdir, "candidates.npz"))
  raw = {k: v for k, v in arrays.items() if k in ("x", "lam", "y_hat", "loss", "stat", "diverged")
         or k.startswith("hyper_")}
  summary = wd.read_json(os.path.join(workdir, "summary.json"))
  keep = ("configs", "steps", "m", "wall_s", "compile_s", "diverged", "attacked_step", "n_train",
          "theta_scale", "candidate_steps_per_s", "final_loss", "final_stat", "best_config")
  return evaluate_candidates(config, ds, params, raw, {k: summary[k] for k in keep if k in summary}, workdir, log)

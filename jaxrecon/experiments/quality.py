"""Time to quality (issue 16): the reference protocol against jaxrecon's fast path, on one machine, in one run.

Both paths attack a net trained on the same images and are evaluated the reference's way (NCC-nearest
candidate per training image, SSIM with a 3x3 window after min-max scaling; also clipped), against the two
baselines no attack needs (the mean image alone, `n_heldout` held-out images), plus the L2 reconstruction
curve (each training image's distance to its closest candidate). The clock of a path counts its training
(the training job's loop time) and its attack (compilation included); evaluations are kept off the clock.

- reference: plain GD at lr 0.01 for 10^6 steps (the reference's MNIST training), then the reference's random
  sweep (log-uniform init scale 1e-6..0.1 and x lr 1e-5..1, uniform lambda_min 0.01..0.5 and alpha 10..500),
  SGD momentum 0.9, float64, 50,000 steps, m = 2n, box prior, pooled; the configurations run one after another
  as the reference's separate runs do, and the pool is evaluated after each (its growth curve). The full
  reference sweep has ~100 configurations; `ref_configs` of them are run and the rest is extrapolated in time
  only (a count is never extrapolated).
- fast: `relative_gd` (the default training) for 2,000 steps, then `FAST_ATTACK` (the attack command's default
  protocol): weights rescaled to norm 10, 8 configurations of a narrowed random sweep in float32, 3,000 steps,
  evaluated every `eval_every` steps.
- levers: the fast path with one thing changed (`LEVERS`), each timed and evaluated the same way.

Writes config.json, metrics.jsonl (one row per evaluation: path, wall_s, counts), quality.npz (L2 curves),
summary.json (the time-to-quality table and ratios), quality.png, and the train_reference/ and train_fast/
training run folders (resumable) under the workdir.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import data as data_lib
from jaxrecon import nets
from jaxrecon import plotting_studies
from jaxrecon import train
from jaxrecon import validation
from jaxrecon import workdir as wd
from jaxrecon.attack import evaluate
from jaxrecon.attack import sweep as attack_sweep
from jaxrecon.experiments import attack as attack_job
from jaxrecon.experiments import train as train_job

DATA = data_lib.DataConfig(name="mnist", n=20, n_test=1000)

REFERENCE_TRAIN = train.TrainConfig(data=DATA, widths=(200,), first_bias=True, optimizer="gd", lr=0.01,
                                    steps=1_000_000, log_every=50_000, relaxed=False)
FAST_TRAIN = dataclasses.replace(REFERENCE_TRAIN, optimizer="relative_gd", lr=0.03, steps=2000, log_every=500)

REFERENCE_ATTACK = dataclasses.replace(
    attack_job.PROTOCOLS["reference"],
    attack=dataclasses.replace(attack_job.PROTOCOLS["reference"].attack, log_every=5000))
FAST_ATTACK = attack_job.PROTOCOLS["fast"]

# One change each to the fast path: (what the row is called, how its attack differs, which training it attacks).
LEVERS = {
    "halving": ("16 configurations, successive halving by attack loss at 500/1,000/2,000, 4,000 steps",
                lambda a: dataclasses.replace(a, attack=dataclasses.replace(a.attack, steps=4000),
                                              sweep=dataclasses.replace(a.sweep, configs=16),
                                              prune_at=(500, 1000, 2000), prune_keep=0.5),
                "fast"),
    "float64": ("the fast attack in float64",
                lambda a: dataclasses.replace(a, attack=dataclasses.replace(a.attack, dtype="float64")), "fast"),
    "adam": ("Adam instead of SGD momentum (x lr 1e-4..1e-2)",
             lambda a: dataclasses.replace(a, attack=dataclasses.replace(a.attack, optimizer="adam"),
                                           sweep=dataclasses.replace(a.sweep, lr_x=(1e-4, 1e-2))), "fast"),
    "reference_training": ("the fast attack on the reference-trained net", lambda a: a, "reference"),
}

# The quality levels: (key in an evaluation row, what it counts).
LEVELS = (("minmax_n_good", "SSIM > 0.4 (min-max, the reference's evaluation)"),
          ("minmax_beating_mean_image", "min-max: SSIM > 0.4 and above the mean image"),
          ("minmax_beating_heldout", "min-max: SSIM > 0.4 and above the best held-out image"),
          ("clip_n_good", "SSIM > 0.4 (clipped)"),
          ("clip_beating_mean_image", "clipped: above the mean image"),
          ("clip_beating_heldout", "clipped: above the best held-out image"),
          ("l2_closer_than_heldout", "L2: closer than the closest held-out image"))


@dataclasses.dataclass(frozen=True)
class QualityConfig:
  """The time-to-quality benchmark.

  Attributes:
    reference_train: The reference's training (GD lr 0.01, 10^6 steps).
    reference_attack: The reference's attack protocol (its random sweep, SGD momentum, float64, 50,000 steps).
    ref_configs: How many of the reference sweep's configurations to run (the full sweep has
      reference_attack.sweep.configs); the time of the rest is extrapolated.
    fast_train: The fast path's training.
    fast_attack: The fast path's attack.
    levers: Which of LEVERS to run beside the fast path.
    eval_every: Evaluate the fast paths every this many attack steps.
    n_heldout: Held-out images in the held-out baseline.
    seed: Seed of the sweeps and candidates.
  """
  reference_train: train.TrainConfig = REFERENCE_TRAIN
  reference_attack: attack_job.ReconstructConfig = REFERENCE_ATTACK
  ref_configs: int = 6
  fast_train: train.TrainConfig = FAST_TRAIN
  fast_attack: attack_job.ReconstructConfig = FAST_ATTACK
  levers: tuple = tuple(LEVERS)
  eval_every: int = 500
  n_heldout: int = 1000
  seed: int = 0

  @staticmethod
  def from_dict(d: dict) -> "QualityConfig":
    return wd.config_from_dict(QualityConfig, d)

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run."""
    validation.at_least(self, 1, "ref_configs", "eval_every", "n_heldout")
    validation.check(all(lever in LEVERS for lever in self.levers),
                     f"QualityConfig.levers must be among {', '.join(LEVERS)}; got {self.levers!r}")
    for part in (self.reference_train, self.reference_attack, self.fast_train, self.fast_attack):
      part.validate()


class Judge:
  """The reference evaluation of a pool, with the baselines computed once."""

  def __init__(self, ds, n_heldout: int):
    self.ds = ds
    self.mean = ds.mean - ds.offset
    self.shape = tuple(ds.image_shape)
    self.heldout = np.asarray(ds.x_test)[:n_heldout]
    self.bases = {"mean_image": np.zeros((1, ds.x_train.shape[1])), "heldout": self.heldout}
    self.unit = data_lib.rms_radius(ds.x_train)
    self.heldout_dist = np.asarray(evaluate.nearest_distances(jnp.asarray(ds.x_train), jnp.asarray(self.heldout)))

  def __call__(self, pool: np.ndarray) -> tuple:
    """(row of counts, L2 curve in data-radius units) of a (P, D) pool in mean-subtracted space."""
    row = {"pool_size": int(pool.shape[0])}
    if pool.shape[0] == 0:
      return {**row, **{k: 0 for k, _ in LEVELS}}, np.full(self.ds.x_train.shape[0], np.nan)
    for scale in ("minmax", "clip"):
      r = evaluate.against_baselines(self.ds.x_train, pool, self.mean, self.shape, self.bases, scale=scale,
                                     half_res=False)
      row.update({f"{scale}_n_good": r.n_good, f"{scale}_top10_ssim": r.mean_top10_ssim,
                  f"{scale}_beating_mean_image": r.n_good_beating["mean_image"],
                  f"{scale}_beating_heldout": r.n_good_beating["heldout"]})
    dist = np.asarray(evaluate.nearest_distances(jnp.asarray(self.ds.x_train), jnp.asarray(pool)))
    row["l2_closer_than_heldout"] = int(np.sum(dist < self.heldout_dist))
    row["l2_best5"] = float(np.mean(np.sort(dist)[:5]) / self.unit)
    return row, np.sort(dist) / self.unit


def _pool(x: np.ndarray, loss: np.ndarray) -> np.ndarray:
  """Every finite configuration's candidates, as the attack job pools them (pool_top 0)."""
  return evaluate.pool_candidates(x, loss)[0]


def _train(config: train.TrainConfig, workdir: str, log: Callable):
  """(train wall seconds, dataset, final params): the training job's run folder (resumed if there)."""
  summary = train_job.run(config, workdir, log=log)
  _, ds, ckpts = train_job.load_run(workdir)
  return float(summary["wall_s"]), ds, ckpts[-1][1]


def _attack_problem(rc: attack_job.ReconstructConfig, params, ds, key):
  """(hyper, attacked params, attack config, key for the candidates) as the attack job builds them."""
  scale = attack_job.theta_scale(rc, params)
  params = nets.scale_params(params, scale) if scale != 1.0 else params
  key_sweep, key_attack = jax.random.split(key)
  hyper = rc.sweep.hyper(key_sweep, data_lib.rms_radius(ds.x_train), rc.attack.lr_lambda)
  return hyper, params, rc.attack, key_attack


def run_reference(config: QualityConfig, params, ds, train_s: float, judge: Judge, key, emit, log):
  """The reference sweep's first ref_configs configurations, one after another, pooled after each."""
  hyper, params, acfg, key_attack = _attack_problem(config.reference_attack, params, ds, key)
  n, d = ds.x_train.shape
  xs, losses, clock, per_config = [], [], train_s, []
  for i in range(min(config.ref_configs, hyper.size)):
    res = attack_sweep.run_sweep(key_attack, params, hyper.take([i]), d, acfg, n_train=n, log=log)
    clock += res.wall_s
    per_config.append(res.wall_s)
    xs.append(res.x)
    losses.append(res.loss)
    row, curve = judge(_pool(np.concatenate(xs), np.concatenate(losses)))
    emit({"path": "reference", "configs": i + 1, "step": acfg.steps, "wall_s": clock, **row,
          "config_loss": float(res.loss[0]), **{f"hyper_{k}": v for k, v in hyper.rows()[i].items()}}, curve)
  return per_config


def run_fast(name: str, rc: attack_job.ReconstructConfig, params, ds, train_s: float, judge: Judge, key,
             eval_every: int, emit, log) -> float:
  """A fast path's attack (successive halving when rc.prune_at: `sweep.run_halving` is `run_sweep` with
  pruning), evaluated every eval_every steps with the evaluation off the clock."""
  hyper, params, acfg, key_attack = _attack_problem(rc, params, ds, key)
  n, d = ds.x_train.shape
  off_clock = [0.0]
  t0 = time.time()

  def on_segment(step, snapshot, row):
    del row
    if step % eval_every and step != acfg.steps:
      return
    te = time.time()
    x, loss = snapshot()
    row, curve = judge(_pool(x, loss))
    emit({"path": name, "step": step, "wall_s": train_s + (te - t0 - off_clock[0]), **row}, curve)
    off_clock[0] += time.time() - te

  attack_sweep.run_halving(key_attack, params, hyper, d, acfg, prune_at=rc.prune_at, keep=rc.prune_keep,
                           n_train=n, log=log, on_segment=on_segment)
  return time.time() - t0 - off_clock[0]


def time_to(rows: list, key: str, level: int) -> Optional[float]:
  """The first wall time at which a path's count reaches `level` (None: never)."""
  times = [r["wall_s"] for r in rows if r[key] >= level]
  return min(times) if times else None


def tabulate(rows: list, paths: list) -> list:
  """Per quality level: the reference's best count and each path's time to reach it."""
  ref = [r for r in rows if r["path"] == "reference"]
  table = []
  for key, what in LEVELS:
    level = max((r[key] for r in ref), default=0)
    entry = {"level": key, "what": what, "reference_count": level,
             "reference_s": time_to(ref, key, level) if level > 0 else None}
    for p in paths:
      prow = [r for r in rows if r["path"] == p]
      entry[f"{p}_final_count"] = prow[-1][key] if prow else None
      entry[f"{p}_s"] = time_to(prow, key, level) if level > 0 else None
      if entry["reference_s"] and entry[f"{p}_s"]:
        entry[f"{p}_speedup"] = entry["reference_s"] / entry[f"{p}_s"]
    table.append(entry)
  return table


@wd.job("quality", "workdir")
def run(config: QualityConfig, workdir: str, log: Callable = print) -> dict:
  """Runs the benchmark into `workdir`; returns summary.json's dict."""
  wd.write_json(os.path.join(workdir, "config.json"), config)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  wd.write_jsonl(metrics_path, [])
  rows, curves = [], {}
  key = jax.random.key(config.seed)

  def emit(row, curve):
    rows.append(row)
    curves.setdefault(row["path"], []).append(curve)
    wd.append_jsonl(metrics_path, row)
    log(f"[{row['path']}] {report_line(row)}")

  log("fast path: training")
  fast_train_s, ds, fast_params = _train(config.fast_train, os.path.join(workdir, "train_fast"), log)
  judge = Judge(ds, config.n_heldout)
  nulls = {"mean_image": judge(np.zeros((1, ds.x_train.shape[1])))[0], "heldout": judge(judge.heldout)[0]}
  fast_attack_s = run_fast("fast", config.fast_attack, fast_params, ds, fast_train_s, judge, key,
                           config.eval_every, emit, log)
  log("reference path: training (GD lr 0.01)")
  ref_train_s, ds_ref, ref_params = _train(config.reference_train, os.path.join(workdir, "train_reference"), log)
  if not np.array_equal(ds_ref.x_train, ds.x_train):
    raise ValueError("the two trainings saw different images: give both the same data config and seed")
  lever_s = {}
  for name in config.levers:
    what, change, which = LEVERS[name]
    params, t_s = (fast_params, fast_train_s) if which == "fast" else (ref_params, ref_train_s)
    log(f"lever {name}: {what}")
    lever_s[name] = run_fast(name, change(config.fast_attack), params, ds, t_s, judge, key, config.eval_every,
                             emit, log)
  per_config = run_reference(config, ref_params, ds, ref_train_s, judge, key, emit, log)
  full = config.reference_attack.sweep.configs
  ref_full_s = ref_train_s + float(np.mean(per_config)) * full
  paths = ["fast", *config.levers]
  table = tabulate(rows, paths)
  summary = {"device": str(jax.devices()[0].device_kind), "n_train": int(ds.x_train.shape[0]),
             "baselines": nulls, "fast_train_s": fast_train_s, "fast_attack_s": fast_attack_s,
             "reference_train_s": ref_train_s, "reference_config_s": per_config,
             "reference_configs_run": len(per_config), "reference_full_sweep_configs": full,
             "reference_full_protocol_s": ref_full_s, "lever_attack_s": lever_s, "table": table,
             "final": {p: [r for r in rows if r["path"] == p][-1] for p in ["reference", *paths]}}
  fast_final = summary["final"]["fast"]["wall_s"]
  summary["full_protocol_over_fast"] = ref_full_s / fast_final
  summary["headline"] = headline(summary)
  wd.write_npz(os.path.join(workdir, "quality.npz"),
               **{f"{p}_l2_curves": np.stack(c) for p, c in curves.items()},
               **{f"{p}_wall_s": np.asarray([r["wall_s"] for r in rows if r["path"] == p]) for p in curves})
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  plotting_studies.time_to_quality(rows, ["reference", *paths], nulls, [k for k, _ in LEVELS],
                           os.path.join(workdir, "quality.png"))
  log(summary["headline"])
  return summary


def report_line(row: dict) -> str:
  return (f"{row['wall_s']:.0f} s, pool {row['pool_size']}: min-max {row['minmax_n_good']} > 0.4 "
          f"({row['minmax_beating_mean_image']} above the mean image, {row['minmax_beating_heldout']} above "
          f"held-out); clipped {row['clip_n_good']} ({row['clip_beating_mean_image']}, "
          f"{row['clip_beating_heldout']}); L2 {row['l2_closer_than_heldout']} closer than held-out, best-5 "
          f"{row['l2_best5']:.3f}")


def headline(summary: dict) -> str:
  parts = []
  for e in summary["table"]:
    if e["reference_count"] and e["reference_s"]:
      fs = e.get("fast_s")
      parts.append(f"{e['level']}: reference {e['reference_count']} at {e['reference_s']:.0f} s, fast "
                   + (f"at {fs:.0f} s ({e['reference_s'] / fs:.1f}x)" if fs else
                      f"never (reached {e['fast_final_count']})"))
  return ("time to the reference's quality (its first " + str(summary["reference_configs_run"])
          + " configurations): " + ("; ".join(parts) or "the reference reached no level")
          + f". Full reference protocol ~{summary['reference_full_protocol_s'] / 3600:.1f} h vs the fast "
          f"path's {summary['final']['fast']['wall_s']:.0f} s ({summary['full_protocol_over_fast']:.0f}x)")


def tiny(config: QualityConfig) -> QualityConfig:
  """A smoke-test size of `config` (seconds; its numbers mean nothing)."""
  def attack(rc, steps, configs, prune_at):
    return dataclasses.replace(rc, attack=dataclasses.replace(rc.attack, steps=steps, log_every=10),
                               sweep=dataclasses.replace(rc.sweep, configs=configs), prune_at=prune_at)
  data = dataclasses.replace(config.fast_train.data, n=min(config.fast_train.data.n, 6), n_test=20)
  small = dict(data=data, widths=(8,), log_every=10)
  return dataclasses.replace(
      config, reference_train=dataclasses.replace(config.reference_train, steps=30, **small),
      fast_train=dataclasses.replace(config.fast_train, steps=20, **small),
      reference_attack=attack(config.reference_attack, 20, 100, ()), ref_configs=2,
      fast_attack=attack(config.fast_attack, 40, 4, (20,)), eval_every=20, n_heldout=20)

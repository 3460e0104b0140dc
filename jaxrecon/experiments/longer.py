"""study_longer (the job): "trained longer, less susceptible", tested against the exact KKT residuals.

Two training runs of one bias-free net on the sphere data (`shifted_sphere`): the fast schedule and plain GD
at a small step (a gradient-flow proxy). At every checkpoint that separates its data: the exact eps_rel and
delta (`kkt.kkt_report`, relu'(0) = 0), ||P_perp W_1|| / ||theta|| (what of the first layer lies outside the
data span: it bounds the splits), and three attacks on the net rescaled to margin 1, each with `seeds` seeds of
one setting (the sphere study's best): prior-free, a weak box prior, and a basin test (candidates started at
the training points plus noise, prior-free: do they stay?). Scored by the scale-invariant recovery of
`noprior.recovery` (best-5 NCC with training points against held-out ones, the margin ratio), with bootstrap
intervals over seeds, beside each attack's final stationarity relative to ||theta||^2 (and whether it reached
`stat_threshold`). Then the split study (`experiments.split`) on the same checkpoints: how far a split keeps
eps_rel within 1% at each (eps, delta) (Theorems 8-9). Writes config.json, metrics.jsonl (a row per schedule
and checkpoint), candidates_<schedule>.npz, summary.json, longer.png, and train_*/ and split_*/ run folders.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon import plotting_studies
from jaxrecon import stats
from jaxrecon import train
from jaxrecon import validation
from jaxrecon import workdir as wd
from jaxrecon.attack import evaluate
from jaxrecon.attack.loss import AttackConfig, candidate_labels
from jaxrecon.attack.sweep import SweepConfig, run_sweep
from jaxrecon.experiments import attack_report
from jaxrecon.experiments import split as split_job
from jaxrecon.experiments import train as train_job
from jaxrecon.noprior import recovery as rec_lib

ATTACKS = ("prior_free", "weak_prior", "basin")


@dataclasses.dataclass(frozen=True)
class LongerStudyConfig:
  """The training-length study (CPU scale by default: see docs/noprior.md).

  Attributes:
    data: The training set (shifted_sphere).
    widths: Hidden widths of the bias-free net.
    fast_steps: Steps of the fast schedule (relative_gd, lr 0.03).
    gd_lr: Learning rate of plain GD (the gradient-flow proxy).
    gd_steps: Steps of plain GD.
    attack: The attacks' fixed settings (its prior weight is set per attack).
    sweep: The attacked setting and its seeds (a grid of one setting x `seeds`).
    weak_prior: Box-prior weight of the weak-prior attack.
    basin_noise: Basin test: candidates start at a training point plus this x data radius x N(0, I_d / d).
    stat_threshold: Stationarity relative to ||theta||^2 an attack counts as converged at.
    split: Run the split study on the same checkpoints.
    seed: Seed of the attacks.
  """
  data: data_lib.DataConfig = data_lib.DataConfig(name="shifted_sphere", n=50, d=64, n_test=1000)
  widths: tuple = (256,)
  fast_steps: int = 5000
  gd_lr: float = 0.2
  gd_steps: int = 100000
  attack: AttackConfig = AttackConfig(steps=2000, prior="box", lambda_weight=5.0, log_every=500)
  sweep: SweepConfig = SweepConfig(kind="grid", init_scale=(0.1,), lr_x=(0.5,), lambda_min=(0.0,), alpha=(20.0,),
                                   lr_lambda=(0.01,), seeds=5)
  weak_prior: float = 0.1
  basin_noise: float = 0.1
  stat_threshold: float = 1e-2
  split: bool = True
  seed: int = 0

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run."""
    self.data.validate()
    validation.check(self.data.name == "shifted_sphere" and self.data.n_test >= 2 * self.data.n,
                     "the study needs shifted_sphere data with n_test >= 2 n (held-out set and null); got "
                     f"{self.data.name!r} with n {self.data.n}, n_test {self.data.n_test}")
    validation.each_at_least(self, 1, "widths")
    validation.at_least(self, 1, "fast_steps", "gd_steps")
    validation.positive(self, "gd_lr", "stat_threshold")
    validation.at_least(self, 0, "weak_prior", "basin_noise")
    self.attack.validate()
    self.sweep.validate()


def _train_config(config: LongerStudyConfig, schedule: str) -> train.TrainConfig:
  base = train.TrainConfig(data=config.data, widths=tuple(config.widths), init_scales=None, first_bias=False,
                           relaxed=False)
  if schedule == "fast":
    return dataclasses.replace(base, optimizer="relative_gd", lr=0.03, steps=config.fast_steps,
                               log_every=max(config.fast_steps // 10, 1))
  return dataclasses.replace(base, optimizer="gd", lr=config.gd_lr, steps=config.gd_steps,
                             log_every=max(config.gd_steps // 10, 1))


def basin_start(x_train, y_train, y_hat, noise: float, key) -> np.ndarray:
  """Each candidate starts at a training point of its label (cycled) plus noise x RMS radius x N(0, I / d)."""
  x_train, y_train = np.asarray(x_train), np.asarray(y_train)
  start = np.empty((len(y_hat), x_train.shape[1]))
  for label in (-1, 1):
    idx = np.flatnonzero(np.asarray(y_hat) == label)
    pool = np.flatnonzero(y_train == label)
    start[idx] = x_train[pool[np.arange(idx.size) % pool.size]]
  d = x_train.shape[1]
  eps = np.asarray(jax.random.normal(key, start.shape, jnp.float64)) / np.sqrt(d)
  return start + noise * data_lib.rms_radius(x_train) * eps


def _scores(params_n, res, ds, theta_sq: float, start=None) -> dict:
  """Per-seed recovery summaries of one sweep's candidates, averaged with bootstrap intervals."""
  tr, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  n = tr.shape[0]
  held = jnp.asarray(ds.x_test[:n])
  radius = data_lib.rms_radius(ds.x_train)
  per = {"best5_ncc_train": [], "best5_ncc_heldout": [], "median_margin_ratio": [], "stat_rel": [],
         "drift": [], "ncc_with_start": []}
  for c in range(res.x.shape[0]):
    if res.diverged[c]:
      continue
    x = jnp.asarray(res.x[c], tr.dtype)
    s = rec_lib.summarize(rec_lib.recovery(params_n, x, tr, y, held), radius)
    for k in ("best5_ncc_train", "best5_ncc_heldout", "median_margin_ratio"):
      per[k].append(s[k])
    per["stat_rel"].append(float(res.stat[c]) / theta_sq)
    if start is not None:
      per["drift"].append(float(np.median(np.linalg.norm(np.asarray(x) - start, axis=1))) / radius)
      ncc = np.diag(np.asarray(evaluate.ncc_matrix(x, jnp.asarray(start, x.dtype))))
      per["ncc_with_start"].append(float(np.mean(ncc)))
  out = {"configs_finished": len(per["stat_rel"])}
  for k, v in per.items():
    if v:
      out[k] = float(np.mean(v))
      out[k + "_ci95"] = stats.bootstrap_ci(v)
  return out


def _credit(ds, res) -> dict:
  """The recovery measure over the seeds' pooled candidates, its nulls, and per seed (the unit) an interval."""
  ok = [c for c in range(res.x.shape[0]) if not res.diverged[c] and np.all(np.isfinite(res.x[c]))]
  if not ok:
    return {"n_credited": None}
  pool = np.concatenate([np.asarray(res.x[c]) for c in ok])
  units = np.repeat(np.asarray(ok), res.x.shape[1])
  rep = attack_report.credit_report(ds, pool, units)
  return {"n_credited": rep["attack"]["n_credited"], "beats_every_null": rep["beats_every_null"],
          "nulls_max": {k: v["n_credited_max"] for k, v in rep["nulls"].items()},
          "per_seed": rep.get("per_unit", {}).get("mean"),
          "per_seed_ci95": rep.get("per_unit", {}).get("ci95_over_units")}


def _checkpoint_row(config, schedule, step, params, ds, keys, log) -> tuple:
  """The KKT numbers and the three attacks at one checkpoint: (row, {attack: final candidates})."""
  x = jnp.asarray(ds.x_train)
  y = jnp.asarray(ds.y_train)
  rep = _exact_report(params, x, y)
  params_n, _ = kkt.normalize(params, x, y)
  theta_sq = float(nets.param_norm(params_n)) ** 2
  row = {"schedule": schedule, "step": step, "log10_loss": float(train.log_loss_fn(params, x, y, "logistic"))
         / np.log(10.0), "eps_rel": float(rep.eps_rel), "delta": float(rep.delta),
         "perp_w1_fraction": rec_lib.perp_weight_fraction(params, ds.x_train)}
  hyper = config.sweep.hyper(keys[0], 1.0, config.attack.lr_lambda)
  d = x.shape[1]
  m = config.attack.m or 2 * x.shape[0]
  cands = {}
  for name in ATTACKS:
    weight = config.weak_prior if name == "weak_prior" else 0.0
    acfg = dataclasses.replace(config.attack, prior_weight=weight, dtype="float64")
    start, h = None, hyper
    if name == "basin":
      start = basin_start(ds.x_train, ds.y_train, np.asarray(candidate_labels(m)), config.basin_noise, keys[2])
      acfg = dataclasses.replace(acfg, m=m)
      h = hyper._replace(init_scale=np.zeros_like(hyper.init_scale))  # the noise is in the start
    res = run_sweep(keys[1], params_n, h, d, acfg, n_train=x.shape[0], log=None, x_start=start)
    row[name] = _scores(params_n, res, ds, theta_sq, start)
    row[name]["credit"] = _credit(ds, res)
    cands[name] = res.x
  log(f"{schedule} step {step}: eps_rel {row['eps_rel']:.3f} delta {row['delta']:.2e} perp {row['perp_w1_fraction']:.3f}"
      f" | NCC prior-free {row['prior_free'].get('best5_ncc_train', float('nan')):.3f} weak prior "
      f"{row['weak_prior'].get('best5_ncc_train', float('nan')):.3f} | credited prior-free "
      f"{row['prior_free']['credit']['n_credited']} weak prior {row['weak_prior']['credit']['n_credited']} "
      f"basin {row['basin']['credit']['n_credited']} | basin drift "
      f"{row['basin'].get('drift', float('nan')):.3g} x r")
  return row, cands


_exact_report = functools.partial(kkt.report, relaxed=False)


@wd.job("study_longer", "out_dir")
def run(config: LongerStudyConfig, out_dir: str, log: Callable = print) -> dict:
  """Trains both schedules, attacks every separated checkpoint three ways, runs the split study."""
  os.makedirs(out_dir, exist_ok=True)
  wd.write_json(os.path.join(out_dir, "config.json"), {"study": config})
  keys = jax.random.split(jax.random.key(config.seed), 3)
  rows, splits = [], {}
  for schedule in ("fast", "gd"):
    tdir = os.path.join(out_dir, f"train_{schedule}")
    train_job.run(_train_config(config, schedule), tdir, log=log)
    _, ds, ckpts = train_job.load_run(tdir)
    x64 = jnp.asarray(ds.x_train)
    chosen = [(s, p) for s, p in ckpts if s > 0 and float(kkt.margins_of(p, x64, jnp.asarray(ds.y_train)).min()) > 0]
    if not chosen:
      raise ValueError(f"{schedule}: no checkpoint separates the data; train longer")
    all_cands = {}
    for step, params in chosen:
      row, cands = _checkpoint_row(config, schedule, step, params, ds, keys, log)
      rows.append(row)
      all_cands.update({f"{name}_step{step}": v for name, v in cands.items()})
    wd.write_npz(os.path.join(out_dir, f"candidates_{schedule}.npz"), **all_cands)
    if config.split:
      s = split_job.run(tdir, split_job.SplitStudyConfig(steps=tuple(s for s, _ in chosen), exact="no"),
                        os.path.join(out_dir, f"split_{schedule}"), log=log)
      splits[schedule] = {c["step"]: (c.get("approx_within_tol_over_radius"),
                                      c.get("approx_within_tol_delta_over_radius")) for c in s["checkpoints"]}
  for r in rows:
    r["split_reach_over_radius"], r["split_reach_delta_over_radius"] = splits.get(r["schedule"], {}).get(
        r["step"], (None, None))
  summary = {"rows": rows, "headline": _headline(rows)}
  wd.write_jsonl(os.path.join(out_dir, "metrics.jsonl"), rows)
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  plotting_studies.longer_study(rows, os.path.join(out_dir, "longer.png"))
  log(summary["headline"])
  return summary


def _headline(rows) -> str:
  parts = []
  for schedule in ("fast", "gd"):
    rs = [r for r in rows if r["schedule"] == schedule]
    if not rs:
      continue
    first, last = rs[0], rs[-1]
    g = lambda r, a, k: r[a].get(k, float("nan"))  # noqa: E731
    parts.append(
        f"{schedule}: eps_rel {first['eps_rel']:.3f} -> {last['eps_rel']:.3f}, delta {first['delta']:.2g} -> "
        f"{last['delta']:.2g}, perp {first['perp_w1_fraction']:.3f} -> {last['perp_w1_fraction']:.3f}; best-5 NCC "
        f"prior-free {g(first, 'prior_free', 'best5_ncc_train'):.3f} -> {g(last, 'prior_free', 'best5_ncc_train'):.3f}"
        f" (held-out {g(last, 'prior_free', 'best5_ncc_heldout'):.3f}), weak prior "
        f"{g(first, 'weak_prior', 'best5_ncc_train'):.3f} -> {g(last, 'weak_prior', 'best5_ncc_train'):.3f}; basin "
        f"drift {g(first, 'basin', 'drift'):.3g} -> {g(last, 'basin', 'drift'):.3g} x r; split reach "
        f"{first.get('split_reach_over_radius')} -> {last.get('split_reach_over_radius')} x r")
  return "; ".join(parts)

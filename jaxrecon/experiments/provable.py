"""The studies of the provable attacks (2410.07632): univariate reconstruction against its 1/4 guarantee, and
membership inference against the input dimension. Each trains many small nets in one compiled call per group
(vmapped over seeds) and writes a workdir: config.json, metrics.jsonl (one row per seed / per d), summary.json
and PNG figures.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon import plotting
from jaxrecon import provable
from jaxrecon import stats
from jaxrecon import train
from jaxrecon import validation
from jaxrecon import workdir as wd


@dataclasses.dataclass(frozen=True)
class UnivariateConfig:
  """Datasets: for each size n and label pattern (random | alternating | blocks, over the sorted points),
  `seeds` sets of n jittered grid points in [-1, 1] (`univariate_data`). Nets: width `width`, first-layer bias, trained by `optimizer`.
  A warm-up (Adam by default) fits the data first; the loss-normalized phase then drives the net towards
  the KKT point. A seed counts when it fits (q_min > 0) with log10 loss <= max_log10_loss. A candidate is a training point
  when within `tol` of one.

  Attributes:
    sizes: Training-set sizes.
    patterns: Label patterns: random, alternating, blocks.
    seeds: Datasets per (size, pattern).
    width: Hidden width.
    init_scale: Init std of both layers.
    warmup_optimizer: Optimizer of the fitting phase.
    warmup_lr: Learning rate of the fitting phase.
    warmup_steps: Steps of the fitting phase (0 = none).
    optimizer: Training optimizer (see scripts/train.py).
    lr: Learning rate.
    steps: Training steps.
    max_log10_loss: A seed counts when it fits with log10 loss at most this.
    tol: A candidate within this distance of a training point counts as one.
    neuron_tol: Drop kinks of neurons with |v w| below this times the max.
  """
  sizes: tuple = (4, 6, 8, 10)
  patterns: tuple = ("random", "alternating", "blocks")
  seeds: int = 8
  width: int = 200
  init_scale: float = 0.1
  warmup_optimizer: str = "adam"
  warmup_lr: float = 0.01
  warmup_steps: int = 3000
  optimizer: str = "log_normalized_gd"
  lr: float = 0.05
  steps: int = 20000
  max_log10_loss: float = -3.0
  tol: float = 1e-3
  neuron_tol: float = 1e-3

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run."""
    validation.each_at_least(self, 2, "sizes")
    validation.each_one_of(self, "patterns", provable.PATTERNS)
    validation.at_least(self, 1, "seeds", "width", "steps")
    validation.at_least(self, 0, "warmup_steps", "neuron_tol")
    validation.positive(self, "init_scale", "warmup_lr", "lr", "tol")
    for opt in ((self.warmup_optimizer,) if self.warmup_steps else ()) + (self.optimizer,):
      train.TrainConfig(optimizer=opt).validate()  # an unknown optimizer is refused here


def _report_many(params, x, y):
  rep = jax.jit(jax.vmap(functools.partial(kkt.kkt_report, relaxed=True)))(params, x, y)
  return rep


def _univariate_row(config, n, pattern, s, p, x, q, log_loss, rep) -> dict:
  """One seed's row: fit, residuals, and the attack with the margin known and leaked."""
  q_min = float(q.min())
  log10_loss = float(log_loss) / np.log(10.0)
  row = {"n": n, "pattern": pattern, "seed": s, "q_min": q_min, "log10_loss": log10_loss,
         "eps_rel": float(rep.eps_rel[s]), "eps_rel_relaxed": float(rep.eps_rel_relaxed[s]),
         "fitted": bool(q_min > 0 and log10_loss <= config.max_log10_loss)}
  if q_min > 0:
    # leaked: the margin read off one training point (the leftmost), which may sit off the margin
    for name, m in (("known", q_min), ("leaked", provable.margin_from_leak(p, x[0]))):
      res = provable.univariate_candidates(p, m, neuron_tol=config.neuron_tol)
      frac, rec = provable.fraction_training(res.candidates, x, config.tol)
      row[f"{name}_candidates"] = int(res.candidates.size)
      row[f"{name}_fraction"] = frac
      row[f"{name}_recovered"] = rec
    bal = provable.balancedness(p)
    v = np.abs(np.asarray(p[1]["w"][:, 0]))
    row["max_imbalance"] = float(np.max(np.abs(bal[v > 0.1 * v.max()])))
  return row


def _univariate_summary(rows, fitted) -> dict:
  fr = np.array([r["known_fraction"] for r in fitted])
  summary = {"seeds_total": len(rows), "seeds_fitted": len(fitted), "guarantee": 0.25}
  if fitted:
    summary.update({"mean_fraction": float(fr.mean()), "min_fraction": float(fr.min()),
                    "median_fraction": float(np.median(fr)),
                    "fraction_at_least_quarter": float(np.mean(fr >= 0.25 - 1e-12)),
                    "mean_recovered": float(np.mean([r["known_recovered"] for r in fitted])),
                    "mean_candidates": float(np.mean([r["known_candidates"] for r in fitted])),
                    "mean_fraction_leaked_margin": float(np.mean([r["leaked_fraction"] for r in fitted])),
                    "corr_fraction_eps_rel": float(np.corrcoef(fr, [r["eps_rel"] for r in fitted])[0, 1])
                    if fr.size > 2 and np.std(fr) > 0 else None,
                    "median_eps_rel": float(np.median([r["eps_rel"] for r in fitted])),
                    "max_imbalance": float(np.max([r["max_imbalance"] for r in fitted]))})
  summary["headline"] = (f"{len(fitted)}/{len(rows)} seeds fitted; fraction of candidates that are training "
                         f"points: mean {summary.get('mean_fraction', float('nan')):.3f}, min "
                         f"{summary.get('min_fraction', float('nan')):.3f}, >= 1/4 in "
                         f"{100 * summary.get('fraction_at_least_quarter', float('nan')):.0f}% of seeds")
  return summary


@wd.job("provable_univariate", "workdir")
def run_univariate(config: UnivariateConfig, workdir: str, key: jax.Array, log: Callable = print) -> dict:
  os.makedirs(workdir, exist_ok=True)
  wd.write_json(os.path.join(workdir, "config.json"), config)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  wd.write_jsonl(metrics_path, [])
  tcfg = train.TrainConfig(widths=(config.width,), init_scales=(config.init_scale, config.init_scale),
                           optimizer=config.optimizer, lr=config.lr, steps=config.steps)
  warm = train.TrainConfig(widths=(config.width,), optimizer=config.warmup_optimizer, lr=config.warmup_lr,
                           steps=config.warmup_steps)
  rows = []
  groups = [(n, p) for n in config.sizes for p in config.patterns]
  t0 = time.time()
  for g, (n, pattern) in enumerate(groups):
    key_data, key_fit = jax.random.split(jax.random.fold_in(key, g))
    x, y = provable.univariate_data(key_data, n, pattern, config.seeds)
    params, q, log_loss = provable.fit_many(key_fit, x, y, tcfg, warmup=warm)
    rep = _report_many(params, x, y)
    for s in range(config.seeds):
      p = jax.tree_util.tree_map(lambda a, s=s: a[s], params)
      row = _univariate_row(config, n, pattern, s, p, x[s], q[s], log_loss[s], rep)
      rows.append(row)
      wd.append_jsonl(metrics_path, row)
    done = (g + 1) / len(groups)
    el = time.time() - t0
    fitted = [r for r in rows[-config.seeds:] if r["fitted"]]
    log(f"n={n:<3d} {pattern:<11s} fitted {len(fitted)}/{config.seeds}  mean fraction "
        f"{np.mean([r['known_fraction'] for r in fitted]) if fitted else float('nan'):.3f}  "
        f"left {el / done - el:.0f}s")
  fitted = [r for r in rows if r["fitted"]]
  summary = _univariate_summary(rows, fitted)
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  plotting.univariate(fitted, os.path.join(workdir, "fraction_vs_eps.png"))
  log(summary["headline"])
  return summary


@dataclasses.dataclass(frozen=True)
class MembershipConfig:
  """2410.07632's membership inference as its authors ran it (their public code), by default: n = 20 training
  points, width 10,000, full-batch GD lr 1 for 100 steps with StepLR (every 30 steps x 0.7) from the PyTorch
  default init times 1e-3; data on the sqrt(d)-sphere with parity labels, and two Gaussians with means
  +-d^0.33 e_1 and balanced labels (their code's Gaussian labels are all +1 by an indexing slip; we balance
  them); a fresh point counts as a member when y Phi(x) >= m (the signed criterion, labels known). Fresh
  points: `n_fresh` from the same distribution. Margin variants: known (q_min), leaked (|Phi| of one training
  point), bounded (m_lo = q_min / bound_factor). `ours_variant()` is the protocol of the first version.

  Attributes:
    dims: Input dimensions.
    datasets: parity_sphere, two_gaussians.
    n: Training points.
    n_fresh: Fresh (non-member) points per seed.
    seeds: Seeds per d.
    width: Hidden width.
    init_factor: Multiplier of PyTorch's default init.
    optimizer: Training optimizer.
    lr: Learning rate.
    steps: Training steps (full batch).
    lr_step_every: StepLR: multiply lr by lr_step_gamma every this many steps (0 = constant).
    lr_step_gamma: StepLR's factor.
    criterion: signed (member iff y Phi(x) >= threshold m, labels known: the authors') | absolute (|Phi(x)| >=
      threshold m, label-free).
    threshold: Decide member when the score reaches threshold * m.
    bound_factor: The bounded-margin variant uses m_lo = q_min / bound_factor.
    gaussian_sep: Distance of the two Gaussians' means from the origin: gaussian_sep * d^gaussian_sep_power.
    gaussian_sep_power: See gaussian_sep (the authors': 1 x d^0.33).
    n_boot: Bootstrap resamples of the pooled TPR-at-FPR intervals.
  """
  dims: tuple = (10, 20, 50, 100, 200, 500, 1000)
  datasets: tuple = ("parity_sphere", "two_gaussians")
  n: int = 20
  n_fresh: int = 500
  seeds: int = 3
  width: int = 10000
  init_factor: float = 1e-3
  optimizer: str = "gd"
  lr: float = 1.0
  steps: int = 100
  lr_step_every: int = 30
  lr_step_gamma: float = 0.7
  criterion: str = "signed"
  threshold: float = 1.0
  bound_factor: float = 2.0
  gaussian_sep: float = 1.0
  gaussian_sep_power: float = 0.33
  n_boot: int = 1000

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run."""
    validation.each_at_least(self, 1, "dims")
    validation.each_one_of(self, "datasets", provable.MEMBERSHIP_DATASETS)
    validation.at_least(self, 2, "n")
    validation.at_least(self, 1, "n_fresh", "seeds", "width", "steps", "n_boot")
    validation.at_least(self, 0, "lr_step_every")
    validation.positive(self, "init_factor", "lr", "lr_step_gamma", "threshold", "bound_factor")
    validation.one_of(self, "criterion", ("signed", "absolute"))
    train.TrainConfig(optimizer=self.optimizer, lr_step_every=self.lr_step_every,
                      lr_step_gamma=self.lr_step_gamma).validate()


def ours_variant(config: MembershipConfig = MembershipConfig()) -> MembershipConfig:
  """The first version's protocol: means +-e_1, constant lr, the label-free criterion |Phi| >= 0.9 m."""
  return dataclasses.replace(config, lr_step_every=0, lr_step_gamma=1.0, criterion="absolute", threshold=0.9,
                             gaussian_sep=1.0, gaussian_sep_power=0.0)


@wd.job("provable_membership", "workdir")
def run_membership(config: MembershipConfig, workdir: str, key: jax.Array, log: Callable = print) -> dict:
  os.makedirs(workdir, exist_ok=True)
  wd.write_json(os.path.join(workdir, "config.json"), config)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  wd.write_jsonl(metrics_path, [])
  rows, scores = [], {}
  t0 = time.time()
  jobs = [(name, d) for name in config.datasets for d in config.dims]
  for j, (name, d) in enumerate(jobs):
    f = config.init_factor / np.sqrt(3.0)  # PyTorch's U(+-1/sqrt(fan_in)) has std 1/sqrt(3 fan_in)
    tcfg = train.TrainConfig(widths=(config.width,), init_scales=(f / np.sqrt(d), f / np.sqrt(config.width)),
                             optimizer=config.optimizer, lr=config.lr, steps=config.steps,
                             lr_step_every=config.lr_step_every, lr_step_gamma=config.lr_step_gamma)
    sep = config.gaussian_sep * float(d) ** config.gaussian_sep_power
    key_j = jax.random.fold_in(key, j)
    keys = jax.random.split(key_j, config.seeds + 1)
    xs, ys = zip(*(provable.membership_data(k, name, config.n + config.n_fresh, d, sep) for k in keys[:-1]))
    x_all, y_all = jnp.stack(xs), jnp.stack(ys)
    x_tr, y_tr = x_all[:, :config.n], y_all[:, :config.n]
    x_fr, y_fr = x_all[:, config.n:], y_all[:, config.n:]
    params, q, log_loss = provable.fit_many(keys[-1], x_tr, y_tr, tcfg)
    out = jax.jit(jax.vmap(lambda p, x: nets.apply(p, x)))
    out_tr, out_fr = np.asarray(out(params, x_tr)), np.asarray(out(params, x_fr))
    signed = config.criterion == "signed"
    phi_tr = out_tr * np.asarray(y_tr) if signed else np.abs(out_tr)
    phi_fr = out_fr * np.asarray(y_fr) if signed else np.abs(out_fr)
    q = np.asarray(q)
    # the exact KKT residual of each trained net (relu'(0) = 0, best multipliers): how near the theorems' KKT
    # point the protocol's training got
    eps, delta = map(np.asarray, jax.jit(jax.vmap(
        lambda p, x, y: (lambda r: (r.eps_rel, r.delta))(kkt.kkt_report(p, x, y, relaxed=False))))(
            params, x_tr, y_tr))
    per_seed = []
    for s in range(config.seeds):
      m = float(q[s].min())
      variants = {"known": m, "leaked": float(np.abs(out_tr[s, 0])), "bounded": m / config.bound_factor}
      rep = {v: provable.membership_report(phi_tr[s] / mv, phi_fr[s] / mv, config.threshold)
             for v, mv in variants.items()}
      other = provable.membership_report(  # the other criterion's AUC, for comparison
          (np.abs(out_tr[s]) if signed else out_tr[s] * np.asarray(y_tr[s])) / m,
          (np.abs(out_fr[s]) if signed else out_fr[s] * np.asarray(y_fr[s])) / m, config.threshold)
      per_seed.append({"seed": s, "q_min": m, "fitted": bool(m > 0), "eps_rel": float(eps[s]), "delta": float(delta[s]),
                       "log10_loss": float(log_loss[s]) /
                       np.log(10.0), "test_acc": float(np.mean(np.sign(out_fr[s]) == np.asarray(y_fr[s]))),
                       "frac_train_on_margin": float(np.mean(q[s] <= 1.1 * m)),
                       "other_criterion_auc": other["auc"],
                       **{f"{v}_{k}": val for v, r in rep.items() for k, val in r.items()}})
    ok = q.min(axis=1) > 0  # each seed's scores in units of its own margin, pooled over the fitted seeds
    pooled_in = (phi_tr[ok] / q[ok].min(axis=1, keepdims=True)).ravel()
    pooled_out = (phi_fr[ok] / q[ok].min(axis=1, keepdims=True)).ravel()
    scores[f"{name}_d{d}_in"], scores[f"{name}_d{d}_out"] = pooled_in, pooled_out
    pooled = {}
    if pooled_in.size and pooled_out.size:
      fpr, tpr = stats.roc(pooled_in, pooled_out)
      for lvl in (0.01, 0.001):
        pooled[f"pooled_tpr_at_fpr_{lvl}"] = stats.tpr_at_fpr(fpr, tpr, lvl)
        pooled[f"pooled_tpr_at_fpr_{lvl}_ci95"] = stats.tpr_at_fpr_interval(pooled_in, pooled_out, lvl,
                                                                               n_boot=config.n_boot)
    row = {"dataset": name, "d": d, "seeds": config.seeds, **pooled,
           "fitted": int(sum(r["fitted"] for r in per_seed)),
           **{k: float(np.mean([r[k] for r in per_seed])) for k in per_seed[0]
              if k not in ("seed", "fitted")},
           "min_auc": float(np.min([r["known_auc"] for r in per_seed]))}
    rows.append(row)
    wd.append_jsonl(metrics_path, row)
    el = time.time() - t0
    log(f"{name:<14s} d={d:<5d} fitted {row['fitted']}/{config.seeds}  eps_rel {row['eps_rel']:.3f} "
        f"delta {row['delta']:.3f}  "
        f"AUC {row['known_auc']:.3f} "
        f"({config.criterion}; other criterion {row['other_criterion_auc']:.3f})  test acc {row['test_acc']:.2f}  "
        f"on the margin {row['frac_train_on_margin']:.2f}  members "
        f"within 10% {row['known_members_within_10pct']:.2f}  fresh reaching m "
        f"{row['known_fresh_reaching_margin']:.3f}  left {el / (j + 1) * (len(jobs) - j - 1):.0f}s")
  summary = {"rows": rows}
  for name in config.datasets:
    rs = [r for r in rows if r["dataset"] == name]
    ok = [r["d"] for r in rs if r["min_auc"] >= 0.99 and r["fitted"] == config.seeds]
    summary[f"smallest_d_auc_0.99_{name}"] = min(ok) if ok else None
  summary["headline"] = f"criterion {config.criterion}: " + "; ".join(
      f"{name}: AUC >= 0.99 (every seed) from d = {summary[f'smallest_d_auc_0.99_{name}']}"
      for name in config.datasets)
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  # in/out scores (score / m, pooled over seeds) as privacy-auditing tools take them (AUROC, TPR at FPR, epsilon
  # lower bounds): <dataset>_d<d>_in for members, _out for fresh points
  wd.write_npz(os.path.join(workdir, "scores.npz"), **scores)
  plotting.membership(rows, config, os.path.join(workdir, "membership_vs_d.png"))
  log(summary["headline"])
  return summary

"""study_split (the job): KKT sets far from the training set, built by splitting points, at checkpoints of a run.

The maths is `jaxrecon.noprior.split` (exact null-space splits when the first layer is narrower than d,
approximate orthogonal splits at any width); this job picks the checkpoints, runs both parts at each and
writes metrics.jsonl (a row per checkpoint and distance / direction), curves.npz, summary.json (a table per
checkpoint and the headline), split.png (exact part) and split_approx.png (approximate part).
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
from jaxrecon import plotting
from jaxrecon import train
from jaxrecon import validation
from jaxrecon import workdir as wd
from jaxrecon.experiments import train as train_job
from jaxrecon.noprior import split as split_lib
from jaxrecon.noprior.split import DIRECTIONS


@dataclasses.dataclass(frozen=True)
class SplitStudyConfig:
  """The split study.

  Attributes:
    factors: Exact part: split distances, in units of the data radius.
    n_split: Exact part: support points split (largest multipliers first).
    steps: Checkpoints to study (empty = all but step 0; -1 = the last).
    alpha: Surrogate slope for the attack's stationarity term (large = the true ReLU).
    exact: Exact part: auto (when the first layer has a null space) | yes | no.
    approx: Run the approximate part.
    directions: Approximate part: direction kinds (orthogonal, importance, flip).
    n_points: Approximate part: points tried (largest multipliers first).
    grid: Approximate part: log10 of magnitude / data radius: lo, hi, count.
    tol: Approximate part: eps_rel may grow by this fraction of the true set's.
    seed: Seed of the split directions.
  """
  factors: tuple = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
  n_split: int = 50
  steps: tuple = (-1,)
  alpha: float = 1e4
  exact: str = "auto"
  approx: bool = True
  directions: tuple = DIRECTIONS
  n_points: int = 5
  grid: tuple = (-4.0, 4.0, 81)
  tol: float = 0.01
  seed: int = 0

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run (what needs the network is checked by `run`)."""
    validation.each_positive(self, "factors")
    validation.at_least(self, 1, "n_split", "n_points")
    validation.positive(self, "alpha")
    validation.at_least(self, 0, "tol")
    validation.one_of(self, "exact", ("auto", "yes", "no"))
    if self.approx:
      validation.each_one_of(self, "directions", split_lib.DIRECTION_KINDS)
    validation.check(len(self.grid) == 3 and self.grid[0] <= self.grid[1] and int(self.grid[2]) >= 1,
                     f"SplitStudyConfig.grid must be (log10 lo, log10 hi, count) with lo <= hi, count >= 1; "
                     f"got {self.grid!r}")


def _chosen(ckpts: list, steps: tuple) -> list:
  if not steps:
    return [c for c in ckpts if c[0] > 0]
  by_step = dict(ckpts)
  chosen = []
  for s in steps:
    if s < 0:
      chosen.append(ckpts[s])
    elif s in by_step:
      chosen.append((s, by_step[s]))
    else:
      raise ValueError(f"no checkpoint at step {s}; have {sorted(by_step)}")
  return chosen


def _network(chosen, config):
  """(first-layer shape (d, width), whether the exact part runs), checked against the config."""
  if chosen[0][1][-1]["w"].shape[1] != 1:
    raise ValueError("the split study supports one-output (binary) networks; this one has "
                     f"{chosen[0][1][-1]['w'].shape[1]} outputs")
  w = chosen[0][1][0]["w"].shape  # (d, width of the first layer)
  has_null = w[1] < w[0]
  do_exact = config.exact == "yes" or (config.exact == "auto" and has_null)
  if do_exact and not has_null:
    raise ValueError(f"the exact split study needs a first layer narrower than d (width {w[1]} >= d {w[0]})")
  return w, do_exact


def _at_checkpoint(key, config, do_exact, step, params, x, y, radius, report, loss_name):
  """(table entry, metrics rows, approximate curves or None) of one checkpoint."""
  base = report(params, x, y)
  params_n, _ = kkt.normalize(params, x, y)  # the multipliers live at the normalized scale
  entry = {"step": step, "loss": float(train.loss_fn(params, x, y, loss_name)), "eps_rel": float(base.eps_rel),
           "delta": float(base.delta), "q_min": float(base.q_min), "separated": bool(base.q_min > 0)}
  rows, curves = [], None
  if do_exact:
    ex, stat_true = split_lib.exact_rows(key, params_n, x, y, base.lam, radius, report, factors=config.factors,
                                         n_split=config.n_split, alpha=config.alpha)
    rows += [dict(r, step=step) for r in ex]
    entry.update(exact_max_distance_over_radius=max(r["distance_over_radius"] for r in ex),
                 exact_max_eps_rel_change=max(abs(r["eps_rel"] - entry["eps_rel"]) for r in ex),
                 exact_max_attack_stat_change=max(abs(r["attack_stat_rel"] - stat_true) for r in ex),
                 exact_max_transported_eps_rel_change=max(
                     abs(r["eps_rel_transported"] - r["true_eps_rel_transported"]) for r in ex),
                 true_attack_stat_rel=stat_true)
  if config.approx:
    ap, eps0, grid, check = split_lib.approx_rows(key, params_n, x, y, base.lam, radius, base.eps_rel, report,
                                                  kinds=config.directions, n_points=config.n_points,
                                                  grid=config.grid, tol=config.tol)
    rows += [{k: v for k, v in dict(r, step=step).items() if k != "eps_rel_curve"} for r in ap]
    best = max(ap, key=lambda r: r["within_tol_over_radius"])
    entry.update(approx_best_direction=best["direction"],
                 approx_within_tol_over_radius=best["within_tol_over_radius"],
                 approx_safe_over_radius=max(r["safe_over_radius"] for r in ap),
                 approx_by_direction={r["direction"]: r["within_tol_over_radius"] for r in ap},
                 approx_within_tol_delta_over_radius=max(r["within_tol_delta_over_radius"] for r in ap),
                 approx_check=check, approx_curves={r["direction"]: r["eps_rel_curve"] for r in ap})
    curves = (ap, grid, eps0, step)
  return entry, rows, curves


def _log_entry(log, n, total, entry, config, do_exact):
  if not entry["separated"]:  # q_min <= 0: no max-margin problem to be a KKT point of; marked, left out
    log(f"[{n}/{total}] step {entry['step']}: q_min {entry['q_min']:.3g} <= 0, the data are not yet "
        "separated: residuals use a stand-in scale and are left out of every KKT statement")
  log(f"[{n}/{total}] step {entry['step']}: loss {entry['loss']:.3g}, eps_rel {entry['eps_rel']:.4f}"
      + (f", exact splits to {entry['exact_max_distance_over_radius']:.3g} x radius (residual change "
         f"{entry['exact_max_transported_eps_rel_change']:.1e}, re-fitted eps_rel "
         f"{entry['exact_max_eps_rel_change']:.1e})" if do_exact else "")
      + (f", approx within {config.tol:.0%}: {entry['approx_within_tol_over_radius']:.3g} x radius "
         f"({entry['approx_best_direction']}), pattern-safe {entry['approx_safe_over_radius']:.3g}"
         if config.approx else ""))


def _summary(train_workdir, config, table, rows, radius, w, n_train, do_exact, grid) -> dict:
  sep = [t for t in table if t["separated"]] or table  # KKT statements only where q_min > 0
  last = table[-1]
  summary = {"train_workdir": train_workdir, "radius": radius, "width": int(w[1]), "d": int(w[0]),
             "left_out_steps": [t["step"] for t in table if not t["separated"]],
             "n_train": n_train, "checkpoints": [{k: v for k, v in t.items() if k != "approx_curves"}
                                                 for t in table]}
  parts = []
  if do_exact:
    summary["exact_rows_last"] = [r for r in rows if r["part"] == "exact" and r["step"] == last["step"]]
    summary["max_distance_over_radius"] = min(t["exact_max_distance_over_radius"] for t in sep)
    summary["max_eps_rel_change"] = max(t["exact_max_eps_rel_change"] for t in sep)
    summary["max_transported_eps_rel_change"] = max(t["exact_max_transported_eps_rel_change"] for t in sep)
    parts.append(f"exact splits at every separating checkpoint reach {summary['max_distance_over_radius']:.3g} x "
                 f"the data radius with the stationarity residual (transported multipliers) changed by at most "
                 f"{summary['max_transported_eps_rel_change']:.1e} (eps_rel with re-fitted multipliers: "
                 f"{summary['max_eps_rel_change']:.1e})")
  if config.approx:
    summary["approx_tol"] = config.tol
    summary["approx_grid_over_radius"] = [float(grid[0]), float(grid[-1]), len(grid)]
    top = config.grid[1]
    parts.append("largest split with the exact eps_rel (relu'(0) = 0, the true set's multipliers transported) "
                 "within {:.0%} of the true set's: ".format(config.tol) + ", ".join(
                     (f">= {t['approx_within_tol_over_radius']:.3g}" if t["approx_within_tol_over_radius"]
                      >= 10 ** top else f"{t['approx_within_tol_over_radius']:.3g}")
                     + f" x radius at step {t['step']}" for t in sep)
                 + "; keeping delta and the margin too (Theorems 8-9): " + ", ".join(
                     f"{t['approx_within_tol_delta_over_radius']:.3g}" for t in sep))
  if summary["left_out_steps"]:
    parts.append(f"steps {summary['left_out_steps']} left out (data not yet separated, q_min <= 0)")
  summary["headline"] = "; ".join(parts)
  return summary


@wd.job("study_split", "out_dir")
def run(train_workdir: str, config: SplitStudyConfig, out_dir: str, log: Callable = print) -> dict:
  """Runs the study at the chosen checkpoints of a training workdir and writes its run folder."""
  tcfg, ds, ckpts = train_job.load_run(train_workdir)
  chosen = _chosen(ckpts, config.steps)
  w, do_exact = _network(chosen, config)
  x, y = jnp.asarray(ds.x_train, chosen[0][1][0]["w"].dtype), jnp.asarray(ds.y_train)
  radius = data_lib.rms_radius(x)
  report = functools.partial(kkt.report, relaxed=False)  # the study uses the exact eps_rel
  key = jax.random.key(config.seed)
  os.makedirs(out_dir, exist_ok=True)
  rows, table, curves_last = [], [], None
  for n, (step, params) in enumerate(chosen):
    entry, r, curves = _at_checkpoint(key, config, do_exact, step, params, x, y, radius, report, tcfg.loss)
    rows += r
    table.append(entry)
    curves_last = curves or curves_last
    _log_entry(log, n + 1, len(chosen), entry, config, do_exact)
  wd.write_jsonl(os.path.join(out_dir, "metrics.jsonl"), rows)
  if config.approx:  # eps_rel (transported) per checkpoint, direction and magnitude
    wd.write_npz(os.path.join(out_dir, "curves.npz"), steps=np.asarray([t["step"] for t in table]),
                 magnitude_over_radius=np.asarray(curves_last[1]), directions=np.asarray(config.directions),
                 eps_rel=np.asarray([[t["approx_curves"][k] for k in config.directions] for t in table]),
                 true_eps_rel=np.asarray([t["eps_rel"] for t in table]))
  summary = _summary(train_workdir, config, table, rows, radius, w, int(x.shape[0]), do_exact,
                     curves_last[1] if curves_last else None)
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  wd.write_json(os.path.join(out_dir, "config.json"), {"study": config, "train_workdir": train_workdir})
  if do_exact:
    plotting.split_exact(summary["exact_rows_last"], summary, table[-1], os.path.join(out_dir, "split.png"))
  if config.approx:
    plotting.split_approx(table, curves_last, config, summary, os.path.join(out_dir, "split_approx.png"))
  log(summary["headline"])
  return summary

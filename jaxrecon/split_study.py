"""study_split, exact part: KKT sets arbitrarily far from the training set, built by splitting points.

At a trained network whose first layer is narrower than d, every direction nu with nu W_1 = 0 leaves all
pre-activations unchanged, so splitting a point x (multiplier l) into x + a nu, x - a nu (multipliers l/2, l/2)
keeps the weighted gradient, every margin and every activation pattern exactly, whatever a. This study splits
`n_split` support points at distances a = factor x (data radius) and measures, for each distance, the KKT
residuals of the new set (eps_rel, delta with its best multipliers) and the attack's own stationarity loss with
the transported multipliers, against the distance of the new set to the true one. All distances run in one
vmapped, compiled call. (The approximate, width-above-d part of the study is not built yet.)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import attack
from jaxrecon import kkt
from jaxrecon import train
from jaxrecon import transforms
from jaxrecon import workdir as wd


@dataclasses.dataclass(frozen=True)
class SplitStudyConfig:
  factors: tuple = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
  n_split: int = 50
  step: int = -1  # checkpoint (-1 = the last)
  alpha: float = 1e4  # surrogate slope for the attack's stationarity loss (large = the true ReLU)
  seed: int = 0


def split_many(key, params, x, y, lam, idx, factor_radius):
  """Splits the points idx, each along its own first-layer null direction, at magnitude factor_radius."""
  keys = jax.random.split(key, idx.shape[0])
  nus = jax.vmap(lambda k: transforms.first_layer_null_direction(k, params))(keys)
  a = factor_radius
  z1 = x[idx] + a * nus
  z2 = x[idx] - a * nus
  x_new = jnp.concatenate([x.at[idx].set(z1), z2])
  y_new = jnp.concatenate([y, y[idx]])
  lam_new = jnp.concatenate([lam.at[idx].set(lam[idx] / 2), lam[idx] / 2])
  return x_new, y_new, lam_new


def run(train_workdir: str, config: SplitStudyConfig, out_dir: str, log: Callable = print) -> dict:
  tcfg, ds, ckpts = train.load_run(train_workdir)
  step, params = ckpts[config.step] if config.step < 0 else next(c for c in ckpts if c[0] == config.step)
  if params[0]["w"].shape[1] >= params[0]["w"].shape[0]:
    raise ValueError("the exact split study needs a first layer narrower than d (a null space)")
  x, y = jnp.asarray(ds.x_train, params[0]["w"].dtype), jnp.asarray(ds.y_train)
  report = jax.jit(functools.partial(kkt.kkt_report, clarke_iters=1))
  base = report(params, x, y)
  params_n, _ = kkt.normalize(params, x, y)  # the multipliers live at the normalized scale
  lam = base.lam
  idx = jnp.argsort(-lam)[:config.n_split]
  radius = float(jnp.sqrt(jnp.mean(jnp.sum(x * x, axis=1))))
  factors = jnp.asarray(config.factors, x.dtype)
  key = jax.random.key(config.seed)
  sets = jax.vmap(lambda f: split_many(key, params_n, x, y, lam, idx, f * radius))(factors)
  reps = jax.jit(jax.vmap(lambda xs, ys: report(params_n, xs, ys)))(sets[0], sets[1])
  acfg = attack.AttackConfig(m=int(sets[0].shape[1]), prior="none")

  def stat_loss(xs, ys, ls):  # the attack's (1/m) scaling: its multipliers are m lam
    k = xs.shape[0]
    _, aux = attack.attack_loss((xs, k * ls), params_n, params_n, ys.astype(xs.dtype), config.alpha, 0.0,
                                acfg)
    return aux.stat
  stat = jax.jit(jax.vmap(stat_loss))(*sets)
  stat_true = stat_loss(x, y, lam)
  theta_sq = float(sum(jnp.sum(p * p) for p in jax.tree_util.tree_leaves(params_n)))
  os.makedirs(out_dir, exist_ok=True)
  rows = []
  for i, f in enumerate(config.factors):
    d_set = float(jnp.max(jnp.min(jnp.linalg.norm(sets[0][i][:, None, :] - x[None, :, :], axis=-1), axis=1)))
    rows.append({"factor": f, "distance": d_set, "distance_over_radius": d_set / radius,
                 "eps_rel": float(reps.eps_rel[i]), "delta": float(reps.delta[i]),
                 "attack_stat_rel": float(stat[i]) / theta_sq})
  wd.write_jsonl(os.path.join(out_dir, "metrics.jsonl"), rows)
  summary = {"attacked_step": step, "n_split": config.n_split, "radius": radius, "width": int(params[0]["w"].shape[1]),
             "d": int(x.shape[1]), "true_eps_rel": float(base.eps_rel), "true_delta": float(base.delta),
             "true_attack_stat_rel": float(stat_true) / theta_sq, "rows": rows,
             "max_eps_rel_change": float(max(abs(r["eps_rel"] - float(base.eps_rel)) for r in rows)),
             "max_distance_over_radius": max(r["distance_over_radius"] for r in rows)}
  summary["headline"] = (f"split sets up to {summary['max_distance_over_radius']:.3g} x the data radius from the "
                         f"training set: eps_rel {float(base.eps_rel):.4f} -> max change "
                         f"{summary['max_eps_rel_change']:.2e}")
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  wd.write_json(os.path.join(out_dir, "config.json"), {"study": config, "train_workdir": train_workdir})
  _plot(rows, summary, os.path.join(out_dir, "split.png"))
  log(summary["headline"])
  return summary


def _plot(rows, summary, path):
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  d = [r["distance_over_radius"] for r in rows]
  ax.plot(d, [r["eps_rel"] for r in rows], "o-", label="eps_rel")
  ax.plot(d, [max(r["delta"], 1e-300) for r in rows], "s-", label="delta")
  ax.plot(d, [r["attack_stat_rel"] for r in rows], "^-", label="attack stationarity / ||theta||^2")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("distance of the split set to the training set / data radius")
  ax.set_title(f"exact splits (width {summary['width']} < d = {summary['d']})", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)

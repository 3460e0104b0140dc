"""study_split: KKT sets far from the training set, built by splitting points, at every checkpoint of a run.

Exact part (first layer narrower than d): every direction nu with nu W_1 = 0 leaves all pre-activations
unchanged, so splitting a point x (multiplier l) into x + a nu, x - a nu (multipliers l/2, l/2) keeps the weighted
gradient, every margin and every activation pattern exactly, whatever a. `n_split` support points are split at
distances a = factor x (data radius); for each distance: the KKT residuals of the new set (eps_rel, delta with its
best multipliers), the attack's own stationarity loss with the transported multipliers, and the distance of the
new set to the true one. All distances run in one vmapped, compiled call.

Approximate part (any width; the paper's width 1000 > d): split one support point symmetrically along a unit
direction orthogonal to the data span and to g_A (so the margin and the stationarity sum are exact until a
neuron flips). For each direction kind (random in that subspace, 'importance'- and 'flip'-weighted, see
`transforms.weighted_direction`) and each of the `n_points` largest-multiplier points, scan the magnitude on a
log grid and record eps_rel with the transported multipliers (the new set's best multipliers can only do
better; the best split is re-checked with them). Reported per checkpoint: the closed-form pattern-safe
magnitude and the largest distance with eps_rel within `tol` (1%) of the true set's.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrecon import attack
from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import metrics
from jaxrecon import nets
from jaxrecon import plotting
from jaxrecon import train
from jaxrecon import transforms
from jaxrecon import workdir as wd

DIRECTIONS = ("orthogonal", "importance", "flip")


@dataclasses.dataclass(frozen=True)
class SplitStudyConfig:
  """steps: checkpoints to study (() = all but step 0; -1 = the last). exact / approx: 'auto' runs the exact
  part when the first layer has a null space and the approximate part always."""
  factors: tuple = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
  n_split: int = 50
  steps: tuple = (-1,)
  alpha: float = 1e4  # surrogate slope for the attack's stationarity loss (large = the true ReLU)
  exact: str = "auto"  # auto | yes | no
  approx: bool = True
  directions: tuple = DIRECTIONS
  n_points: int = 5
  grid: tuple = (-4.0, 4.0, 81)  # log10 of magnitude / data radius: lo, hi, count
  tol: float = 0.01
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


def _exact_rows(key, config, params_n, x, y, lam, radius, report):
  """The exact study at one checkpoint: a row per distance factor."""
  idx = jnp.argsort(-lam)[:config.n_split]
  factors = jnp.asarray(config.factors, x.dtype)
  sets = jax.vmap(lambda f: split_many(key, params_n, x, y, lam, idx, f * radius))(factors)
  # one set at a time: the report forms per-example gradients (N x params), too big to batch over factors
  reps = [report(params_n, sets[0][i], sets[1][i]) for i in range(len(config.factors))]

  def stat_loss(xs, ys, ls):  # the attack's stationarity term at the set with its own multipliers
    return attack.stationarity_gap(params_n, params_n, xs, ls, ys.astype(xs.dtype), config.alpha,
                                   mean_scaled=False)
  stat = jax.jit(jax.vmap(stat_loss))(*sets)
  stat_true = float(stat_loss(x, y, lam))
  theta_n = nets.param_norm(params_n)

  def eps_transported(xs, ys, ls):  # eps_rel with the transported multipliers (no re-fit)
    return nets.param_norm(kkt.stationarity_residual(params_n, xs, ys, ls)) / theta_n
  eps_t = jax.jit(jax.vmap(eps_transported))(*sets)
  eps_t_true = float(eps_transported(x, y, lam))
  theta_sq = float(optax.tree.norm(params_n, squared=True))
  rows = []
  for i, f in enumerate(config.factors):
    d_set = float(jnp.max(metrics.nearest_distances(sets[0][i], x)))
    rows.append({"part": "exact", "factor": f, "distance": d_set, "distance_over_radius": d_set / radius,
                 "eps_rel": float(reps[i].eps_rel), "delta": float(reps[i].delta),
                 "eps_rel_transported": float(eps_t[i]), "true_eps_rel_transported": eps_t_true,
                 "attack_stat_rel": float(stat[i]) / theta_sq})
  return rows, stat_true / theta_sq


def _directions(key, params_n, x, point, kinds):
  out = []
  for kind in kinds:
    if kind == "orthogonal":
      g = transforms.linear_gradient(params_n, point)
      out.append(transforms.orthogonal_direction(key, x, g[:, None]))
    else:
      out.append(transforms.weighted_direction(params_n, x, point, kind))
  return jnp.stack(out)


@functools.partial(jax.jit, static_argnames=("kinds",))
def _approx_curves(key, params_n, x, y, lam, idx, ts, kinds):
  """eps_rel with transported multipliers for symmetric splits of the points idx along each direction kind at
  every magnitude in ts: (points, kinds, magnitudes); plus the closed-form pattern-safe magnitudes
  (points, kinds), the directions and the base residual norm."""
  theta_n = nets.param_norm(params_n)
  r0 = kkt.stationarity_residual(params_n, x, y, lam)

  def one_point(i):
    nus = _directions(key, params_n, x, x[i], kinds)
    safe = jax.vmap(lambda nu: transforms.max_safe_symmetric(params_n, x[i], nu))(nus)  # x +- t nu

    def eps(nu, t):
      change = transforms.split_stationarity_change(params_n, x[i], y[i].astype(x.dtype), lam[i], nu, t, t)
      return nets.param_norm(jax.tree_util.tree_map(lambda r, c: r - c, r0, change)) / theta_n
    curve = jax.vmap(lambda nu: jax.lax.map(lambda t: eps(nu, t), ts))(nus)
    return curve, safe, nus
  curves, safe, nus = jax.lax.map(one_point, idx)
  return curves, safe, nus, nets.param_norm(r0) / theta_n


def _largest_within(curve, ts, limit):
  """The largest magnitude t in ts such that curve <= limit on every grid point up to t (0 if none)."""
  ok = np.cumprod(np.asarray(curve) <= limit).astype(bool)
  return float(ts[ok][-1]) if ok.any() else 0.0


def _approx_rows(key, config, params_n, x, y, lam, radius, base_eps, report):
  lo, hi, count = config.grid
  ts = jnp.asarray(np.logspace(lo, hi, int(count)) * radius, x.dtype)
  idx = jnp.argsort(-lam)[:config.n_points]
  curves, safe, nus, eps0 = _approx_curves(key, params_n, x, y, lam, idx, ts, tuple(config.directions))
  curves, safe = np.asarray(curves), np.asarray(safe)
  ts_np = np.asarray(ts)
  limit = (1.0 + config.tol) * float(eps0)
  rows, best = [], None
  for k, kind in enumerate(config.directions):
    reach = [_largest_within(curves[p, k], ts_np, limit) for p in range(len(idx))]
    p = int(np.argmax(reach))
    row = {"part": "approx", "direction": kind, "point": int(idx[p]), "lam": float(lam[idx[p]]),
           "safe_over_radius": float(min(safe[p, k], ts_np[-1])) / radius,
           "within_tol_over_radius": reach[p] / radius,
           "eps_rel_curve": curves[p, k].tolist()}
    rows.append(row)
    if best is None or reach[p] > best[0]:
      best = (reach[p], p, k)
  # re-check the best split with the new set's own best multipliers
  reach, p, k = best
  check = None
  if reach > 0:
    i = int(idx[p])
    (z1, z2), _ = transforms.split(x[i], lam[i], nus[p, k], reach, reach)
    xs = jnp.concatenate([x.at[i].set(z1), z2[None]])
    ys = jnp.concatenate([y, y[i:i + 1]])
    rep = report(params_n, xs, ys)
    check = {"direction": config.directions[k], "distance_over_radius": reach / radius,
             "eps_rel_best_multipliers": float(rep.eps_rel), "delta": float(rep.delta),
             "true_eps_rel": float(base_eps)}
  return rows, float(eps0), ts_np / radius, check


@wd.job("study_split", "out_dir")
def run(train_workdir: str, config: SplitStudyConfig, out_dir: str, log: Callable = print) -> dict:
  """Runs the study at the chosen checkpoints of a training workdir; writes metrics.jsonl (a row per
  checkpoint and distance / direction), summary.json (a table per checkpoint and the headline), split.png
  (exact part) and split_approx.png (approximate part)."""
  tcfg, ds, ckpts = train.load_run(train_workdir)
  if config.steps:
    by_step = dict(ckpts)
    chosen = []
    for s in config.steps:
      if s < 0:
        chosen.append(ckpts[s])
      elif s in by_step:
        chosen.append((s, by_step[s]))
      else:
        raise ValueError(f"no checkpoint at step {s}; have {sorted(by_step)}")
  else:
    chosen = [c for c in ckpts if c[0] > 0]
  if chosen[0][1][-1]["w"].shape[1] != 1:
    raise ValueError("the split study supports one-output (binary) networks; this one has "
                     f"{chosen[0][1][-1]['w'].shape[1]} outputs")
  w = chosen[0][1][0]["w"].shape  # (d, width of the first layer)
  has_null = w[1] < w[0]
  do_exact = config.exact == "yes" or (config.exact == "auto" and has_null)
  if do_exact and not has_null:
    raise ValueError(f"the exact split study needs a first layer narrower than d (width {w[1]} >= d {w[0]})")
  dtype = chosen[0][1][0]["w"].dtype
  x, y = jnp.asarray(ds.x_train, dtype), jnp.asarray(ds.y_train)
  radius = data_lib.rms_radius(x)
  report = jax.jit(functools.partial(kkt.kkt_report, relaxed=False))  # the study uses the exact eps_rel
  key = jax.random.key(config.seed)
  os.makedirs(out_dir, exist_ok=True)
  rows, table, curves_last = [], [], None
  for n, (step, params) in enumerate(chosen):
    base = report(params, x, y)
    params_n, _ = kkt.normalize(params, x, y)  # the multipliers live at the normalized scale
    loss = float(train.loss_fn(params, x, y, tcfg.loss))
    entry = {"step": step, "loss": loss, "eps_rel": float(base.eps_rel), "delta": float(base.delta),
             "q_min": float(base.q_min), "separated": bool(base.q_min > 0)}
    if not entry["separated"]:  # q_min <= 0: no max-margin problem to be a KKT point of; marked, left out
      log(f"[{n + 1}/{len(chosen)}] step {step}: q_min {entry['q_min']:.3g} <= 0, the data are not yet "
          "separated: residuals use a stand-in scale and are left out of every KKT statement")
    if do_exact:
      ex, stat_true = _exact_rows(key, config, params_n, x, y, base.lam, radius, report)
      for r in ex:
        r["step"] = step
      rows += ex
      entry.update(exact_max_distance_over_radius=max(r["distance_over_radius"] for r in ex),
                   exact_max_eps_rel_change=max(abs(r["eps_rel"] - entry["eps_rel"]) for r in ex),
                   exact_max_attack_stat_change=max(abs(r["attack_stat_rel"] - stat_true) for r in ex),
                   exact_max_transported_eps_rel_change=max(
                       abs(r["eps_rel_transported"] - r["true_eps_rel_transported"]) for r in ex),
                   true_attack_stat_rel=stat_true)
    if config.approx:
      ap, eps0, grid, check = _approx_rows(key, config, params_n, x, y, base.lam, radius, base.eps_rel, report)
      for r in ap:
        r["step"] = step
      rows += [{k: v for k, v in r.items() if k != "eps_rel_curve"} for r in ap]
      best = max(ap, key=lambda r: r["within_tol_over_radius"])
      entry.update(approx_best_direction=best["direction"], approx_within_tol_over_radius=best[
          "within_tol_over_radius"], approx_safe_over_radius=max(r["safe_over_radius"] for r in ap),
          approx_by_direction={r["direction"]: r["within_tol_over_radius"] for r in ap},
          approx_check=check)
      curves_last = (ap, grid, eps0, step)
      entry["approx_curves"] = {r["direction"]: r["eps_rel_curve"] for r in ap}
    table.append(entry)
    log(f"[{n + 1}/{len(chosen)}] step {step}: loss {loss:.3g}, eps_rel {entry['eps_rel']:.4f}"
        + (f", exact splits to {entry['exact_max_distance_over_radius']:.3g} x radius (residual change "
           f"{entry['exact_max_transported_eps_rel_change']:.1e}, re-fitted eps_rel "
           f"{entry['exact_max_eps_rel_change']:.1e})" if do_exact else "")
        + (f", approx within {config.tol:.0%}: {entry['approx_within_tol_over_radius']:.3g} x radius "
           f"({entry['approx_best_direction']}), pattern-safe {entry['approx_safe_over_radius']:.3g}"
           if config.approx else ""))
  wd.write_jsonl(os.path.join(out_dir, "metrics.jsonl"), rows)
  if config.approx:  # eps_rel (transported) per checkpoint, direction and magnitude
    wd.write_npz(os.path.join(out_dir, "curves.npz"), steps=np.asarray([t["step"] for t in table]),
                 magnitude_over_radius=np.asarray(curves_last[1]), directions=np.asarray(config.directions),
                 eps_rel=np.asarray([[t["approx_curves"][k] for k in config.directions] for t in table]),
                 true_eps_rel=np.asarray([t["eps_rel"] for t in table]))
  sep = [t for t in table if t["separated"]] or table  # KKT statements only where q_min > 0
  last = table[-1]
  summary = {"train_workdir": train_workdir, "radius": radius, "width": int(w[1]), "d": int(w[0]),
             "left_out_steps": [t["step"] for t in table if not t["separated"]],
             "n_train": int(x.shape[0]), "checkpoints": [{k: v for k, v in t.items() if k != "approx_curves"}
                                                        for t in table]}
  parts = []
  if do_exact:
    summary["exact_rows_last"] = [r for r in rows if r["part"] == "exact" and r["step"] == last["step"]]
    summary["max_distance_over_radius"] = min(t["exact_max_distance_over_radius"] for t in sep)
    summary["max_eps_rel_change"] = max(t["exact_max_eps_rel_change"] for t in sep)
    summary["max_transported_eps_rel_change"] = max(t["exact_max_transported_eps_rel_change"] for t in sep)
    parts.append(f"exact splits at every separating checkpoint reach {summary['max_distance_over_radius']:.3g} x the data "
                 f"radius with the stationarity residual (transported multipliers) changed by at most "
                 f"{summary['max_transported_eps_rel_change']:.1e} (eps_rel with re-fitted multipliers: "
                 f"{summary['max_eps_rel_change']:.1e})")
  if config.approx:
    summary["approx_tol"] = config.tol
    summary["approx_grid_over_radius"] = [float(grid[0]), float(grid[-1]), len(grid)]
    top = config.grid[1]
    parts.append("largest split with the exact eps_rel (relu'(0) = 0, the true set's multipliers transported) "
                 "within {:.0%} of the true set's: ".format(config.tol) + ", ".join(
        (f">= {t['approx_within_tol_over_radius']:.3g}" if t['approx_within_tol_over_radius'] >= 10 ** top
         else f"{t['approx_within_tol_over_radius']:.3g}") + f" x radius at step {t['step']}" for t in sep))
  if summary["left_out_steps"]:
    parts.append(f"steps {summary['left_out_steps']} left out (data not yet separated, q_min <= 0)")
  summary["headline"] = "; ".join(parts)
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  wd.write_json(os.path.join(out_dir, "config.json"), {"study": config, "train_workdir": train_workdir})
  if do_exact:
    _plot_exact(summary["exact_rows_last"], summary, last, os.path.join(out_dir, "split.png"))
  if config.approx:
    _plot_approx(table, curves_last, config, summary, os.path.join(out_dir, "split_approx.png"))
  log(summary["headline"])
  return summary


def _plot_exact(rows, summary, last, path):
  fig, ax = plotting.subplots(figsize=(5.5, 3.8))
  d = [r["distance_over_radius"] for r in rows]
  ax.plot(d, [r["eps_rel"] for r in rows], "o-", label="eps_rel (re-fitted multipliers)")
  ax.plot(d, [r["eps_rel_transported"] for r in rows], "x--", label="eps_rel (transported multipliers)")
  ax.plot(d, [max(r["delta"], 1e-300) for r in rows], "s-", label="delta")
  ax.plot(d, [r["attack_stat_rel"] for r in rows], "^-", label="attack stationarity / ||theta||^2")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("distance of the split set to the training set / data radius")
  ax.set_title(f"exact splits (width {summary['width']} < d = {summary['d']}), step {last['step']}", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  plotting.save(fig, path, dpi=100)


def _plot_approx(table, curves_last, config, summary, path):
  fig, (a1, a2) = plotting.subplots(1, 2, figsize=(10, 3.8))
  ap, grid, eps0, step = curves_last
  for r in ap:
    a1.plot(grid, r["eps_rel_curve"], label=r["direction"])
  a1.axhline((1 + config.tol) * eps0, color="k", ls=":", lw=1, label=f"true set x {1 + config.tol:g}")
  a1.set_xscale("log")
  a1.set_yscale("log")
  a1.set_xlabel("split magnitude / data radius")
  a1.set_ylabel("exact eps_rel (transported multipliers)")
  a1.set_title(f"one support point split, step {step} (width {summary['width']}, d = {summary['d']})",
               fontsize=9)
  a1.legend(fontsize=8)
  a1.grid(alpha=0.3)
  steps = [t["step"] for t in table]
  for kind in config.directions:
    a2.plot(steps, [max(t["approx_by_direction"][kind], 1e-300) for t in table], "o-", label=kind)
  a2.plot(steps, [t["approx_safe_over_radius"] for t in table], "k--", label="pattern-safe, both ways")
  out = [t["step"] for t in table if not t["separated"]]
  if out:
    a2.axvspan(min(out) / 1.5, max(out) * 1.2, color="0.85", zorder=0, label="not separated (q_min <= 0)")
  a2.set_xscale("log")
  a2.set_yscale("log")
  a2.set_xlabel("training step")
  a2.set_ylabel(f"largest split within {config.tol:.0%} / radius")
  a2.grid(alpha=0.3)
  a2.legend(fontsize=8)
  plotting.save(fig, path, dpi=100)

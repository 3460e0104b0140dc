"""study_sphere (the job): the synthetic experiment of "No Prior, No Leakage" at its authors' protocol.

Data: n // 2 points per class on the sphere of radius r in R^d about the centre c * ones (`shifted_sphere`).
Net: d-1000-1000-1 without any bias, trained by `experiments.train` (the fast schedule by default), then
rescaled to margin 1 (theta / q_min^(1/L): the max-margin normalization in which the KKT multipliers are the
theory's; for a homogeneous net a rescaling only moves the multipliers by c^(2-L) and the loss by c^2).
Attack: the authors' grid of 108 settings, no prior (weight 0), alpha 20: x lr {1, 0.5, 0.1} x lambda lr
{0.1, 0.01} x init scale {0.1, 1, 10} x init shift {0, 1, 10} (the start AND the prior box move with it) x
lambda_min {0, 0.5}, m = 2n candidates, 50,001 steps, all in ONE compiled sweep (`experiments.attack`).
`authors_protocol()` gives these sizes (`--full` in `jaxrecon-study-sphere`); the default config is the
stated CPU-scale reduction of it.

Per configuration (metrics.jsonl, one row each): the authors' distances (mean and minimum distance to the
training set, mean distance of the 5 closest candidates) and the scale-invariant recovery of
`noprior.recovery` (best cosine / NCC with a training point against the same with as many held-out points,
the margin ratio |Phi(x_hat)| / q_min, the norm ratio). The null row: held-out points of the same
distribution as candidates (no attack). Then the chance study (`experiments.chance`) on every candidate.
Writes config.json, metrics.jsonl, recovery.npz (per-candidate arrays), summary.json, sphere.png, and the
train/, attack/ and chance/ run folders under it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import credit as credit_lib
from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon import plotting_studies
from jaxrecon import train
from jaxrecon import workdir as wd
from jaxrecon.attack.loss import AttackConfig
from jaxrecon.attack.sweep import SweepConfig
from jaxrecon.experiments import attack as attack_job
from jaxrecon.experiments import chance as chance_job
from jaxrecon.experiments import train as train_job
from jaxrecon.noprior import recovery as rec_lib
from jaxrecon.report import fmt_value as _g

AUTHORS_GRID = SweepConfig(kind="grid", lr_x=(1.0, 0.5, 0.1), lr_lambda=(0.1, 0.01), init_scale=(0.1, 1.0, 10.0),
                           shift=(0.0, 1.0, 10.0), lambda_min=(0.0, 0.5), alpha=(20.0,))

# The CPU-scale reduction (see docs/noprior.md): n 50 (not 500), widths 100-100 (not 1000-1000), 1,000 attack
# steps (not 50,001); d = 784, the grid and m = 2n are the authors'.
CPU_TRAIN = train.TrainConfig(
    data=data_lib.DataConfig(name="shifted_sphere", n=50, d=784, n_test=1000, sphere_labels="first_coordinate"),
    widths=(100, 100),
    init_scales=None, first_bias=False, steps=2000, log_every=500)
CPU_ATTACK = attack_job.ReconstructConfig(
    attack=AttackConfig(steps=1000, prior="box", prior_weight=0.0, lambda_weight=5.0, log_every=250,
                        init="sphere_one_coordinate"),
    sweep=AUTHORS_GRID, pool_top=0)


@dataclasses.dataclass(frozen=True)
class SphereStudyConfig:
  """The sphere experiment.

  Attributes:
    train: The attacked net's training (data shifted_sphere: its radius and shift are the data's r and c).
    reconstruct: The attack job: the authors' grid and no prior by default (prior weight and lambda-penalty
      weight are attack settings).
    margin_one: Rescale the trained net to margin q_min = 1 before the attack (else attack it as trained).
    best: Candidates per configuration in the "best" averages.
    seed: Seed of the attack.
  """
  train: train.TrainConfig = CPU_TRAIN
  reconstruct: attack_job.ReconstructConfig = CPU_ATTACK
  margin_one: bool = True
  best: int = rec_lib.BEST
  seed: int = 0

  def validate(self) -> None:
    """Raises ValueError naming the field that the sphere study cannot run with."""
    if self.train.data.name != "shifted_sphere":
      raise ValueError(f"the sphere study trains on shifted_sphere data; got {self.train.data.name!r}")
    if self.train.first_bias:
      raise ValueError("the sphere study's net has no biases (first_bias must be False)")
    if self.train.data.n_test < 2 * self.train.data.n:
      raise ValueError(f"n_test must be >= 2 n (a held-out set as large as the training set and null candidates); "
                       f"got n_test {self.train.data.n_test} for n {self.train.data.n}")


def authors_protocol(config: SphereStudyConfig = SphereStudyConfig()) -> SphereStudyConfig:
  """The authors' sizes: 250 points per class, 784-1000-1000-1, 1,000 candidates, 50,001 attack steps (a GPU
  job: about 5 x 10^6 candidate-steps per configuration)."""
  tcfg = dataclasses.replace(config.train, data=dataclasses.replace(config.train.data, n=500, d=784),
                             widths=(1000, 1000), steps=max(config.train.steps, 5000))
  rc = config.reconstruct
  rc = dataclasses.replace(rc, attack=dataclasses.replace(rc.attack, steps=50001, m=0, log_every=1000))
  return dataclasses.replace(config, train=tcfg, reconstruct=rc)


def _rows(params, ds, arrays, best: int, data_radius: float):
  """Per configuration: its settings, final loss terms and recovery summary; and the per-candidate arrays."""
  tr = jnp.asarray(ds.x_train, jnp.float32)
  y = jnp.asarray(ds.y_train)
  n = tr.shape[0]
  held = jnp.asarray(ds.x_test[:n], jnp.float32)
  p32 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
  hyper = {k[len("hyper_"):]: np.asarray(v) for k, v in arrays.items() if k.startswith("hyper_")}
  rows, per = [], []
  for c in range(arrays["x"].shape[0]):
    settings = {k: (int(v[c]) if k == "seed" else float(v[c])) for k, v in hyper.items()}
    row = {"config": c, **settings, "diverged": bool(arrays["diverged"][c]),
           "final_loss": float(arrays["loss"][c]), "final_stat": float(arrays["stat"][c])}
    x = np.asarray(arrays["x"][c])
    if np.all(np.isfinite(x)):
      r = rec_lib.recovery(p32, jnp.asarray(x, jnp.float32), tr, y, held)
      row.update(rec_lib.summarize(r, data_radius, best))
      per.append(np.stack([np.asarray(v, np.float64) for v in r]))
    else:
      per.append(np.full((len(rec_lib.Recovery._fields), x.shape[0]), np.nan))
    rows.append(row)
  null_x = jnp.asarray(ds.x_test[n:2 * n], jnp.float32)
  null = rec_lib.recovery(p32, null_x, tr, y, held)
  null_row = {"config": "null (held-out points, no attack)", **rec_lib.summarize(null, data_radius, best)}
  return rows, np.stack(per), null_row, np.stack([np.asarray(v, np.float64) for v in null])


def _by_setting(rows: list, key: str) -> list:
  """Medians over the configurations sharing one value of a swept setting that did not diverge (a diverged
  configuration keeps its last finite candidates, often of norm 1e18: they are counted, not averaged)."""
  out = []
  for v in sorted({r[key] for r in rows}):
    sel = [r for r in rows if r[key] == v and not r["diverged"] and "best5_ncc_train" in r]
    med = lambda k: float(np.median([r[k] for r in sel])) if sel else None
    out.append({key: v, "configs": sum(r[key] == v for r in rows), "diverged": sum(
        r[key] == v and r["diverged"] for r in rows), **{k: med(k) for k in (
        "best5_dist_rel", "best5_ncc_train", "best5_ncc_heldout", "frac_ncc_closer_train", "median_margin_ratio",
        "median_norm_ratio", "final_stat")}})
  return out


def _headline(rows, null_row, kkt_row) -> str:
  ok = [r for r in rows if not r["diverged"] and "best5_ncc_train" in r]
  beat = [r for r in ok if r["best5_ncc_train"] > max(null_row["best5_ncc_train"], r["best5_ncc_heldout"]) + 0.1]
  best = max(ok, key=lambda r: r["best5_ncc_train"]) if ok else None
  closest = min(ok, key=lambda r: r["best5_dist"]) if ok else None
  med = lambda k: _g(float(np.median([r[k] for r in ok]))) if ok else "-"
  return (f"trained net: eps_rel {kkt_row['eps_rel']:.3f}, delta {kkt_row['delta']:.2g}; {len(ok)}/{len(rows)} "
          f"configurations did not diverge; in {len(beat)} of them the best-5 NCC with a training point exceeds "
          f"both its held-out counterpart and the no-attack null ({null_row['best5_ncc_train']:.3f}) by > 0.1; "
          f"best configuration {_g(best and best['best5_ncc_train'])} (held-out "
          f"{_g(best and best['best5_ncc_heldout'])}, init shift {_g(best and best['shift'])}, scale "
          f"{_g(best and best['init_scale'])}); closest best-5 distance {_g(closest and closest['best5_dist_rel'])} "
          f"x data radius (null {null_row['best5_dist_rel']:.3f}); median over configurations of the best-5 "
          f"candidates' norm / data radius {med('best5_norm_ratio')} and |Phi| / q_min {med('best5_margin_ratio')}")


_exact_report = functools.partial(kkt.report, relaxed=False)


@wd.job("study_sphere", "out_dir")
def run(config: SphereStudyConfig, out_dir: str, log: Callable = print, train_log: Callable = None) -> dict:
  """Trains the net, attacks it with the grid, measures recovery per configuration, runs the chance study."""
  os.makedirs(out_dir, exist_ok=True)
  wd.write_json(os.path.join(out_dir, "config.json"), {"study": config})
  train_dir = os.path.join(out_dir, "train")
  ts = train_job.run(config.train, train_dir, log=train_log or log)
  _, ds, ckpts = train_job.load_run(train_dir)
  params = ckpts[-1][1]
  x64 = jnp.asarray(ds.x_train, params[0]["w"].dtype)
  rep = _exact_report(params, x64, jnp.asarray(ds.y_train))
  kkt_row = {"step": ckpts[-1][0], "train_acc": ts.get("train_acc"), "test_acc": ts.get("test_acc"),
             "eps_rel": float(rep.eps_rel), "delta": float(rep.delta), "q_min": float(rep.q_min)}
  rc = config.reconstruct
  if config.margin_one:
    if kkt_row["q_min"] <= 0:
      raise ValueError(f"the trained net does not separate its data (q_min {kkt_row['q_min']:.3g}): train longer")
    scale = kkt_row["q_min"] ** (-1.0 / nets.degree(params))
    rc = dataclasses.replace(rc, theta_scale=scale, theta_norm=0.0)
  log(f"== attack: {rc.sweep.hyper(jax.random.key(0)).size} configurations x {rc.attack.steps} steps, "
      f"trained net eps_rel {kkt_row['eps_rel']:.4f}")
  attack_dir = os.path.join(out_dir, "attack")
  o = attack_job.run(rc, train_dir, attack_dir, key=jax.random.key(config.seed), log=log)
  arrays = wd.read_npz(os.path.join(attack_dir, "candidates.npz"))
  attacked = nets.scale_params(params, rc.theta_scale) if config.margin_one else params
  data_radius = data_lib.rms_radius(ds.x_train)
  rows, per, null_row, null_per = _rows(attacked, ds, arrays, config.best, data_radius)
  chance = chance_job.run(attack_dir, os.path.join(out_dir, "chance"), log=log)
  summary = {"kkt": kkt_row, "data_radius": data_radius, "attack_wall_s": o.wall_s, "null": null_row,
             "by_shift": _by_setting(rows, "shift"), "by_init_scale": _by_setting(rows, "init_scale"),
             "by_lambda_min": _by_setting(rows, "lambda_min"), "chance": chance["attack"],
             "chance_null": chance["null"], "credit": o.summary.get("credit")}
  summary["headline"] = _headline(rows, null_row, kkt_row)
  if summary["credit"] is not None:
    summary["headline"] += "; recovery measure: " + credit_lib.summary_line(summary["credit"], "configuration")
  wd.write_jsonl(os.path.join(out_dir, "metrics.jsonl"), rows)
  wd.write_npz(os.path.join(out_dir, "recovery.npz"), fields=np.asarray(rec_lib.Recovery._fields),
               per_config=per, null=null_per, shift=arrays["hyper_shift"], init_scale=arrays["hyper_init_scale"])
  summary["rows"] = rows
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  kept = np.asarray([not r["diverged"] and "best5_ncc_train" in r for r in rows])
  if kept.any():
    plotting_studies.sphere_study([r for r, k in zip(rows, kept) if k], per[kept], null_per, rec_lib.Recovery._fields,
                          os.path.join(out_dir, "sphere.png"))
  log(summary["headline"])
  return summary

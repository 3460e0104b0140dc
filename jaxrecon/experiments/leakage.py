"""Do training choices change leakage? (issue 14, part 2): optimizers, weight decay and classes against the attack.

Gradient descent on a homogeneous net converges in direction to a KKT point of the l2 max-margin problem, which
is what the Haim et al. attack inverts; Adam and sign descent are biased towards the l_inf margin, Muon towards
the spectral margin (Gronich & Vardi 2026), and training with weight decay stops at a stationary point of
Loss + wd/2 ||theta||^2 where theta = sum_i lambda_i grad q_i holds with ALL multipliers positive (Buzaglo et
al. 2023). One training set, one architecture; per training recipe (`RECIPES`):
- the training run (the training job's run folder, resumable), its loss and accuracies;
- the exact l2 KKT residual eps_rel, and each norm's stationarity residual `margin_norms.norm_kkt` (l2, l_inf,
  spectral; certified from both sides) so the optimizer's own margin problem is measured beside l2's; with
  weight decay, the stationarity of the regularized objective (`margin_norms.wd_residual`);
- the attack (the attack command's protocol given, by default the fast one) with each target of `targets`:
  'theta' (l2 stationarity, the paper's attack), 'sign' and 'sign_cone' (l_inf stationarity, the variants written
  for Adam and Signum: the uniform subgradient, or any subgradient of the same mass);
  on weight-decay recipes also the signed-multiplier variant. Each attack is the attack job's own run folder
  (pairs.png, curve.png, candidates.npz); its pool is scored here the reference's way against the baselines no
  attack needs (images: `quality.Judge`, min-max and clipped SSIM above the mean image and the best of
  `n_heldout` held-out images, L2 closer than the closest held-out image; vectors: training points within
  close_tol of a candidate, and the same count for an equally large pool of fresh points, the chance level).
Writes config.json, metrics.jsonl (a row per recipe), summary.json (the table, the verdict sentence), leakage.png.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import data as data_lib
from jaxrecon import margin_norms
from jaxrecon import plotting_studies
from jaxrecon import train
from jaxrecon import workdir as wd
from jaxrecon.attack import evaluate
from jaxrecon.attack import loss as attack_loss
from jaxrecon.experiments import attack as attack_job
from jaxrecon.experiments import quality
from jaxrecon.experiments import train as train_job

# name -> (what it is, the TrainConfig fields it sets). The optax optimizers step on grad log Loss
# (normalize=True): it never underflows at small losses, and Adam's epsilon then never dominates its
# denominator (the theory's Adam has none; with epsilon and an underflowing gradient Adam turns into GD).
# One learning rate each, not tuned: in 2,000 steps on MNIST odd/even n 20, 784-200-1 every recipe separates
# the data; the losses reached (1e-2 with weight decay to 1e-70000 for SUMO) are in docs/noprior.md.
RECIPES = {
    "gd": ("gradient descent (relative_gd: GD's direction, the fast step schedule)",
           dict(optimizer="relative_gd", lr=0.03, normalize=False, weight_decay=0.0)),
    "signum": ("Signum lr 1e-3 (sign descent with momentum: l_inf steepest descent)",
               dict(optimizer="signum", lr=1e-3, normalize=True, weight_decay=0.0)),
    "adam": ("Adam lr 1e-3", dict(optimizer="adam", lr=1e-3, normalize=True, weight_decay=0.0)),
    "muon": ("optax Muon lr 0.01 (Adam on biases)",
             dict(optimizer="muon", lr=0.01, normalize=True, weight_decay=0.0)),
    "sumo": ("SUMO lr 0.01 (AdamW on biases)", dict(optimizer="sumo", lr=0.01, normalize=True, weight_decay=0.0)),
    "gd_plain": ("plain GD lr 0.5, no weight decay (gd_wd's control)",
                 dict(optimizer="gd", lr=0.5, normalize=False, weight_decay=0.0)),
    "gd_wd": ("plain GD lr 0.5 with weight decay 1e-2 (logistic loss)",
              dict(optimizer="gd", lr=0.5, normalize=False, weight_decay=1e-2)),
}

# The count each kind of data is judged by (the verdict's number), and its chance level's key.
HEADLINE = {"images": ("clip_beating_heldout", "clipped SSIM > 0.4 and above the best held-out image"),
            "vectors": ("n_close", "training points with a candidate within close_tol x radius")}


@dataclasses.dataclass(frozen=True)
class LeakageConfig:
  """The study.

  Attributes:
    train: The training run every recipe starts from (data, architecture, steps, dtype); a recipe sets its
      optimizer, learning rate and weight decay.
    recipes: Names in RECIPES.
    attack: The attack job's configuration (its target and variant are set per attack).
    targets: Attack targets run on every recipe: theta (l2) | sign (l_inf, the uniform subgradient) |
      sign_cone (l_inf, the subgradient's weights free).
    signed_with_wd: Also run the signed-multiplier variant on recipes with weight decay (binary tasks).
    norm_iters: Iterations of the norm residuals' saddle-point solver.
    n_heldout: Held-out images of the image baselines.
    seed: Seed of the data, initialization and attack sweep.
  """
  train: train.TrainConfig = train.TrainConfig(
      data=data_lib.DataConfig(name="sphere", n=20, d=784, n_test=1000), widths=(200,), first_bias=True,
      steps=2000, log_every=500, relaxed=False)
  recipes: tuple = ("gd", "signum", "adam", "muon", "sumo", "gd_plain", "gd_wd")
  attack: attack_job.ReconstructConfig = attack_job.PROTOCOLS["fast"]
  targets: tuple = ("theta", "sign")
  signed_with_wd: bool = True
  norm_iters: int = 1000
  n_heldout: int = 1000
  seed: int = 0

  @staticmethod
  def from_dict(d: dict) -> "LeakageConfig":
    return wd.config_from_dict(LeakageConfig, d)

  def __post_init__(self):  # a config that cannot run is refused when it is made
    self.validate()

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot be right."""
    unknown = [r for r in self.recipes if r not in RECIPES]
    if unknown:
      raise ValueError(f"unknown recipes {unknown}; expected names in {list(RECIPES)}")
    bad = [t for t in self.targets if t not in attack_loss.TARGETS]
    if bad:
      raise ValueError(f"unknown attack targets {bad}; expected names in {attack_loss.TARGETS}")


class VectorJudge:
  """Vector data: training points within close_tol x RMS radius of a candidate, and the chance level (the
  same count for as many fresh points from the same distribution as the pool has candidates)."""

  def __init__(self, ds, close_tol: float):
    self.ds, self.close_tol = ds, close_tol
    self.radius = data_lib.rms_radius(ds.x_train)

  def count(self, pool) -> tuple:
    v = evaluate.vector_numbers(self.ds.x_train, pool, self.close_tol, self.radius)
    return v.n_close, v.mean_best5_dist / self.radius

  def __call__(self, pool: np.ndarray) -> dict:
    n_close, best5 = self.count(pool)
    fresh = np.asarray(self.ds.x_test)[:pool.shape[0]]
    chance, chance_best5 = self.count(fresh) if fresh.shape[0] else (None, None)
    return {"pool_size": int(pool.shape[0]), "n_close": n_close, "best5_dist": best5,
            "chance_n_close": chance, "chance_best5_dist": chance_best5}


# compiled once per (norm, iters, shapes): the recipes of one study share the three programs
_norm_kkt = jax.jit(margin_norms.norm_kkt, static_argnames=("norm", "iters", "step"))


def norm_residuals(params, x, y, iters: int) -> dict:
  """eps of each norm's max-margin problem, certified: {f'eps_{norm}': upper, f'eps_{norm}_lower': lower}."""
  out = {}
  for norm in margin_norms.NORMS:
    r = _norm_kkt(params, x, y, norm=norm, iters=iters)
    out[f"eps_{norm}"] = float(r.eps_upper)
    out[f"eps_{norm}_lower"] = float(r.eps_lower)
  return out


def _attacks(config: LeakageConfig, wd_on: bool, multiclass: bool) -> list:
  """(name, ReconstructConfig) of every attack run on one recipe."""
  out = []
  for target in config.targets:
    variants = ["binary"] + (["signed"] if wd_on and config.signed_with_wd and not multiclass else [])
    for variant in variants:
      a = dataclasses.replace(config.attack.attack, target=target, variant=variant)
      name = target if variant == "binary" else f"{target}_{variant}"
      out.append((name, dataclasses.replace(config.attack, attack=a,
                                            sweep=dataclasses.replace(config.attack.sweep, seed=config.seed))))
  return out


def _pool(workdir: str, pool_top: int) -> np.ndarray:
  a = wd.read_npz(os.path.join(workdir, "candidates.npz"))
  return evaluate.pool_candidates(a["x"], a["loss"], pool_top)[0]


def run_recipe(config: LeakageConfig, name: str, workdir: str, judge_for: Callable, log: Callable) -> dict:
  """Trains one recipe, measures its residuals, runs its attacks; returns its table row."""
  what, fields = RECIPES[name]
  tcfg = dataclasses.replace(config.train, seed=config.seed, **fields)
  twd = os.path.join(workdir, f"train_{name}")
  log(f"[{name}] training: {what}")
  s = train_job.run(tcfg, twd, log=log)
  _, ds, ckpts = train_job.load_run(twd)
  params = ckpts[-1][1]
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  row = {"recipe": name, "what": what, "optimizer": tcfg.optimizer, "lr": tcfg.lr,
         "weight_decay": tcfg.weight_decay, "steps": s["steps"], "final_loss": s["final_loss"],
         "final_log10_loss": s["final_log10_loss"], "train_acc": s["train_acc"], "test_acc": s["test_acc"],
         "train_s": s["wall_s"], "eps_rel": s["eps_rel"], "delta": s["delta"], "support_size": s["support_size"]}
  t = time.time()
  row.update(norm_residuals(params, x, y, config.norm_iters))
  row["wd_residual"] = (float(margin_norms.wd_residual(params, x, y, tcfg.loss, tcfg.weight_decay))
                        if tcfg.weight_decay else None)
  row["residuals_s"] = time.time() - t
  log(f"[{name}] eps_rel {row['eps_rel']:.3f}; eps l2/linf/spectral "
      + "/".join(f"{row['eps_' + k]:.3f}" for k in margin_norms.NORMS)
      + (f"; weight-decay stationarity {row['wd_residual']:.3g}" if row["wd_residual"] is not None else ""))
  judge = judge_for(ds)
  score = (lambda pool: judge(pool)[0]) if isinstance(judge, quality.Judge) else judge
  multiclass = bool(np.min(ds.y_train) >= 0)
  for aname, rc in _attacks(config, tcfg.weight_decay > 0, multiclass):
    awd = os.path.join(workdir, f"attack_{name}_{aname}")
    o = attack_job.run(rc, twd, awd, key=jax.random.key(config.seed), log=log)
    pool = _pool(awd, rc.pool_top)
    row[f"attack_{aname}"] = {"attack_s": o.wall_s, "best_final_loss": float(np.nanmin(o.final_loss))
                              if np.isfinite(o.final_loss).any() else None, **score(pool)}
    log(f"[{name}] attack {aname}: " + _numbers_line(row[f"attack_{aname}"]))
  return row


def _numbers_line(n: dict) -> str:
  if "clip_beating_heldout" in n:
    return quality.report_line({**n, "wall_s": n["attack_s"]})
  return (f"{n['n_close']} within tolerance (chance {n['chance_n_close']}), best-5 distance "
          f"{n['best5_dist']:.3f} x radius (chance {n['chance_best5_dist']:.3f})")


@wd.job("leakage", "workdir")
def run(config: LeakageConfig, workdir: str, log: Callable = print) -> dict:
  """Runs the study into `workdir`; returns summary.json's dict."""
  wd.write_json(os.path.join(workdir, "config.json"), config)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  wd.write_jsonl(metrics_path, [])
  judges = {}

  def judge_for(ds):
    if "j" not in judges:
      judges["j"] = (quality.Judge(ds, config.n_heldout) if ds.image_shape
                     else VectorJudge(ds, config.attack.close_tol))
    return judges["j"]

  rows = []
  for name in config.recipes:
    row = run_recipe(config, name, workdir, judge_for, log)
    rows.append(row)
    wd.append_jsonl(metrics_path, row)
  judge = judges["j"]
  kind = "images" if isinstance(judge, quality.Judge) else "vectors"
  nulls = ({"mean_image": judge(np.zeros((1, judge.ds.x_train.shape[1])))[0], "heldout": judge(judge.heldout)[0]}
           if kind == "images" else {})
  summary = {"kind": kind, "n_train": int(judge.ds.x_train.shape[0]), "headline_count": HEADLINE[kind],
             "baselines": nulls, "rows": rows}
  summary["verdict"] = verdict(rows, kind, [a for a, _ in _attacks(config, False, False)])
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  plotting_studies.leakage_study(rows, kind, HEADLINE[kind][0], os.path.join(workdir, "leakage.png"))
  log(summary["verdict"])
  return summary


def verdict(rows: list, kind: str, targets: list) -> str:
  """One sentence per attack target: the recipes ranked by the headline count, with eps_rel beside."""
  key, what = HEADLINE[kind]
  parts = []
  for t in targets:
    ranked = sorted((r for r in rows if f"attack_{t}" in r), key=lambda r: -r[f"attack_{t}"][key])
    parts.append(f"attack target {t}: " + ", ".join(
        f"{r['recipe']} {r[f'attack_{t}'][key]} (eps_rel {r['eps_rel']:.2f})" for r in ranked))
  return f"{what} ({kind}), most to least: " + "; ".join(parts)


def tiny(config: LeakageConfig) -> LeakageConfig:
  """A smoke-test size of `config` (seconds; its numbers mean nothing)."""
  data = dataclasses.replace(config.train.data, n=min(config.train.data.n, 6), n_test=20,
                             d=min(config.train.data.d, 10))
  rc = config.attack
  rc = dataclasses.replace(rc, attack=dataclasses.replace(rc.attack, steps=30, log_every=10),
                           sweep=dataclasses.replace(rc.sweep, configs=2))
  return dataclasses.replace(config, train=dataclasses.replace(config.train, data=data, widths=(8,), steps=30,
                                                               log_every=10),
                             attack=rc, norm_iters=50, n_heldout=20)

"""The attack studies of "No Prior, No Leakage": prior radius, training length and a secret offset.

Each study runs the attack job (`experiments.attack.run`) with ONE sweep (same key, same configurations, same
step budget), changing one thing, and gathers the headline numbers into a table:
- `run_radius`: candidates start on spheres of radius r (no box penalty), every radius in ONE compiled sweep
  (the radius is a swept value); the final attack loss and the mean distance of the best 5 reconstructions to
  the training set against r, each radius's candidates pooled and evaluated on their own. The paper's claim:
  the loss stays low for every r while the reconstructions move away with r (no prior, no reliable
  reconstruction).
- `run_training_length`: the checkpoints of one training run (loss <= `max_loss`); good reconstructions,
  eps_rel and delta per checkpoint. The claim: longer training, less leakage.
- `run_offset`: train with a secret constant offset added to every input (after mean removal), attack with
  the usual box prior; SSIM and good counts against the offset. The claim: the offset defends.
Every study writes its own workdir: config.json, metrics.jsonl (one row per setting), summary.json (the table
and a headline), a PNG, and the full attack workdir of every attack under it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Optional

import jax
import numpy as np

from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import plotting_studies
from jaxrecon import train
from jaxrecon import validation
from jaxrecon import workdir as wd
from jaxrecon.attack import evaluate
from jaxrecon.attack.loss import AttackConfig
from jaxrecon.attack.sweep import SweepConfig
from jaxrecon.experiments import attack as attack_job
from jaxrecon.experiments import train as train_job
from jaxrecon.report import fmt_value as _g

VECTOR_KEYS = ("mean_best5_dist", "median_dist", "n_close", "data_radius")
IMAGE_KEYS = ("n_good_ssim_0.4", "mean_top10_ssim", "clip_n_good_ssim_0.4", "clip_mean_top10_ssim",
              "clip_n_good_beating_mean_image", "clip_n_good_beating_heldout", "clip_mean_image_n_good")

# The studies' attack: a small sweep on weights rescaled to norm 10 (see docs/noprior.md).
STUDY_ATTACK = attack_job.ReconstructConfig(attack=AttackConfig(steps=1000), sweep=SweepConfig(configs=4),
                                            theta_norm=10.0)


def _finite_or_none(values, fn):
  finite = [float(v) for v in values if np.isfinite(v)]
  return fn(finite) if finite else None


def _row(final_loss, final_stat, pool_size: int, wall_s: float, images: bool,
         nums_images: Optional[evaluate.ImageNumbers], nums_vectors: Optional[evaluate.VectorNumbers]) -> dict:
  """The numbers a study row keeps (the JSON edge of the typed attack results).

  Every key of the data's kind (`images`) is present; a value the attack could not produce (every
  configuration diverged) is None, shown as 'diverged' in headlines and as a gap in figures."""
  row = {"best_final_loss": _finite_or_none(final_loss, min),
         "median_final_loss": _finite_or_none(final_loss, lambda v: float(np.median(v))),
         "best_final_stat": _finite_or_none(final_stat, min), "pool_size": pool_size, "wall_s": wall_s}
  if not images:
    row.update({k: None if nums_vectors is None else getattr(nums_vectors, k) for k in VECTOR_KEYS})
    return row
  row.update({k: None for k in IMAGE_KEYS})
  if nums_images is not None:
    mm, c = nums_images.minmax, nums_images.clip
    row.update({"n_good_ssim_0.4": mm.n_good, "mean_top10_ssim": mm.mean_top10_ssim,
                "clip_n_good_ssim_0.4": c.n_good, "clip_mean_top10_ssim": c.mean_top10_ssim,
                "clip_n_good_beating_mean_image": c.n_good_beating.get("mean_image"),
                "clip_n_good_beating_heldout": c.n_good_beating.get("heldout"),
                "clip_mean_image_n_good": c.baselines["mean_image"].n_good if "mean_image" in c.baselines
                else None})
  return row


def _attack_numbers(o: attack_job.AttackOutcome, images: bool) -> dict:
  return _row(o.final_loss, o.final_stat, o.pool_size, o.wall_s, images, o.images, o.vectors)


def _credit_numbers(cr: Optional[dict]) -> dict:
  """The recovery measure's count beside every null's largest (jaxrecon.credit), for a study's row."""
  if not cr:
    return {"credited": None, "credit_nulls_max": None, "credit_beats_every_null": None}
  return {"credited": cr["attack"]["n_credited"],
          "credit_nulls_max": {k: v["n_credited_max"] for k, v in cr["nulls"].items()},
          "credit_beats_every_null": cr["beats_every_null"]}


def _finish(out_dir, rows, summary, plot, log):
  wd.write_jsonl(os.path.join(out_dir, "metrics.jsonl"), rows)
  summary["rows"] = rows
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  plot()
  log(summary["headline"])
  return summary


def _start(out_dir: str, record: dict) -> None:
  os.makedirs(out_dir, exist_ok=True)
  wd.write_json(os.path.join(out_dir, "config.json"), record)


# ------------------------------------------------------------------------------------------------ radius


@dataclasses.dataclass(frozen=True)
class RadiusStudyConfig:
  """The radius study.

  Attributes:
    radii: Initialization spheres, in units of the data's RMS norm (1 = the right prior for sphere data).
    reconstruct: The attack job (its prior is replaced by 'sphere' and its sweep's radii by `radii`).
    seed: Seed of the sweep and the candidates.
  """
  radii: tuple = (1.0, 2.0, 4.0, 8.0, 16.0)
  reconstruct: attack_job.ReconstructConfig = STUDY_ATTACK
  seed: int = 0

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run."""
    validation.each_positive(self, "radii")
    self.reconstruct.validate()


def _by_radius(ds, workdir: str, config: attack_job.ReconstructConfig, radius: float, wall_s: float) -> dict:
  """One radius's configurations of the joint sweep, pooled and evaluated on their own."""
  a = wd.read_npz(os.path.join(workdir, "candidates.npz"))
  sel = np.isclose(a["hyper_radius"], radius * data_lib.rms_radius(ds.x_train), rtol=1e-9)
  pool, _, _ = evaluate.pool_candidates(a["x"][sel], a["loss"][sel], config.pool_top)
  images = bool(ds.image_shape)
  nums_i = nums_v = None
  if pool.shape[0] and images:
    nums_i = evaluate.image_numbers(ds.x_train, pool, ds.mean - ds.offset, tuple(ds.image_shape), ds.x_test,
                                    half_res=config.half_res, window=config.ssim_window, sigma=config.ssim_sigma)
  elif pool.shape[0]:
    nums_v = evaluate.vector_numbers(ds.x_train, pool, config.close_tol, data_lib.rms_radius(ds.x_train))
  return _row(a["loss"][sel], a["stat"][sel], int(pool.shape[0]), wall_s, images, nums_i, nums_v)


@wd.job("study_radius", "out_dir")
def run_radius(config: RadiusStudyConfig, train_workdir: str, out_dir: str, log: Callable = print) -> dict:
  """The paper's synthetic experiment: candidates on spheres of growing radius, no box prior, one sweep."""
  _, ds, _ = train_job.load_run(train_workdir)
  data_radius = data_lib.rms_radius(ds.x_train)
  _start(out_dir, {"study": config, "train_workdir": train_workdir})
  rc = config.reconstruct
  rc = dataclasses.replace(rc, attack=dataclasses.replace(rc.attack, prior="sphere"),
                           sweep=dataclasses.replace(rc.sweep, radii=tuple(float(r) for r in config.radii)))
  log(f"== radii {', '.join(f'{r:g}' for r in config.radii)} x data radius, one sweep")
  attack_dir = os.path.join(out_dir, "attack")
  o = attack_job.run(rc, train_workdir, attack_dir, key=jax.random.key(config.seed), log=log)
  rows = [{"radius": r, **_by_radius(ds, attack_dir, rc, r, o.wall_s)} for r in config.radii]
  vec = not ds.image_shape
  key_metric = "mean_best5_dist" if vec else "clip_mean_top10_ssim"
  summary = {"train_workdir": train_workdir, "data_radius": data_radius, "metric": key_metric}
  summary["headline"] = "radius -> (best final attack loss, {}): ".format(key_metric) + ", ".join(
      f"{r['radius']:g}: ({_g(r['best_final_loss'])}, {_g(r[key_metric])})" for r in rows)
  return _finish(out_dir, rows, summary, lambda: plotting_studies.radius_study(
      rows, key_metric, data_radius, vec, os.path.join(out_dir, "radius.png")), log)


# ------------------------------------------------------------------------------------ training length


@dataclasses.dataclass(frozen=True)
class LengthStudyConfig:
  """Attacks every checkpoint with training loss <= max_loss (or the listed steps), with one sweep."""
  reconstruct: attack_job.ReconstructConfig = STUDY_ATTACK
  max_loss: float = 1e-2
  steps: tuple = ()
  seed: int = 0

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run."""
    validation.positive(self, "max_loss")
    validation.each_at_least(self, 0, "steps", nonempty=False)
    self.reconstruct.validate()


def _chosen_checkpoints(config: LengthStudyConfig, tcfg, ds, ckpts, train_workdir) -> list:
  chosen = []
  for step, params in ckpts:  # the loss in log space: it underflows long before training ends
    log_loss = float(train.log_loss_fn(params, ds.x_train.astype(params[0]["w"].dtype), ds.y_train, tcfg.loss))
    if (step in config.steps) if config.steps else (step > 0 and log_loss <= np.log(config.max_loss)):
      chosen.append((step, params, log_loss))
  if not chosen:
    raise ValueError(f"no checkpoint of {train_workdir} with loss <= {config.max_loss} (or in {config.steps})")
  return chosen


@wd.job("study_training_length", "out_dir")
def run_training_length(config: LengthStudyConfig, train_workdir: str, out_dir: str,
                        log: Callable = print) -> dict:
  tcfg, ds, ckpts = train_job.load_run(train_workdir)
  chosen = _chosen_checkpoints(config, tcfg, ds, ckpts, train_workdir)
  report = functools.partial(kkt.report, relaxed=True)
  _start(out_dir, {"study": config, "train_workdir": train_workdir})
  rows = []
  for i, (step, params, log_loss) in enumerate(chosen):
    rep = report(params, ds.x_train.astype(params[0]["w"].dtype), ds.y_train)
    log10_loss = log_loss / np.log(10.0)
    log(f"== step {step} (loss 10^{log10_loss:.1f}, eps_rel {float(rep.eps_rel):.4f}) ({i + 1}/{len(chosen)})")
    o = attack_job.run(dataclasses.replace(config.reconstruct, step=step), train_workdir,
                       os.path.join(out_dir, f"step_{step}"), key=jax.random.key(config.seed), log=log)
    rows.append({"step": step, "loss": float(np.exp(log_loss)), "log10_loss": log10_loss,
                 "eps_rel": float(rep.eps_rel), "delta": float(rep.delta),
                 "eps_rel_relaxed": float(rep.eps_rel_relaxed), **_attack_numbers(o, bool(ds.image_shape))})
  vec = not ds.image_shape
  good = "n_close" if vec else "clip_n_good_beating_heldout"
  summary = {"train_workdir": train_workdir, "metric": good}
  summary["headline"] = f"step -> ({good}, eps_rel): " + ", ".join(
      f"{r['step']}: ({_g(r[good], '')}, {r['eps_rel']:.3f})" for r in rows)
  return _finish(out_dir, rows, summary, lambda: plotting_studies.training_length_study(
      rows, vec, os.path.join(out_dir, "training_length.png")), log)


# ------------------------------------------------------------------------------------------------ offset


@dataclasses.dataclass(frozen=True)
class OffsetStudyConfig:
  """Trains `train` once per offset (added to every input after mean removal) and attacks the last checkpoint
  with `reconstruct` (the usual box prior: the attacker does not know the offset) at every prior weight of
  `prior_weights` (0 = no prior). The evaluation is given the offset (generous to the attacker; min-max SSIM and
  NCC ignore a constant shift anyway). Each row also says how wrong the prior is for the true set: how many
  training points leave the attacker's box and the true set's own prior penalty."""
  train: train.TrainConfig = train.TrainConfig()
  offsets: tuple = (0.0, 0.25, 0.5, 1.0, 2.0)
  reconstruct: attack_job.ReconstructConfig = STUDY_ATTACK
  prior_weights: tuple = (1.0,)
  seed: int = 0

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run."""
    self.train.validate()
    validation.each_at_least(self, float("-inf"), "offsets")
    validation.each_at_least(self, 0, "prior_weights")
    self.reconstruct.validate()


def truth_in_the_box(x_train, attack: AttackConfig) -> dict:
  """How the attacker's box [-box, box] fits the true training set: points with a coordinate outside it,
  coordinates outside it, and the set's own (unweighted) box penalty sum relu(|x| - box)^2: the prior term the
  true set would pay in the attack's loss."""
  x = np.asarray(x_train, np.float64)
  over = np.maximum(np.abs(x) - attack.box, 0.0)
  return {"n_outside_box": int(np.sum(np.any(over > 0, axis=1))), "frac_coords_outside_box": float(np.mean(over > 0)),
          "true_prior_penalty": float(np.sum(over * over))}


@wd.job("study_offset", "out_dir")
def run_offset(config: OffsetStudyConfig, out_dir: str, log: Callable = print,
               train_log: Optional[Callable] = None) -> dict:
  images = data_lib.is_image(config.train.data.name)
  _start(out_dir, {"study": config})
  rows = []
  for i, off in enumerate(config.offsets):
    log(f"== offset {off:g} ({i + 1}/{len(config.offsets)})")
    tcfg = dataclasses.replace(config.train, data=dataclasses.replace(config.train.data, offset=float(off)))
    tdir = os.path.join(out_dir, f"offset_{off:g}", "train")
    try:
      ts = train_job.run(tcfg, tdir, log=train_log or log)
    except train_job.TrainingDiverged as e:  # a large offset makes the inputs ill-conditioned: record, go on
      log(f"WARNING offset {off:g}: {e}")
      rows.append({"offset": off, "prior_weight": None, "train_diverged": str(e)})
      continue
    if not ts.get("train_acc") or ts["train_acc"] < 1.0:
      log(f"WARNING offset {off:g}: training did not separate the data (train acc {ts.get('train_acc')}); the "
          f"attack below targets a network that is not near a KKT point (lower --lr: a large offset makes the "
          f"inputs ill-conditioned)")
    _, ds, _ = train_job.load_run(tdir)
    truth = truth_in_the_box(ds.x_train, config.reconstruct.attack)
    log(f"the attacker's box holds {ds.x_train.shape[0] - truth['n_outside_box']}/{ds.x_train.shape[0]} training "
        f"points; the true set's own prior penalty {truth['true_prior_penalty']:.4g}")
    for w in config.prior_weights:
      rc = dataclasses.replace(config.reconstruct,
                               attack=dataclasses.replace(config.reconstruct.attack, prior_weight=float(w)))
      name = "attack" if len(config.prior_weights) == 1 else f"attack_prior{w:g}"
      o = attack_job.run(rc, tdir, os.path.join(out_dir, f"offset_{off:g}", name),
                         key=jax.random.key(config.seed), log=log)
      rows.append({"offset": off, "prior_weight": float(w), "train_acc": ts.get("train_acc"),
                   "test_acc": ts.get("test_acc"), "eps_rel": ts.get("eps_rel"), **truth,
                   **_attack_numbers(o, images), **_credit_numbers(o.summary.get("credit"))})
  vec = not images
  shown = ("mean_best5_dist", "n_close") if vec else ("clip_mean_top10_ssim", "clip_n_good_beating_heldout")
  summary = {"metrics": list(shown), "train_diverged": [r["offset"] for r in rows if "train_diverged" in r]}
  rows = [r for r in rows if "train_diverged" not in r]
  summary["headline"] = "(offset, prior weight) -> ({}, training points outside the box, true set's prior " \
      "penalty vs the attack's best loss): ".format(", ".join(shown)) + ", ".join(
      f"({r['offset']:g}, {r['prior_weight']:g}): ({_g(r[shown[0]])}, {_g(r[shown[1]], '')}, "
      f"{r['n_outside_box']}, {_g(r['true_prior_penalty'])} vs {_g(r['best_final_loss'])})" for r in rows)
  summary["headline"] += "; recovery measure (credited vs the largest null): " + ", ".join(
      f"offset {r['offset']:g}: {r['credited']} vs {max(r['credit_nulls_max'].values())}" for r in rows
      if r.get("credited") is not None)
  if summary["train_diverged"]:
    summary["headline"] += f"; training diverged at offsets {summary['train_diverged']} (no attack)"
  return _finish(out_dir, rows, summary, lambda: plotting_studies.offset_study(
      rows, vec, os.path.join(out_dir, "offset.png")), log)

"""The audit job: attack a model trained elsewhere (a PyTorch export or a params .npz), write a run folder.

Reads the model with `jaxrecon.models` (a refused architecture is named before anything is written), runs
`jaxrecon.audit.reconstruct`, and, when the auditor holds the training data (an .npz with x, y and optionally
`mean` and `x_heldout`), the KKT residuals of the weights on it and the reference evaluation. Writes config.json,
metrics.jsonl (the sweep's loss terms per segment), candidates.npz (pooled candidates, their configuration,
multipliers and margin ranking), summary.json and curve.png.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import numpy as np

from jaxrecon import audit
from jaxrecon import credit as credit_lib
from jaxrecon import models
from jaxrecon import plotting
from jaxrecon import workdir as wd
from jaxrecon.attack import evaluate
from jaxrecon.attack.loss import AttackConfig
from jaxrecon.attack.sweep import SweepConfig, flat_rows


@dataclasses.dataclass(frozen=True)
class AuditConfig:
  """The audit job.

  Attributes:
    model: The model: a PyTorch state_dict exported to .npz or .safetensors (nn.Linear layers, ReLU between).
    data: Optional .npz with the training set x, y (and optionally mean, x_heldout) for the evaluation.
    n_train: Training-set size (the attack uses 2 n candidates per configuration; 0 = from --data).
    image_shape: Image shape H,W,C of the inputs (empty = vectors: evaluated by L2 distance).
    pool_top: Pool the candidates of this many best configurations (0 = all finite).
    close_tol: Vectors: a training point counts as reconstructed within close_tol x the data's RMS norm.
    attack: What is fixed across the sweep (AttackConfig).
    sweep: Which configurations run (SweepConfig).
  """
  model: str = ""
  data: str = ""
  n_train: int = 0
  image_shape: tuple = ()
  pool_top: int = 0
  close_tol: float = 0.1
  attack: AttackConfig = AttackConfig()
  sweep: SweepConfig = SweepConfig()


def _load(config: AuditConfig, log=print):
  if not config.model:
    raise ValueError("--model is required (a .npz or .safetensors PyTorch export)")
  params = models.load_torch(config.model)
  data = None
  if config.data:
    x, y = models.read_xy_npz(config.data)
    with np.load(config.data, allow_pickle=False) as z:
      extra = {k: np.asarray(z[k], np.float64) for k in ("mean", "x_heldout") if k in z.files}
    if x.shape[1] != params[0]["w"].shape[0]:
      raise ValueError(f"{config.data}: inputs of size {x.shape[1]}, the model takes {params[0]['w'].shape[0]}")
    data = dict(x=x, y=audit.binary_labels(params, y, log=log), **extra)
  n = config.n_train or (0 if data is None else data["x"].shape[0])
  if not n and not config.attack.m:
    raise ValueError("give --n_train (or --data, or --m)")
  if config.image_shape and len(config.image_shape) != 3:
    raise ValueError(f"--image_shape must be height,width,channels (e.g. 28,28,1); got {config.image_shape}")
  if config.image_shape and int(np.prod(config.image_shape)) != params[0]["w"].shape[0]:
    raise ValueError(f"--image_shape {config.image_shape} does not hold {params[0]['w'].shape[0]} inputs")
  return params, data, n


def _evaluation(config, rec, data) -> dict:
  if config.image_shape:
    nums = audit.evaluate_images(rec, data["x"], tuple(config.image_shape), mean=data.get("mean"),
                                 x_heldout=data.get("x_heldout"))
    mm = nums.minmax
    return {"n_good_ssim_0.4": mm.n_good, "mean_top10_ssim": mm.mean_top10_ssim,
            "n_good_beating_mean_image": mm.n_good_beating.get("mean_image"),
            "n_good_beating_heldout": mm.n_good_beating.get("heldout"),
            "baselines": {k: b._asdict() for k, b in mm.baselines.items()},
            "curve": evaluate.reconstruction_curve(mm.evaluation.ssim_train).tolist()}
  v = audit.evaluate_vectors(rec, data["x"], config.close_tol)
  out = {"n_close": v.n_close, "close_tol": v.close_tol, "mean_best5_dist": v.mean_best5_dist,
         "median_dist": v.median_dist, "data_radius": v.data_radius,
         "curve": (np.sort(v.dist_train) / v.data_radius).tolist()}
  if "x_heldout" in data:  # the chance level: held-out points (as many as the pool) standing in for candidates
    null = evaluate.vector_numbers(data["x"], data["x_heldout"][:rec.candidates.shape[0]], config.close_tol,
                                   v.data_radius)
    out["heldout"] = {"n_close": null.n_close, "mean_best5_dist": null.mean_best5_dist}
  return out


def _credit(config, rec, data) -> dict:
  """The recovery measure (jaxrecon.credit): half of x_heldout as the reference competitors, half as the
  held-out null; without x_heldout only the mixture and mean nulls run (condition 1 then has no held-out
  competitor: said in the report)."""
  held = data.get("x_heldout")
  half = 0 if held is None else held.shape[0] // 2
  rule = (credit_lib.Rule(similarity="ncc", channels=int(config.image_shape[-1])) if config.image_shape
          else credit_lib.Rule())
  rep = credit_lib.report(jax.random.key(config.sweep.seed), rec.candidates, data["x"],
                          None if held is None else held[:half], x_null=None if held is None else held[half:],
                          rule=rule, units=rec.config_index,
                          labels=data["y"] if np.ndim(data["y"]) == 1 else None)
  rep["heldout_reference"] = half
  if held is None:
    rep["note"] = "no x_heldout given: no held-out competitor and no held-out null (weaker)"
  return rep


@wd.job("audit", "workdir")
def run(config: AuditConfig, workdir: str, log: Callable = print) -> dict:
  """Attacks config.model; evaluates on config.data when given; writes `workdir`."""
  params, data, n = _load(config, log)  # every input is read and checked before anything is written
  os.makedirs(workdir, exist_ok=True)
  wd.write_json(os.path.join(workdir, "config.json"), config)
  log(f"auditing {config.model}: {sum(int(np.size(v)) for p in params for v in p.values()):,} parameters, "
      f"{len(params)} layers; {config.sweep.configs} configurations x {config.attack.steps} steps")
  rec = audit.reconstruct(jax.random.key(config.sweep.seed), params, n_train=n or None, attack=config.attack,
                          sweep=config.sweep, pool_top=config.pool_top, log=log)
  wd.write_jsonl(os.path.join(workdir, "metrics.jsonl"), [f for r in rec.sweep.history for f in flat_rows(r)])
  wd.write_npz(os.path.join(workdir, "candidates.npz"), candidates=rec.candidates,
               config_index=rec.config_index, multipliers=rec.multipliers, margin_score=rec.margin_score,
               loss=rec.loss, **{f"hyper_{k}": np.asarray(v) for k, v in rec.hyper._asdict().items()})
  summary = {"pool_size": int(rec.candidates.shape[0]), "configs": rec.hyper.size,
             "diverged": int(np.sum(~np.isfinite(rec.loss))), "wall_s": rec.sweep.wall_s}
  if data is not None and rec.candidates.shape[0]:
    kkt = audit.kkt_residuals(params, data["x"], data["y"])
    summary["kkt"] = {k: kkt[k] for k in ("eps_rel", "delta", "support_size")}
    summary["evaluation"] = _evaluation(config, rec, data)
    summary["credit"] = _credit(config, rec, data)
    ev = summary["evaluation"]
    summary["headline"] = (f"eps_rel {kkt['eps_rel']:.3f} on the given training set; " + (
        f"{ev['n_good_ssim_0.4']} of {data['x'].shape[0]} with SSIM > 0.4 ({ev['n_good_beating_mean_image']} "
        f"above the mean image)" if config.image_shape else
        f"{ev['n_close']} of {data['x'].shape[0]} within {config.close_tol:g} x the data radius, best five at "
        f"{ev['mean_best5_dist']:.3f}" + (f" (chance level, held-out points: {ev['heldout']['n_close']} within, best "
                                          f"five at {ev['heldout']['mean_best5_dist']:.3f})" if "heldout" in ev
                                          else " (give x_heldout in --data for the chance level)")))
    summary["headline"] += "; recovery measure: " + credit_lib.summary_line(summary["credit"], "configuration")
    plotting.curves({"attack": ev["curve"]}, "SSIM with the NCC-nearest candidate" if config.image_shape
                    else "distance to the closest candidate / data radius", os.path.join(workdir, "curve.png"),
                    threshold=evaluate.GOOD_SSIM if config.image_shape else config.close_tol)
  else:
    summary["headline"] = (f"{summary['pool_size']} candidates from {summary['configs']} configurations (no "
                           "training data given: rank them by candidates.npz's margin_score)")
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  log(summary["headline"])
  return summary

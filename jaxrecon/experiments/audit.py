"""The audit job: attack a model trained elsewhere (a PyTorch export or a params .npz), write a run folder.

Reads the model with `jaxrecon.models` (a refused architecture is named before anything is written), runs
`jaxrecon.audit.reconstruct` under a named protocol, and, when the auditor holds the training data (an .npz
with x, y and optionally `mean` and `x_heldout`): the KKT residuals of the weights on it, the recovery measure
beside its nulls, the reference's SSIM evaluation beside its baselines, and membership inference in the
auditors' form. Writes config.json, metrics.jsonl, candidates.npz, summary.json, report.md (a verdict a
reviewer can read first), curve.png, credited.png (images), roc.png and membership_scores.npz.
"""

from __future__ import annotations

import dataclasses
import os
import types
from typing import Callable

import jax
import numpy as np

from jaxrecon import audit
from jaxrecon import credit as credit_lib
from jaxrecon import models
from jaxrecon import plotting
from jaxrecon import stats
from jaxrecon import validation
from jaxrecon import workdir as wd
from jaxrecon.attack import evaluate
from jaxrecon.attack import protocols
from jaxrecon.attack.loss import AttackConfig
from jaxrecon.attack.sweep import SweepConfig, flat_rows
from jaxrecon.experiments import attack_report


@dataclasses.dataclass(frozen=True)
class AuditConfig:
  """The audit job.

  Attributes:
    model: The model: a torch.save'd state_dict (.pt), .safetensors or .npz (nn.Linear layers, ReLU between).
    data: Optional .npz with the training set x, y (and optionally mean, x_heldout) for the evaluation.
    protocol: The attack's preset (fast | reference: jaxrecon.attack.protocols); the other fields override it.
    theta_norm: Rescale the weights to this norm before the attack (0 = as trained).
    n_train: Training-set size (the attack uses 2 n candidates per configuration; 0 = from --data).
    image_shape: Image shape H,W,C of the inputs (empty = vectors: evaluated by L2 distance).
    pool_top: Pool the candidates of this many best configurations (0 = all finite).
    close_tol: Vectors: a training point counts as reconstructed within close_tol x the data's RMS norm.
    delta: The delta of the membership epsilon lower bound.
    figure_pairs: Training images shown in credited.png.
    max_model_mb: The most megabytes of weights the model file may declare (checked before anything is read).
    attack: What is fixed across the sweep (AttackConfig).
    sweep: Which configurations run (SweepConfig).
  """
  model: str = ""
  data: str = ""
  protocol: str = protocols.DEFAULT
  theta_norm: float = protocols.PROTOCOLS[protocols.DEFAULT].theta_norm
  n_train: int = 0
  image_shape: tuple = ()
  pool_top: int = 0
  close_tol: float = 0.1
  delta: float = 1e-5
  figure_pairs: int = 60
  max_model_mb: int = models.MAX_MODEL_BYTES >> 20
  attack: AttackConfig = protocols.PROTOCOLS[protocols.DEFAULT].attack
  sweep: SweepConfig = protocols.PROTOCOLS[protocols.DEFAULT].sweep


  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run (the files are checked when read, by `run`)."""
    validation.check(bool(self.model), "--model is required (a .npz or .safetensors PyTorch export)")
    validation.one_of(self, "protocol", protocols.PROTOCOLS)
    validation.at_least(self, 0, "theta_norm", "n_train", "pool_top", "figure_pairs")
    validation.positive(self, "close_tol", "delta", "max_model_mb")
    validation.check(not self.image_shape or (len(self.image_shape) == 3 and min(self.image_shape) >= 1),
                     f"--image_shape must be height,width,channels (e.g. 28,28,1); got {self.image_shape}")
    self.attack.validate()
    self.sweep.validate()


def preset(name: str) -> AuditConfig:
  """The audit config of protocol `name` (what `jaxrecon-audit --protocol=name` starts from)."""
  p = protocols.get(name)
  return AuditConfig(protocol=name, theta_norm=p.theta_norm, attack=p.attack, sweep=p.sweep)


def _load(config: AuditConfig, log=print):
  params = models.load_torch(config.model, max_bytes=config.max_model_mb << 20)
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
  if config.image_shape and int(np.prod(config.image_shape)) != params[0]["w"].shape[0]:
    raise ValueError(f"--image_shape {config.image_shape} does not hold {params[0]['w'].shape[0]} inputs")
  return params, data, n


def _evaluation(config, rec, data) -> tuple:
  """(the reference evaluation's numbers, {name: curve} of the attack and of the baselines no attack needs)."""
  if config.image_shape:
    nums = audit.evaluate_images(rec, data["x"], tuple(config.image_shape), mean=data.get("mean"),
                                 x_heldout=data.get("x_heldout"))
    mm = nums.minmax
    curve = evaluate.reconstruction_curve(mm.evaluation.ssim_train).tolist()
    return ({"n_good_ssim_0.4": mm.n_good, "mean_top10_ssim": mm.mean_top10_ssim,
             "n_good_beating_mean_image": mm.n_good_beating.get("mean_image"),
             "n_good_beating_heldout": mm.n_good_beating.get("heldout"),
             "baselines": {k: b._asdict() for k, b in mm.baselines.items()}, "curve": curve},
            {"attack": curve, **{k.replace("_", " "): list(v) for k, v in mm.baseline_curves.items()}})
  v = audit.evaluate_vectors(rec, data["x"], config.close_tol)
  curve = (np.sort(v.dist_train) / v.data_radius).tolist()
  out = {"n_close": v.n_close, "close_tol": v.close_tol, "mean_best5_dist": v.mean_best5_dist,
         "median_dist": v.median_dist, "data_radius": v.data_radius, "curve": curve}
  curves = {"attack": curve}
  if "x_heldout" in data:  # the chance level: held-out points (as many as the pool) standing in for candidates
    null = evaluate.vector_numbers(data["x"], data["x_heldout"][:rec.candidates.shape[0]], config.close_tol,
                                   v.data_radius)
    out["heldout"] = {"n_close": null.n_close, "mean_best5_dist": null.mean_best5_dist}
    curves["heldout"] = (np.sort(null.dist_train) / v.data_radius).tolist()
  curves["mean"] = (np.sort(np.linalg.norm(data["x"] - data["x"].mean(0), axis=1)) / v.data_radius).tolist()
  return out, curves


def _credit(config, rec, data, workdir) -> dict:
  """The recovery measure (jaxrecon.credit): half of x_heldout as the reference competitors, half as the
  held-out null, intervals over the sweep's configurations, and (images) the pairs figure; without x_heldout
  only the mixture and mean nulls run (condition 1 then has no held-out competitor: said in the report)."""
  held = data.get("x_heldout")
  y = data["y"] if np.ndim(data["y"]) == 1 else None
  if held is None or held.shape[0] < 2:
    rep = credit_lib.report(jax.random.key(config.sweep.seed), rec.candidates, data["x"], None,
                            rule=credit_lib.rule_for(config.image_shape or None), units=rec.config_index,
                            labels=y)
    rep["note"] = "no x_heldout given: no held-out competitor and no held-out null (weaker)"
    return rep
  ds = types.SimpleNamespace(x_train=data["x"], y_train=data["y"], x_test=held,
                             image_shape=tuple(config.image_shape) or None,
                             mean=data.get("mean", np.zeros(data["x"].shape[1])), offset=0.0)
  arrays: dict = {}
  rep = attack_report.credit_report(ds, rec.candidates, rec.config_index, arrays, seed=config.sweep.seed)
  if config.image_shape and config.figure_pairs:
    attack_report.credited_pairs(ds, rec.candidates, arrays, config.figure_pairs, rep,
                                 os.path.join(workdir, "credited.png"))
  return rep


def _membership(config, params, data, q_min, workdir) -> dict:
  """Membership inference from the outputs alone (2410.07632's |Phi(x)| / margin), members = the training
  set, non-members = x_heldout, in the auditors' form: AUC, TPR at FPR 1% / 0.1% with the false-positive
  counts and exact intervals, an (eps, delta) lower bound; the scores written for jax_privacy."""
  margin = q_min if q_min > 0 else 1.0
  s_in = audit.membership_scores(params, data["x"], margin)
  s_out = audit.membership_scores(params, data["x_heldout"], margin)
  wd.write_npz(os.path.join(workdir, "membership_scores.npz"), in_scores=s_in, out_scores=s_out)
  fpr, tpr = stats.roc(s_in, s_out)
  out = {"score": "|Phi(x)| / q_min" if q_min > 0 else "|Phi(x)| (q_min <= 0: unscaled)",
         "n_members": int(s_in.size), "n_nonmembers": int(s_out.size),
         "auc": stats.auc(np.concatenate([s_in, s_out]), np.arange(s_in.size + s_out.size) < s_in.size),
         "tpr_at_fpr": {f"{f:g}": stats.tpr_at_fpr_exact(s_in, s_out, f) for f in (0.01, 0.001)},
         "epsilon_lower_bound": stats.epsilon_lower_bound(s_in, s_out, config.delta)}
  plotting.roc(fpr, tpr, out["auc"], s_in.size, s_out.size, "|Phi| / q_min", os.path.join(workdir, "roc.png"))
  return out


def _verdict(summary: dict, n: int) -> str:
  """One paragraph a reviewer reads first: reconstruction, membership and KKT, each with its uncertainty."""
  parts = []
  cr = summary.get("credit")
  if cr:
    nulls = ", ".join(f"{k.replace('_', ' ')} {v['n_credited_max']}" for k, v in cr["nulls"].items())
    per = cr.get("per_unit")
    per_s = (f"; per attack configuration {per['mean']:.1f} [{per['ci95_over_units'][0]:.1f}, "
             f"{per['ci95_over_units'][1]:.1f}] (95% bootstrap over {per['n_units']} configurations)") if per else ""
    k = cr["attack"]["n_credited"]
    if cr["beats_every_null"]:
      parts.append(f"RECONSTRUCTION: {k} of {n} training points are recovered from the weights alone (a candidate "
                   f"closer to that point than to every other training and held-out point), more than any null "
                   f"gives without an attack (at most: {nulls}){per_s}.")
    else:
      parts.append(f"NO RECONSTRUCTION BEYOND CHANCE: {k} of {n} training points credited, not more than the "
                   f"nulls give without an attack (at most: {nulls}){per_s}.")
    if cr.get("note"):
      parts.append(f"({cr['note']}.)")
  mem = summary.get("membership")
  if mem:
    t = mem["tpr_at_fpr"]["0.01"]
    e = mem["epsilon_lower_bound"]
    parts.append(f"MEMBERSHIP from the outputs alone ({mem['score']}): AUC {mem['auc']:.3f} (0.5 is chance); at "
                 f"FPR <= 1% ({t['fp']} of {t['n_nonmembers']} non-members) TPR {t['tpr']:.3f} "
                 f"[{t['tpr_interval'][0]:.3f}, {t['tpr_interval'][1]:.3f}] (exact 95%); any "
                 f"(eps, {e['delta']:g})-DP training that produced these scores has eps >= {e['epsilon']:.2f} "
                 f"(95% confidence" + (", i.e. the scores rule out no eps)" if e["epsilon"] == 0 else ")") + ".")
  kkt = summary.get("kkt")
  if kkt:
    parts.append(f"KKT: the weights' exact eps_rel on this training set is {kkt['eps_rel']:.3f} (0: a KKT point "
                 f"of the max-margin problem, the attack's premise; 1: no closer than zero multipliers), "
                 f"support {kkt['support_size']} of {n}, q_min {kkt['q_min']:.3g}.")
  parts.append(f"Protocol {summary['protocol']}: {summary['configs']} configurations x {summary['steps']} steps "
               f"in {summary['arithmetic']['attack']}, weights x {summary['theta_scale']:.3g}; KKT in "
               f"{summary['arithmetic']['kkt']}.")
  return " ".join(parts)


def _report_md(summary: dict, config: AuditConfig, figures: list) -> str:
  lines = [f"# Audit of {config.model}", "", summary["verdict"], ""]
  if "credit" in summary:
    cr = summary["credit"]
    lines += ["## Reconstruction (recovery measure, jaxrecon.credit)", "", "| pool | credited |", "|---|---|",
              f"| attack ({cr['pool_size']} candidates) | {cr['attack']['n_credited']} of {cr['n_train']} |"]
    lines += [f"| null: {k.replace('_', ' ')} (max over draws) | {v['n_credited_max']} |"
              for k, v in cr["nulls"].items()]
    ev = summary["evaluation"]
    lines += ["", "Reference evaluation (Haim et al.): " + (
        f"{ev['n_good_ssim_0.4']} with min-max SSIM > 0.4; baselines " + ", ".join(
            f"{k.replace('_', ' ')} {v['n_good']}" for k, v in ev["baselines"].items())
        if "n_good_ssim_0.4" in ev else f"{ev['n_close']} within {ev['close_tol']:g} x the data radius" + (
            f" (held-out points: {ev['heldout']['n_close']})" if "heldout" in ev else "")), ""]
  if "membership" in summary:
    m = summary["membership"]
    lines += ["## Membership inference", "", f"AUC {m['auc']:.4f}; members {m['n_members']}, non-members "
              f"{m['n_nonmembers']}.", "", "| FPR at most | false positives | TPR | exact 95% interval |",
              "|---|---|---|---|"]
    lines += [f"| {f} | {t['fp']} | {t['tpr']:.4f} | [{t['tpr_interval'][0]:.4f}, {t['tpr_interval'][1]:.4f}] |"
              for f, t in m["tpr_at_fpr"].items()]
    e = m["epsilon_lower_bound"]
    lines += ["", f"Epsilon lower bound at delta {e['delta']:g}: {e['epsilon']:.3f} (Clopper-Pearson, significance "
              f"{e['significance']:g}, Bonferroni over {e['thresholds_tried']} thresholds). The scores are in "
              "membership_scores.npz: `jax_privacy.auditing.CanaryScoreAuditor(z['in_scores'], z['out_scores'])`.",
              ""]
  lines += ["## Files", ""] + [f"- {f}" for f in figures] + ["- summary.json, candidates.npz, metrics.jsonl", ""]
  return "\n".join(lines)


@wd.job("audit", "workdir")
def run(config: AuditConfig, workdir: str, log: Callable = print) -> dict:
  """Attacks config.model; evaluates on config.data when given; writes `workdir`."""
  params, data, n = _load(config, log)  # every input is read and checked before anything is written
  os.makedirs(workdir, exist_ok=True)
  wd.write_json(os.path.join(workdir, "config.json"), config)
  log(f"auditing {config.model}: {sum(int(np.size(v)) for p in params for v in p.values()):,} parameters, "
      f"{len(params)} layers; protocol {config.protocol}: {config.sweep.configs} configurations x "
      f"{config.attack.steps} steps in {config.attack.dtype}")
  rec = audit.reconstruct(jax.random.key(config.sweep.seed), params, n_train=n or None, protocol=config.protocol,
                          attack=config.attack, sweep=config.sweep, theta_norm=config.theta_norm,
                          pool_top=config.pool_top, log=log)
  wd.write_jsonl(os.path.join(workdir, "metrics.jsonl"), [f for r in rec.sweep.history for f in flat_rows(r)])
  wd.write_npz(os.path.join(workdir, "candidates.npz"), candidates=rec.candidates,
               config_index=rec.config_index, multipliers=rec.multipliers, margin_score=rec.margin_score,
               loss=rec.loss, **{f"hyper_{k}": np.asarray(v) for k, v in rec.hyper._asdict().items()})
  summary = {"pool_size": int(rec.candidates.shape[0]), "configs": rec.hyper.size,
             "diverged": int(np.sum(~np.isfinite(rec.loss))), "wall_s": rec.sweep.wall_s,
             "protocol": config.protocol, "steps": config.attack.steps, "theta_scale": rec.theta_scale,
             "arithmetic": {"attack": config.attack.dtype, "kkt": str(np.asarray(params[0]["w"]).dtype)}}
  figures = []
  if data is not None and rec.candidates.shape[0]:
    kkt = audit.kkt_residuals(params, data["x"], data["y"])
    summary["kkt"] = {k: kkt[k] for k in ("eps_rel", "delta", "support_size", "q_min")}
    summary["evaluation"], curves = _evaluation(config, rec, data)
    summary["credit"] = _credit(config, rec, data, workdir)
    if config.image_shape and "heldout_reference" in summary["credit"] and config.figure_pairs:
      figures.append("credited.png: the best-matched training images under their candidates (credited in green)")
    if "x_heldout" in data:
      summary["membership"] = _membership(config, params, data, kkt["q_min"], workdir)
      figures.append("roc.png: membership ROC (log-log), membership_scores.npz: the scores")
    plotting.curves({"attack": curves.pop("attack")}, "SSIM with the NCC-nearest candidate" if config.image_shape
                    else "distance to the closest candidate / data radius", os.path.join(workdir, "curve.png"),
                    threshold=evaluate.GOOD_SSIM if config.image_shape else config.close_tol, baselines=curves)
    figures.append("curve.png: each training point's best match, sorted, beside the baselines no attack needs")
    summary["headline"] = (f"eps_rel {kkt['eps_rel']:.3f}; recovery measure: "
                           + credit_lib.summary_line(summary["credit"], "configuration"))
    summary["verdict"] = _verdict(summary, data["x"].shape[0])
  else:
    summary["headline"] = (f"{summary['pool_size']} candidates from {summary['configs']} configurations (no "
                           "training data given: rank them by candidates.npz's margin_score)")
    summary["verdict"] = ("No training data given (--data): the candidates are in candidates.npz, ranked by "
                          "margin_score without any data; nothing can be certified without the training set.")
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  wd.atomic_write(os.path.join(workdir, "report.md"), lambda f: f.write(_report_md(summary, config, figures)))
  log(summary["verdict"])
  log(f"report: {os.path.join(workdir, 'report.md')}")
  return summary

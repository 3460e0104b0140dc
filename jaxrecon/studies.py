"""The attack studies of "No Prior, No Leakage": prior radius, training length and a secret offset.

Each study runs the reconstruction job (`reconstruct.run`) several times with ONE sweep (same key, same
configurations, same step budget), changing one thing, and gathers the headline numbers into a table:
- `run_radius`: candidates start on spheres of radius r (no box penalty); final attack loss and the mean
  distance of the best 5 reconstructions to the training set against r. The paper's claim: the loss stays
  low for every r while the reconstructions move away with r (no prior, no reliable reconstruction).
- `run_training_length`: the checkpoints of one training run (loss <= `max_loss`); good reconstructions,
  eps_rel and delta per checkpoint. The claim: longer training, less leakage.
- `run_offset`: train with a secret constant offset added to every input (after mean removal), attack with
  the usual box prior; SSIM and good counts against the offset. The claim: the offset defends.
Every study writes its own workdir: config.json, metrics.jsonl (one row per setting), summary.json (the table
and a headline), a PNG, and the full attack workdir of every setting under it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Optional

import jax
import numpy as np

from jaxrecon import attack
from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import plotting
from jaxrecon import reconstruct
from jaxrecon import train
from jaxrecon import workdir as wd


VECTOR_KEYS = ("mean_best5_dist", "median_dist", "n_close", "data_radius")
IMAGE_KEYS = ("n_good_ssim_0.4", "mean_top10_ssim", "clip_n_good_ssim_0.4", "clip_mean_top10_ssim",
              "clip_n_good_beating_mean_image", "clip_n_good_beating_heldout", "clip_mean_image_n_good")


def _attack_numbers(s: dict, images: bool) -> dict:
  """The numbers a study row keeps from an attack summary (images: SSIM counts; vectors: distances).

  Every key of the data's kind is present; a value the attack could not produce (every configuration
  diverged) is None, shown as 'diverged' in headlines and as a gap in figures."""
  finite = [v for v in s.get("final_loss", []) if v is not None and np.isfinite(v)]
  row = {"best_final_loss": min(finite) if finite else None,
         "median_final_loss": float(np.median(finite)) if finite else None,
         "best_final_stat": min((v for v in s.get("final_stat", []) if v is not None and np.isfinite(v)),
                                default=None),
         "pool_size": s.get("pool_size"), "wall_s": s.get("wall_s")}
  if not images:
    row.update({k: s.get(k) for k in VECTOR_KEYS})
    return row
  c = s.get("clip") or {}
  row.update({k: None for k in IMAGE_KEYS})
  if c:
    row.update({"n_good_ssim_0.4": s["n_good_ssim_0.4"], "mean_top10_ssim": s["mean_top10_ssim"],
                "clip_n_good_ssim_0.4": c["n_good_ssim_0.4"], "clip_mean_top10_ssim": c["mean_top10_ssim"],
                "clip_n_good_beating_mean_image": c["n_good_beating_mean_image"],
                "clip_n_good_beating_heldout": c["n_good_beating_heldout"],
                "clip_mean_image_n_good": c["baselines"].get("mean_image", {}).get("n_good_ssim_0.4")})
  return row


def _g(v, fmt: str = ".3g") -> str:
  """A number for a headline; None (no finite result) reads 'diverged'."""
  return "diverged" if v is None else format(v, fmt)


def _vals(rows: list, key: str) -> np.ndarray:
  """A column for a figure, None as NaN (a gap)."""
  return np.array([np.nan if r[key] is None else r[key] for r in rows], float)


def _finish(out_dir, rows, summary, plot, log):
  wd.write_jsonl(os.path.join(out_dir, "metrics.jsonl"), rows)
  summary["rows"] = rows
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  plot()
  log(summary["headline"])
  return summary


def _axes(n: int, width: float = 4.6):
  fig, axes = plotting.subplots(1, n, figsize=(width * n, 3.6))
  return fig, list(np.atleast_1d(axes))


# --------------------------------------------------------------------------------------------- radius


def _sphere_attack(config: reconstruct.ReconstructConfig, r: float) -> reconstruct.ReconstructConfig:
  return dataclasses.replace(config, attack=dataclasses.replace(config.attack, prior="sphere",
                                                                sphere_radius=float(r)))


@dataclasses.dataclass(frozen=True)
class RadiusStudyConfig:
  """radii: initialization spheres, in units of the data's RMS norm (so 1 = the right prior for sphere data).
  reconstruct: the attack job (its prior is replaced by 'sphere' of each radius)."""
  radii: tuple = (1.0, 2.0, 4.0, 8.0, 16.0)
  reconstruct: reconstruct.ReconstructConfig = reconstruct.ReconstructConfig(
      attack=attack.AttackConfig(steps=1000), sweep=reconstruct.SweepConfig(configs=4), theta_norm=10.0)
  seed: int = 0


@wd.job("study_radius", "out_dir")
def run_radius(config: RadiusStudyConfig, train_workdir: str, out_dir: str, log: Callable = print) -> dict:
  """The paper's synthetic experiment: candidates on spheres of growing radius, no box prior."""
  if not config.radii or min(config.radii) <= 0:
    raise ValueError(f"radii must be positive, got {config.radii}")
  _, ds, _ = train.load_run(train_workdir)
  data_radius = data_lib.rms_radius(ds.x_train)
  os.makedirs(out_dir, exist_ok=True)
  wd.write_json(os.path.join(out_dir, "config.json"), {"study": config, "train_workdir": train_workdir})
  rows = []
  for i, r in enumerate(config.radii):
    log(f"== radius {r:g} x data radius ({i + 1}/{len(config.radii)})")
    s = reconstruct.run(_sphere_attack(config.reconstruct, r * data_radius), train_workdir,
                        os.path.join(out_dir, f"r{r:g}"), key=jax.random.key(config.seed), log=log)
    rows.append({"radius": r, **_attack_numbers(s, images=bool(ds.image_shape))})
  vec = not ds.image_shape
  key_metric = "mean_best5_dist" if vec else "clip_mean_top10_ssim"
  summary = {"train_workdir": train_workdir, "data_radius": data_radius, "metric": key_metric}
  summary["headline"] = "radius -> (best final attack loss, {}): ".format(key_metric) + ", ".join(
      f"{r['radius']:g}: ({_g(r['best_final_loss'])}, {_g(r[key_metric])})" for r in rows)

  def plot():
    fig, (a1, a2) = _axes(2)
    rs = [r["radius"] for r in rows]
    a1.plot(rs, _vals(rows, "best_final_loss"), "o-", label="best configuration")
    a1.plot(rs, _vals(rows, "median_final_loss"), "s--", label="median configuration")
    a1.set_ylabel("final attack loss")
    if np.any(_vals(rows, "best_final_loss") > 0):  # a fully diverged study has nothing to put on a log axis
      a1.set_yscale("log")
    a1.legend(fontsize=8)
    a2.plot(rs, _vals(rows, key_metric) / (data_radius if vec else 1.0), "o-")
    a2.set_ylabel("mean distance of the best 5 / data radius" if vec else "top-10 mean SSIM (clipped)")
    for a in (a1, a2):
      a.set_xscale("log", base=2)
      a.set_xlabel("initialization radius / data radius (no box prior)")
      a.grid(alpha=0.3)
    plotting.save(fig, os.path.join(out_dir, "radius.png"))
  return _finish(out_dir, rows, summary, plot, log)


# ------------------------------------------------------------------------------------ training length


@dataclasses.dataclass(frozen=True)
class LengthStudyConfig:
  """Attacks every checkpoint with training loss <= max_loss (or the listed steps), with one sweep."""
  reconstruct: reconstruct.ReconstructConfig = reconstruct.ReconstructConfig(
      attack=attack.AttackConfig(steps=1000), sweep=reconstruct.SweepConfig(configs=4), theta_norm=10.0)
  max_loss: float = 1e-2
  steps: tuple = ()
  seed: int = 0


@wd.job("study_training_length", "out_dir")
def run_training_length(config: LengthStudyConfig, train_workdir: str, out_dir: str,
                        log: Callable = print) -> dict:
  tcfg, ds, ckpts = train.load_run(train_workdir)
  x, y = ds.x_train, ds.y_train
  report = jax.jit(functools.partial(kkt.kkt_report, relaxed=True))
  chosen = []
  for step, params in ckpts:  # the loss in log space: it underflows long before training ends
    log_loss = float(train.log_loss_fn(params, x.astype(params[0]["w"].dtype), y, tcfg.loss))
    if (step in config.steps) if config.steps else (step > 0 and log_loss <= np.log(config.max_loss)):
      chosen.append((step, params, log_loss))
  if not chosen:
    raise ValueError(f"no checkpoint of {train_workdir} with loss <= {config.max_loss} (or in {config.steps})")
  os.makedirs(out_dir, exist_ok=True)
  wd.write_json(os.path.join(out_dir, "config.json"), {"study": config, "train_workdir": train_workdir})
  rows = []
  for i, (step, params, log_loss) in enumerate(chosen):
    rep = report(params, x.astype(params[0]["w"].dtype), y)
    log10_loss = log_loss / np.log(10.0)
    log(f"== step {step} (loss 10^{log10_loss:.1f}, eps_rel {float(rep.eps_rel):.4f}) ({i + 1}/{len(chosen)})")
    s = reconstruct.run(dataclasses.replace(config.reconstruct, step=step), train_workdir,
                        os.path.join(out_dir, f"step_{step}"), key=jax.random.key(config.seed), log=log)
    rows.append({"step": step, "loss": float(np.exp(log_loss)), "log10_loss": log10_loss,
                 "eps_rel": float(rep.eps_rel), "delta": float(rep.delta),
                 "eps_rel_relaxed": float(rep.eps_rel_relaxed), **_attack_numbers(s, bool(ds.image_shape))})
  vec = not ds.image_shape
  good = "n_close" if vec else "clip_n_good_beating_heldout"
  summary = {"train_workdir": train_workdir, "metric": good}
  summary["headline"] = f"step -> ({good}, eps_rel): " + ", ".join(
      f"{r['step']}: ({_g(r[good], '')}, {r['eps_rel']:.3f})" for r in rows)

  def plot():
    fig, (a1, a2) = _axes(2)
    steps = [r["step"] for r in rows]
    if vec:
      a1.plot(steps, _vals(rows, "n_close"), "o-", label="training points with a close candidate")
    else:
      a1.plot(steps, _vals(rows, "clip_n_good_beating_heldout"), "o-", label="SSIM > 0.4, above held-out")
      a1.plot(steps, _vals(rows, "clip_n_good_beating_mean_image"), "s-",
              label="SSIM > 0.4, above the mean image")
      a1.plot(steps, _vals(rows, "n_good_ssim_0.4"), "^-", label="SSIM > 0.4 (min-max)")
    a1.set_ylabel("good reconstructions")
    a1.legend(fontsize=7)
    a2.plot(steps, [r["eps_rel"] for r in rows], "o-", label="eps_rel")
    a2.plot(steps, [max(r["delta"], 1e-300) for r in rows], "s-", label="delta")
    a2.set_yscale("log")
    a2.legend(fontsize=8)
    for a in (a1, a2):
      a.set_xscale("log")
      a.set_xlabel("training step")
      a.grid(alpha=0.3)
    plotting.save(fig, os.path.join(out_dir, "training_length.png"))
  return _finish(out_dir, rows, summary, plot, log)


# --------------------------------------------------------------------------------------------- offset


@dataclasses.dataclass(frozen=True)
class OffsetStudyConfig:
  """Trains `train` once per offset (added to every input after mean removal) and attacks the last checkpoint
  with `reconstruct` (the usual box prior: the attacker does not know the offset). The evaluation is given
  the offset (generous to the attacker; min-max SSIM and NCC ignore a constant shift anyway)."""
  train: train.TrainConfig = train.TrainConfig()
  offsets: tuple = (0.0, 0.25, 0.5, 1.0, 2.0)
  reconstruct: reconstruct.ReconstructConfig = reconstruct.ReconstructConfig(
      attack=attack.AttackConfig(steps=1000), sweep=reconstruct.SweepConfig(configs=4), theta_norm=10.0)
  seed: int = 0


@wd.job("study_offset", "out_dir")
def run_offset(config: OffsetStudyConfig, out_dir: str, log: Callable = print,
               train_log: Optional[Callable] = None) -> dict:
  images = config.train.data.name in ("mnist", "cifar10")
  os.makedirs(out_dir, exist_ok=True)
  wd.write_json(os.path.join(out_dir, "config.json"), {"study": config})
  rows = []
  for i, off in enumerate(config.offsets):
    log(f"== offset {off:g} ({i + 1}/{len(config.offsets)})")
    tcfg = dataclasses.replace(config.train, data=dataclasses.replace(config.train.data, offset=float(off)))
    tdir = os.path.join(out_dir, f"offset_{off:g}", "train")
    ts = train.run(tcfg, tdir, log=train_log or log)
    if not ts.get("train_acc") or ts["train_acc"] < 1.0:
      log(f"WARNING offset {off:g}: training did not separate the data (train acc {ts.get('train_acc')}); the "
          f"attack below targets a network that is not near a KKT point (lower --lr: a large offset makes the "
          f"inputs ill-conditioned)")
    s = reconstruct.run(config.reconstruct, tdir, os.path.join(out_dir, f"offset_{off:g}", "attack"),
                        key=jax.random.key(config.seed), log=log)
    rows.append({"offset": off, "train_acc": ts.get("train_acc"), "test_acc": ts.get("test_acc"),
                 "eps_rel": ts.get("eps_rel"), **_attack_numbers(s, images)})
  vec = not images
  metrics_shown = ("mean_best5_dist", "n_close") if vec else ("clip_mean_top10_ssim",
                                                              "clip_n_good_beating_heldout")
  summary = {"metrics": list(metrics_shown)}
  summary["headline"] = "offset -> ({}): ".format(", ".join(metrics_shown)) + ", ".join(
      f"{r['offset']:g}: ({_g(r[metrics_shown[0]])}, {_g(r[metrics_shown[1]], '')})" for r in rows)

  def plot():
    fig, (a1, a2) = _axes(2)
    offs = [r["offset"] for r in rows]
    if vec:
      a1.plot(offs, _vals(rows, "mean_best5_dist"), "o-")
      a1.set_ylabel("mean distance of the best 5")
      a2.plot(offs, _vals(rows, "n_close"), "o-")
      a2.set_ylabel("training points with a close candidate")
    else:
      a1.plot(offs, _vals(rows, "clip_mean_top10_ssim"), "o-", label="clipped")
      a1.plot(offs, _vals(rows, "mean_top10_ssim"), "s-", label="min-max")
      a1.set_ylabel("top-10 mean SSIM")
      a1.legend(fontsize=8)
      a2.plot(offs, _vals(rows, "clip_n_good_beating_heldout"), "o-", label="above held-out")
      a2.plot(offs, _vals(rows, "clip_n_good_beating_mean_image"), "s-", label="above the mean image")
      a2.set_ylabel("SSIM > 0.4 (clipped)")
      a2.legend(fontsize=8)
    for a in (a1, a2):
      a.set_xlabel("secret offset added to every pixel")
      a.grid(alpha=0.3)
    plotting.save(fig, os.path.join(out_dir, "offset.png"))
  return _finish(out_dir, rows, summary, plot, log)

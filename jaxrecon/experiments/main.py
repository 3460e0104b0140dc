"""The main job: train on MNIST digits, measure the KKT residuals, split, attack, credit; summarize.

The default runs with nothing downloaded, on the MNIST sample bundled with the package (data_dir='bundled'):
20 odd/even training digits, a 784-200-1 ReLU net with a first-layer bias, gradient descent (relative_gd) for
2,000 steps, the attack command's fast protocol on the last checkpoint.

Stages write into one workdir: train/ (a training workdir with its checkpoints; train/kkt/ holds kkt.jsonl,
summary.json and kkt.png from the diagnostics), split/ (study_split at every checkpoint: how far from the
training set a split support point can go with eps_rel within 1% of the true set's; split_approx.png), attack/
(the reconstruction attack on the last checkpoint: candidates.npz, metrics.jsonl, summary.json, credited.png
(the recovery measure's pairs), pairs.png, curve.png) and summary.json with the headline numbers.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

from jaxrecon import data as data_lib
from jaxrecon import report
from jaxrecon import train
from jaxrecon import workdir as wd
from jaxrecon.experiments import attack as attack_job
from jaxrecon.experiments import kkt as kkt_job
from jaxrecon.experiments import split as split_job
from jaxrecon.experiments import train as train_job


# 20 bundled digits, the 784-200-1 net and GD recipe of the leakage study (the setting where the recovery
# measure credits the attack beyond every null: docs/attack.md); the relaxed residual at the last step only.
MAIN_TRAIN = train.TrainConfig(
    data=data_lib.DataConfig(name="mnist", n=20, n_test=1000, data_dir=data_lib.BUNDLED), widths=(200,),
    first_bias=True, optimizer="relative_gd", lr=0.03, steps=2000, log_every=250)


@dataclasses.dataclass(frozen=True)
class MainConfig:
  train: train.TrainConfig = MAIN_TRAIN
  kkt: kkt_job.KKTConfig = kkt_job.KKTConfig(relaxed=False)
  # The attack command's fast protocol (8 configurations x 3,000 steps, float32, weights rescaled to norm 10).
  attack: Optional[attack_job.ReconstructConfig] = attack_job.PROTOCOLS["fast"]
  # study_split at every checkpoint (the exact part too when the first layer is narrower than d); magnitudes
  # every 0.2 decades from 1e-4 to 1e4 x the radius (the study's default grid is twice as fine)
  split: Optional[split_job.SplitStudyConfig] = split_job.SplitStudyConfig(steps=(), n_points=3, n_split=20,
                                                                           grid=(-4.0, 4.0, 41))


  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run (each stage's config checks its own)."""
    for part in (self.train, self.kkt, self.attack, self.split):
      if part is not None:
        part.validate()


def _kkt_headline(config, tsum, rows) -> str:
  sep = [r for r in rows if r["q_min"] > 0]  # KKT statements only where the data are separated
  first = next((r for r in sep if r["step"] >= 100), sep[0] if sep else rows[0])
  return (f"{config.train.data.name} n={tsum['n_train']}: loss 10^{tsum['final_log10_loss']:.1f} "
          f"after {tsum['steps']} steps ({tsum['wall_s']:.0f}s of training); KKT residual "
          f"eps_rel {tsum['eps_rel']:.4f} (exact, at theta" + (
              f"; relaxed over pairs within {tsum['relax_radius']:.2g} x the data radius of their kink: "
              f"{tsum['eps_rel_relaxed']:.4f}" if config.train.relaxed else "") + "), "
          f"delta {tsum['delta']:.2e}, {tsum['support_size']} support points; eps_rel was "
          f"{first['eps_rel']:.4f} at step {first['step']}"
          + ("" if len(sep) == len(rows) else
             f"; {len(rows) - len(sep)} early checkpoint(s) not yet separating the data left out"))


def _split_stage(config, train_dir, workdir, summary, log) -> str:
  split_dir = os.path.join(workdir, "split")
  ssum = split_job.run(train_dir, config.split, split_dir, log=log)
  summary["split"] = {k: ssum[k] for k in ("headline", "radius", "width", "d") if k in ssum}
  summary["split"]["by_step"] = {t["step"]: {k: t.get(k) for k in (
      "loss", "eps_rel", "approx_within_tol_over_radius", "approx_safe_over_radius", "approx_best_direction",
      "exact_max_distance_over_radius", "separated")} for t in ssum["checkpoints"]}
  sep = [t for t in ssum["checkpoints"] if t["separated"]]  # no KKT statement where q_min <= 0
  last = ssum["checkpoints"][-1]
  if "approx_within_tol_over_radius" in last and sep:
    first = sep[0]
    reach = last["approx_within_tol_over_radius"]
    summary["headline"] += (f". Split study: one support point splits to {reach:.3g} x the data radius with "
                            f"the exact eps_rel (multipliers transported) within 1% at step {last['step']} "
                            f"(vs {first['approx_within_tol_over_radius']:.3g} x at step {first['step']}, the "
                            f"first checkpoint separating the data)")
  if "exact_max_distance_over_radius" in last:
    summary["headline"] += (f"; exact null-space splits reach {ssum['max_distance_over_radius']:.3g} x with "
                            f"the residual unchanged ({ssum['max_transported_eps_rel_change']:.1e})")
  return f"{split_dir}/split_approx.png"


def _attack_stage(config, train_dir, workdir, summary, log) -> str:
  attack_dir = os.path.join(workdir, "attack")
  asum = attack_job.run(config.attack, train_dir, attack_dir, log=log).summary
  summary["attack"] = {k: asum.get(k) for k in (
      "configs", "steps", "m", "pool_size", "wall_s", "n_good_ssim_0.4", "mean_top10_ssim", "n_close",
      "close_tol", "mean_best5_dist", "median_dist", "data_radius", "best_config", "ranking", "baselines",
      "credit") if k in asum}
  summary["headline"] += f". Attack ({asum['configs']} configurations x {asum['steps']} steps): " \
      + asum["headline"]
  credited = os.path.join(attack_dir, "credited.png")
  summary["attack"]["figure"] = credited if os.path.exists(credited) else f"{attack_dir}/curve.png"
  return summary["attack"]["figure"]


def _report(config, summary) -> list:
  """The headline as labelled lines, each followed by what a reader should expect in this setting."""
  t = summary["train"]
  lines = [
      f"training   loss 10^{t['final_log10_loss']:.1f} after {t['steps']} steps ({t['wall_s']:.0f} s), train accuracy "
      f"{t['train_acc']:.3f}, test accuracy {t['test_acc']:.3f}",
      "           expect: the loss falls geometrically once the data are fitted (train accuracy 1); the test "
      "accuracy says nothing about leakage",
      f"KKT        eps_rel {t['eps_rel']:.4f} (exact, the paper's epsilon at theta), "
      + (f"{report.fmt_relaxed(t)}, " if config.train.relaxed else "") +
      f"delta {t['delta']:.2e}, support {t['support_size']}/{t['n_train']}",
      "           expect: 0 at an exact KKT point; " + (
          "on this unit-sphere task every step rule tried plateaus at 0.26-0.31 (docs/noprior.md, schedules), so "
          "a value there means 'as close as training gets here'" if config.train.data.name == "sphere" else
          "docs/noprior.md's schedule table gives the values reached on MNIST / CIFAR-10 nets")]
  if "split" in summary:
    by = summary["split"]["by_step"]
    last = by[max(by)]
    reach = last.get("approx_within_tol_over_radius")
    top = 10 ** config.split.grid[1]
    shown = "n/a" if reach is None else (f">= {top:g}" if reach >= top else f"{reach:.3g}")
    lines += [f"split      one support point moved {shown} x the data radius with eps_rel within "
              f"{config.split.tol:.0%} of the true set's (step {max(by)})",
              "           expect: far more than 1 x the radius: a KKT-consistent training set far from the true "
              "one exists (No Prior, No Leakage); the grid's top is " + f"{top:g}"]
  if "attack" in summary:
    a = summary["attack"]
    cr = a.get("credit")
    if cr is not None:
      nulls = ", ".join(f"{k.replace('_', ' ')} {v['n_credited_max']}" for k, v in cr["nulls"].items())
      lines += [f"attack     {cr['attack']['n_credited']} of {t['n_train']} training points credited to a candidate "
                f"(recovery measure: nearest among training and held-out points, no mixture explains it); "
                + ("beyond every null" if cr["beats_every_null"] else "NOT beyond every null")
                + (f"; the pairs: {a['figure']}" if a.get("figure", "").endswith("credited.png") else ""),
                f"           expect: chance level (the same count on pools no attack made, as large): {nulls}; "
                f"{a['configs']} configurations x {a['steps']} steps (the paper's: 100 x 50,000)"]
    elif a.get("n_close") is not None:
      base = (a.get("baselines") or {}).get("heldout")
      lines += [f"attack     {a['n_close']} of {t['n_train']} training points with a candidate within "
                f"{a['close_tol']:g} x the data radius, best five at {a['mean_best5_dist']:.3f} x radius",
                "           expect: chance level (held-out points, no attack): " + (
                    f"{base['n_close']} within, best five at {base['mean_best5_dist']:.3f}" if base else "n/a")
                + f"; a {a['configs']}-configuration, {a['steps']}-step sweep is a smoke test, not the paper's"]
    elif a.get("n_good_ssim_0.4") is not None:
      lines += [f"attack     {a['n_good_ssim_0.4']} of {t['n_train']} training images with SSIM > 0.4 (reference "
                "evaluation)", "           expect: compare with the baselines in attack/summary.json (the mean "
                "image and held-out images score without any attack)"]
  return lines


@wd.job("main", "workdir")
def run(config: MainConfig, workdir: str, log: Callable = print) -> dict:
  os.makedirs(workdir, exist_ok=True)
  wd.write_json(os.path.join(workdir, "config.json"), config)
  train_dir = os.path.join(workdir, "train")
  stages = 2 + (config.split is not None) + (config.attack is not None)
  log(f"== stage 1/{stages}: training")
  tsum = train_job.run(config.train, train_dir, log=log)
  log(f"== stage 2/{stages}: KKT residuals of every checkpoint")
  ksum = kkt_job.run(train_dir, config.kkt, log=log)
  rows = wd.read_jsonl(os.path.join(train_dir, "kkt", "kkt.jsonl"))
  summary = {"train": tsum, "kkt_final": ksum["final"],
             "eps_rel_by_step": {r["step"]: r["eps_rel"] for r in rows},
             **({"eps_rel_relaxed_by_step": {r["step"]: r["eps_rel_relaxed"] for r in rows}}
                if config.kkt.relaxed else {}),
             "delta_by_step": {r["step"]: r["delta"] for r in rows},
             "headline": _kkt_headline(config, tsum, rows)}
  figures = [f"{train_dir}/kkt/kkt.png"]
  stage = 3
  if config.split is not None:
    log(f"== stage {stage}/{stages}: split study (KKT-consistent sets far from the training set)")
    stage += 1
    figures.append(_split_stage(config, train_dir, workdir, summary, log))
  if config.attack is not None:
    log(f"== stage {stage}/{stages}: reconstruction attack on the last checkpoint")
    figures.append(_attack_stage(config, train_dir, workdir, summary, log))
  summary["report"] = _report(config, summary)
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  for line in summary["report"]:
    log(line)
  log(f"wrote {workdir}/summary.json, " + ", ".join(figures))
  return summary

"""The main job: train on the paper's synthetic data, measure its KKT residuals, summarize.

Stages write into one workdir: train/ (a training workdir with its checkpoints; train/kkt/ holds kkt.jsonl,
summary.json and kkt.png from the diagnostics) and summary.json with the headline numbers. Later stages
(attack, split study) add their own subdirectories.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from jaxrecon import diagnostics
from jaxrecon import train
from jaxrecon import workdir as wd


@dataclasses.dataclass(frozen=True)
class MainConfig:
  train: train.TrainConfig = train.TrainConfig()
  kkt: diagnostics.KKTConfig = diagnostics.KKTConfig()


def run(config: MainConfig, workdir: str, log: Callable = print) -> dict:
  os.makedirs(workdir, exist_ok=True)
  wd.write_json(os.path.join(workdir, "config.json"), config)
  train_dir = os.path.join(workdir, "train")
  log("== stage 1/2: training")
  tsum = train.run(config.train, train_dir, log=log)
  log("== stage 2/2: KKT residuals of every checkpoint")
  ksum = diagnostics.run(train_dir, config.kkt, log=log)
  rows = wd.read_jsonl(os.path.join(train_dir, "kkt", "kkt.jsonl"))
  first = next((r for r in rows if r["step"] >= 100), rows[0])
  summary = {
      "train": tsum,
      "kkt_final": ksum["final"],
      "eps_rel_by_step": {r["step"]: r["eps_rel"] for r in rows},
      "eps_rel_clarke_by_step": {r["step"]: r["eps_rel_clarke"] for r in rows},
      "delta_by_step": {r["step"]: r["delta"] for r in rows},
      "headline": (f"{config.train.data.name} n={tsum['n_train']}: loss 10^{tsum['final_log10_loss']:.1f} "
                   f"after {tsum['steps']} steps ({tsum['wall_s']:.0f}s of training); KKT residual "
                   f"eps_rel {tsum['eps_rel_clarke']:.4f} Clarke-aware (kink_tol {tsum['kink_tol']:g}; "
                   f"{tsum['eps_rel']:.3f} with relu'(0)=0), delta {tsum['delta']:.2e}, "
                   f"{tsum['support_size']} support points; Clarke-aware eps_rel fell from "
                   f"{first['eps_rel_clarke']:.4f} at step {first['step']}"),
  }
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  log(summary["headline"])
  log(f"wrote {workdir}/summary.json, {train_dir}/kkt/kkt.png")
  return summary

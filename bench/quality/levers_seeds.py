"""The fast path's levers over several sweep seeds (the time-to-quality bench runs each lever once, one draw).

  taskset -c 0 python bench/quality/levers_seeds.py runs/bench_quality bench/quality/levers_seeds.json 3 [SCALE]

(SCALE, default 1, multiplies every step count: a smoke run uses a small one.)

Re-uses the bench's trained fast net (runs/bench_quality/train_fast) and its evaluation; for each sweep seed
runs: halving16 (the bench's fast path: 16 configurations, halving at 500/1,000/2,000, 4,000 steps), plain8
(8 configurations x 3,000 steps), plain16 (16 x 2,000), halving32 (32 configurations, halving at 250/500/1,000,
2,000 steps). Writes every evaluation row with its wall time (training + attack, evaluations off the clock).
"""

import dataclasses
import json
import os
import sys

import jax

from jaxrecon.experiments import attack as attack_job
from jaxrecon.experiments import quality
from jaxrecon.experiments import train as train_job

jax.config.update("jax_enable_x64", True)
run_dir, out, n_seeds = sys.argv[1], sys.argv[2], int(sys.argv[3])
scale = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
fast = attack_job.PROTOCOLS["fast"]


def variant(configs, steps, prune_at):
  steps, prune_at = max(2, round(steps * scale)), tuple(max(1, round(s * scale)) for s in prune_at)
  return dataclasses.replace(fast, attack=dataclasses.replace(fast.attack, steps=steps, log_every=max(1, steps // 4)),
                             sweep=dataclasses.replace(fast.sweep, configs=configs), prune_at=prune_at)


VARIANTS = {"halving16": variant(16, 4000, (500, 1000, 2000)), "plain8": variant(8, 3000, ()),
            "plain16": variant(16, 2000, ()), "halving32": variant(32, 2000, (250, 500, 1000))}
summary = json.load(open(os.path.join(run_dir, "train_fast", "summary.json")))
_, ds, ckpts = train_job.load_run(os.path.join(run_dir, "train_fast"))
judge = quality.Judge(ds, 1000)
rows = []
for seed in range(n_seeds):
  for name, rc in VARIANTS.items():
    rc = dataclasses.replace(rc, sweep=dataclasses.replace(rc.sweep, seed=seed))
    emit = lambda row, curve, seed=seed: rows.append({**row, "seed": seed})
    quality.run_fast(name, rc, ckpts[-1][1], ds, float(summary["wall_s"]), judge, jax.random.key(seed),
                     max(1, round(500 * scale)),
                     emit, None)
    last = rows[-1]
    print(f"seed {seed} {name:<10s} {quality.report_line(last)}", flush=True)
json.dump({"train_s": summary["wall_s"], "rows": rows}, open(out, "w"), indent=1)

r"""Training choices vs leakage over seeds (issue 24.4): the recovery measure per recipe, intervals over seeds.

  for s in 0 1 2 3 4; do python scripts/study_leakage.py --dataset=mnist --data_dir=bundled --n=100 \
      --selection=random --seed=$s --recipes=gd,adam --targets=theta --workdir=runs/leak/s$s; done
  python scripts/bench_leakage_seeds.py --workdirs=runs/leak/s0,runs/leak/s1,runs/leak/s2,runs/leak/s3,runs/leak/s4 \
      --out=bench/leakage/seeds.json

Each seed is its own run of `study_leakage` with its own random image subset (the seed draws the subset, the
init and the attack). Per recipe and seed: the training digits credited by the recovery measure, every null's
count, the exact l2 eps_rel, and the reference evaluation's clipped-SSIM count above the best held-out image.
Across seeds (the unit that varies): the mean with a bootstrap 95% interval, how many seeds beat every null,
and for every pair of recipes the paired difference with its bootstrap interval and the exact sign-flip test.
"""

import sys
import itertools
import os

from absl import flags
import numpy as np

from jaxrecon import stats
from jaxrecon import workdir as wd
from jaxrecon.commands import cli

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", [], "study_leakage workdirs, one per seed.")
flags.DEFINE_string("out", "bench/leakage/seeds.json", "Where the JSON goes.")
flags.DEFINE_string("target", "theta", "The attack target whose runs are read.")


def read_seed(workdir: str, target: str) -> dict:
  """{recipe: {credited, nulls_max, beats, eps_rel, clip_beating_heldout}} of one study_leakage run."""
  out = {}
  rows = {r["recipe"]: r for r in wd.read_jsonl(os.path.join(workdir, "metrics.jsonl"))}
  suffix = f"_{target}"
  for name in sorted(os.listdir(workdir)):  # attack folders run beside the study (jaxrecon-attack) count too
    recipe = name[len("attack_"):-len(suffix)] if name.startswith("attack_") and name.endswith(suffix) else None
    if recipe and recipe not in rows and os.path.exists(os.path.join(workdir, "train_" + recipe)):
      rows[recipe] = {"recipe": recipe, "eps_rel": wd.read_json(
          os.path.join(workdir, "train_" + recipe, "summary.json")).get("eps_rel")}
  for row in rows.values():
    att = os.path.join(workdir, f"attack_{row['recipe']}_{target}", "summary.json")
    if not os.path.exists(att):
      continue
    cr = wd.read_json(att)["credit"]
    out[row["recipe"]] = {"credited": cr["attack"]["n_credited"],
                          "nulls_max": {k: v["n_credited_max"] for k, v in cr["nulls"].items()},
                          "beats_every_null": cr["beats_every_null"], "eps_rel": row["eps_rel"],
                          "clip_beating_heldout": row.get(f"attack_{target}", {}).get("clip_beating_heldout"),
                          "n_train": cr["n_train"], "pool_size": cr["pool_size"]}
  return out


def main(_):
  if not FLAGS.workdirs:
    raise ValueError("--workdirs: give the study_leakage workdirs, one per seed")
  seeds = {w: read_seed(w, FLAGS.target) for w in FLAGS.workdirs}
  recipes = sorted({r for s in seeds.values() for r in s})
  table = {}
  for r in recipes:
    rows = [s[r] for s in seeds.values() if r in s]
    credited = [x["credited"] for x in rows]
    table[r] = {"seeds": len(rows), "credited": credited, "credited_mean": float(np.mean(credited)),
                "credited_ci95_over_seeds": stats.bootstrap_ci(credited),
                "null_max_per_seed": [max(x["nulls_max"].values()) for x in rows],
                "seeds_beating_every_null": int(sum(x["beats_every_null"] for x in rows)),
                "eps_rel": [x["eps_rel"] for x in rows],
                "clip_beating_heldout": [x["clip_beating_heldout"] for x in rows]}
  pairs = {}
  for a, b in itertools.combinations(recipes, 2):
    both = [s for s in seeds.values() if a in s and b in s]
    diffs = [s[a]["credited"] - s[b]["credited"] for s in both]
    if diffs:
      pairs[f"{a} - {b}"] = {"diffs": diffs, "mean": float(np.mean(diffs)),
                             "ci95_over_seeds": stats.bootstrap_ci(diffs), "sign_flip_p": stats.sign_flip_p(diffs)}
  res = {"workdirs": [os.path.abspath(w) for w in FLAGS.workdirs], "target": FLAGS.target, "recipes": table,
         "paired": pairs, "per_seed": seeds}
  wd.write_json(FLAGS.out, res)  # atomic; makes the folder
  for r, t in table.items():
    lo, hi = t["credited_ci95_over_seeds"]
    print(f"{r}: credited {t['credited']} (mean {t['credited_mean']:.1f} [{lo:.1f}, {hi:.1f}] over "
          f"{t['seeds']} seeds), every-null max per seed {t['null_max_per_seed']}, beyond every null in "
          f"{t['seeds_beating_every_null']} of {t['seeds']}")
  for k, p in pairs.items():
    lo, hi = p["ci95_over_seeds"]
    print(f"{k}: {p['diffs']} mean {p['mean']:.1f} [{lo:.1f}, {hi:.1f}], sign-flip p {p['sign_flip_p']:.3f}")
  print(f"wrote {FLAGS.out}")


def console():
  """The console entry point (python scripts/bench_leakage_seeds.py)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

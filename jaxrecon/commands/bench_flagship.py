r"""Haim et al.'s headline setting on this machine (issue 28): MNIST odd/even (or CIFAR-10 vehicles/animals),
784-1000-1000-1 (3072-1000-1000-1), trained and attacked.

  python scripts/bench_flagship.py --workdir=runs/flagship --out=bench/flagship

Trains (the training job: resumable, a finished run is reused) and attacks the last checkpoint (the attack job:
a finished attack with the same config is re-evaluated, not re-run), then writes OUT/summary.json: n_train, the
counts under each measure with every null and baseline (the recovery measure's credited count and its nulls;
the reference's min-max SSIM > 0.4 count and the clipped one, each with the mean-image and held-out baselines),
the wall time of each stage, the recipe and the machine; OUT/credited.png and OUT/pairs.png (Haim et al.'s
layout); and OUT/command.txt (this command line). The defaults are the recipe docs/attack.md reports
("The flagship"): 500 digits of the bundled sample, relative_gd for 6,000 steps, the fast protocol at 4 x 2,000
steps with the middle layer left out of the stationarity term. A GPU runs the reference protocol with
--protocol=reference --configs=100 --attack_steps=50000 --layer_weights=.
"""

import dataclasses
import json
import os
import shutil
import sys
import time

from absl import flags

from jaxrecon import data as data_lib
from jaxrecon import train
from jaxrecon import workdir as wd
from jaxrecon import report
from jaxrecon.commands import cli
from jaxrecon.experiments import attack as attack_job
from jaxrecon.experiments import train as train_job

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/flagship", "Holds train/ and attack/ (unless --train_workdir / "
                    "--attack_workdir name others).")
flags.DEFINE_string("train_workdir", None, "The training run (default WORKDIR/train).")
flags.DEFINE_string("attack_workdir", None, "The attack run (default WORKDIR/attack).")
flags.DEFINE_string("out", "bench/flagship", "Where summary.json, the figures and command.txt go.")
flags.DEFINE_enum("dataset", "mnist", ["mnist", "cifar10"], "MNIST odd/even or CIFAR-10 vehicles/animals.")
flags.DEFINE_string("data_dir", data_lib.BUNDLED, "MNIST IDX files ('bundled': the sample in the package) or the "
                    "CIFAR-10 binary version's folder.")
flags.DEFINE_integer("n_test", 1000, "Test images (half the recovery measure's held-out reference set, half its "
                     "held-out null).")
flags.DEFINE_list("stages", ["train", "attack"], "train: only the training (then run again for the attack, e.g. "
                  "on more cores); train,attack: both.")
flags.DEFINE_integer("n", 500, "Training digits (odd/even balanced, first in file order).")
flags.DEFINE_list("width", ["1000", "1000"], "Hidden widths.")
flags.DEFINE_integer("steps", 6000, "Training steps (relative_gd lr 0.03, float64).")
flags.DEFINE_enum("protocol", "fast", list(attack_job.PROTOCOLS), "The attack's preset.")
flags.DEFINE_integer("configs", 4, "Attack configurations.")
flags.DEFINE_integer("attack_steps", 2000, "Attack steps per configuration.")
flags.DEFINE_list("layer_weights", ["1", "0", "1"], "Per-layer weights of the stationarity term (empty = all 1).")


def recipe():
  """(TrainConfig, ReconstructConfig) of the flags."""
  tcfg = train.TrainConfig(
      data=data_lib.DataConfig(name=FLAGS.dataset, n=FLAGS.n, n_test=FLAGS.n_test, data_dir=FLAGS.data_dir),
      widths=tuple(int(w) for w in FLAGS.width), first_bias=True, steps=FLAGS.steps, relaxed=False,
      log_every=200)
  base = attack_job.PROTOCOLS[FLAGS.protocol]
  acfg = dataclasses.replace(base.attack, steps=FLAGS.attack_steps, log_every=250,
                             layer_weights=tuple(float(w) for w in FLAGS.layer_weights))
  return tcfg, dataclasses.replace(base, attack=acfg, sweep=dataclasses.replace(base.sweep, configs=FLAGS.configs))


def main(_):
  tdir = FLAGS.train_workdir or os.path.join(FLAGS.workdir, "train")
  adir = FLAGS.attack_workdir or os.path.join(FLAGS.workdir, "attack")
  tcfg, rcfg = recipe()
  t0 = time.time()
  tsum = train_job.run(tcfg, tdir)
  t1 = time.time()
  if "attack" not in FLAGS.stages:
    print(f"trained {tdir}; run again with --stages=train,attack for the attack")
    return
  out = attack_job.run(rcfg, tdir, adir)
  t2 = time.time()
  a = out.summary
  cr = a["credit"]
  res = {
      "n_train": tsum["n_train"], "dataset": FLAGS.dataset,
      "net": f"{784 if FLAGS.dataset == 'mnist' else 3072}-{'-'.join(FLAGS.width)}-1, first-layer bias",
      "recovery_measure": {"credited": cr["attack"]["n_credited"], "beats_every_null": cr["beats_every_null"],
                           "nulls_max": {k: v["n_credited_max"] for k, v in cr["nulls"].items()},
                           "per_configuration": cr.get("per_unit"), "pool_size": a["pool_size"]},
      "reference_ssim_minmax": {"n_good_ssim_0.4": a.get("n_good_ssim_0.4"),
                                "beating_heldout": a.get("n_good_beating_heldout"),
                                "baselines": a.get("baselines")},
      "clipped_ssim": {"n_good_ssim_0.4": a["clip"]["n_good_ssim_0.4"],
                       "beating_heldout": a["clip"]["n_good_beating_heldout"],
                       "baselines": a["clip"]["baselines"]},
      "training": {k: tsum.get(k) for k in ("steps", "final_log10_loss", "train_acc", "test_acc", "eps_rel",
                                             "delta", "support_size", "wall_s")},
      "attack": {"configs": a["configs"], "steps": a["steps"], "wall_s": a["wall_s"],
                 "layer_weights": list(rcfg.attack.layer_weights), "protocol": FLAGS.protocol,
                 "theta_norm": rcfg.theta_norm, "dtype": rcfg.attack.dtype},
      "wall_s": {"train_job_this_call": t1 - t0, "attack_job_this_call": t2 - t1,
                 "training_run": tsum.get("wall_s"), "attack_run": a["wall_s"]},
      "machine": report.machine(),
      "train_workdir": os.path.abspath(tdir), "attack_workdir": os.path.abspath(adir)}
  os.makedirs(FLAGS.out, exist_ok=True)
  wd.write_json(os.path.join(FLAGS.out, "summary.json"), res)
  for name in ("credited.png", "pairs.png", "pairs_clip.png", "curve.png"):
    if os.path.exists(os.path.join(adir, name)):
      shutil.copyfile(os.path.join(adir, name), os.path.join(FLAGS.out, name))
  with open(os.path.join(FLAGS.out, "command.txt"), "w") as f:
    f.write("python " + " ".join(sys.argv) + "\n")
  print(json.dumps(res["recovery_measure"]))
  print(f"wrote {FLAGS.out}/summary.json, credited.png, pairs.png, command.txt")


def console():
  """The console entry point (python scripts/bench_flagship.py)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

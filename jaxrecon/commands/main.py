r"""The main job, nothing downloaded: MNIST digits from the bundled sample, trained, diagnosed, split, attacked.

  jaxrecon-main --workdir=runs/main

Trains a 784-200-1 ReLU net (first-layer bias) on 20 odd/even MNIST digits of the sample shipped with the
package (--data_dir=bundled; a directory with the full MNIST files works the same) by gradient descent for
2,000 steps, measures the exact KKT residual eps_rel and delta of every checkpoint (the relaxed
kink-neighbourhood residual at the last one; --relaxed=False skips it), runs the split study at every
checkpoint (how far from the training set a support point can be split with eps_rel within 1% of the true
set's; --nosplit skips it), attacks the last checkpoint with the attack command's fast protocol (--configs
configurations x --attack_steps steps; the flags of scripts/attack.py, with an attack_ prefix where training
uses the same name) and credits its candidates under the recovery measure against the nulls (held-out digits,
mixtures of training digits, the mean). Writes summary.json with the headline and attack/credited.png. Any
training flag of scripts/train.py applies.
"""

import dataclasses
import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.commands import train_flags
from jaxrecon.experiments import kkt as kkt_job
from jaxrecon.experiments import main as main_job

TRAIN = train_flags.binder(main_job.MAIN_TRAIN)
flags.DEFINE_string("workdir", "runs/main", "Output directory.")
flags.DEFINE_bool("attack", True, "Run the attack stage.")
flags.DEFINE_bool("split", True, "Run the split-study stage (every checkpoint).")
flags.DEFINE_list("split_grid", [str(v) for v in main_job.MainConfig().split.grid],
                  "The split magnitudes: log10 lo, log10 hi, points (x the data radius).")
ATTACK = attack_flags.binder(main_job.MainConfig().attack, clash_prefix="attack_", skip=("step",))
FLAGS = flags.FLAGS


def main(argv):
  del argv
  tcfg = train_flags.config_from_flags(TRAIN)
  # every checkpoint's exact residuals; the relaxed one (--relaxed) only at the last, in the training summary
  kcfg = kkt_job.KKTConfig(kink_tol=tcfg.kink_tol, relaxed=False)
  acfg = ATTACK.build() if FLAGS.attack else None
  try:
    lo, hi, points = (float(v) for v in FLAGS.split_grid)
  except ValueError:
    raise ValueError(f"--split_grid must be log10 lo, log10 hi, points (e.g. -4,4,41); got {FLAGS.split_grid}")
  if not (lo < hi and points >= 2 and points == int(points)):
    raise ValueError(f"--split_grid needs lo < hi and at least 2 points; got {FLAGS.split_grid}")
  scfg = (dataclasses.replace(main_job.MainConfig().split, grid=(lo, hi, int(points))) if FLAGS.split
          else None)
  main_job.run(main_job.MainConfig(train=tcfg, kkt=kcfg, attack=acfg, split=scfg), FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-main)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

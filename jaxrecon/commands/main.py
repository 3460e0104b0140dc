r"""The main job on the embedded default (no download): the paper's synthetic setting, trained and diagnosed.

  python scripts/main.py --workdir=runs/main

Trains a width-1000 2-layer ReLU net on 500 points uniform on the unit sphere in R^784 (label = sign of
x_1) with the default schedule, measures the KKT residuals (eps_rel, delta, the relaxed kink-neighbourhood residual) of every
checkpoint, runs the split study at every checkpoint (how far from the training set a support point can be
split with eps_rel within 1% of the true set's; --nosplit skips it), runs a small reconstruction attack sweep (--configs configurations x --attack_steps steps, the
flags of scripts/attack.py with an attack_ prefix where training uses the same name) on the last checkpoint,
and writes summary.json with the headline. Any training flag of scripts/train.py applies.
"""

import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.commands import train_flags
from jaxrecon.experiments import kkt as kkt_job
from jaxrecon.experiments import main as main_job

TRAIN = train_flags.binder()
flags.DEFINE_string("workdir", "runs/main", "Output directory.")
flags.DEFINE_bool("attack", True, "Run the attack stage.")
flags.DEFINE_bool("split", True, "Run the split-study stage (every checkpoint).")
ATTACK = attack_flags.binder(main_job.MainConfig().attack, clash_prefix="attack_", skip=("step",))
FLAGS = flags.FLAGS


def main(argv):
  del argv
  tcfg = train_flags.config_from_flags(TRAIN)
  kcfg = kkt_job.KKTConfig(kink_tol=tcfg.kink_tol, relaxed=tcfg.relaxed)
  acfg = ATTACK.build() if FLAGS.attack else None
  scfg = main_job.MainConfig().split if FLAGS.split else None
  main_job.run(main_job.MainConfig(train=tcfg, kkt=kcfg, attack=acfg, split=scfg), FLAGS.workdir)


def console():
  """The console entry point (jaxrecon-main)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

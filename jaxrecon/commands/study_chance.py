r"""study_chance: are the attack's candidates copies of training points or just typical of the distribution?

  jaxrecon-study-chance --attack_workdir=runs/attack --workdir=runs/study_chance

For every candidate of an attack workdir (scripts/attack.py output): distance to the closest training point
and to the closest held-out point (test split, as many as the training set); both distributions, the fraction
closer to train than to held-out (50% = chance), by L2 and NCC. Writes summary.json, distances.npz, chance.png.
"""

import sys

from absl import flags

from jaxrecon.commands import cli
from jaxrecon.experiments import chance as chance_study

flags.DEFINE_string("attack_workdir", None, "An attack workdir (scripts/attack.py).")
flags.DEFINE_string("workdir", "runs/study_chance", "Output directory.")
flags.mark_flag_as_required("attack_workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  chance_study.run(FLAGS.attack_workdir, FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-study-chance)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

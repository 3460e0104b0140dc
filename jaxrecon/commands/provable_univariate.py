r"""Univariate reconstruction (2410.07632) against its guarantee that >= 1/4 of the candidates are training points.

  jaxrecon-provable-univariate --workdir=runs/univariate

For each size in --sizes and label pattern in --patterns, --seeds datasets of n points uniform in [-1, 1];
each trains a 2-layer ReLU net with a first-layer bias (all seeds of a group in one compiled call), then the
attack lists every x with |Phi(x)| = m on each linear piece. Writes metrics.jsonl (one row per seed:
candidate count, fraction within --tol of a training point, eps_rel), summary.json and fraction_vs_eps.png.
"""

import sys

from absl import flags
import jax

from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.experiments import provable as provable_study

flags.DEFINE_string("workdir", "runs/univariate", "Output directory.")
flags.DEFINE_integer("seed", 0, "Seed.")
CONFIG = config_flags.Binder(provable_study.UnivariateConfig())
FLAGS = flags.FLAGS


def main(argv):
  del argv
  provable_study.run_univariate(CONFIG.build(), FLAGS.workdir, jax.random.key(FLAGS.seed), log=cli.progress)


def console():
  """The console entry point (jaxrecon-provable-univariate)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

r"""Univariate reconstruction (2410.07632) against its guarantee that >= 1/4 of the candidates are training points.

  python scripts/provable_univariate.py --workdir=runs/univariate

For each size in --sizes and label pattern in --patterns, --seeds datasets of n points uniform in [-1, 1];
each trains a 2-layer ReLU net with a first-layer bias (all seeds of a group in one compiled call), then the
attack lists every x with |Phi(x)| = m on each linear piece. Writes metrics.jsonl (one row per seed:
candidate count, fraction within --tol of a training point, eps_rel), summary.json and fraction_vs_eps.png.
"""

from absl import flags
import jax

import cli
from jaxrecon import provable_study

_D = provable_study.UnivariateConfig()
flags.DEFINE_string("workdir", "runs/univariate", "Output directory.")
flags.DEFINE_list("sizes", [str(s) for s in _D.sizes], "Training-set sizes.")
flags.DEFINE_list("patterns", list(_D.patterns), "Label patterns: random, alternating, blocks.")
flags.DEFINE_integer("seeds", _D.seeds, "Datasets per (size, pattern).")
flags.DEFINE_integer("width", _D.width, "Hidden width.")
flags.DEFINE_float("init_scale", _D.init_scale, "Init std of both layers.")
flags.DEFINE_string("warmup_optimizer", _D.warmup_optimizer, "Optimizer of the fitting phase.")
flags.DEFINE_float("warmup_lr", _D.warmup_lr, "Learning rate of the fitting phase.")
flags.DEFINE_integer("warmup_steps", _D.warmup_steps, "Steps of the fitting phase (0 = none).")
flags.DEFINE_string("optimizer", _D.optimizer, "Training optimizer (see scripts/train.py).")
flags.DEFINE_float("lr", _D.lr, "Learning rate.")
flags.DEFINE_integer("steps", _D.steps, "Training steps.")
flags.DEFINE_float("tol", _D.tol, "A candidate within this distance of a training point counts as one.")
flags.DEFINE_float("neuron_tol", _D.neuron_tol, "Drop kinks of neurons with |v w| below this times the max.")
flags.DEFINE_integer("seed", 0, "Seed.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = provable_study.UnivariateConfig(
      sizes=tuple(int(s) for s in FLAGS.sizes), patterns=tuple(FLAGS.patterns), seeds=FLAGS.seeds,
      width=FLAGS.width, init_scale=FLAGS.init_scale,
      warmup_optimizer=FLAGS.warmup_optimizer, warmup_lr=FLAGS.warmup_lr, warmup_steps=FLAGS.warmup_steps,
      optimizer=FLAGS.optimizer, lr=FLAGS.lr,
      steps=FLAGS.steps, tol=FLAGS.tol, neuron_tol=FLAGS.neuron_tol)
  provable_study.run_univariate(config, FLAGS.workdir, jax.random.key(FLAGS.seed))


if __name__ == "__main__":
  cli.run(main)

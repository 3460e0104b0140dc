r"""High-dimensional membership inference (2410.07632): member iff Phi(x) reaches the margin.

  jaxrecon-provable-membership --workdir=runs/membership                  # the authors' protocol
  jaxrecon-provable-membership --workdir=runs/membership_ours --protocol=ours

The authors' protocol (their public code): n = 20, width 10,000 (--width to shrink it on a CPU), full-batch GD
lr 1 for 100 steps with StepLR (x 0.7 every 30 steps) from the PyTorch default init times 1e-3, data on the
sqrt(d)-sphere with parity labels and two Gaussians with means +-d^0.33 e_1 (balanced labels), member iff
y Phi(x) >= m. --protocol=ours: means +-e_1, constant lr, member iff |Phi(x)| >= 0.9 m (label-free); it
overrides those five flags. Per d (all seeds in one compiled call): test accuracy, fraction of training points
on the margin (within 10%), fraction of fresh points reaching it, AUC (and the other criterion's) and TPR at low
FPR with the margin known, leaked from one training point, or only bounded. Writes metrics.jsonl,
summary.json (smallest d with AUC >= 0.99) and membership_vs_d.png.
"""

import sys

from absl import flags
import jax

from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.experiments import provable as provable_study

flags.DEFINE_string("workdir", "runs/membership", "Output directory.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_enum("protocol", "authors", ["authors", "ours"], "authors (the default flags) | ours (the first "
                  "version's: means +-e_1, constant lr, |Phi| >= 0.9 m).")
CONFIG = config_flags.Binder(provable_study.MembershipConfig())
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = CONFIG.build()
  if FLAGS.protocol == "ours":
    config = provable_study.ours_variant(config)
  provable_study.run_membership(config, FLAGS.workdir, jax.random.key(FLAGS.seed), log=cli.progress)


def console():
  """The console entry point (jaxrecon-provable-membership)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

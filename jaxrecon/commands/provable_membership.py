r"""High-dimensional membership inference (2410.07632): member iff |Phi(x)| reaches the margin.

  python scripts/provable_membership.py --workdir=runs/membership

The reported protocol: n = 20, width 10,000 (--width to shrink it on a CPU), full-batch GD lr 1 for 100 steps
from the PyTorch default init times 1e-3, data on the sqrt(d)-sphere with parity labels and two Gaussians, d in
--dims. Per d (all seeds in one compiled call): fraction of training points within 10% of the margin,
fraction of fresh points reaching it, AUC and TPR at low FPR with the margin known, leaked from one training
point, or only bounded. Writes metrics.jsonl, summary.json (smallest d with AUC >= 0.99) and
membership_vs_d.png.
"""

import sys

from absl import flags
import jax

from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.experiments import provable as provable_study

flags.DEFINE_string("workdir", "runs/membership", "Output directory.")
flags.DEFINE_integer("seed", 0, "Seed.")
CONFIG = config_flags.Binder(provable_study.MembershipConfig())
FLAGS = flags.FLAGS


def main(argv):
  del argv
  provable_study.run_membership(CONFIG.build(), FLAGS.workdir, jax.random.key(FLAGS.seed))


def console():
  """The console entry point (jaxrecon-provable-membership)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

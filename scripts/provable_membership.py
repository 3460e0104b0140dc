r"""High-dimensional membership inference (2410.07632): member iff |Phi(x)| reaches the margin.

  python scripts/provable_membership.py --workdir=runs/membership

The reported protocol: n = 20, width 10,000 (--width to shrink it on a CPU), full-batch GD lr 1 for 100 steps
from the PyTorch default init times 1e-3, data on the sqrt(d)-sphere with parity labels and two Gaussians, d in
--dims. Per d (all seeds in one compiled call): fraction of training points within 10% of the margin,
fraction of fresh points reaching it, AUC and TPR at low FPR with the margin known, leaked from one training
point, or only bounded. Writes metrics.jsonl, summary.json (smallest d with AUC >= 0.99) and
membership_vs_d.png.
"""

from absl import flags
import jax

import cli
from jaxrecon import provable_study

_D = provable_study.MembershipConfig()
flags.DEFINE_string("workdir", "runs/membership", "Output directory.")
flags.DEFINE_list("dims", [str(d) for d in _D.dims], "Input dimensions.")
flags.DEFINE_list("datasets", list(_D.datasets), "parity_sphere, two_gaussians.")
flags.DEFINE_integer("n", _D.n, "Training points.")
flags.DEFINE_integer("n_fresh", _D.n_fresh, "Fresh (non-member) points per seed.")
flags.DEFINE_integer("seeds", _D.seeds, "Seeds per d.")
flags.DEFINE_integer("width", _D.width, "Hidden width.")
flags.DEFINE_string("optimizer", _D.optimizer, "Training optimizer.")
flags.DEFINE_float("lr", _D.lr, "Learning rate.")
flags.DEFINE_integer("steps", _D.steps, "Training steps (full batch).")
flags.DEFINE_float("threshold", _D.threshold, "Decide member when |Phi(x)| >= threshold * m.")
flags.DEFINE_integer("seed", 0, "Seed.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = provable_study.MembershipConfig(
      dims=tuple(int(d) for d in FLAGS.dims), datasets=tuple(FLAGS.datasets), n=FLAGS.n,
      n_fresh=FLAGS.n_fresh, seeds=FLAGS.seeds, width=FLAGS.width, optimizer=FLAGS.optimizer, lr=FLAGS.lr,
      steps=FLAGS.steps, threshold=FLAGS.threshold)
  provable_study.run_membership(config, FLAGS.workdir, jax.random.key(FLAGS.seed))


if __name__ == "__main__":
  cli.run(main)

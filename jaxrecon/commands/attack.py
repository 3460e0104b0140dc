r"""Reconstruction attack (Haim et al. 2022) on a trained network, as one compiled sweep.

  python scripts/attack.py --train_workdir=runs/main/train --workdir=runs/attack --configs=16

Attacks the last checkpoint (or --step) of a training workdir with --configs configurations of the swept
values (random draws from the reference's ranges by default, or --sweep=grid), all advancing together in one
jit-compiled lax.scan. Writes to --workdir: candidates.npz, metrics.jsonl (loss terms per configuration over
steps), summary.json (n_good_ssim_0.4, mean_top10_ssim, pool_size, configs, steps, wall_s, ...), pairs.png
(best reconstructions above their nearest training images, sorted by SSIM) and curve.png. A killed attack
re-run with the same flags resumes where it stopped.
"""

import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.experiments import attack as attack_job

flags.DEFINE_string("train_workdir", None, "Training workdir to attack (scripts/train.py output).")
flags.DEFINE_string("workdir", None, "Output directory.")
BINDER = attack_flags.binder()
flags.mark_flags_as_required(["train_workdir", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  attack_job.run(BINDER.build(), FLAGS.train_workdir, FLAGS.workdir)


def console():
  """The console entry point (jaxrecon-attack)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

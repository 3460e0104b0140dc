r"""Reconstruction attack (Haim et al. 2022) on a trained network, as one compiled sweep.

  python scripts/attack.py --train_workdir=runs/main/train --workdir=runs/attack --configs=16

Attacks the last checkpoint (or --step) of a training workdir with --configs configurations of the swept
values (random draws from the reference's ranges by default, or --sweep=grid), all advancing together in one
jit-compiled lax.scan. Writes to --workdir: candidates.npz, metrics.jsonl (loss terms per configuration over
steps), summary.json (n_good_ssim_0.4, mean_top10_ssim, pool_size, configs, steps, wall_s, ...), pairs.png
(best reconstructions above their nearest training images, sorted by SSIM) and curve.png.
"""

from absl import flags

import cli
import attack_flags
from jaxrecon import reconstruct

attack_flags.define()
flags.DEFINE_string("train_workdir", None, "Training workdir to attack (scripts/train.py output).")
flags.DEFINE_string("workdir", None, "Output directory.")
flags.DEFINE_integer("step", None, "Checkpoint step to attack (default: the last).")
flags.mark_flags_as_required(["train_workdir", "workdir"])
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(attack_flags)


def main(argv):
  del argv
  config = attack_flags.config_from_flags(step=FLAGS.step)
  reconstruct.run(config, FLAGS.train_workdir, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)

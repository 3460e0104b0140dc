r"""Reconstruction attack (Haim et al. 2022) on a trained network, as one compiled sweep.

  jaxrecon-attack --train_workdir=runs/main/train --workdir=runs/attack
  jaxrecon-attack --train_workdir=runs/main/train --workdir=runs/attack_ref --protocol=reference

Attacks the last checkpoint (or --step) of a training workdir with --configs configurations of the swept
values, all advancing together in one jit-compiled loop. --protocol picks the preset the other flags
start from (a flag given on the command line overrides it): fast (the default: weights rescaled to norm 10,
8 configurations over narrowed ranges, float32, 3,000 steps; the fastest path to the reference's quality that
scripts/bench_quality.py found; --prune_at=500,1000 adds successive halving by attack loss) or reference
(Haim et al.'s protocol: 100 configurations from their ranges, SGD momentum, float64, 50,000 steps, weights
as trained). The values --help shows are the fast protocol's. Writes to --workdir: candidates.npz,
metrics.jsonl (loss terms per configuration over steps), summary.json (n_good_ssim_0.4, mean_top10_ssim,
pool_size, configs, steps, wall_s, ...), pairs.png (best reconstructions above their nearest training images,
sorted by SSIM) and curve.png. A killed attack
re-run with the same flags resumes where it stopped.
"""

import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.commands import writer_flags
from jaxrecon.experiments import attack as attack_job

flags.DEFINE_string("train_workdir", None, "Training workdir to attack (scripts/train.py output).")
flags.DEFINE_string("workdir", None, "Output directory.")
flags.DEFINE_enum("protocol", "fast", list(attack_job.PROTOCOLS),
                  "The preset the other flags start from: fast | reference (see above).")
BINDER = attack_flags.binder(attack_job.PROTOCOLS["fast"])
flags.mark_flags_as_required(["train_workdir", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = BINDER.build(attack_job.PROTOCOLS[FLAGS.protocol])
  with writer_flags.writer() as writer:
    attack_job.run(config, FLAGS.train_workdir, FLAGS.workdir, log=cli.progress, writer=writer)


def console():
  """The console entry point (jaxrecon-attack)."""
  cli.run(main, sys.modules[__name__], writer_flags)


if __name__ == "__main__":
  console()

r"""Trains a homogeneous ReLU net full-batch and writes a resumable workdir.

  jaxrecon-train --workdir=runs/sphere                       # the paper's synthetic setting
  jaxrecon-train --workdir=runs/mnist --dataset=mnist --data_dir=../shared/data/mnist \
      --width=1000,1000 --steps=20000

Writes config.json, data.npz, metrics.jsonl, checkpoints/step_*.npz (log-spaced) and summary.json
(final_loss, train_acc, test_acc, q_min, normalized_margin, eps_rel, delta, steps, wall_s, ...).
Re-running on the same workdir resumes from the last checkpoint (--steps may grow).
"""

import sys

from absl import flags

from jaxrecon.commands import cli
from jaxrecon.commands import train_flags
from jaxrecon.commands import writer_flags
from jaxrecon.experiments import train as train_job

TRAIN = train_flags.binder()
flags.DEFINE_string("workdir", None, "Output directory (resumed if it holds a run).")
flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  config = train_flags.config_from_flags(TRAIN)
  with writer_flags.writer() as writer:
    train_job.run(config, flags.FLAGS.workdir, log=cli.progress, writer=writer)


def console():
  """The console entry point (jaxrecon-train)."""
  cli.run(main, sys.modules[__name__], writer_flags)


if __name__ == "__main__":
  console()

r"""KKT residuals (eps_rel, delta, support; the relaxed kink-neighbourhood residual) of every checkpoint of a training run.

  jaxrecon-kkt --train_workdir=runs/sphere

Writes kkt.jsonl (one row per checkpoint: step, loss, normalized_margin, eps_rel, delta, support_size, ...),
summary.json and kkt.png (log-log residuals against steps) into --out_dir (default: <train_workdir>/kkt).
"""

import sys

from absl import flags

from jaxrecon.commands import cli
from jaxrecon.commands import config_flags
from jaxrecon.experiments import kkt as kkt_job

flags.DEFINE_string("train_workdir", None, "A workdir written by scripts/train.py.")
flags.DEFINE_string("out_dir", None, "Where to write (default: <train_workdir>/kkt).")
CONFIG = config_flags.Binder(kkt_job.KKTConfig(), skip=("steps",))
flags.mark_flag_as_required("train_workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  kkt_job.run(FLAGS.train_workdir, CONFIG.build(), out_dir=FLAGS.out_dir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-kkt)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()

r"""study_training_length: trained longer, less leakage? Attack every checkpoint of one run with one sweep.

  jaxrecon-train --workdir=runs/mnist50 --dataset=mnist --data_dir=DIR --n=50 --lr=1 --steps=2000
  jaxrecon-study-training-length --train_workdir=runs/mnist50 --workdir=runs/study_length

Attacks every checkpoint whose training loss is <= --max_loss (or the --at_steps) with the same sweep (the flags
of scripts/attack.py, same configurations and seed); writes an attack workdir per checkpoint (step_<s>/),
metrics.jsonl and summary.json (good reconstructions, eps_rel and delta per checkpoint) and
training_length.png.
"""

import sys

from absl import flags

from jaxrecon.commands import attack_flags
from jaxrecon.commands import cli
from jaxrecon.experiments import studies

flags.DEFINE_string("train_workdir", None, "Training workdir whose checkpoints are attacked.")
flags.DEFINE_string("workdir", "runs/study_training_length", "Output directory.")
flags.DEFINE_float("max_loss", 1e-2, "Attack the checkpoints with training loss at or below this.")
flags.DEFINE_list("at_steps", [], "Attack exactly these checkpoint steps instead.")
BINDER = attack_flags.binder(studies.STUDY_ATTACK, skip=("step",))
flags.mark_flag_as_required("train_workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  rc = BINDER.build()
  config = studies.LengthStudyConfig(reconstruct=rc, max_loss=FLAGS.max_loss,
                                     steps=tuple(int(s) for s in FLAGS.at_steps), seed=rc.sweep.seed)
  studies.run_training_length(config, FLAGS.train_workdir, FLAGS.workdir, log=cli.progress)


def console():
  """The console entry point (jaxrecon-study-training-length)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
